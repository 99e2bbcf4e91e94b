"""Pilots in SQL: start, progress, results. Used by the web (reads, start) and the worker (writes).

Services flush; the caller (request or worker job) owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.assessments import service as assessments
from app.assessments.models import Assessment
from app.db import utcnow
from app.domain.records import ARM_NAMES, ArmOutcome, PilotData, PilotOutcome, Progress
from app.pilots.models import (
    ArmDifference,
    LossCurvePoint,
    MetricRow,
    Pilot,
    PilotArm,
    SamplePrediction,
)
from app.settings import Settings

ARM_LABELS = {
    "fewshot": "Few-shot prompting",
    "rag": "RAG (retrieval)",
    "qlora": "QLoRA fine-tune",
    "qlora_rag": "QLoRA + RAG",
}
# Predictions kept per arm for the report: enough to show right and wrong cases.
STORED_PREDICTIONS = 40


class PilotNotPossible(Exception):
    """The pilot cannot start; the message says why in words the user can act on."""


@dataclass(frozen=True)
class PilotRequest:
    max_train: int
    arms: tuple[str, ...]


def size_choices(settings: Settings) -> list[int]:
    """Pilot sizes offered in the page, all within the configured cap."""
    cap = settings.pilot_max_train
    return sorted({n for n in (60, 120, 240, cap) if n <= cap})


def validate_request(settings: Settings, *, max_train: int, arms: list[str]) -> PilotRequest:
    """Check the requested size and arms; raises PilotNotPossible naming the bad field."""
    if max_train < 8:
        raise PilotNotPossible("max_train: a pilot needs at least 8 training examples.")
    if max_train > settings.pilot_max_train:
        raise PilotNotPossible(
            f"max_train: at most {settings.pilot_max_train} training examples (the configured "
            "cap, PILOT_MAX_TRAIN)."
        )
    unknown = [a for a in arms if a not in ARM_NAMES]
    if unknown:
        raise PilotNotPossible(
            f"arms: unknown arm {unknown[0]!r}; choose from {', '.join(ARM_NAMES)}."
        )
    if not arms:
        raise PilotNotPossible("arms: choose at least one arm.")
    ordered = tuple(a for a in ARM_NAMES if a in arms)
    return PilotRequest(max_train=max_train, arms=ordered)


def start_pilot(session: Session, *, assessment: Assessment, request: PilotRequest) -> Pilot:
    """Create a queued pilot with one pending row per arm. The caller enqueues after commit."""
    if assessments.current_sample(session, assessment=assessment) is None:
        raise PilotNotPossible("Upload a data sample first (wizard step 'Data').")
    pilot = Pilot(
        assessment_id=assessment.id,
        status="queued",
        arms=list(request.arms),
        max_train=request.max_train,
    )
    session.add(pilot)
    session.flush()
    for position, arm in enumerate(request.arms):
        session.add(PilotArm(pilot_id=pilot.id, arm=arm, position=position, status="pending"))
    session.flush()
    return pilot


def get_pilot_for_owner(session: Session, *, pilot_id: str, owner_id: int) -> Pilot | None:
    """The pilot when its assessment belongs to `owner_id`, else None (callers answer 404)."""
    stmt = (
        select(Pilot)
        .join(Assessment, Assessment.id == Pilot.assessment_id)
        .where(Pilot.id == pilot_id, Assessment.owner_id == owner_id)
    )
    return session.scalar(stmt)


def list_pilots(session: Session, *, assessment: Assessment) -> list[Pilot]:
    stmt = (
        select(Pilot).where(Pilot.assessment_id == assessment.id).order_by(Pilot.created_at.desc())
    )
    return list(session.scalars(stmt))


def arms_of(session: Session, *, pilot: Pilot) -> list[PilotArm]:
    stmt = select(PilotArm).where(PilotArm.pilot_id == pilot.id).order_by(PilotArm.position)
    return list(session.scalars(stmt))


def metrics_of(session: Session, *, pilot: Pilot) -> dict[str, dict[str, MetricRow]]:
    """Metric rows by arm, then by metric name."""
    rows = session.scalars(select(MetricRow).where(MetricRow.pilot_id == pilot.id))
    by_arm: dict[str, dict[str, MetricRow]] = {}
    for row in rows:
        by_arm.setdefault(row.arm, {})[row.name] = row
    return by_arm


def differences_of(session: Session, *, pilot: Pilot) -> list[ArmDifference]:
    stmt = (
        select(ArmDifference).where(ArmDifference.pilot_id == pilot.id).order_by(ArmDifference.id)
    )
    return list(session.scalars(stmt))


def loss_curve_of(session: Session, *, arm: PilotArm) -> list[LossCurvePoint]:
    stmt = (
        select(LossCurvePoint).where(LossCurvePoint.arm_id == arm.id).order_by(LossCurvePoint.step)
    )
    return list(session.scalars(stmt))


def predictions_of(session: Session, *, arm: PilotArm) -> list[SamplePrediction]:
    stmt = (
        select(SamplePrediction)
        .where(SamplePrediction.arm_id == arm.id)
        .order_by(SamplePrediction.test_index)
    )
    return list(session.scalars(stmt))


# --- worker-side writes -------------------------------------------------------------------


def _arm_row(session: Session, pilot_id: str, arm: str) -> PilotArm:
    row = session.scalar(select(PilotArm).where(PilotArm.pilot_id == pilot_id, PilotArm.arm == arm))
    if row is None:
        raise LookupError(f"pilot {pilot_id} has no arm {arm}")
    return row


def mark_running(session: Session, *, pilot: Pilot) -> None:
    """Mark the pilot started; arms left running by a dead worker go back to pending."""
    pilot.status = "running"
    pilot.attempts = (pilot.attempts or 0) + 1
    pilot.started_at = pilot.started_at or utcnow()
    pilot.heartbeat_at = utcnow()
    pilot.error = None
    for arm in arms_of(session, pilot=pilot):
        if arm.status == "running":
            arm.status = "pending"
    session.flush()


def record_progress(session: Session, *, pilot_id: str, arm: str, progress: Progress) -> None:
    row = _arm_row(session, pilot_id, arm)
    row.status = "running"
    row.stage = progress.stage[:32]
    row.step = progress.step
    row.total = progress.total
    row.eta_seconds = progress.eta_seconds
    pilot = session.get(Pilot, pilot_id)
    if pilot is not None:
        pilot.heartbeat_at = utcnow()
    session.flush()


def record_arm(session: Session, *, pilot_id: str, outcome: ArmOutcome, data: PilotData) -> None:
    """Store one arm's outcome: status, figures, metrics, loss curve and sample predictions."""
    row = _arm_row(session, pilot_id, outcome.arm)
    session.execute(
        delete(MetricRow).where(MetricRow.pilot_id == pilot_id, MetricRow.arm == outcome.arm)
    )
    session.execute(delete(LossCurvePoint).where(LossCurvePoint.arm_id == row.id))
    session.execute(delete(SamplePrediction).where(SamplePrediction.arm_id == row.id))
    row.status = outcome.status
    row.error = outcome.error
    row.stage = "done" if outcome.status == "done" else "failed"
    row.eta_seconds = None
    for metric in outcome.metrics:
        session.add(
            MetricRow(
                pilot_id=pilot_id,
                arm=outcome.arm,
                name=metric.name,
                value=metric.value,
                ci_low=metric.ci_low,
                ci_high=metric.ci_high,
            )
        )
    result = outcome.result
    if result is not None:
        row.training_seconds = result.training_seconds
        row.peak_memory_mb = result.peak_memory_mb
        row.trainable_parameters = result.trainable_parameters
        row.adapter_bytes = result.adapter_bytes
        row.retrieval_recall_at_k = result.retrieval_recall_at_k
        row.recipe = _jsonable(result.recipe)
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
                    correct=_is_correct(data, example.target, pred.prediction),
                    latency_ms=pred.latency_ms,
                )
            )
    session.flush()


def _is_correct(data: PilotData, target: str, prediction: str) -> bool | None:
    """Right or wrong, for the report's examples; None where quality is graded, not binary."""
    from app.domain import metrics
    from app.domain.samples.schemas import PilotTask

    if data.task == PilotTask.classification:
        return metrics.match_label(prediction, [*data.labels, target]) == target
    if data.task == PilotTask.qa:
        return metrics.exact_match(prediction, target) == 1.0
    if data.task == PilotTask.extraction:
        return metrics.field_f1(prediction, target) == 1.0
    return None


def finish_pilot(session: Session, *, pilot_id: str, outcome: PilotOutcome) -> None:
    """Store the pilot-level outcome: differences, warnings, caps and the manifest."""
    pilot = session.get(Pilot, pilot_id)
    if pilot is None:
        raise LookupError(pilot_id)
    session.execute(delete(ArmDifference).where(ArmDifference.pilot_id == pilot_id))
    for diff in outcome.differences:
        session.add(
            ArmDifference(
                pilot_id=pilot_id,
                metric=diff.metric,
                arm_a=diff.arm_a,
                arm_b=diff.arm_b,
                delta=diff.delta,
                ci_low=diff.ci_low,
                ci_high=diff.ci_high,
            )
        )
    pilot.task = outcome.task.value
    pilot.primary_metric = outcome.primary_metric
    pilot.warnings = list(outcome.warnings)
    pilot.caps = list(outcome.caps)
    pilot.manifest = _jsonable(outcome.manifest)
    failed = [a for a in outcome.arms if a.status != "done"]
    pilot.status = "failed" if len(failed) == len(outcome.arms) else "done"
    if failed:
        pilot.error = "; ".join(f"{a.arm}: {a.error}" for a in failed)[:4000]
    pilot.finished_at = utcnow()
    session.flush()


def fail_pilot(session: Session, *, pilot_id: str, message: str) -> None:
    """Mark the pilot and its unfinished arms failed with a reason the user can read."""
    pilot = session.get(Pilot, pilot_id)
    if pilot is None:
        return
    pilot.status = "failed"
    pilot.error = message[:4000]
    pilot.finished_at = utcnow()
    for arm in arms_of(session, pilot=pilot):
        if arm.status in ("pending", "running"):
            arm.status = "failed"
            arm.error = arm.error or "not run: " + message[:200]
    session.flush()


def stalled_pilots(session: Session, *, older_than: timedelta) -> list[Pilot]:
    """Pilots marked running whose worker has not reported for `older_than` (it likely died)."""
    cutoff = utcnow() - older_than
    stmt = select(Pilot).where(Pilot.status == "running", Pilot.heartbeat_at < cutoff)
    return list(session.scalars(stmt))


def is_stalled(pilot: Pilot, *, older_than: timedelta) -> bool:
    """For display: running, but silent for longer than a healthy worker ever is."""
    if pilot.status != "running" or pilot.heartbeat_at is None:
        return False
    heartbeat = pilot.heartbeat_at
    if heartbeat.tzinfo is None:  # SQLite returns naive datetimes
        heartbeat = heartbeat.replace(tzinfo=utcnow().tzinfo)
    return utcnow() - heartbeat > older_than


def requeue(session: Session, *, pilot: Pilot) -> None:
    """Put an orphaned pilot back in the queue. Finished arms keep their stored results (shown
    until the re-run, which repeats every arm with the same seed, replaces them)."""
    pilot.status = "queued"
    for arm in arms_of(session, pilot=pilot):
        if arm.status == "running":
            arm.status = "pending"
            arm.stage = None
    session.flush()


def _jsonable(value: Any) -> Any:
    """Recipes and manifests may hold tuples, paths or numpy scalars; SQL JSON wants plain data."""
    import json

    return json.loads(json.dumps(value, default=str))


def panel_context(
    session: Session, *, assessment: Assessment, settings: Settings
) -> dict[str, Any]:
    """What the assessment page's pilot panel shows."""
    pilots = list_pilots(session, assessment=assessment)
    return {
        "pilots": pilots,
        "size_choices": size_choices(settings),
        "arm_labels": ARM_LABELS,
        "has_sample": assessments.current_sample(session, assessment=assessment) is not None,
    }
