"""A pilot's run in SQL, as a small graph of tasks: prepare once, then each arm as a task of
its own (on any worker that takes its queue), then one conclusion.

    queued ──prepare──▶ running/preparing ──split stored──▶ running/arms
        each arm: pending ──released──▶ pending, sent ──claim──▶ running ──record──▶ done | failed
        (released to its queue by `app.pilots.dispatch` when a slot frees, quick arms and
        the least-served user first; an arm that adopts another's adapter waits for it)
    last arm finished ──▶ running/concluding ──conclude──▶ done | failed

Every step is claimed by one conditional UPDATE that sets a fresh lease, and every later write
of the step checks that lease in the same transaction, so two deliveries of one task never
both run it, and a superseded attempt cannot overwrite a newer one. The pilot's lease covers
preparing and concluding; each arm's row carries its own. A cancelled pilot refuses every
arm's write. The sweep (`worker.recovery`) re-queues a step whose heartbeat went silent, and
sends again a pending arm whose message its queue no longer holds.

Services flush; the caller (worker job) owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from app.assessments.models import new_id
from app.db import changed_rows, utcnow
from app.domain.preparation import dataset_hash, split_as_json, split_from_json
from app.domain.records import (
    ArmHandover,
    ArmOutcome,
    ArmStatus,
    LearningCurve,
    MetricValue,
    PilotData,
    PilotStage,
    PilotStatus,
    Progress,
    to_json_data,
)
from app.domain.samples.schemas import Example
from app.pilots.dispatch import OPEN_ARM, QUEUED_STAGE, dispatch, queue_for_arm, upstream_arm
from app.pilots.models import (
    ArmExecution,
    LossCurvePoint,
    MetricRow,
    Pilot,
    PilotArm,
    PilotSplit,
    SamplePrediction,
)
from app.pilots.service import STORED_PREDICTIONS, Claim, LeaseLost, hold
from app.queue import CONCLUDE_PILOT, CPU_QUEUE, RUN_ARM, OutboxJob, enqueue_after_commit

# Re-exported: the sweep and the worker reach these through the execution module.
__all__ = ["OPEN_ARM", "queue_for_arm", "upstream_arm"]


# --------------------------------------------------------------------------- preparing


def store_split(
    session: Session,
    *,
    pilot_id: str,
    lease: str,
    data: PilotData,
    caps: list[str],
    warnings: list[str],
) -> None:
    """Keep the prepared split for every arm task (replacing an earlier attempt's)."""
    hold(session, pilot_id=pilot_id, lease=lease)
    session.execute(delete(PilotSplit).where(PilotSplit.pilot_id == pilot_id))
    session.add(
        PilotSplit(
            pilot_id=pilot_id,
            data=split_as_json(data),
            dataset_sha256=dataset_hash(data),
            caps=list(caps),
            warnings=list(warnings),
        )
    )
    session.flush()


@dataclass(frozen=True)
class StoredSplit:
    data: PilotData
    caps: list[str]
    warnings: list[str]


class SplitChanged(Exception):
    """The stored split does not match its hash: the arms would not share one data set."""


def read_split(session: Session, *, pilot_id: str) -> StoredSplit:
    row = session.get(PilotSplit, pilot_id)
    if row is None:
        raise LookupError(f"pilot {pilot_id} has no prepared split")
    data = split_from_json(row.data)
    if dataset_hash(data) != row.dataset_sha256:
        raise SplitChanged(f"pilot {pilot_id}: the stored split does not match its hash")
    return StoredSplit(data=data, caps=list(row.caps), warnings=list(row.warnings))


def start_arms(session: Session, *, pilot_id: str, lease: str) -> list[str]:
    """End the preparation: the pilot moves to its arms stage, its lease is released, and
    its arms queue up; those that wait for no other are released to their queues as slots
    allow (`app.pilots.dispatch`). Returns the pilot's arms released now."""
    hold(session, pilot_id=pilot_id, lease=lease)
    pilot = session.get(Pilot, pilot_id)
    assert pilot is not None
    pilot.stage = PilotStage.arms
    pilot.lease = None
    pilot.attempts = 0  # the arms and the conclusion count their own attempts
    session.execute(
        update(PilotArm)
        .where(PilotArm.pilot_id == pilot_id, PilotArm.status.in_(OPEN_ARM))
        .values(status=ArmStatus.pending, lease=None, attempts=0, stage=QUEUED_STAGE)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return _released(session, pilot_id=pilot_id)


def _released(session: Session, *, pilot_id: str) -> list[str]:
    """Release what fits the queues now (any pilot's arms: this step may have made one ready
    or freed a slot); the arms of `pilot_id` among them."""
    return [arm for pilot, arm in dispatch(session) if pilot == pilot_id]


# --------------------------------------------------------------------------- one arm


def _arm_is(pilot_id: str, arm: str) -> Any:
    return and_(PilotArm.pilot_id == pilot_id, PilotArm.arm == arm)


def _pilot_runs_arms(pilot_id: str) -> Any:
    return exists().where(
        Pilot.id == pilot_id, Pilot.status == PilotStatus.running, Pilot.stage == PilotStage.arms
    )


def claim_arm(
    session: Session,
    *,
    pilot_id: str,
    arm: str,
    worker: str,
    max_attempts: int,
    stalled_after: timedelta,
) -> Claim | None:
    """Claim one arm for one attempt, or None when it is not this delivery's to run (already
    running live elsewhere, finished, out of attempts, or its pilot was cancelled)."""
    now = utcnow()
    lease = new_id()
    claimed = changed_rows(
        session,
        update(PilotArm)
        .where(
            _arm_is(pilot_id, arm),
            PilotArm.attempts < max_attempts,
            or_(
                PilotArm.status == ArmStatus.pending,
                and_(
                    PilotArm.status == ArmStatus.running,
                    PilotArm.heartbeat_at < now - stalled_after,
                ),
            ),
            _pilot_runs_arms(pilot_id),
        )
        .values(
            status=ArmStatus.running,
            attempts=PilotArm.attempts + 1,
            lease=lease,
            claimed_by=worker[:128],
            heartbeat_at=now,
            started_at=now,
            finished_at=None,
            stage="starting",
            step=0,
            total=0,
            eta_seconds=None,
            error=None,
        ),
    )
    if claimed != 1:
        return None
    # An arm started: where one worker takes every queue, an arm held back behind it (a
    # slower class) may go now, to wait in the broker for this one to finish.
    dispatch(session)
    attempt = session.scalar(select(PilotArm.attempts).where(_arm_is(pilot_id, arm)))
    return Claim(lease=lease, attempt=int(attempt or 0))


def hold_arm(session: Session, *, pilot_id: str, arm: str, lease: str) -> None:
    """Check the arm's lease (and that its pilot still runs) and beat its heartbeat, in one
    conditional UPDATE at the start of every write of the arm; raises LeaseLost."""
    held = changed_rows(
        session,
        update(PilotArm)
        .where(
            _arm_is(pilot_id, arm),
            PilotArm.lease == lease,
            PilotArm.status == ArmStatus.running,
            _pilot_runs_arms(pilot_id),
        )
        .values(heartbeat_at=utcnow()),
    )
    if held != 1:
        raise LeaseLost(f"pilot {pilot_id}, arm {arm}: this attempt's lease is no longer current")


def _arm_row(session: Session, pilot_id: str, arm: str) -> PilotArm:
    row = session.scalar(select(PilotArm).where(_arm_is(pilot_id, arm)))
    if row is None:
        raise LookupError(f"pilot {pilot_id} has no arm {arm}")
    return row


def start_execution(
    session: Session, *, pilot_id: str, arm: str, lease: str, worker: str
) -> ArmExecution:
    """Record that this attempt starts running the arm (the exactly-once audit trail)."""
    hold_arm(session, pilot_id=pilot_id, arm=arm, lease=lease)
    execution = ArmExecution(pilot_id=pilot_id, arm=arm, lease=lease, worker=worker[:128])
    session.add(execution)
    session.flush()
    return execution


def finish_execution(session: Session, *, execution_id: int, outcome: str) -> None:
    """Close an execution record (also for a stopped attempt, so the trail says why)."""
    session.execute(
        update(ArmExecution)
        .where(ArmExecution.id == execution_id)
        .values(finished_at=utcnow(), outcome=outcome[:16])
        .execution_options(synchronize_session=False)
    )


def executions_of(session: Session, *, pilot_id: str) -> list[ArmExecution]:
    stmt = select(ArmExecution).where(ArmExecution.pilot_id == pilot_id).order_by(ArmExecution.id)
    return list(session.scalars(stmt))


def record_progress(
    session: Session, *, pilot_id: str, arm: str, lease: str, progress: Progress
) -> None:
    hold_arm(session, pilot_id=pilot_id, arm=arm, lease=lease)
    row = _arm_row(session, pilot_id, arm)
    row.stage = progress.stage[:32]
    row.step = progress.step
    row.total = progress.total
    row.eta_seconds = progress.eta_seconds
    session.flush()


def record_curve(
    session: Session, *, pilot_id: str, arm: str, lease: str, curve: LearningCurve
) -> None:
    """The learning curve the fine-tuning arm measured, on the pilot."""
    hold_arm(session, pilot_id=pilot_id, arm=arm, lease=lease)
    pilot = session.get(Pilot, pilot_id)
    assert pilot is not None
    pilot.learning_curve_results = curve.as_json()
    session.flush()


def record_arm(
    session: Session,
    *,
    pilot_id: str,
    lease: str,
    outcome: ArmOutcome,
    data: PilotData,
    handover: ArmHandover | None = None,
) -> list[str]:
    """Store one arm's outcome (status, figures, metrics, loss curve, sample predictions and
    its hand-over to the conclusion), release its lease, and release the arms that waited for
    it or for its slot. Returns the pilot's arms released."""
    hold_arm(session, pilot_id=pilot_id, arm=outcome.arm, lease=lease)
    row = _arm_row(session, pilot_id, outcome.arm)
    store_outcome(session, row=row, outcome=outcome, data=data)
    row.handover = (handover or ArmHandover()).as_json()
    row.lease = None
    row.finished_at = utcnow()
    session.flush()
    return _released(session, pilot_id=pilot_id)


def store_outcome(session: Session, *, row: PilotArm, outcome: ArmOutcome, data: PilotData) -> None:
    """An arm's outcome into its row and the rows under it (replacing an earlier attempt's)."""
    pilot_id = row.pilot_id
    session.execute(
        delete(MetricRow).where(MetricRow.pilot_id == pilot_id, MetricRow.arm == outcome.arm)
    )
    session.execute(delete(LossCurvePoint).where(LossCurvePoint.arm_id == row.id))
    session.execute(delete(SamplePrediction).where(SamplePrediction.arm_id == row.id))
    row.status = outcome.status
    row.error = outcome.error
    row.stage = outcome.status.value
    row.eta_seconds = None
    _add_metrics(session, pilot_id=pilot_id, arm=outcome.arm, metrics=outcome.metrics)
    result = outcome.result
    if result is not None:
        row.training_seconds = result.training_seconds
        row.peak_memory_mb = result.peak_memory_mb
        row.trainable_parameters = result.trainable_parameters
        row.adapter_bytes = result.adapter_bytes
        row.retrieval_recall_at_k = result.retrieval_recall_at_k
        row.recipe = to_json_data(result.recipe)
        row.notes = list(result.notes)
        for point in result.loss_curve:
            session.add(
                LossCurvePoint(
                    arm_id=row.id,
                    step=point.step,
                    epoch=point.epoch,
                    train_loss=point.train_loss,
                    validation_loss=point.validation_loss,
                )
            )
        for pred in result.predictions[:STORED_PREDICTIONS]:
            example = data.test[pred.index]
            session.add(
                SamplePrediction(
                    arm_id=row.id,
                    test_index=pred.index,
                    input=example.input[:4000],
                    target=example.target[:4000],
                    prediction=pred.prediction[:4000],
                    correct=_is_correct(data, example, pred.prediction),
                    latency_ms=pred.latency_ms,
                )
            )
    session.flush()


def _add_metrics(session: Session, *, pilot_id: str, arm: str, metrics: list[MetricValue]) -> None:
    for metric in metrics:
        session.add(
            MetricRow(
                pilot_id=pilot_id,
                arm=arm,
                name=metric.name,
                value=metric.value,
                ci_low=metric.ci_low,
                ci_high=metric.ci_high,
            )
        )


def _is_correct(data: PilotData, example: Example, prediction: str) -> bool | None:
    """Right or wrong, for the report's examples; None where quality is graded, not binary."""
    from app.domain import metrics
    from app.domain.samples.schemas import PilotTask

    target = example.target
    if data.task == PilotTask.classification:
        return metrics.match_label(prediction, [*data.labels, target]) == target
    if data.task == PilotTask.qa:
        # Right when it matches any gold answer, as exact match scores it.
        golds = (target, *example.alternatives)
        return any(metrics.exact_match(prediction, gold) == 1.0 for gold in golds)
    if data.task == PilotTask.extraction:
        return metrics.field_f1(prediction, target) == 1.0
    return None


def fail_arm(session: Session, *, pilot_id: str, arm: str, message: str) -> list[str]:
    """An arm that will not run again (out of attempts) says why; the arms waiting for it
    or its slot are released (an adopting arm trains its own adapter then). Returns the
    pilot's arms released."""
    row = _arm_row(session, pilot_id, arm)
    row.status = ArmStatus.failed
    row.error = message[:4000]
    row.stage = ArmStatus.failed.value
    row.eta_seconds = None
    row.lease = None
    row.finished_at = utcnow()
    session.flush()
    return _released(session, pilot_id=pilot_id)


# --------------------------------------------------------------------------- concluding


def has_open_arms(session: Session, *, pilot_id: str) -> bool:
    """Whether an arm of the pilot is still pending or running."""
    first = session.scalar(
        select(PilotArm.id)
        .where(PilotArm.pilot_id == pilot_id, PilotArm.status.in_(OPEN_ARM))
        .limit(1)
    )
    return first is not None


def begin_conclusion(session: Session, *, pilot_id: str) -> bool:
    """Once no arm is open, move the pilot to its conclusion and send that task; whether this
    call did. Run in its own transaction after an arm's record commits: of two arms finishing
    at once, the one that commits last sees both finished, and the conditional UPDATE lets
    only one caller through."""
    if has_open_arms(session, pilot_id=pilot_id):
        return False
    task_id = new_id()
    moved = changed_rows(
        session,
        update(Pilot)
        .where(
            Pilot.id == pilot_id,
            Pilot.status == PilotStatus.running,
            Pilot.stage == PilotStage.arms,
            ~exists().where(PilotArm.pilot_id == pilot_id, PilotArm.status.in_(OPEN_ARM)),
        )
        .values(stage=PilotStage.concluding, lease=None, heartbeat_at=utcnow(), task_id=task_id),
    )
    if moved != 1:
        return False
    enqueue_after_commit(session, CONCLUDE_PILOT, pilot_id, task_id=task_id, queue=CPU_QUEUE)
    return True


def claim_conclusion(
    session: Session, *, pilot_id: str, worker: str, max_attempts: int, stalled_after: timedelta
) -> Claim | None:
    """Claim the pilot's conclusion (not yet claimed, or claimed by a worker gone silent)."""
    now = utcnow()
    lease = new_id()
    claimed = changed_rows(
        session,
        update(Pilot)
        .where(
            Pilot.id == pilot_id,
            Pilot.status == PilotStatus.running,
            Pilot.stage == PilotStage.concluding,
            Pilot.attempts < max_attempts,
            or_(Pilot.lease.is_(None), Pilot.heartbeat_at < now - stalled_after),
        )
        .values(
            lease=lease, attempts=Pilot.attempts + 1, claimed_by=worker[:128], heartbeat_at=now
        ),
    )
    if claimed != 1:
        return None
    attempt = session.scalar(select(Pilot.attempts).where(Pilot.id == pilot_id))
    return Claim(lease=lease, attempt=int(attempt or 0))


def finished_arms(session: Session, *, pilot_id: str) -> list[tuple[PilotArm, list[MetricRow]]]:
    """Every arm of the pilot with its metrics, in the pilot's arm order (for the conclusion)."""
    rows = list(
        session.scalars(
            select(PilotArm).where(PilotArm.pilot_id == pilot_id).order_by(PilotArm.position)
        )
    )
    metrics: dict[str, list[MetricRow]] = {row.arm: [] for row in rows}
    for metric in session.scalars(
        select(MetricRow).where(MetricRow.pilot_id == pilot_id).order_by(MetricRow.id)
    ):
        metrics.setdefault(metric.arm, []).append(metric)
    return [(row, metrics[row.arm]) for row in rows]


def record_conclusion_progress(
    session: Session, *, pilot_id: str, lease: str, arm: str, progress: Progress
) -> None:
    """The conclusion's work on one arm (the judge grading it), shown on the arm's row."""
    hold(session, pilot_id=pilot_id, lease=lease)
    row = _arm_row(session, pilot_id, arm)
    row.stage = progress.stage[:32]
    row.step = progress.step
    row.total = progress.total
    row.eta_seconds = progress.eta_seconds
    session.flush()


def add_findings(
    session: Session,
    *,
    pilot_id: str,
    lease: str,
    arm: str,
    metrics: list[MetricValue],
    notes: list[str],
) -> None:
    """What the conclusion adds to an arm (the judge's metrics and notes)."""
    hold(session, pilot_id=pilot_id, lease=lease)
    row = _arm_row(session, pilot_id, arm)
    names = [metric.name for metric in metrics]
    session.execute(
        delete(MetricRow).where(
            MetricRow.pilot_id == pilot_id, MetricRow.arm == arm, MetricRow.name.in_(names)
        )
    )
    _add_metrics(session, pilot_id=pilot_id, arm=arm, metrics=metrics)
    row.notes = [*(n for n in row.notes if n not in notes), *notes]
    row.stage = row.status
    row.step = row.total = 0
    session.flush()


# --------------------------------------------------------------------------- the sweep


def stalled_arms(session: Session, *, older_than: timedelta) -> list[tuple[str, str]]:
    """(pilot, arm) of running arms of running pilots whose worker has gone silent."""
    cutoff = utcnow() - older_than
    stmt = (
        select(PilotArm.pilot_id, PilotArm.arm)
        .join(Pilot, Pilot.id == PilotArm.pilot_id)
        .where(
            Pilot.status == PilotStatus.running,
            PilotArm.status == ArmStatus.running,
            PilotArm.heartbeat_at < cutoff,
        )
    )
    return [(pilot_id, arm) for pilot_id, arm in session.execute(stmt).all()]


def requeue_stalled_arm(
    session: Session, *, pilot_id: str, arm: str, stalled_after: timedelta, max_attempts: int
) -> str | None:
    """Send a silent arm again (`requeued`) or, past its attempts, fail it with the reason
    (`failed`); None when its worker reported meanwhile. The conditional UPDATE re-checks the
    heartbeat and clears the lease, so the silent attempt can write nothing more."""
    stale = and_(
        _arm_is(pilot_id, arm),
        PilotArm.status == ArmStatus.running,
        PilotArm.heartbeat_at < utcnow() - stalled_after,
    )
    task_id = new_id()
    requeued = changed_rows(
        session,
        update(PilotArm)
        .where(stale, PilotArm.attempts < max_attempts)
        .values(status=ArmStatus.pending, lease=None, stage="queued again", task_id=task_id),
    )
    if requeued == 1:
        enqueue_after_commit(
            session, RUN_ARM, pilot_id, arm, task_id=task_id, queue=queue_for_arm(arm)
        )
        return "requeued"
    exhausted = changed_rows(session, update(PilotArm).where(stale).values(lease=None))
    if exhausted != 1:
        return None
    fail_arm(
        session,
        pilot_id=pilot_id,
        arm=arm,
        message=(
            f"The worker stopped (died or lost the arm) during each of its {max_attempts} "
            "attempts; the arm was not retried again. See the worker log."
        ),
    )
    return "failed"


def sent_arms(session: Session) -> list[tuple[str, str, datetime]]:
    """(pilot, arm, sent at) of the pending arms that were sent (the broker took the job: it
    is not waiting in the outbox) and that no worker has claimed, oldest first: the sweep's
    account of their queues. A row's `updated_at` is when it was sent: a pending arm changes
    only then."""
    stmt = (
        select(PilotArm.pilot_id, PilotArm.arm, PilotArm.updated_at)
        .join(Pilot, Pilot.id == PilotArm.pilot_id)
        .where(
            Pilot.status == PilotStatus.running,
            Pilot.stage == PilotStage.arms,
            PilotArm.status == ArmStatus.pending,
            PilotArm.task_id.is_not(None),
            ~exists().where(OutboxJob.task_id == PilotArm.task_id),
        )
        .order_by(PilotArm.updated_at)
    )
    return [(pilot_id, arm, sent_at) for pilot_id, arm, sent_at in session.execute(stmt).all()]


def resend_arm(session: Session, *, pilot_id: str, arm: str, sent_before: datetime) -> bool:
    """Send a pending arm again (once the caller commits) when it was last sent before
    `sent_before`; whether it did. The conditional UPDATE restarts its clock, so of sweeps
    running at once only one sends it; the task id stays (the same delivery, revoked by one
    id), and the arm's claim lets only one of two deliveries run it."""
    resent = changed_rows(
        session,
        update(PilotArm)
        .where(
            _arm_is(pilot_id, arm),
            PilotArm.status == ArmStatus.pending,
            PilotArm.task_id.is_not(None),
            PilotArm.updated_at < sent_before,
        )
        .values(updated_at=utcnow()),
    )
    if resent != 1:
        return False
    task_id = session.scalar(select(PilotArm.task_id).where(_arm_is(pilot_id, arm)))
    enqueue_after_commit(session, RUN_ARM, pilot_id, arm, task_id=task_id, queue=queue_for_arm(arm))
    return True


def pilots_awaiting_conclusion(session: Session) -> list[str]:
    """Pilots in their arms stage with no arm open: a worker died between an arm's record
    and starting the conclusion."""
    stmt = select(Pilot.id).where(
        Pilot.status == PilotStatus.running,
        Pilot.stage == PilotStage.arms,
        ~exists().where(PilotArm.pilot_id == Pilot.id, PilotArm.status.in_(OPEN_ARM)),
    )
    return list(session.scalars(stmt))
