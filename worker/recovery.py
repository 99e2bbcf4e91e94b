"""Stalled-pilot recovery: a worker killed mid-pilot must not leave it 'running' forever.

The SQLAlchemy transport never redelivers a message whose worker died (it stays invisible), and
even Redis redelivers only after its visibility timeout. So on start-up every worker sweeps SQL
for pilots whose heartbeat went silent, and queues them again or, past the attempt limit, marks
them failed with the reason.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from app.db import session_scope
from app.pilots import service as pilots
from app.settings import Settings

log = logging.getLogger(__name__)


def recover_stalled(settings: Settings) -> tuple[list[str], list[str]]:
    """Requeue or fail orphaned pilots; returns (requeued ids, failed ids)."""
    requeued: list[str] = []
    failed: list[str] = []
    with session_scope() as session:
        for pilot in pilots.stalled_pilots(
            session, older_than=timedelta(seconds=settings.pilot_stalled_after_s)
        ):
            if pilot.attempts >= settings.pilot_max_attempts:
                pilots.fail_pilot(
                    session,
                    pilot_id=pilot.id,
                    message=(
                        f"The worker stopped during attempt {pilot.attempts} of "
                        f"{settings.pilot_max_attempts}; the pilot was not retried again."
                    ),
                )
                failed.append(pilot.id)
            else:
                pilots.requeue(session, pilot=pilot)  # sent once this scope commits
                requeued.append(pilot.id)
    if requeued or failed:
        log.warning("stalled pilots: requeued %s, failed %s", requeued, failed)
    return requeued, failed
