"""Stalled-step recovery: a worker killed mid-pilot must not leave it 'running' forever.

The SQLAlchemy transport never redelivers a message whose worker died (it stays invisible), and
even Redis redelivers only after its visibility timeout. So SQL is swept for steps whose
heartbeat went silent (a pilot's preparation or conclusion, or one arm), which are queued
again or, past the attempt limit, marked failed with the reason: by every worker when it
starts, and every minute by Celery beat (`PILOT_SWEEP_INTERVAL_S`), so a dead worker's pilot
recovers without any restart. The same sweep sends the jobs that stayed in the outbox because
the broker could not take them (`app.queue.send_unsent`), the queued steps whose message
the broker took and then lost (`resend_lost`), and releases the arms that wait for a slot in
their queue (`app.pilots.dispatch`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy.orm import Session

from app.db import session_scope, utcnow
from app.pilots import execution
from app.pilots import service as pilots
from app.pilots.dispatch import dispatch
from app.queue import CPU_QUEUE, messages_waiting, send_unsent
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
    requeued += resend_lost(stalled_after)
    # Arms wait in SQL for a slot: release what fits now, should the transaction that freed a
    # slot have rolled back after its own release (or a slot freed without one: a pilot that
    # failed while its arms ran).
    with session_scope() as session:
        released = dispatch(session, settings, wait=True)
    if released:
        log.info("released arms to their queues: %s", released)
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


@dataclass(frozen=True)
class _Waiting:
    """A step that was sent and that no worker has claimed: what its queue should hold."""

    name: str  # as `recover_stalled` reports it
    queue: str
    sent_at: datetime
    resend: Callable[..., bool]  # (session, *, sent_before) -> whether it did


def _utc(moment: datetime) -> datetime:
    """SQLite hands its times back naive (they are stored in UTC), PostgreSQL aware."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _waiting_steps(session: Session) -> list[_Waiting]:
    steps = [
        _Waiting(
            pilot_id,
            CPU_QUEUE,
            _utc(sent_at),
            partial(pilots.resend_queued, pilot_id=pilot_id),
        )
        for pilot_id, sent_at in pilots.queued_pilots(session)
    ]
    steps += [
        _Waiting(
            f"{pilot_id}/{arm}",
            execution.queue_for_arm(arm),
            _utc(sent_at),
            partial(execution.resend_arm, pilot_id=pilot_id, arm=arm),
        )
        for pilot_id, arm, sent_at in execution.sent_arms(session)
    ]
    return steps


def resend_lost(stalled_after: timedelta) -> list[str]:
    """Send again the queued steps (a pilot's preparation, an arm) whose message the broker
    lost after taking it; returns them as `recover_stalled` names them.

    A queue hands out its messages oldest first, so when it holds fewer messages than there
    are steps sent to it and not yet claimed, the oldest of those steps are the ones whose
    message has left it. A worker claims a step within moments of taking its message, so one
    still unclaimed `stalled_after` after it was sent lost its message on the way (the broker
    stopped between handing it out and recording it as unacknowledged, or the worker died
    first). Messages the count cannot tell apart (a duplicate, a conclusion, a sweep) only
    make it wait: at the latest, a lost step is sent again once its queue has drained. A step
    sent twice is harmless: its claim lets one delivery run it."""
    cutoff = utcnow() - stalled_after
    with session_scope() as session:
        steps = _waiting_steps(session)
    if not any(step.sent_at < cutoff for step in steps):
        return []  # nothing could be lost yet: the broker is not asked
    by_queue: dict[str, list[_Waiting]] = {}
    for step in steps:
        by_queue.setdefault(step.queue, []).append(step)
    try:
        waiting = messages_waiting(by_queue)
    except Exception as error:  # the broker is down: the next sweep counts again
        log.warning("could not count the queues' messages: %s", error)
        return []
    resent: list[str] = []
    for queue, queued in by_queue.items():
        missing = len(queued) - waiting.get(queue, 0)
        for step in sorted(queued, key=lambda s: s.sent_at)[: max(missing, 0)]:
            with session_scope() as session:
                if step.resend(session, sent_before=cutoff):
                    resent.append(step.name)  # sent once this scope commits
    if resent:
        log.warning("sent again, their message lost on the way to a worker: %s", resent)
    return resent
