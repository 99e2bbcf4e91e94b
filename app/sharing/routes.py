"""Share links: the owner's management page, and the public read-only report behind a link.

`/share/{token}` and `/share/{token}/report.pdf` are the only routes a link opens: the
report page (rendered without owner-only links and forms) and its PDF. Unknown and revoked
tokens are a 404, the same as a link that never existed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError, field_validator

from app.accounts.dependencies import CurrentUser
from app.assessments import service as assessments
from app.assessments.models import Assessment
from app.db import utcnow
from app.deps import CsrfChecked, SessionDep
from app.reports import service as reports
from app.settings import get_settings
from app.sharing import service
from app.validation import friendly_message
from app.web import PAGE_BODIES, body_response, render, render_body

router = APIRouter(tags=["sharing"], include_in_schema=False)

# A share URL must not leak onwards (Referer), be cached by a proxy, or be indexed.
SHARED_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
    "X-Robots-Tag": "noindex, nofollow",
}
NOT_FOUND = "This share link does not exist or was revoked."


class LinkLabel(BaseModel):
    label: str = Field("", max_length=80)

    @field_validator("label")
    @classmethod
    def _tidy(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value.isprintable():
            raise ValueError("Use printable characters only")
        return value


def _owned(session: SessionDep, assessment_id: str, user: CurrentUser) -> Assessment:
    assessment = assessments.get_owned(session, assessment_id=assessment_id, owner=user)
    if assessment is None:
        raise HTTPException(404, "No such assessment")
    return assessment


def _manage_page(
    request: Request,
    session: SessionDep,
    assessment: Assessment,
    *,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    ctx: dict[str, Any] = {
        "assessment": assessment,
        "links": service.active_links(session, assessment=assessment),
        "new_url": None,
        "error": None,
        "label": "",
        "max_links": service.MAX_ACTIVE_LINKS,
        **extra,
    }
    response = render(request, "sharing/manage.html", ctx, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/assessments/{assessment_id}/sharing")
def manage(
    request: Request, assessment_id: str, session: SessionDep, user: CurrentUser
) -> Response:
    return _manage_page(request, session, _owned(session, assessment_id, user))


@router.post("/assessments/{assessment_id}/sharing", dependencies=[CsrfChecked])
def create(
    request: Request,
    assessment_id: str,
    session: SessionDep,
    user: CurrentUser,
    label: Annotated[str, Form()] = "",
    include_bundle: Annotated[bool, Form()] = False,
) -> Response:
    """Create a link and show it once: only its hash is stored."""
    assessment = _owned(session, assessment_id, user)
    try:
        clean = LinkLabel(label=label).label
        _, token = service.create_link(
            session,
            assessment=assessment,
            owner=user,
            label=clean,
            include_bundle=include_bundle,
        )
    except ValidationError as exc:
        error = "Label: " + friendly_message(dict(exc.errors()[0]))
        return _manage_page(
            request, session, assessment, status_code=422, error=error, label=label[:200]
        )
    except service.NotShareable as exc:
        return _manage_page(
            request, session, assessment, status_code=409, error=str(exc), label=label[:200]
        )
    new_url = str(request.url_for("shared_report", token=token))
    return _manage_page(request, session, assessment, status_code=201, new_url=new_url)


@router.post("/assessments/{assessment_id}/sharing/{link_id}/revoke", dependencies=[CsrfChecked])
def revoke(assessment_id: str, link_id: int, session: SessionDep, user: CurrentUser) -> Response:
    assessment = _owned(session, assessment_id, user)
    if not service.revoke_link(session, assessment=assessment, link_id=link_id):
        raise HTTPException(404, "No such share link")
    return RedirectResponse(f"/assessments/{assessment.id}/sharing", status_code=303)


@router.get("/share/{token}", name="shared_report")
def shared_report(request: Request, token: str, session: SessionDep) -> Response:
    shared = service.open_link(session, token=token)
    if shared is None:
        raise HTTPException(404, NOT_FOUND)
    today = utcnow().date()

    def identify() -> reports.ReportIdentity:
        try:
            return reports.report_identity(
                session,
                assessment=shared.assessment,
                owner=shared.owner,
                today=today,
                price_table=get_settings().price_table,
                variant="shared",
            )
        except (reports.ReportUnavailable, reports.PilotNotFound) as exc:
            raise HTTPException(404, NOT_FOUND) from exc

    identity = identify()
    # The report body as the PDF shows it (pdf=True: none of the owner-only links and forms),
    # kept for every holder of a link under its own variant of the key; the banner with this
    # link's own downloads is rendered per request.
    body = PAGE_BODIES.get(identity.key) if identity.key is not None else None
    if body is None:
        try:
            report = reports.build_report(
                session,
                assessment=shared.assessment,
                owner=shared.owner,
                today=today,
                price_table=get_settings().price_table,
            )
        except (reports.ReportUnavailable, reports.PilotNotFound) as exc:
            raise HTTPException(404, NOT_FOUND) from exc
        body = render_body("reports/show.html", {"report": report, "pdf": True})
        if identity.key is not None and identify().key == identity.key:
            PAGE_BODIES.put(identity.key, body)
    # The default pilot is a finished one (or none): the bundle exists exactly when it does.
    bundle = shared.link.include_bundle and identity.pilot_id is not None
    ctx = {
        "pdf_url": f"/share/{token}/report.pdf",
        "bundle_url": f"/share/{token}/export.zip" if bundle else None,
        "includes_bundle": shared.link.include_bundle,
    }
    response = body_response(request, body, shell="sharing/report.html", context=ctx)
    response.headers.update(SHARED_HEADERS)
    return response


@router.get("/share/{token}/report.pdf")
def shared_pdf(token: str, session: SessionDep) -> Response:
    # Sync on purpose: FastAPI runs it in the thread pool, so WeasyPrint never blocks the loop.
    from app.reports import pdf

    shared = service.open_link(session, token=token)
    if shared is None:
        raise HTTPException(404, NOT_FOUND)
    try:
        made = pdf.kept_report_pdf(
            session,
            assessment=shared.assessment,
            owner=shared.owner,
            today=utcnow().date(),
            price_table=get_settings().price_table,
        )
    except (reports.ReportUnavailable, reports.PilotNotFound) as exc:
        raise HTTPException(404, NOT_FOUND) from exc
    return Response(
        made.content,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{made.filename}"',
            **SHARED_HEADERS,
        },
    )
