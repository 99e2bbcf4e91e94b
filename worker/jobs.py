"""A pilot's tasks: prepare its split, run one arm, conclude (`app.pilots.execution` holds
the states and leases). Each reads what it needs of the pilot in one transaction
(`worker.step_reads`), builds its runtime with `worker.runtime` as the command line does, and
writes progress and results back, each write its own short transaction under the task's
lease, so the web page sees progress live and a superseded or cancelled attempt writes nothing
more.

Arms of one pilot run at the same time on as many workers as take their queues; an arm
that adopts another's adapter is sent when that arm has finished, and the last arm to
finish sends the conclusion.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import session_scope, write_retrying
from app.domain.records import (
    ArmOutcome,
    ArmStatus,
    PilotStage,
    Progress,
)
from app.pilots import execution
from app.pilots import service as pilots
from app.pilots.execution import StoredSplit
from app.pilots.models import Pilot, PilotArm
from app.pilots.step_inputs import Role, StepInputs
from app.settings import Settings, get_settings
from worker import runtime
from worker.heartbeat import Heartbeat, heartbeat_interval, worker_name
from worker.pilots.conclusion import FinishedArm, conclude
from worker.pilots.runner import (
    PilotPlan,
    PilotStopped,
    plan_pilot,
    run_arm,
    upstream_of,
)
from worker.runtime import RuntimeInputs
from worker.step_reads import DB_ATTEMPTS, answers, load_inputs, read_step

log = logging.getLogger(__name__)
T = TypeVar("T")

# Progress is written at most this often per arm, so a fast loop does not hammer SQLite.
PROGRESS_INTERVAL_S = 1.0


def _retrying(work: Callable[[Session], T]) -> T:
    return write_retrying(work, attempts=DB_ATTEMPTS)


def _stalled_after(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.pilot_stalled_after_s)


def _guarded(write: Callable[[Session], T]) -> T:
    """One write under a lease: a lost lease stops the step (PilotStopped), never fails it."""
    try:
        return _retrying(write)
    except pilots.LeaseLost as lost:
        raise PilotStopped(str(lost)) from lost


# --------------------------------------------------------------------------- preparing


def _claim(pilot_id: str, settings: Settings) -> pilots.Claim | None:
    """This delivery's claim on the pilot's preparation, or None (finished, cancelled, live
    on another worker, or out of attempts, which fails it with the reason)."""
    worker = worker_name()
    held = _retrying(
        lambda session: pilots.claim(
            session,
            pilot_id=pilot_id,
            worker=worker,
            max_attempts=settings.pilot_max_attempts,
            stalled_after=_stalled_after(settings),
        )
    )
    if held is not None:
        return held
    with session_scope() as session:
        if pilots.give_up_if_exhausted(
            session,
            pilot_id=pilot_id,
            max_attempts=settings.pilot_max_attempts,
            stalled_after=_stalled_after(settings),
        ):
            log.warning("pilot %s used every attempt; failed", pilot_id)
        else:
            log.info("pilot %s is past preparing, cancelled or live elsewhere; dropped", pilot_id)
        return None


def _pilot_step(
    pilot_id: str, held: pilots.Claim, settings: Settings, step: Callable[[Heartbeat], None]
) -> None:
    """Run a step under the pilot's own lease (preparing, concluding); an error it can catch
    fails the pilot with the reason, a lost lease stops it without a write."""
    beat = Heartbeat(
        f"pilot {pilot_id}",
        lambda session: pilots.hold(session, pilot_id=pilot_id, lease=held.lease),
        heartbeat_interval(settings),
    )
    with beat:
        try:
            step(beat)
        except (PilotStopped, pilots.LeaseLost):
            log.warning("pilot %s: attempt %d stopped (lease lost)", pilot_id, held.attempt)
        except Exception as exc:
            log.exception("pilot %s failed", pilot_id)
            try:
                with session_scope() as session:
                    pilots.fail_pilot(
                        session,
                        pilot_id=pilot_id,
                        lease=held.lease,
                        message=f"{type(exc).__name__}: {exc}",
                    )
            except pilots.LeaseLost:
                log.warning("pilot %s: failed after its lease was lost; not recorded", pilot_id)


def prepare_pilot(pilot_id: str) -> None:
    """The pilot's first task: parse, split and cap once, store the split, send the arms."""
    settings = get_settings()
    held = _claim(pilot_id, settings)
    if held is None:
        return

    def step(beat: Heartbeat) -> None:
        data, warnings, _ = load_inputs(settings, pilot_id)
        _, given = read_step(settings, pilot_id, roles=(Role.judge,), split=False)
        plan = plan_pilot(runtime.pilot_config(settings, given, answers(pilot_id)), data)
        beat.check()
        lease = held.lease
        _guarded(
            lambda session: execution.store_split(
                session,
                pilot_id=pilot_id,
                lease=lease,
                data=plan.data,
                caps=plan.caps,
                warnings=warnings,
            )
        )
        sent = _guarded(
            lambda session: execution.start_arms(session, pilot_id=pilot_id, lease=lease)
        )
        log.info("pilot %s prepared; arms sent: %s", pilot_id, ", ".join(sent))

    _pilot_step(pilot_id, held, settings, step)


def _stored_plan(
    settings: Settings, inputs: StepInputs, given: RuntimeInputs
) -> tuple[PilotPlan, StoredSplit]:
    """The plan every task of the pilot shares, from the split its preparation stored."""
    split = inputs.split
    assert split is not None, "read with the split"
    plan = plan_pilot(runtime.pilot_config(settings, given, answers(inputs.pilot_id)), split.data)
    return dataclasses.replace(plan, caps=split.caps), split


# --------------------------------------------------------------------------- one arm


def execute_arm(pilot_id: str, arm: str) -> None:
    """Run one arm of a prepared pilot under the arm's own claim, then send what waited for
    it: an arm adopting its adapter, or the pilot's conclusion once no arm is open."""
    settings = get_settings()
    worker = worker_name()
    held = _retrying(
        lambda session: execution.claim_arm(
            session,
            pilot_id=pilot_id,
            arm=arm,
            worker=worker,
            max_attempts=settings.pilot_max_attempts,
            stalled_after=_stalled_after(settings),
        )
    )
    if held is None:
        log.info("pilot %s arm %s: finished, cancelled or live elsewhere; dropped", pilot_id, arm)
        return
    lease = held.lease
    beat = Heartbeat(
        f"pilot {pilot_id} arm {arm}",
        lambda session: execution.hold_arm(session, pilot_id=pilot_id, arm=arm, lease=lease),
        heartbeat_interval(settings),
    )
    execution_id: int | None = None
    with beat:
        try:
            execution_id = _guarded(
                lambda session: (
                    execution.start_execution(
                        session, pilot_id=pilot_id, arm=arm, lease=lease, worker=worker
                    ).id
                )
            )
            _run_one_arm(settings, pilot_id, arm, lease, beat)
            _close_execution(execution_id, "done")
        except (PilotStopped, pilots.LeaseLost):
            log.warning("pilot %s arm %s: attempt %d stopped", pilot_id, arm, held.attempt)
            _close_execution(execution_id, "stopped")
            return
        except Exception as exc:  # the arm's setup failed (its own failure is its outcome)
            log.exception("pilot %s arm %s failed", pilot_id, arm)
            _close_execution(execution_id, "failed")
            message = f"{type(exc).__name__}: {exc}"
            try:
                _guarded(lambda session: _record_failure(session, pilot_id, arm, lease, message))
            except PilotStopped:
                return
    _retrying(lambda session: execution.begin_conclusion(session, pilot_id=pilot_id))


def _record_failure(session: Session, pilot_id: str, arm: str, lease: str, message: str) -> None:
    execution.hold_arm(session, pilot_id=pilot_id, arm=arm, lease=lease)
    execution.fail_arm(session, pilot_id=pilot_id, arm=arm, message=message)


def _close_execution(execution_id: int | None, outcome: str) -> None:
    if execution_id is None:
        return
    try:
        # Retried on a dropped connection like every other write: the execution's outcome is
        # how each arm is counted as run once.
        _retrying(
            lambda session: execution.finish_execution(
                session, execution_id=execution_id, outcome=outcome
            )
        )
    except Exception:  # the audit trail must not turn a finished arm into a failure
        log.exception("could not close execution %s", execution_id)


def _run_one_arm(settings: Settings, pilot_id: str, arm: str, lease: str, beat: Heartbeat) -> None:
    inputs, given = read_step(settings, pilot_id)
    plan, _ = _stored_plan(settings, inputs, given)
    resources = runtime.resources(settings, given, answers(pilot_id))
    source = upstream_of(plan, arm)  # the arm whose adapter this one adopts, if it has one
    upstream = inputs.adapters.get(source) if source is not None else None
    last_write = 0.0

    def on_progress(progress: Progress) -> None:
        nonlocal last_write
        beat.check()
        now = time.monotonic()
        final = progress.total and progress.step >= progress.total
        if not final and now - last_write < PROGRESS_INTERVAL_S:
            return
        last_write = now
        _guarded(
            lambda session: execution.record_progress(
                session, pilot_id=pilot_id, arm=arm, lease=lease, progress=progress
            )
        )

    ran = run_arm(plan, arm, resources, upstream_adapter=upstream, progress=on_progress)
    beat.check()

    def record(session: Session) -> None:
        if ran.curve is not None:
            execution.record_curve(
                session, pilot_id=pilot_id, arm=arm, lease=lease, curve=ran.curve
            )
        execution.record_arm(
            session,
            pilot_id=pilot_id,
            lease=lease,
            outcome=ran.outcome,
            data=plan.data,
            handover=ran.handover,
        )

    _guarded(record)


# --------------------------------------------------------------------------- concluding


def conclude_pilot(pilot_id: str) -> None:
    """The pilot's last task: judge, compare and write the manifest from what the arms
    stored, then finish the pilot."""
    settings = get_settings()
    worker = worker_name()
    held = _retrying(
        lambda session: execution.claim_conclusion(
            session,
            pilot_id=pilot_id,
            worker=worker,
            max_attempts=settings.pilot_max_attempts,
            stalled_after=_stalled_after(settings),
        )
    )
    if held is None:
        log.info("pilot %s: conclusion done, cancelled or live elsewhere; dropped", pilot_id)
        return

    def step(beat: Heartbeat) -> None:
        _conclude(settings, pilot_id, held.lease, beat)

    _pilot_step(pilot_id, held, settings, step)


def _conclude(settings: Settings, pilot_id: str, lease: str, beat: Heartbeat) -> None:
    inputs, given = read_step(settings, pilot_id, finished=True)
    plan, split = _stored_plan(settings, inputs, given)
    resources = runtime.resources(settings, given, answers(pilot_id))
    started_at = inputs.started_at
    arms = [
        (
            FinishedArm(arm=a.arm, status=a.status, metrics=list(a.metrics), handover=a.handover),
            a.error,
        )
        for a in inputs.finished
    ]
    last_write: dict[str, float] = {}

    def on_progress(arm: str, progress: Progress) -> None:
        beat.check()
        now = time.monotonic()
        if now - last_write.get(arm, 0.0) < PROGRESS_INTERVAL_S:
            return
        last_write[arm] = now
        _guarded(
            lambda session: execution.record_conclusion_progress(
                session, pilot_id=pilot_id, lease=lease, arm=arm, progress=progress
            )
        )

    conclusion = conclude(
        plan,
        [arm for arm, _ in arms],
        resources,
        started_at=started_at or datetime.now(UTC),
        on_progress=on_progress,
    )
    beat.check()
    outcome = conclusion.outcome(
        plan,
        [ArmOutcome(arm=a.arm, status=a.status, error=error) for a, error in arms],
        data_warnings=split.warnings,
    )

    def finish(session: Session) -> None:
        for arm, added in conclusion.verdicts.items():
            execution.add_findings(
                session,
                pilot_id=pilot_id,
                lease=lease,
                arm=arm,
                metrics=added.metrics,
                notes=added.notes,
            )
        pilots.finish_pilot(session, pilot_id=pilot_id, lease=lease, outcome=outcome)

    _guarded(finish)


# --------------------------------------------------------------------------- in one process


def run_in_process(pilot_id: str) -> None:
    """Run every task of one queued pilot here, one after another, as workers would: prepare,
    each arm once it is sent (upstream first), then the conclusion. For debugging a pilot and
    for tests; a worker that takes the same messages meanwhile finds each step claimed."""
    prepare_pilot(pilot_id)
    while (arm := _next_sent_arm(pilot_id)) is not None:
        execute_arm(pilot_id, arm)
    conclude_pilot(pilot_id)


def _next_sent_arm(pilot_id: str) -> str | None:
    """The pilot's next arm to run here: one released to its queue first, else one held back
    for a slot (other pilots' arms may hold every slot) whose upstream arm has finished."""
    with session_scope() as session:
        rows = session.execute(
            select(PilotArm.arm, PilotArm.status, PilotArm.task_id, Pilot.arms)
            .join(Pilot, Pilot.id == PilotArm.pilot_id)
            .where(PilotArm.pilot_id == pilot_id, Pilot.stage == PilotStage.arms)
            .order_by(PilotArm.position)
        ).all()
    open_arms = {arm for arm, status, *_ in rows if status in execution.OPEN_ARM}
    ready = [
        (task_id is None, arm)
        for arm, status, task_id, arms in rows
        if status == ArmStatus.pending and execution.upstream_arm(arm, arms or []) not in open_arms
    ]
    return sorted(ready, key=lambda held: held[0])[0][1] if ready else None  # stable: by position
