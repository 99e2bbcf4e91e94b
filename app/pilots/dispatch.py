"""Releasing ready arms to the broker, a few at a time, in a fair and quick-first order.

An arm is *ready* in SQL (pending, its pilot in its arms stage, the arm it adopts an adapter
from finished) long before it is *sent*: a broker queue is first in, first out, so whatever
it holds runs in the order it was sent, and sending every ready arm at once let one user's
thirty pilots hold a queue, and a shared worker train for minutes while the floor and the
prompting arms waited. Here each queue keeps at most its `QUEUE_SLOTS_*` arms in flight (sent
and not finished: waiting in the broker or running), and the next arm is chosen when a slot
frees, by `app.domain.queueing.dispatch_order`: quick arms first, then the user with the
fewest arms in flight there (served least recently on a tie), then the oldest pilot.

`dispatch` runs inside the transaction that makes an arm ready or frees a slot (the
preparation's end, an arm claimed, finished or failed, a pilot cancelled), so the release
commits with its cause: the arm's `task_id` and its job in the outbox (`app.queue`), sent
after the commit as before; every guarantee of the outbox and the sweep holds unchanged for
a released arm. The sweep calls it too, so an arm never waits for ever when a release was
lost with a rolled-back transaction. Two dispatchers never count the same free slot: each
locks the queues' rows (`DispatchQueue`) first, in one order, and on PostgreSQL takes the arms
it releases with SKIP LOCKED, so it never waits on a row another transaction holds. A
transaction that finds the queues held by another dispatcher does not wait for them (that
would keep an arm's record open, and its connection exposed, behind someone else's): it
dispatches again right after it commits, in a short transaction of its own.

Services flush; the caller owns the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.assessments.models import Assessment, new_id
from app.db import changed_rows, utcnow, write_retrying
from app.domain.arms import ARMS
from app.domain.queueing import CostClass, QueuedArm, cost_class, dispatch_order
from app.domain.records import ArmStatus, PilotStage, PilotStatus
from app.pilots.models import Pilot, PilotArm
from app.queue import (
    CPU_QUEUE,
    GPU_QUEUE,
    RUN_ARM,
    DispatchQueue,
    DispatchTurn,
    call_after_commit,
    enqueue_after_commit,
)
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

OPEN_ARM = (ArmStatus.pending, ArmStatus.running)
QUEUES = (CPU_QUEUE, GPU_QUEUE)
# What a held-back arm's stage reads while it waits for a slot.
QUEUED_STAGE = "queued"


def queue_for_arm(arm: str) -> str:
    """Arms that train go to the `gpu` queue; the rest (in-process prompting, endpoint-bound
    arms) to `cpu`. A worker's queues are a setting (WORKER_QUEUES)."""
    trains = arm in ARMS and ARMS.get(arm).needs.trains
    return GPU_QUEUE if trains else CPU_QUEUE


def cost_of(arm: str) -> CostClass:
    """The arm's cost class from the registry; an arm no longer registered counts as quick."""
    return cost_class(ARMS.get(arm).needs) if arm in ARMS else CostClass.quick


def upstream_arm(arm: str, arms: Collection[str]) -> str | None:
    """The arm whose adapter `arm` adopts, when both are in the pilot (it waits for it)."""
    if arm not in ARMS:
        return None
    source = ARMS.get(arm).needs.adapter_from
    return source if source in arms else None


def slots(settings: Settings) -> dict[str, int]:
    return {CPU_QUEUE: settings.queue_slots_cpu, GPU_QUEUE: settings.queue_slots_gpu}


@dataclass(frozen=True)
class _Open:
    """An open arm of a pilot in its arms stage, as the dispatcher sees it."""

    arm: QueuedArm
    status: str
    sent: bool
    pilot_arms: tuple[str, ...]


def _open_arms(session: Session) -> list[_Open]:
    stmt = (
        select(
            PilotArm.pilot_id,
            PilotArm.arm,
            PilotArm.status,
            PilotArm.task_id,
            PilotArm.position,
            Pilot.created_at,
            Pilot.arms,
            Assessment.owner_id,
        )
        .join(Pilot, Pilot.id == PilotArm.pilot_id)
        .join(Assessment, Assessment.id == Pilot.assessment_id)
        .where(
            Pilot.status == PilotStatus.running,
            Pilot.stage == PilotStage.arms,
            PilotArm.status.in_(OPEN_ARM),
        )
    )
    return [
        _Open(
            arm=QueuedArm(
                pilot_id=pilot_id,
                arm=arm,
                queue=queue_for_arm(arm),
                owner=owner,
                cost=cost_of(arm),
                pilot_created=created,
                position=position,
                claimed=status == ArmStatus.running,
            ),
            status=status,
            sent=task_id is not None,
            pilot_arms=tuple(arms or ()),
        )
        for pilot_id, arm, status, task_id, position, created, arms, owner in session.execute(stmt)
    ]


def _split(rows: list[_Open]) -> tuple[list[QueuedArm], list[QueuedArm]]:
    """(ready, in flight): in flight is running, or sent and not yet claimed; ready is pending,
    not sent, and not waiting for an open upstream arm of its pilot."""
    open_by_pilot: dict[str, set[str]] = {}
    for row in rows:
        open_by_pilot.setdefault(row.arm.pilot_id, set()).add(row.arm.arm)
    ready, in_flight = [], []
    for row in rows:
        if row.status == ArmStatus.running or row.sent:
            in_flight.append(row.arm)
            continue
        source = upstream_arm(row.arm.arm, row.pilot_arms)
        if source is None or source not in open_by_pilot[row.arm.pilot_id]:
            ready.append(row.arm)
    return ready, in_flight


def _lock_queues(session: Session, *, wait: bool) -> bool:
    """Hold every queue's row until this transaction ends, taken in one order (two
    dispatchers never wait on each other crosswise); whether all were taken. On PostgreSQL
    one SELECT ... FOR UPDATE takes them, skipping rows another dispatcher holds unless
    `wait`; SQLite has no row locks, so a write (the stamp) takes its one writer's lock. The
    rows exist from the migration on; a missing one is created, racing creators both
    succeeding."""
    postgres = session.get_bind().dialect.name == "postgresql"
    for attempt in range(2):
        if postgres:
            rows = select(DispatchQueue.name).order_by(DispatchQueue.name)
            locked = session.scalars(rows.with_for_update(skip_locked=not wait)).all()
            present = locked if wait or len(locked) == len(QUEUES) else session.scalars(rows).all()
        else:
            changed_rows(session, update(DispatchQueue).values(dispatched_at=utcnow()))
            locked = present = session.scalars(select(DispatchQueue.name)).all()
        missing = set(QUEUES) - set(present)
        if not missing or attempt:
            return set(QUEUES) <= set(locked)
        insert = (postgresql if postgres else sqlite).insert
        for name in sorted(missing):
            session.execute(insert(DispatchQueue).values(name=name).on_conflict_do_nothing())
    return False


def _take(session: Session, picked: QueuedArm) -> str | None:
    """Give the picked arm its task id, in one UPDATE that takes its row only if nothing else
    holds it (PostgreSQL's SKIP LOCKED; SQLite has one writer); None when it is no longer
    ready (claimed by a second delivery meanwhile) or another transaction is changing it (that
    one dispatches again once it commits)."""
    free_row = (
        select(PilotArm.id)
        .where(
            PilotArm.pilot_id == picked.pilot_id,
            PilotArm.arm == picked.arm,
            PilotArm.status == ArmStatus.pending,
            PilotArm.task_id.is_(None),
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    task_id = new_id()
    taken = changed_rows(
        session,
        update(PilotArm)
        .where(PilotArm.id == free_row, PilotArm.task_id.is_(None))
        .values(task_id=task_id, stage=QUEUED_STAGE),
    )
    return task_id if taken == 1 else None


def _last_served(session: Session, ready: list[QueuedArm]) -> dict[tuple[str, int], datetime]:
    owners = {a.owner for a in ready}
    turns = session.scalars(select(DispatchTurn).where(DispatchTurn.owner_id.in_(owners)))
    return {(turn.queue, turn.owner_id): turn.served_at for turn in turns}


def _served(session: Session, picked: QueuedArm, now: datetime) -> None:
    turn = session.get(DispatchTurn, (picked.queue, picked.owner))
    if turn is None:
        session.add(DispatchTurn(queue=picked.queue, owner_id=picked.owner, served_at=now))
    else:
        turn.served_at = now


def _dispatch_after_commit() -> None:
    released = write_retrying(lambda session: dispatch(session, wait=True), attempts=8)
    if released:
        log.info("released arms to their queues: %s", released)


def dispatch(
    session: Session, settings: Settings | None = None, *, wait: bool = False
) -> list[tuple[str, str]]:
    """Release the arms that fit the queues' free slots, best first; each is sent once the
    caller commits. Returns (pilot, arm) of those released now (none when another dispatcher
    held the queues: this one then runs again after the caller commits, `wait`ing)."""
    settings = settings or get_settings()
    if not _lock_queues(session, wait=wait):
        # Another transaction is dispatching now. Waiting for it here would hold this
        # transaction (an arm's record, a claim) open behind it; dispatch instead right after
        # this one commits, in a short transaction of its own that waits its turn.
        call_after_commit(session, "dispatch", _dispatch_after_commit)
        return []
    ready, in_flight = _split(_open_arms(session))
    if not ready:
        return []
    last_served = _last_served(session, ready)
    now = utcnow()
    order = dispatch_order(
        ready,
        in_flight,
        slots=slots(settings),
        last_served=last_served,
        now=now,
        shared_worker=settings.queues_share_a_worker,
    )
    released = []
    for picked in order:
        task_id = _take(session, picked)
        if task_id is None:
            continue
        _served(session, picked, now)
        enqueue_after_commit(
            session, RUN_ARM, picked.pilot_id, picked.arm, task_id=task_id, queue=picked.queue
        )
        released.append((picked.pilot_id, picked.arm))
    session.flush()
    return released


def waiting_positions(session: Session, *, pilot_id: str) -> dict[str, int]:
    """Where each of the pilot's held-back arms stands in its queue (1: released next), as
    things are now; empty when none waits. A read: it releases nothing."""
    ready, in_flight = _split(_open_arms(session))
    if not any(a.pilot_id == pilot_id for a in ready):
        return {}
    last_served = _last_served(session, ready)
    unlimited = {queue: len(ready) + len(in_flight) for queue in QUEUES}
    order = dispatch_order(
        ready,
        in_flight,
        slots=unlimited,
        last_served=last_served,
        now=utcnow(),
        shared_worker=False,
    )
    positions: dict[str, int] = {}
    seen: dict[str, int] = {}
    for queued in order:
        seen[queued.queue] = seen.get(queued.queue, 0) + 1
        if queued.pilot_id == pilot_id:
            positions[queued.arm] = seen[queued.queue]
    return positions
