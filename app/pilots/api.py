"""JSON API for pilots."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from app.accounts.dependencies import ApiUser
from app.assessments import service as assessments
from app.deps import SessionDep
from app.domain.records import JudgeResults, LearningCurve
from app.pagination import LIST_RESPONSES, PageRequest, page_request, paginate, set_page_headers
from app.pilots import service
from app.pilots.figures import arm_figures
from app.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["pilots"])


class PilotIn(BaseModel):
    max_train: int | None = Field(None, description="Training examples; default: the cap")
    arms: list[str] | None = Field(
        None, description="Arms to run; default: every default arm that fits the sample's task"
    )
    prompt_model_id: str | None = Field(
        None, description="A registered endpoint for the prompting arms; default: the base model"
    )
    base_model_id: str | None = Field(
        None, description="A registered local model to load and fine-tune; default: LLM_MODEL"
    )
    judge_model_id: str | None = Field(
        None,
        description="A registered endpoint that grades open-ended answers (generation, qa) "
        "against the reference; default: no judge",
    )
    serving_model_id: str | None = Field(
        None,
        description="A registered vLLM endpoint serving the fine-tuning base with --enable-lora: "
        "fine-tuned arms are answered through it with their adapter; default: in-process only",
    )
    learning_curve: bool | None = Field(
        None,
        description="Train the QLoRA arm on 1/4 and 1/2 of the split too, for a learning curve; "
        "default: the deployment's PILOT_LEARNING_CURVE",
    )


class PilotAccepted(BaseModel):
    id: str
    status: str


class QueueOut(BaseModel):
    ahead: int = Field(description="Queued pilots (anyone's) before this one")
    eta_seconds: float | None = Field(
        description="Rough time until this pilot finishes, from recent run times"
    )


class MetricOut(BaseModel):
    value: float
    ci_low: float | None
    ci_high: float | None


class ArmResultOut(BaseModel):
    """The arm's primary metric with its 95% interval and the sample it rests on, as soon as
    the arm has finished. Provisional until the pilot concludes: the comparison between arms
    and the verdict come only when every arm has finished."""

    metric: str = Field(
        description="The metric, e.g. accuracy; before the conclusion the "
        "primary metric without a judge"
    )
    value: float
    low: float | None = Field(description="Lower end of the 95% interval (bootstrap)")
    high: float | None = Field(description="Upper end of the 95% interval (bootstrap)")
    n_items: int | None = Field(description="Test items the arm was scored on")
    n_groups: int | None = Field(
        description="Independent groups among them (items sharing a passage count as one)"
    )
    provisional: bool = Field(
        description="True until the pilot has concluded (also when it failed or was cancelled "
        "before its conclusion); then false, and equal to the report's figure"
    )


class ArmOut(BaseModel):
    arm: str
    status: str
    stage: str | None
    step: int
    total: int
    eta_seconds: float | None
    error: str | None
    metrics: dict[str, MetricOut]
    training_seconds: float
    peak_memory_mb: float
    trainable_parameters: int
    adapter_bytes: int
    recipe: dict[str, Any]
    attempts: int = Field(0, description="Times a worker claimed this arm (its own task)")
    started_at: datetime | None = Field(None, description="When the latest attempt started")
    finished_at: datetime | None = Field(None, description="When the arm finished")
    result: ArmResultOut | None = Field(
        None,
        description="The arm's primary figure once it has finished (provisional until the "
        "pilot concludes); null while it is pending or running, or when it failed. Added "
        "within /api/v1: a new field, so clients that do not read it are unaffected",
    )


class DifferenceOut(BaseModel):
    """metric(arm_a) - metric(arm_b) on the same test items, with its 95% interval and the
    sample it rests on; the sample fields are null for pilots stored before they were kept."""

    metric: str
    arm_a: str
    arm_b: str
    delta: float
    ci_low: float
    ci_high: float
    n_items: int | None = Field(None, description="Test items both arms were scored on")
    n_groups: int | None = Field(
        None, description="Independent groups among them (items sharing a passage count as one)"
    )
    discordant: int | None = Field(
        None, description="Right-or-wrong metrics without groups: items the arms disagree on"
    )
    p_value: float | None = Field(
        None,
        description="Two-sided p-value for no difference, before any multiple-comparison "
        "adjustment",
    )
    design_effect: float | None = Field(
        None, description="The clustered variance over the variance treating items as independent"
    )
    method: str | None = Field(
        None, description="How the interval was computed: paired_binary, paired_t or clustered_t"
    )


class PilotOut(BaseModel):
    id: str
    assessment_id: str
    status: str
    stage: str | None = Field(
        None, description="While running: preparing, arms (each arm a task) or concluding"
    )
    error: str | None
    task: str | None
    primary_metric: str | None
    arms: list[ArmOut]
    differences: list[DifferenceOut]
    warnings: list[str]
    caps: list[str]
    manifest: dict[str, Any]
    judge: JudgeResults | None = Field(
        None, description="What the LLM judge found: per-arm grading, pairwise tallies, cost"
    )
    queue: QueueOut | None = Field(None, description="Where a queued pilot stands; else null")
    learning_curve: LearningCurve | None = Field(
        None,
        description="The QLoRA arm's learning curve (points with 95% intervals, the fit on "
        "log(n) and its bootstrap draws), when the pilot asked for one",
    )


@router.post("/assessments/{assessment_id}/pilots", status_code=202, response_model=PilotAccepted)
def start_pilot(
    assessment_id: str, body: PilotIn, session: SessionDep, user: ApiUser
) -> PilotAccepted:
    """Queue a pilot on the assessment's sample; poll GET /api/v1/pilots/{id}."""
    assessment = assessments.get_owned(session, assessment_id=assessment_id, owner=user)
    if assessment is None:
        raise HTTPException(404, "No such assessment")
    pilot = service.start_pilot(
        session,
        assessment=assessment,
        settings=get_settings(),
        max_train=body.max_train,
        arms=body.arms,
        models=service.ModelChoice(
            prompt_model_id=body.prompt_model_id,
            base_model_id=body.base_model_id,
            judge_model_id=body.judge_model_id,
            serving_model_id=body.serving_model_id,
        ),
        learning_curve=body.learning_curve,
    )
    return PilotAccepted(id=pilot.id, status=pilot.status)


@router.get("/pilots/{pilot_id}", response_model=PilotOut)
def get_pilot(pilot_id: str, session: SessionDep, user: ApiUser) -> PilotOut:
    """Status, per-arm progress and, once done, metrics with 95% intervals."""
    pilot = service.get_pilot_for_owner(session, pilot_id=pilot_id, owner_id=user.id)
    if pilot is None:
        raise HTTPException(404, "No such pilot")
    metrics = service.metrics_of(session, pilot=pilot)
    stored_arms = service.arms_of(session, pilot=pilot)
    results = arm_figures(session, pilot=pilot, arms=stored_arms, metrics=metrics)
    arms = [
        ArmOut(
            arm=a.arm,
            status=a.status,
            stage=a.stage,
            step=a.step,
            total=a.total,
            eta_seconds=a.eta_seconds,
            error=a.error,
            metrics={
                name: MetricOut(value=m.value, ci_low=m.ci_low, ci_high=m.ci_high)
                for name, m in metrics.get(a.arm, {}).items()
            },
            training_seconds=a.training_seconds,
            peak_memory_mb=a.peak_memory_mb,
            trainable_parameters=a.trainable_parameters,
            adapter_bytes=a.adapter_bytes,
            recipe=a.recipe or {},
            attempts=a.attempts,
            started_at=a.started_at,
            finished_at=a.finished_at,
            result=(
                ArmResultOut(**dataclasses.asdict(figure))
                if (figure := results.get(a.arm)) is not None
                else None
            ),
        )
        for a in stored_arms
    ]
    diffs = [
        DifferenceOut(
            metric=d.metric,
            arm_a=d.arm_a,
            arm_b=d.arm_b,
            delta=d.delta,
            ci_low=d.ci_low,
            ci_high=d.ci_high,
            n_items=d.n_items,
            n_groups=d.n_groups,
            discordant=d.discordant,
            p_value=d.p_value,
            design_effect=d.design_effect,
            method=d.method,
        )
        for d in service.differences_of(session, pilot=pilot)
    ]
    return PilotOut(
        id=pilot.id,
        assessment_id=pilot.assessment_id,
        status=pilot.status,
        stage=pilot.stage if pilot.status == "running" else None,
        error=pilot.error,
        task=pilot.task,
        primary_metric=pilot.primary_metric,
        arms=arms,
        differences=diffs,
        warnings=pilot.warnings or [],
        caps=pilot.caps or [],
        manifest=pilot.manifest or {},
        judge=JudgeResults.read(pilot.judge_results),
        queue=(
            QueueOut(ahead=place.ahead, eta_seconds=place.eta_seconds)
            if (place := service.queue_place(session, pilot=pilot)) is not None
            else None
        ),
        learning_curve=LearningCurve.read(pilot.learning_curve_results),
    )


@router.post("/pilots/{pilot_id}/cancel", response_model=PilotAccepted)
def cancel_pilot(pilot_id: str, session: SessionDep, user: ApiUser) -> PilotAccepted:
    """Cancel a queued or running pilot (409 once it has finished). Its task is revoked and a
    running attempt stops at its next progress point, within seconds; finished arms keep their
    results."""
    pilot = service.get_pilot_for_owner(session, pilot_id=pilot_id, owner_id=user.id)
    if pilot is None:
        raise HTTPException(404, "No such pilot")
    service.cancel_pilot(session, pilot=pilot)
    return PilotAccepted(id=pilot.id, status=pilot.status)


class PilotListItem(BaseModel):
    """A pilot in a list; GET /api/v1/pilots/{id} has its arms and metrics."""

    id: str
    assessment_id: str
    status: str
    stage: str | None = Field(description="While running: preparing, arms or concluding")
    task: str | None
    primary_metric: str | None
    arms: list[str]
    max_train: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@router.get(
    "/assessments/{assessment_id}/pilots",
    response_model=list[PilotListItem],
    responses=LIST_RESPONSES,
)
def list_pilots(
    assessment_id: str,
    request: Request,
    response: Response,
    session: SessionDep,
    user: ApiUser,
    page: Annotated[PageRequest, Depends(page_request)],
) -> list[PilotListItem]:
    """The assessment's pilots, newest first, a page at a time (follow the Link header)."""
    assessment = assessments.get_owned(session, assessment_id=assessment_id, owner=user)
    if assessment is None:
        raise HTTPException(404, "No such assessment")
    found = paginate(session, service.pilots_query(assessment), page)
    set_page_headers(request, response, found)
    return [
        PilotListItem(
            id=p.id,
            assessment_id=p.assessment_id,
            status=p.status,
            stage=p.stage if p.status == "running" else None,
            task=p.task,
            primary_metric=p.primary_metric,
            arms=list(p.arms or []),
            max_train=p.max_train,
            error=p.error,
            created_at=p.created_at,
            started_at=p.started_at,
            finished_at=p.finished_at,
        )
        for p in found.items
    ]
