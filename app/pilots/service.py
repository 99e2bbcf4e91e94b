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
from app.domain.arms import ARMS
from app.domain.judging import JUDGED_TASKS
from app.domain.records import (
    ArmOutcome,
    ArmStatus,
    PilotData,
    PilotOutcome,
    PilotStatus,
    Progress,
    to_json_data,
)
from app.domain.samples.schemas import PilotTask
from app.endpoints.models import LlmModel, ModelKind
from app.errors import Invalid
from app.pilots.models import (
    ArmDifference,
    EndpointAnswer,
    LossCurvePoint,
    MetricRow,
    Pilot,
    PilotArm,
    SamplePrediction,
)
from app.queue import RUN_PILOT, enqueue_after_commit
from app.settings import Settings

# Predictions kept per arm for the report: enough to show right and wrong cases.
STORED_PREDICTIONS = 40


class PilotNotPossible(Invalid):
    """The pilot cannot start; the message says why in words the user can act on."""


@dataclass(frozen=True)
class PilotRequest:
    max_train: int
    arms: tuple[str, ...] | None  # None: the registry's default arms for the sample's task


def size_choices(settings: Settings) -> list[int]:
    """Pilot sizes offered in the page, all within the configured cap."""
    cap = settings.pilot_max_train
    return sorted({n for n in (60, 120, 240, cap) if n <= cap})


def validate_request(settings: Settings, *, max_train: int, arms: list[str] | None) -> PilotRequest:
    """Check the requested size and arms; raises PilotNotPossible naming the bad field."""
    if max_train < 8:
        raise PilotNotPossible("max_train: a pilot needs at least 8 training examples.")
    if max_train > settings.pilot_max_train:
        raise PilotNotPossible(
            f"max_train: at most {settings.pilot_max_train} training examples (the configured "
            "cap, PILOT_MAX_TRAIN)."
        )
    if arms is None:
        return PilotRequest(max_train=max_train, arms=None)
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise PilotNotPossible(
            f"arms: unknown arm {unknown[0]!r}; choose from {', '.join(ARMS.names)}."
        )
    if not arms:
        raise PilotNotPossible("arms: choose at least one arm.")
    return PilotRequest(max_train=max_train, arms=ARMS.in_order(arms))


def arms_for(request: PilotRequest, task: PilotTask | None) -> tuple[str, ...]:
    """The arms to run: the request's, each checked against the sample's task, else the
    defaults for that task."""
    if request.arms is None:
        return ARMS.defaults(task)
    if task is not None:
        for name in request.arms:
            spec = ARMS.get(name)
            if not spec.applies_to(task):
                raise PilotNotPossible(
                    f"arms: {spec.label} ({name}) does not apply to a {task.value} sample."
                )
    return request.arms


@dataclass(frozen=True)
class ModelChoice:
    """The registered models a pilot runs on; None: the worker's default model."""

    prompt_model_id: str | None = None  # an endpoint the prompting arms ask
    base_model_id: str | None = None  # a local model directory (in-process and fine-tuning)
    judge_model_id: str | None = None  # an endpoint that grades open-ended answers


def _choose_models(session: Session, *, owner_id: int, choice: ModelChoice) -> None:
    """Each chosen model must be the owner's and fit its role; the message names the field."""
    for field, model_id, kind in (
        ("prompt_model_id", choice.prompt_model_id, ModelKind.openai_compatible),
        ("base_model_id", choice.base_model_id, ModelKind.local),
        ("judge_model_id", choice.judge_model_id, ModelKind.openai_compatible),
    ):
        if model_id is None:
            continue
        model = session.get(LlmModel, model_id)
        if model is None or model.owner_id != owner_id:
            raise PilotNotPossible(f"{field}: no such model among yours.")
        if model.kind != kind:
            wanted = (
                "an OpenAI-compatible endpoint"
                if kind is ModelKind.openai_compatible
                else "a local model directory"
            )
            raise PilotNotPossible(f"{field}: '{model.name}' is not {wanted}.")


def start_pilot(
    session: Session,
    *,
    assessment: Assessment,
    settings: Settings,
    max_train: int | None,
    arms: list[str] | None,
    models: ModelChoice | None = None,
    learning_curve: bool | None = None,
) -> Pilot:
    """Validate and create a queued pilot with one pending row per arm, and queue it to run
    once the caller's transaction commits. The one way a pilot starts (page and API).

    `learning_curve`: train the QLoRA arm on 1/4 and 1/2 of the split too; None: the
    deployment's default (PILOT_LEARNING_CURVE)."""
    models = models or ModelChoice()
    _choose_models(session, owner_id=assessment.owner_id, choice=models)
    request = validate_request(
        settings,
        # `is None`, not `or`: an explicit 0 is an error to report, not "use the cap".
        max_train=settings.pilot_max_train if max_train is None else max_train,
        arms=arms,
    )
    sample = assessments.current_sample(session, assessment=assessment)
    if sample is None:
        raise PilotNotPossible("Upload a data sample first (wizard step 'Data').")
    task = PilotTask(sample.task) if sample.task else None
    chosen = arms_for(request, task)
    if models.judge_model_id is not None and task is not None and task not in JUDGED_TASKS:
        raise PilotNotPossible(
            f"judge_model_id: the judge grades open-ended answers (generation, qa); a "
            f"{task.value} sample has exact metrics."
        )
    pilot = Pilot(
        assessment_id=assessment.id,
        status=PilotStatus.queued,
        arms=list(chosen),
        max_train=request.max_train,
        prompt_model_id=models.prompt_model_id,
        base_model_id=models.base_model_id,
        judge_model_id=models.judge_model_id,
        learning_curve=(
            settings.pilot_learning_curve if learning_curve is None else learning_curve
        ),
    )
    session.add(pilot)
    session.flush()
    for position, arm in enumerate(chosen):
        session.add(
            PilotArm(pilot_id=pilot.id, arm=arm, position=position, status=ArmStatus.pending)
        )
    session.flush()
    enqueue_after_commit(session, RUN_PILOT, pilot.id)
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
    pilot.status = PilotStatus.running
    pilot.attempts = (pilot.attempts or 0) + 1
    pilot.started_at = pilot.started_at or utcnow()
    pilot.heartbeat_at = utcnow()
    pilot.error = None
    for arm in arms_of(session, pilot=pilot):
        if arm.status == ArmStatus.running:
            arm.status = ArmStatus.pending
    session.flush()


def record_progress(session: Session, *, pilot_id: str, arm: str, progress: Progress) -> None:
    row = _arm_row(session, pilot_id, arm)
    row.status = ArmStatus.running
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
    row.stage = outcome.status.value
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
    pilot.manifest = outcome.manifest.as_json()
    pilot.judge_results = outcome.judge.as_json() if outcome.judge is not None else None
    curve = outcome.learning_curve
    pilot.learning_curve_results = curve.as_json() if curve is not None else None
    failed = [a for a in outcome.arms if a.status != ArmStatus.done]
    pilot.status = PilotStatus.failed if len(failed) == len(outcome.arms) else PilotStatus.done
    if failed:
        pilot.error = "; ".join(f"{a.arm}: {a.error}" for a in failed)[:4000]
    pilot.finished_at = utcnow()
    session.flush()


def fail_pilot(session: Session, *, pilot_id: str, message: str) -> None:
    """Mark the pilot and its unfinished arms failed with a reason the user can read."""
    pilot = session.get(Pilot, pilot_id)
    if pilot is None:
        return
    pilot.status = PilotStatus.failed
    pilot.error = message[:4000]
    pilot.finished_at = utcnow()
    for arm in arms_of(session, pilot=pilot):
        if arm.status in (ArmStatus.pending, ArmStatus.running):
            arm.status = ArmStatus.failed
            arm.error = arm.error or "not run: " + message[:200]
    session.flush()


def stalled_pilots(session: Session, *, older_than: timedelta) -> list[Pilot]:
    """Pilots marked running whose worker has not reported for `older_than` (it likely died)."""
    cutoff = utcnow() - older_than
    stmt = select(Pilot).where(Pilot.status == PilotStatus.running, Pilot.heartbeat_at < cutoff)
    return list(session.scalars(stmt))


def is_stalled(pilot: Pilot, *, older_than: timedelta) -> bool:
    """For display: running, but silent for longer than a healthy worker ever is."""
    if pilot.status != PilotStatus.running or pilot.heartbeat_at is None:
        return False
    heartbeat = pilot.heartbeat_at
    if heartbeat.tzinfo is None:  # SQLite returns naive datetimes
        heartbeat = heartbeat.replace(tzinfo=utcnow().tzinfo)
    return utcnow() - heartbeat > older_than


def requeue(session: Session, *, pilot: Pilot) -> None:
    """Put an orphaned pilot back in the queue (sent once the caller commits). Finished arms
    keep their stored results (shown until the re-run, which repeats every arm with the same
    seed, replaces them)."""
    pilot.status = PilotStatus.queued
    for arm in arms_of(session, pilot=pilot):
        if arm.status == ArmStatus.running:
            arm.status = ArmStatus.pending
            arm.stage = None
    session.flush()
    enqueue_after_commit(session, RUN_PILOT, pilot.id)


def panel_context(
    session: Session, *, assessment: Assessment, settings: Settings
) -> dict[str, Any]:
    """What the assessment page's pilot panel shows."""
    pilots = list_pilots(session, assessment=assessment)
    sample = assessments.current_sample(session, assessment=assessment)
    models = list(
        session.scalars(
            select(LlmModel)
            .where(LlmModel.owner_id == assessment.owner_id)
            .order_by(LlmModel.created_at)
        )
    )
    task = PilotTask(sample.task) if sample is not None and sample.task else None
    return {
        "pilots": pilots,
        "size_choices": size_choices(settings),
        # (name, label, checked) for the arms that apply to the sample's task.
        "arm_choices": [
            (spec.name, spec.label, spec.default)
            for spec in ARMS
            if task is None or spec.applies_to(task)
        ],
        "has_sample": sample is not None,
        "prompt_models": [m for m in models if m.kind == ModelKind.openai_compatible],
        "base_models": [m for m in models if m.kind == ModelKind.local],
        # The judge grades open-ended tasks only; before a task is known it may apply.
        "judge_applies": task is None or task in JUDGED_TASKS,
        "learning_curve_default": settings.pilot_learning_curve,
    }


# --- endpoint answers, kept so a re-queued pilot does not pay twice -------------------------


def kept_answer(session: Session, *, pilot_id: str, request_key: str) -> EndpointAnswer | None:
    return session.scalar(
        select(EndpointAnswer).where(
            EndpointAnswer.pilot_id == pilot_id, EndpointAnswer.request_key == request_key
        )
    )


def keep_answer(
    session: Session,
    *,
    pilot_id: str,
    request_key: str,
    text: str,
    prompt_tokens: int,
    completion_tokens: int,
    latency_ms: float,
) -> None:
    """Store one answered request (once per key)."""
    if kept_answer(session, pilot_id=pilot_id, request_key=request_key) is not None:
        return
    session.add(
        EndpointAnswer(
            pilot_id=pilot_id,
            request_key=request_key,
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
        )
    )
    session.flush()
