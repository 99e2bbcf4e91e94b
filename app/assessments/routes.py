"""Wizard and assessment pages. Thin: read the form, call the service, render."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from app.accounts.dependencies import CurrentUser
from app.assessments import service
from app.assessments.models import Assessment
from app.assessments.wizard import STEPS, WIDGETS, display_value, form_to_raw, get_step, neighbours
from app.deps import CsrfChecked, SessionDep
from app.domain.samples.schemas import PilotTask, SampleFormat
from app.settings import get_settings
from app.web import render

router = APIRouter(tags=["wizard"], include_in_schema=False)
# The upload forms, included with their own request size cap (MAX_UPLOAD_REQUEST_BYTES) where
# every other route has the small one. Their handlers are plain functions: FastAPI runs them
# in its thread pool, so parsing (seconds for a large HTML page, up to a minute per PDF)
# never holds up the event loop that answers every other request.
uploads_router = APIRouter(tags=["wizard"], include_in_schema=False)


def _owned(session: SessionDep, assessment_id: str, user: CurrentUser) -> Assessment:
    assessment = service.get_owned(session, assessment_id=assessment_id, owner=user)
    if assessment is None:
        raise HTTPException(404, "No such assessment")
    return assessment


@router.get("/")
def home(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    items = service.list_owned(session, owner=user)
    return render(request, "home.html", {"assessments": items})


@router.post("/assessments", dependencies=[CsrfChecked])
def new_assessment(session: SessionDep, user: CurrentUser) -> Response:
    assessment = service.create_draft(session, owner=user)
    return RedirectResponse(f"/assessments/{assessment.id}/steps/use_case", status_code=303)


def _step_context(
    session: SessionDep, assessment: Assessment, step_name: str, **extra: Any
) -> dict[str, Any]:
    step = get_step(step_name)
    assert step is not None
    prev, nxt = neighbours(step_name)
    ctx: dict[str, Any] = {
        "assessment": assessment,
        "step": step,
        "steps": STEPS,
        "widgets": WIDGETS,
        "answers": dict(assessment.answers or {}),
        "errors": {},
        "prev_step": prev,
        "next_step": nxt,
        "display_value": display_value,
        "sample": service.current_sample(session, assessment=assessment),
        "documents": service.documents(session, assessment=assessment),
        "sample_errors": [],
        "formats": [f.value for f in SampleFormat],
        "tasks": [t.value for t in PilotTask],
    }
    ctx.update(extra)
    return ctx


@router.get("/assessments/{assessment_id}/steps/{step_name}")
def show_step(
    request: Request, assessment_id: str, step_name: str, session: SessionDep, user: CurrentUser
) -> Response:
    assessment = _owned(session, assessment_id, user)
    if get_step(step_name) is None:
        raise HTTPException(404, "No such step")
    return render(request, "wizard/step.html", _step_context(session, assessment, step_name))


@router.post("/assessments/{assessment_id}/steps/{step_name}", dependencies=[CsrfChecked])
async def save_step(
    request: Request, assessment_id: str, step_name: str, session: SessionDep, user: CurrentUser
) -> Response:
    assessment = _owned(session, assessment_id, user)
    step = get_step(step_name)
    if step is None:
        raise HTTPException(404, "No such step")
    form = await request.form()
    direction = form.get("direction", "next")
    raw = form_to_raw(step, form)
    errors = service.save_step(session, assessment=assessment, step=step, raw=raw)
    if errors and direction != "back":
        # Keep what the user typed on screen, valid or not, next to the messages.
        answers = {**(assessment.answers or {}), **raw}
        ctx = _step_context(session, assessment, step_name, errors=errors, answers=answers)
        return render(request, "wizard/step.html", ctx, status_code=422)
    prev, nxt = neighbours(step_name)
    target = prev if direction == "back" else nxt
    return RedirectResponse(f"/assessments/{assessment.id}/steps/{target or step_name}", 303)


@uploads_router.post("/assessments/{assessment_id}/sample", dependencies=[CsrfChecked])
def upload_sample(
    request: Request,
    assessment_id: str,
    session: SessionDep,
    user: CurrentUser,
    file: Annotated[UploadFile, File()],
    format: Annotated[str, Form()] = "auto",
    task: Annotated[str, Form()] = "auto",
) -> Response:
    assessment = _owned(session, assessment_id, user)
    try:
        service.upload_sample(
            session,
            assessment=assessment,
            upload=file,
            format=format,
            task=task,
            settings=get_settings(),
        )
    except service.UploadRejected as exc:
        return _upload_refused(request, session, assessment, exc)
    return RedirectResponse(f"/assessments/{assessment.id}/steps/data", status_code=303)


@uploads_router.post("/assessments/{assessment_id}/documents", dependencies=[CsrfChecked])
def upload_documents(
    request: Request,
    assessment_id: str,
    session: SessionDep,
    user: CurrentUser,
    files: Annotated[list[UploadFile], File()],
) -> Response:
    assessment = _owned(session, assessment_id, user)
    try:
        service.upload_documents(
            session, assessment=assessment, uploads=list(files), settings=get_settings()
        )
    except service.UploadRejected as exc:
        return _upload_refused(request, session, assessment, exc)
    return RedirectResponse(f"/assessments/{assessment.id}/steps/data", status_code=303)


def _upload_refused(
    request: Request, session: SessionDep, assessment: Assessment, exc: service.UploadRejected
) -> Response:
    problems = [message for _, message in exc.problems]
    ctx = _step_context(session, assessment, "data", sample_errors=problems)
    return render(request, "wizard/step.html", ctx, status_code=exc.status_code)


@router.post("/assessments/{assessment_id}/submit", dependencies=[CsrfChecked])
def submit(
    request: Request, assessment_id: str, session: SessionDep, user: CurrentUser
) -> Response:
    assessment = _owned(session, assessment_id, user)
    try:
        service.submit(session, assessment=assessment, settings=get_settings())
    except service.IntakeIncomplete as exc:
        ctx = _step_context(session, assessment, "review", errors=exc.errors)
        return render(request, "wizard/step.html", ctx, status_code=422)
    return RedirectResponse(f"/assessments/{assessment.id}", status_code=303)
