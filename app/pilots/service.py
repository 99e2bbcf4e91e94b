"""Pilots in SQL: start, progress, results. Used by the web (reads, start) and the worker (writes).

Services flush; the caller (request or worker job) owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.assessments import service as assessments
from app.assessments.models import Assessment, new_id
from app.db import changed_rows, utcnow
from app.domain.arms import ARMS
from app.domain.judging import JUDGED_TASKS
from app.domain.queueing import queue_eta_seconds
from app.domain.records import (
    ArmStatus,
    PilotOutcome,
    PilotStage,
    PilotStatus,
)
from app.domain.samples.schemas import PilotTask
from app.endpoints.models import LlmModel, ModelKind
from app.errors import Conflict, Invalid, TooMany
from app.pilots.dispatch import dispatch
from app.pilots.models import (
    ArmDifference,
    EndpointAnswer,
    LossCurvePoint,
    MetricRow,
    Pilot,
    PilotArm,
    SamplePrediction,
)
from app.queue import (
    CONCLUDE_PILOT,
    CPU_QUEUE,
    PREPARE_PILOT,
    OutboxJob,
    enqueue_after_commit,
    revoke_after_commit,
)
from app.settings import Settings

_Row = TypeVar("_Row")

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
    # An endpoint serving that base with LoRA enabled: the fine-tuned arms are answered
    # through it with their adapter, as production serves them.
    serving_model_id: str | None = None


def _choose_models(session: Session, *, owner_id: int, choice: ModelChoice) -> None:
    """Each chosen model must be the owner's and fit its role; the message names the field."""
    for field, model_id, kind in (
        ("prompt_model_id", choice.prompt_model_id, ModelKind.openai_compatible),
        ("base_model_id", choice.base_model_id, ModelKind.local),
        ("judge_model_id", choice.judge_model_id, ModelKind.openai_compatible),
        ("serving_model_id", choice.serving_model_id, ModelKind.openai_compatible),
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
    check_pilot_caps(session, owner_id=assessment.owner_id, settings=settings)
    pilot = Pilot(
        assessment_id=assessment.id,
        status=PilotStatus.queued,
        arms=list(chosen),
        max_train=request.max_train,
        prompt_model_id=models.prompt_model_id,
        base_model_id=models.base_model_id,
        judge_model_id=models.judge_model_id,
        serving_model_id=models.serving_model_id,
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
    pilot.task_id = new_id()
    session.flush()
    # The preparation runs on the `cpu` queue; each arm then goes to the queue it needs.
    enqueue_after_commit(session, PREPARE_PILOT, pilot.id, task_id=pilot.task_id, queue=CPU_QUEUE)
    return pilot


class TooManyPilots(TooMany):
    """The user has as many pilots waiting or running as one user may (429)."""


def check_pilot_caps(session: Session, *, owner_id: int, settings: Settings) -> None:
    """Refuse a new pilot while its owner has MAX_QUEUED_PILOTS_PER_USER pilots queued
    (waiting for a worker) or MAX_RUNNING_PILOTS_PER_USER running (a worker started it, and
    it has not finished: its arms may still wait on the GPU queue).

    The queues are first come, first served and do not look at who sent what, so these caps,
    checked when a pilot starts, are what keeps one user from filling them. A queued pilot
    still starts running whatever its owner's running count then is: the caps bound what one
    user holds at once (fewer than the two caps together), not the order pilots run in.

    The owner's row is locked first (FOR UPDATE; SQLite serialises writers anyway), so two
    starts at the same moment cannot both take the last place."""
    session.execute(select(User.id).where(User.id == owner_id).with_for_update())
    rows = session.execute(
        select(Pilot.status, func.count(Pilot.id))
        .join(Assessment, Assessment.id == Pilot.assessment_id)
        .where(
            Assessment.owner_id == owner_id,
            Pilot.status.in_([PilotStatus.queued, PilotStatus.running]),
        )
        .group_by(Pilot.status)
    ).all()
    counts = {status: count for status, count in rows}
    queued = counts.get(PilotStatus.queued, 0)
    running = counts.get(PilotStatus.running, 0)
    if queued >= settings.max_queued_pilots_per_user:
        raise TooManyPilots(
            f"You have {_pilots(queued)} queued, and at most "
            f"{settings.max_queued_pilots_per_user} per user may wait for a worker at once, so "
            "the shared queue stays fair. Start this one when one of yours has started, or "
            "cancel one."
        )
    if running >= settings.max_running_pilots_per_user:
        raise TooManyPilots(
            f"You have {_pilots(running)} running, and at most "
            f"{settings.max_running_pilots_per_user} per user may run at once, so the shared "
            "workers stay fair. Start this one when one of yours has finished, or cancel one."
        )


def _pilots(count: int) -> str:
    return f"{count} pilot" if count == 1 else f"{count} pilots"


def get_pilot_for_owner(session: Session, *, pilot_id: str, owner_id: int) -> Pilot | None:
    """The pilot when its assessment belongs to `owner_id`, else None (callers answer 404)."""
    stmt = (
        select(Pilot)
        .join(Assessment, Assessment.id == Pilot.assessment_id)
        .where(Pilot.id == pilot_id, Assessment.owner_id == owner_id)
    )
    return session.scalar(stmt)


def pilots_query(assessment: Assessment) -> Select[Pilot]:
    """The assessment's pilots, unordered (for `app.pagination`)."""
    return select(Pilot).where(Pilot.assessment_id == assessment.id)


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


def loss_curves_of(session: Session, *, pilot: Pilot) -> dict[str, list[LossCurvePoint]]:
    """Every arm's loss curve in one query: arm name -> points by step (absent: no points)."""
    stmt = (
        select(PilotArm.arm, LossCurvePoint)
        .join(LossCurvePoint, LossCurvePoint.arm_id == PilotArm.id)
        .where(PilotArm.pilot_id == pilot.id)
        .order_by(PilotArm.position, LossCurvePoint.step)
    )
    return _by_arm(session.execute(stmt).tuples())


def predictions_by_arm(session: Session, *, pilot: Pilot) -> dict[str, list[SamplePrediction]]:
    """Every arm's stored predictions in one query: arm name -> predictions in test order
    (absent: none stored)."""
    stmt = (
        select(PilotArm.arm, SamplePrediction)
        .join(SamplePrediction, SamplePrediction.arm_id == PilotArm.id)
        .where(PilotArm.pilot_id == pilot.id)
        .order_by(PilotArm.position, SamplePrediction.test_index)
    )
    return _by_arm(session.execute(stmt).tuples())


def _by_arm(rows: Iterable[tuple[str, _Row]]) -> dict[str, list[_Row]]:
    grouped: dict[str, list[_Row]] = {}
    for arm, row in rows:
        grouped.setdefault(arm, []).append(row)
    return grouped


# --- worker-side writes -------------------------------------------------------------------


class LeaseLost(Exception):
    """This attempt no longer holds the pilot: it was cancelled, failed, or re-queued and
    claimed by a newer attempt. The attempt must stop without writing anything more."""


@dataclass(frozen=True)
class Claim:
    """What a worker holds after claiming a pilot: the lease every later write checks."""

    lease: str
    attempt: int


def _preparing() -> Any:
    """A running pilot still making its split (arms and the conclusion have leases of their
    own: `app.pilots.execution`)."""
    return and_(
        Pilot.status == PilotStatus.running,
        or_(Pilot.stage == PilotStage.preparing, Pilot.stage.is_(None)),
    )


def _claimable(*, max_attempts: int, stalled_before: Any) -> Any:
    """Queued, or preparing with a heartbeat older than `stalled_before` (its worker died)."""
    return and_(
        Pilot.attempts < max_attempts,
        or_(
            Pilot.status == PilotStatus.queued,
            and_(_preparing(), Pilot.heartbeat_at < stalled_before),
        ),
    )


def claim(
    session: Session,
    *,
    pilot_id: str,
    worker: str,
    max_attempts: int,
    stalled_after: timedelta,
) -> Claim | None:
    """Claim the pilot's preparation for one attempt, or None when it is not this delivery's
    to run.

    One conditional UPDATE claims it and bumps `attempts` in the same statement, so of two
    deliveries racing for one pilot exactly one matches the WHERE clause; the other sees no
    row changed. The new lease supersedes any earlier attempt's."""
    now = utcnow()
    lease = new_id()
    claimed = changed_rows(
        session,
        update(Pilot)
        .where(
            Pilot.id == pilot_id,
            _claimable(max_attempts=max_attempts, stalled_before=now - stalled_after),
        )
        .values(
            status=PilotStatus.running,
            stage=PilotStage.preparing,
            attempts=Pilot.attempts + 1,
            lease=lease,
            claimed_by=worker[:128],
            heartbeat_at=now,
            started_at=func.coalesce(Pilot.started_at, now),
            error=None,
        ),
    )
    if claimed != 1:
        return None
    attempt = session.scalar(select(Pilot.attempts).where(Pilot.id == pilot_id))
    return Claim(lease=lease, attempt=int(attempt or 0))


def give_up_if_exhausted(
    session: Session, *, pilot_id: str, max_attempts: int, stalled_after: timedelta
) -> bool:
    """Fail a pilot whose preparation or conclusion would be claimable again but has used
    every attempt; whether it did. (An arm out of attempts fails alone:
    `app.pilots.execution.requeue_stalled_arm`.)"""
    message = (
        f"The worker stopped (died or lost the pilot) during each of its {max_attempts} "
        "attempts; the pilot was not retried again. See the worker log."
    )
    failed = changed_rows(
        session,
        update(Pilot)
        .where(
            Pilot.id == pilot_id,
            Pilot.attempts >= max_attempts,
            or_(
                Pilot.status == PilotStatus.queued,
                and_(
                    Pilot.status == PilotStatus.running,
                    or_(Pilot.stage != PilotStage.arms, Pilot.stage.is_(None)),
                    Pilot.heartbeat_at < utcnow() - stalled_after,
                ),
            ),
        )
        .values(status=PilotStatus.failed, error=message, finished_at=utcnow(), lease=None),
    )
    if failed != 1:
        return False
    _close_open_arms(session, pilot_id=pilot_id, message=message)
    return True


def _close_open_arms(
    session: Session, *, pilot_id: str, message: str, status: ArmStatus = ArmStatus.failed
) -> None:
    """Arms that had not finished say why they never will."""
    for arm in session.scalars(select(PilotArm).where(PilotArm.pilot_id == pilot_id)):
        if arm.status in (ArmStatus.pending, ArmStatus.running):
            arm.status = status
            arm.error = arm.error or "not run: " + message[:200]
            arm.eta_seconds = None
    session.flush()


def hold(session: Session, *, pilot_id: str, lease: str) -> None:
    """Check the lease and beat the heartbeat in one conditional UPDATE; raises LeaseLost.

    Every write of an attempt starts with it, in the same transaction: the row is then
    locked until the write commits, so a claim or cancel cannot slip in between the check
    and the write."""
    held = changed_rows(
        session,
        update(Pilot)
        .where(Pilot.id == pilot_id, Pilot.lease == lease, Pilot.status == PilotStatus.running)
        .values(heartbeat_at=utcnow()),
    )
    if held != 1:
        raise LeaseLost(f"pilot {pilot_id}: this attempt's lease is no longer current")


def finish_pilot(session: Session, *, pilot_id: str, lease: str, outcome: PilotOutcome) -> None:
    """Store the pilot-level outcome: differences, warnings, caps and the manifest."""
    hold(session, pilot_id=pilot_id, lease=lease)
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
                n_items=diff.n_items,
                n_groups=diff.n_groups,
                discordant=diff.discordant,
                p_value=diff.p_value,
                design_effect=diff.design_effect,
                method=diff.method,
            )
        )
    pilot.task = outcome.task.value
    pilot.primary_metric = outcome.primary_metric
    pilot.warnings = list(outcome.warnings)
    pilot.caps = list(outcome.caps)
    pilot.manifest = outcome.manifest.as_json()
    pilot.judge_results = outcome.judge.as_json() if outcome.judge is not None else None
    if outcome.learning_curve is not None:  # else the one the fine-tuning arm stored stands
        pilot.learning_curve_results = outcome.learning_curve.as_json()
    failed = [a for a in outcome.arms if a.status != ArmStatus.done]
    pilot.status = PilotStatus.failed if len(failed) == len(outcome.arms) else PilotStatus.done
    if failed:
        pilot.error = "; ".join(f"{a.arm}: {a.error}" for a in failed)[:4000]
    pilot.finished_at = utcnow()
    pilot.lease = None
    pilot.stage = None
    session.flush()


def fail_pilot(session: Session, *, pilot_id: str, message: str, lease: str | None = None) -> None:
    """Mark the pilot and its unfinished arms failed with a reason the user can read. With a
    lease (an attempt failing its own pilot), only while that lease is current."""
    if lease is not None:
        hold(session, pilot_id=pilot_id, lease=lease)
    pilot = session.get(Pilot, pilot_id)
    if pilot is None:
        return
    pilot.status = PilotStatus.failed
    pilot.error = message[:4000]
    pilot.finished_at = utcnow()
    pilot.lease = None
    session.flush()
    _close_open_arms(session, pilot_id=pilot_id, message=message)


def _own_step() -> Any:
    """A running pilot in a step its own lease covers: preparing, or concluding."""
    return and_(
        Pilot.status == PilotStatus.running,
        or_(Pilot.stage != PilotStage.arms, Pilot.stage.is_(None)),
    )


def stalled_pilots(session: Session, *, older_than: timedelta) -> list[Pilot]:
    """Pilots preparing or concluding whose worker has not reported for `older_than` (it
    likely died). Silent arms are found per arm (`app.pilots.execution.stalled_arms`)."""
    cutoff = utcnow() - older_than
    stmt = select(Pilot).where(_own_step(), Pilot.heartbeat_at < cutoff)
    return list(session.scalars(stmt))


def requeue_stalled(session: Session, *, pilot_id: str, stalled_after: timedelta) -> bool:
    """Send a pilot's silent step again (once the caller commits): a preparation goes back to
    the queue, a conclusion is sent again; whether it did. The conditional UPDATE re-checks
    the heartbeat, so a pilot whose worker reported meanwhile is left alone, and clearing the
    lease stops the silent attempt from writing anything more should it wake."""
    task_id = new_id()
    stale = and_(Pilot.id == pilot_id, Pilot.heartbeat_at < utcnow() - stalled_after)
    concluding = changed_rows(
        session,
        update(Pilot)
        .where(stale, Pilot.status == PilotStatus.running, Pilot.stage == PilotStage.concluding)
        .values(lease=None, heartbeat_at=utcnow(), task_id=task_id),
    )
    if concluding == 1:
        enqueue_after_commit(session, CONCLUDE_PILOT, pilot_id, task_id=task_id, queue=CPU_QUEUE)
        return True
    preparing = changed_rows(
        session,
        update(Pilot)
        .where(stale, _preparing())
        .values(
            status=PilotStatus.queued,
            stage=None,
            lease=None,
            task_id=task_id,
            heartbeat_at=utcnow(),  # when it was sent again (`_sent_at`)
        ),
    )
    if preparing != 1:
        return False
    enqueue_after_commit(session, PREPARE_PILOT, pilot_id, task_id=task_id, queue=CPU_QUEUE)
    return True


def _sent_at() -> Any:
    """When a queued pilot's preparation was last sent: a queued pilot has no heartbeat of its
    own, so a re-send records its time there; until then, its creation."""
    return func.coalesce(Pilot.heartbeat_at, Pilot.created_at)


def queued_pilots(session: Session) -> list[tuple[str, datetime]]:
    """(pilot, sent at) of the queued pilots whose preparation the broker took (its job is
    not waiting in the outbox), oldest first: the sweep's account of the `cpu` queue."""
    stmt = (
        select(Pilot.id, _sent_at())
        .where(
            Pilot.status == PilotStatus.queued,
            ~exists().where(OutboxJob.task_id == Pilot.task_id),
        )
        .order_by(_sent_at())
    )
    return [(pilot_id, sent_at) for pilot_id, sent_at in session.execute(stmt).all()]


def resend_queued(session: Session, *, pilot_id: str, sent_before: datetime) -> bool:
    """Send a queued pilot's preparation again (once the caller commits) when it was last
    sent before `sent_before`; whether it did. The conditional UPDATE restarts its clock, so
    of sweeps running at once only one sends it. The task id stays: it names the same
    delivery, and a cancel revokes both messages by it. Should the lost message come back
    after all, the claim lets only one of the two run the preparation."""
    resent = changed_rows(
        session,
        update(Pilot)
        .where(Pilot.id == pilot_id, Pilot.status == PilotStatus.queued, _sent_at() < sent_before)
        .values(heartbeat_at=utcnow(), task_id=func.coalesce(Pilot.task_id, new_id())),
    )
    if resent != 1:
        return False
    task_id = session.scalar(select(Pilot.task_id).where(Pilot.id == pilot_id))
    enqueue_after_commit(session, PREPARE_PILOT, pilot_id, task_id=task_id, queue=CPU_QUEUE)
    return True


CANCELLED_MESSAGE = "Cancelled by its owner."


def cancel_pilot(session: Session, *, pilot: Pilot) -> None:
    """Cancel a queued or running pilot: one conditional UPDATE marks it cancelled and clears
    its lease, so a running attempt stops at its next lease check (within seconds) and writes
    nothing more; its task is revoked once this commits. Finished arms keep their results."""
    cancelled = changed_rows(
        session,
        update(Pilot)
        .where(
            Pilot.id == pilot.id,
            Pilot.status.in_([PilotStatus.queued, PilotStatus.running]),
        )
        .values(
            status=PilotStatus.cancelled,
            lease=None,
            error=CANCELLED_MESSAGE,
            finished_at=utcnow(),
        ),
    )
    if cancelled != 1:
        raise Conflict(f"This pilot has already finished ({pilot.status}); nothing to cancel.")
    # Arms' task ids, read before their rows are closed: queued ones are revoked too.
    arm_tasks = session.scalars(
        select(PilotArm.task_id).where(
            PilotArm.pilot_id == pilot.id,
            PilotArm.status.in_([ArmStatus.pending, ArmStatus.running]),
            PilotArm.task_id.is_not(None),
        )
    ).all()
    _close_open_arms(session, pilot_id=pilot.id, message="cancelled")
    session.refresh(pilot)
    for task_id in [pilot.task_id, *arm_tasks]:
        if task_id:
            revoke_after_commit(session, task_id)
    dispatch(session)  # its arms' slots go to the arms waiting for them


@dataclass(frozen=True)
class QueuePlace:
    """Where a queued pilot stands: how many wait before it, and a rough wait."""

    ahead: int
    eta_seconds: float | None


# Recent finished pilots whose run time predicts the wait.
_RECENT_RUNS = 20


def _waiting_for_a_worker() -> Any:
    """Queued, or in its arms stage with an arm waiting (sent, or held back for a slot) and
    no arm running: nothing of the pilot is on a worker now."""
    sent_arm = exists().where(
        PilotArm.pilot_id == Pilot.id,
        PilotArm.status == ArmStatus.pending,
    )
    running_arm = exists().where(
        PilotArm.pilot_id == Pilot.id, PilotArm.status == ArmStatus.running
    )
    return or_(
        Pilot.status == PilotStatus.queued,
        and_(
            Pilot.status == PilotStatus.running,
            Pilot.stage == PilotStage.arms,
            sent_arm,
            ~running_arm,
        ),
    )


def queue_place(session: Session, *, pilot: Pilot) -> QueuePlace | None:
    """For a pilot waiting for a worker (queued, or its arms sent and none started): the
    waiting pilots before it (everyone's, counted, never shown) and an ETA from recent run
    times and the workers busy now; None once something of it runs."""
    waiting = session.scalar(
        select(func.count()).select_from(Pilot).where(Pilot.id == pilot.id, _waiting_for_a_worker())
    )
    if not waiting:
        return None
    ahead = session.scalar(
        select(func.count())
        .select_from(Pilot)
        .where(_waiting_for_a_worker(), Pilot.created_at < pilot.created_at)
    )
    runs = session.execute(
        select(Pilot.started_at, Pilot.finished_at)
        .where(
            Pilot.status == PilotStatus.done,
            Pilot.started_at.is_not(None),
            Pilot.finished_at.is_not(None),
        )
        .order_by(Pilot.finished_at.desc())
        .limit(_RECENT_RUNS)
    ).all()
    # Workers busy now: those holding a running arm, or preparing or concluding a pilot.
    arm_workers = select(PilotArm.claimed_by).where(PilotArm.status == ArmStatus.running)
    pilot_workers = select(Pilot.claimed_by).where(
        Pilot.status == PilotStatus.running,
        or_(Pilot.stage != PilotStage.arms, Pilot.stage.is_(None)),
    )
    busy = {
        worker for worker in session.scalars(arm_workers.union(pilot_workers)) if worker is not None
    }
    durations = [(end - start).total_seconds() for start, end in runs if start and end]
    return QueuePlace(
        ahead=int(ahead or 0),
        eta_seconds=queue_eta_seconds(int(ahead or 0), durations, busy_workers=len(busy)),
    )


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
