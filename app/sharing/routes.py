"""Share links: the owner's management page, and the public read-only report behind a link.

`/share/{token}`, `/share/{token}/report.pdf` and `/share/{token}/export.zip` are the only
routes a link opens: the report page (rendered without owner-only links and forms), its PDF,
and the hand-off bundle when the owner included it. Each shows the pilot the link is pinned
to. Unknown and revoked tokens are a 404, the same as a link that never existed; an expired
one is a 410 that says so. Downloads are limited per link and client address (429).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError, field_validator

from app.accounts.dependencies import CurrentUser
from app.accounts.ratelimit import client_ip
from app.accounts.tokens import as_utc
from app.assessments import service as assessments
from app.assessments.models import Assessment
from app.db import utcnow
from app.deps import CsrfChecked, SessionDep
from app.reports import service as reports
from app.settings import get_settings
from app.sharing import service
from app.sharing.throttle import get_download_limiter
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
NO_BUNDLE = "This share link does not exist, was revoked, or shares the report and PDF only."


class LinkLabel(BaseModel):
    label: str = Field("", max_length=80)

    @field_validator("label")
    @classmethod
    def _tidy(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value.isprintable():
            raise ValueError("Use printable characters only")
        return value


class LinkExpiry(BaseModel):
    """Days until the link stops working; blank: until revoked."""

    days: int | None = Field(None, ge=1)

    @field_validator("days", mode="before")
    @classmethod
    def _blank_is_never(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


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
        "max_days": get_settings().share_link_max_days,
        "expires_days": "",
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
    expires_days: Annotated[str, Form()] = "",
) -> Response:
    """Create a link and show it once: only its hash is stored."""
    assessment = _owned(session, assessment_id, user)
    settings = get_settings()
    form = {"label": label[:200], "expires_days": expires_days[:20]}
    try:
        clean = LinkLabel(label=label).label
    except ValidationError as exc:
        error = "Label: " + friendly_message(dict(exc.errors()[0]))
        return _manage_page(request, session, assessment, status_code=422, error=error, **form)
    try:
        days = LinkExpiry(days=expires_days).days
        if days is not None and days > settings.share_link_max_days:
            raise ValueError
    except (ValidationError, ValueError):
        error = (
            f"Expires after (days): enter a whole number from 1 to "
            f"{settings.share_link_max_days}, or leave it blank for a link that lasts until "
            "you revoke it."
        )
        return _manage_page(request, session, assessment, status_code=422, error=error, **form)
    try:
        _, token = service.create_link(
            session,
            assessment=assessment,
            owner=user,
            label=clean,
            include_bundle=include_bundle,
            expires_in_days=days,
        )
    except service.NotShareable as exc:
        return _manage_page(request, session, assessment, status_code=409, error=str(exc), **form)
    # The owner is here: a good moment to sweep the bundles of links that stopped giving one.
    service.prune_kept_bundles(session, root=settings.share_bundles_dir)
    new_url = str(request.url_for("shared_report", token=token))
    return _manage_page(request, session, assessment, status_code=201, new_url=new_url)


@router.post("/assessments/{assessment_id}/sharing/{link_id}/revoke", dependencies=[CsrfChecked])
def revoke(assessment_id: str, link_id: int, session: SessionDep, user: CurrentUser) -> Response:
    assessment = _owned(session, assessment_id, user)
    if not service.revoke_link(session, assessment=assessment, link_id=link_id):
        raise HTTPException(404, "No such share link")
    # The bundle goes with the link: no copy of the data outlives the owner's revoking it.
    service.drop_kept_bundles(get_settings().share_bundles_dir, link_id)
    return RedirectResponse(f"/assessments/{assessment.id}/sharing", status_code=303)


def _open(session: SessionDep, token: str, *, count: bool = True) -> service.Shared:
    """The link's share, or 404 (unknown, revoked) / 410 (expired, its bundle dropped)."""
    try:
        shared = service.open_link(session, token=token, count=count)
    except service.LinkExpired:
        link_id = service.expired_link_id(session, token=token)
        if link_id is not None:
            service.drop_kept_bundles(get_settings().share_bundles_dir, link_id)
        raise
    if shared is None:
        raise HTTPException(404, NOT_FOUND)
    return shared


def _throttled(request: Request, session: SessionDep, shared: service.Shared) -> Response | None:
    """A 429 page with Retry-After when this link and address have used up their downloads;
    else None, and the download is counted as a view."""
    throttled = get_download_limiter(request).attempt(link_id=shared.link.id, ip=client_ip(request))
    if throttled is None:
        service.count_view(session, shared)
        return None
    # Built here, not raised: the error handler drops headers from the HTML page, and a
    # browser or script needs Retry-After to know when to come back.
    response = render(
        request, "error.html", {"status": 429, "message": throttled.message}, status_code=429
    )
    response.headers.update({**SHARED_HEADERS, "Retry-After": str(throttled.retry_after)})
    return response


@router.get("/share/{token}", name="shared_report")
def shared_report(request: Request, token: str, session: SessionDep) -> Response:
    shared = _open(session, token)
    # NULL only on old links that give the report alone: they show the default pilot.
    pilot_id = shared.link.pilot_id
    today = utcnow().date()

    def identify() -> reports.ReportIdentity:
        try:
            return reports.report_identity(
                session,
                assessment=shared.assessment,
                owner=shared.owner,
                pilot_id=pilot_id,
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
                pilot_id=pilot_id,
                today=today,
                price_table=get_settings().price_table,
            )
        except (reports.ReportUnavailable, reports.PilotNotFound) as exc:
            raise HTTPException(404, NOT_FOUND) from exc
        body = render_body("reports/show.html", {"report": report, "pdf": True})
        if identity.key is not None and identify().key == identity.key:
            PAGE_BODIES.put(identity.key, body)
    # A link that gives the bundle is pinned to a finished pilot (made so, or migrated so).
    bundle = shared.link.include_bundle and pilot_id is not None
    expires_at = shared.link.expires_at
    ctx = {
        "pdf_url": f"/share/{token}/report.pdf",
        "bundle_url": f"/share/{token}/export.zip" if bundle else None,
        "includes_bundle": shared.link.include_bundle,
        "expires_at": as_utc(expires_at) if expires_at is not None else None,
    }
    response = body_response(request, body, shell="sharing/report.html", context=ctx)
    response.headers.update(SHARED_HEADERS)
    return response


@router.get("/share/{token}/report.pdf")
def shared_pdf(request: Request, token: str, session: SessionDep) -> Response:
    # Sync on purpose: FastAPI runs it in the thread pool, so WeasyPrint never blocks the loop.
    from app.reports import pdf

    shared = _open(session, token, count=False)
    throttled = _throttled(request, session, shared)
    if throttled is not None:
        return throttled
    try:
        made = pdf.kept_report_pdf(
            session,
            assessment=shared.assessment,
            owner=shared.owner,
            pilot_id=shared.link.pilot_id,
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


@router.get("/share/{token}/export.zip")
def shared_export(request: Request, token: str, session: SessionDep) -> Response:
    """The bundle of the link's pilot, when the owner included it: built on the first
    download and kept on disk (sync: the PDF inside renders in the thread pool)."""
    from app.reports.pdf import render_pdf

    shared = _open(session, token, count=False)
    if not shared.link.include_bundle or shared.link.pilot_id is None:
        raise HTTPException(404, NO_BUNDLE)
    throttled = _throttled(request, session, shared)
    if throttled is not None:
        return throttled
    kept = service.kept_bundle(
        session, shared=shared, settings=get_settings(), render_pdf=render_pdf
    )
    if kept is None:
        raise HTTPException(404, NO_BUNDLE)
    return FileResponse(
        kept.path,
        media_type="application/zip",
        filename=kept.filename,
        headers=SHARED_HEADERS,
    )
