"""Pilot pages: start a pilot, watch it live, read its metrics."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.accounts.dependencies import CurrentUser, run_signed_in
from app.accounts.models import User
from app.assessments import service as assessments
from app.assessments.models import Assessment
from app.deps import CsrfChecked, SessionDep
from app.domain.arm_figures import PROVISIONAL_NOTE
from app.domain.arms import ARMS
from app.domain.evidence import exploratory_flags
from app.domain.records import FINISHED_PILOT, ArmStatus, Manifest, PilotStage, PilotStatus
from app.page_keys import page_key
from app.pilots import dispatch, execution, service
from app.pilots.figures import arm_figures
from app.pilots.models import Pilot
from app.settings import get_settings
from app.web import (
    CACHE_CONTROL_REVALIDATE,
    PAGE_BODIES,
    body_response,
    etag_matches,
    is_htmx,
    not_modified,
    render,
    render_body,
    viewer_etag,
)

router = APIRouter(tags=["pilots"], include_in_schema=False)


def _owned_pilot(session: Session, pilot_id: str, user: User) -> Pilot:
    pilot = service.get_pilot_for_owner(session, pilot_id=pilot_id, owner_id=user.id)
    if pilot is None:
        raise HTTPException(404, "No such pilot")
    return pilot


@router.post("/assessments/{assessment_id}/pilots", dependencies=[CsrfChecked])
async def start(
    request: Request, assessment_id: str, session: SessionDep, user: CurrentUser
) -> Response:
    assessment = assessments.get_owned(session, assessment_id=assessment_id, owner=user)
    if assessment is None:
        raise HTTPException(404, "No such assessment")
    form = await request.form()
    settings = get_settings()
    raw_size = str(form.get("max_train", settings.pilot_max_train))
    # ASCII only: str.isdigit() also accepts '²', which int() refuses (a 500).
    if not (raw_size.isascii() and raw_size.isdigit()) or len(raw_size) > 4000:
        raise service.PilotNotPossible("max_train: enter a whole number of examples.")
    pilot = service.start_pilot(
        session,
        assessment=assessment,
        settings=settings,
        max_train=int(raw_size),  # < 4,300 digits: Python refuses to convert longer ones
        arms=[str(a) for a in form.getlist("arms")],
        models=service.ModelChoice(
            prompt_model_id=str(form.get("prompt_model_id", "")) or None,
            base_model_id=str(form.get("base_model_id", "")) or None,
            judge_model_id=str(form.get("judge_model_id", "")) or None,
            serving_model_id=str(form.get("serving_model_id", "")) or None,
        ),
        # A checkbox: sent when ticked, absent when not (the page shows the default ticked).
        learning_curve=form.get("learning_curve") is not None,
    )
    # The request's session commits before the redirect is sent; the job goes after it.
    return RedirectResponse(f"/pilots/{pilot.id}", status_code=303)


# What a running pilot is doing, in the page's words.
STAGE_LABELS = {
    PilotStage.preparing: "· preparing the split",
    PilotStage.arms: "· running the arms",
    PilotStage.concluding: "· concluding (judging and comparing the arms)",
}


def pilot_view(session: Session, pilot: Pilot) -> dict[str, Any]:
    arms = service.arms_of(session, pilot=pilot)
    differences = service.differences_of(session, pilot=pilot)
    manifest = Manifest.read(pilot.manifest, seed=pilot.seed)
    n_test = manifest.split_sizes.test if manifest is not None else None
    metrics = service.metrics_of(session, pilot=pilot)
    return {
        "pilot": pilot,
        "arms": arms,
        "stage_labels": STAGE_LABELS,
        "running_arms": sum(a.status == ArmStatus.running for a in arms),
        "concluding": pilot.status == PilotStatus.running and pilot.stage == PilotStage.concluding,
        # An arm that adopts another's adapter waits for it (sent once it has finished).
        "waiting_for": {
            a.arm: upstream
            for a in arms
            if (upstream := execution.upstream_arm(a.arm, list(pilot.arms))) is not None
        },
        "metrics": metrics,
        # Each finished arm's primary figure, provisional until the pilot concludes.
        "results": arm_figures(session, pilot=pilot, arms=arms, metrics=metrics),
        "provisional_note": PROVISIONAL_NOTE,
        # Flagged as on the report: Holm-adjusted over every pair, thin evidence named.
        "differences": list(zip(differences, exploratory_flags(differences, n_test), strict=True)),
        "arm_labels": {
            name: ARMS.label(name, documents=manifest is None or manifest.had_documents)
            for name in ARMS.labels()
        },
        "finished": pilot.status in FINISHED_PILOT,
        "queue_place": service.queue_place(session, pilot=pilot),
        # Arms held back for a slot in their queue, with their place (1: released next).
        "arm_positions": (
            dispatch.waiting_positions(session, pilot_id=pilot.id)
            if pilot.status == PilotStatus.running and pilot.stage == PilotStage.arms
            else {}
        ),
    }


@router.get("/pilots/{pilot_id}")
async def show(request: Request, pilot_id: str) -> Response:
    """The pilot's page. A done pilot's rows are final, so its page body is rendered once per
    process and kept under a key naming the pilot's state and its assessment's; the owner
    check runs on every request, and a browser holding this viewer's copy gets a 304."""
    return await run_signed_in(request, partial(_show, request, pilot_id))


def _show(request: Request, pilot_id: str, session: Session, user: User) -> Response:
    pilot = _owned_pilot(session, pilot_id, user)
    assessment = assessments.get_owned(session, assessment_id=pilot.assessment_id, owner=user)
    key = _page_key(pilot, assessment)
    if key is None:
        ctx = {"assessment": assessment, **pilot_view(session, pilot)}
        return render(request, "pilots/show.html", ctx)
    etag = viewer_etag(request, key)
    if etag_matches(request, etag):
        return not_modified(etag)
    body = PAGE_BODIES.get(key)
    if body is None:
        ctx = {"assessment": assessment, **pilot_view(session, pilot)}
        body = render_body("pilots/show.html", ctx)
        PAGE_BODIES.put(key, body)
    response = body_response(request, body)
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = CACHE_CONTROL_REVALIDATE
    return response


def _page_key(pilot: Pilot, assessment: Assessment | None) -> str | None:
    """What a done pilot's page shows: the pilot (its rows are final once done: only a new
    status or `finished_at` changes them) and its assessment's title (`updated_at` moves with
    it). None while the pilot can still change: its page is rendered on every request."""
    if pilot.status != PilotStatus.done or assessment is None:
        return None
    return page_key(
        "pilot",
        pilot.id,
        pilot.status,
        str(pilot.finished_at),
        assessment.id,
        str(assessment.updated_at),
    )


@router.get("/pilots/{pilot_id}/progress")
async def progress(request: Request, pilot_id: str) -> Response:
    """The live panel alone, for HTMX polling; the full page without JavaScript."""
    return await run_signed_in(request, partial(_progress, request, pilot_id))


def _progress(request: Request, pilot_id: str, session: Session, user: User) -> Response:
    pilot = _owned_pilot(session, pilot_id, user)
    if not is_htmx(request):
        return RedirectResponse(f"/pilots/{pilot.id}", status_code=303)
    return render(request, "pilots/show.html", pilot_view(session, pilot), block="live")


@router.post("/pilots/{pilot_id}/cancel", dependencies=[CsrfChecked])
def cancel(pilot_id: str, session: SessionDep, user: CurrentUser) -> Response:
    """Cancel a queued or running pilot; its worker stops within seconds."""
    pilot = _owned_pilot(session, pilot_id, user)
    service.cancel_pilot(session, pilot=pilot)
    return RedirectResponse(f"/pilots/{pilot.id}", status_code=303)
