"""Stalled-step recovery: a worker killed mid-pilot must not leave it 'running' forever.

The SQLAlchemy transport never redelivers a message whose worker died (it stays invisible), and
even Redis redelivers only after its visibility timeout. So SQL is swept for steps whose
heartbeat went silent (a pilot's preparation or conclusion, or one arm), which are queued
again or, past the attempt limit, marked failed with the reason: by every worker when it
starts, and every minute by Celery beat (`PILOT_SWEEP_INTERVAL_S`), so a dead worker's pilot
recovers without any restart. The same sweep sends the jobs that stayed in the outbox because
the broker could not take them (`app.queue.send_unsent`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from app.db import session_scope
from app.pilots import execution
from app.pilots import service as pilots
from app.queue import send_unsent
from app.settings import Settings

log = logging.getLogger(__name__)


def recover_stalled(settings: Settings) -> tuple[list[str], list[str]]:
    """Requeue or fail orphaned steps; returns (requeued, failed): pilot ids for a pilot's
    own steps (preparing, concluding), "pilot/arm" for an arm.

    Every change is a conditional UPDATE that re-checks the stale heartbeat, so sweeps running
    at once on several workers (or beside a worker that just reported) each act at most once."""
    send_unsent()  # first: a step whose job was never sent is not stalled, only waiting
    requeued: list[str] = []
    failed: list[str] = []
    stalled_after = timedelta(seconds=settings.pilot_stalled_after_s)
    with session_scope() as session:
        stalled = [p.id for p in pilots.stalled_pilots(session, older_than=stalled_after)]
        arms = execution.stalled_arms(session, older_than=stalled_after)
    for pilot_id in stalled:
        with session_scope() as session:  # one step per transaction: one failure stays local
            if pilots.give_up_if_exhausted(
                session,
                pilot_id=pilot_id,
                max_attempts=settings.pilot_max_attempts,
                stalled_after=stalled_after,
            ):
                failed.append(pilot_id)
            elif pilots.requeue_stalled(session, pilot_id=pilot_id, stalled_after=stalled_after):
                requeued.append(pilot_id)  # sent once this scope commits
    for pilot_id, arm in arms:
        with session_scope() as session:
            done = execution.requeue_stalled_arm(
                session,
                pilot_id=pilot_id,
                arm=arm,
                stalled_after=stalled_after,
                max_attempts=settings.pilot_max_attempts,
            )
        if done == "requeued":
            requeued.append(f"{pilot_id}/{arm}")
        elif done == "failed":
            failed.append(f"{pilot_id}/{arm}")
    # A worker that died between an arm's record and sending the conclusion left the pilot
    # with every arm finished: conclude it now.
    with session_scope() as session:
        waiting = execution.pilots_awaiting_conclusion(session)
    for pilot_id in waiting:
        with session_scope() as session:
            if execution.begin_conclusion(session, pilot_id=pilot_id):
                requeued.append(pilot_id)
    if requeued or failed:
        log.warning("stalled steps: requeued %s, failed %s", requeued, failed)
    return requeued, failed
