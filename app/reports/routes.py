"""Report pages and the PDF. Thin: find the owner's assessment, build the report, render."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.accounts.dependencies import CurrentUser, run_signed_in
from app.accounts.models import User
from app.db import utcnow
from app.deps import SessionDep
from app.domain.what_if import FIELDS as WHAT_IF_FIELDS
from app.reports import service
from app.reports.downloads import owned_assessment, pdf_download
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

router = APIRouter(tags=["reports"], include_in_schema=False)

PilotParam = Annotated[str | None, Query(max_length=64)]


def _what_if(request: Request) -> dict[str, str]:
    """The what-if values as typed; the service validates them and names each bad one."""
    return {k: v for k, v in request.query_params.items() if k in WHAT_IF_FIELDS}


@router.get("/assessments/{assessment_id}/report")
async def show(request: Request, assessment_id: str, pilot: PilotParam = None) -> Response:
    """The report page. A done pilot's report is the same for every request until something it
    shows changes, so its body is rendered once per process and kept under a key naming all
    of that (`service.report_identity`); the owner check runs on every request, and a
    browser holding this viewer's copy gets a 304."""
    return await run_signed_in(request, partial(_show, request, assessment_id, pilot))


def _show(
    request: Request, assessment_id: str, pilot: str | None, session: Session, user: User
) -> Response:
    assessment = owned_assessment(session, assessment_id, user)
    what_if = _what_if(request)
    today = utcnow().date()
    price_table = get_settings().price_table

    def identify() -> str | None:
        return service.report_identity(
            session,
            assessment=assessment,
            owner=user,
            pilot_id=pilot,
            today=today,
            what_if=what_if,
            price_table=price_table,
        ).key

    key = identify()
    etag = viewer_etag(request, key) if key is not None else None
    if etag is not None and etag_matches(request, etag):
        return not_modified(etag)
    body = PAGE_BODIES.get(key) if key is not None else None
    status = 200
    if body is None:
        report = service.build_report(
            session,
            assessment=assessment,
            owner=user,
            pilot_id=pilot,
            today=today,
            what_if=what_if,
            price_table=price_table,
        )
        status = 200 if report.what_if.valid else 422
        body = render_body("reports/show.html", {"report": report, "pdf": False})
        # Kept only if nothing it shows changed while it was built (a pilot finishing then).
        if key is not None and status == 200 and identify() == key:
            PAGE_BODIES.put(key, body)
    response = body_response(request, body, status_code=status)
    if etag is not None and status == 200:
        response.headers["ETag"] = etag
        response.headers["Cache-Control"] = CACHE_CONTROL_REVALIDATE
    return response


@router.get("/assessments/{assessment_id}/report/what-if")
def what_if(
    request: Request,
    assessment_id: str,
    session: SessionDep,
    user: CurrentUser,
    pilot: PilotParam = None,
) -> Response:
    """The what-if panel alone, for HTMX; without JavaScript, the whole report page."""
    assessment = owned_assessment(session, assessment_id, user)
    view = service.build_what_if(
        session,
        assessment=assessment,
        pilot_id=pilot,
        what_if=_what_if(request),
        price_table=get_settings().price_table,
    )
    if not is_htmx(request):
        return RedirectResponse(view.report_url, status_code=303)
    response = render(
        request,
        "reports/show.html",
        {"what_if": view, "pdf": False},
        status_code=200 if view.valid else 422,
        block="what_if",
    )
    # The address bar shows the full report with this scenario, so it can be shared.
    response.headers["HX-Push-Url"] = view.report_url
    return response


@router.get("/assessments/{assessment_id}/report.pdf")
def download_pdf(
    assessment_id: str, session: SessionDep, user: CurrentUser, pilot: PilotParam = None
) -> Response:
    # A sync route: FastAPI runs it in the thread pool, so WeasyPrint never blocks the loop.
    return pdf_download(session, owned_assessment(session, assessment_id, user), user, pilot)


@router.get("/assessments/{assessment_id}/report/compare")
def compare(
    request: Request,
    assessment_id: str,
    session: SessionDep,
    user: CurrentUser,
    pilots: Annotated[list[str] | None, Query()] = None,
) -> Response:
    assessment = owned_assessment(session, assessment_id, user)
    comparison = service.build_comparison(session, assessment=assessment, pilot_ids=pilots or [])
    return render(request, "reports/compare.html", {"comparison": comparison})
