"""The Export button's download and the share link's bundle: a zip, or 404 / 409 with why.

Only the owner exports a pilot (another user's id is a 404, as everywhere). A share link
gives the bundle only when its owner ticked "include data and adapter" for that link; any
other link answers 404 here, the same as a link that does not exist.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from app.accounts.dependencies import CurrentUser
from app.deps import SessionDep
from app.exports import service
from app.pilots.models import Pilot
from app.reports import service as reports
from app.reports.pdf import render_pdf
from app.settings import get_settings
from app.sharing import service as sharing
from app.sharing.routes import SHARED_HEADERS

router = APIRouter(tags=["exports"], include_in_schema=False)

NO_BUNDLE = "This share link does not exist, was revoked, or shares the report and PDF only."


def zip_response(export: service.Export, extra_headers: dict[str, str] | None = None) -> Response:
    return Response(
        export.bundle.zip_bytes(),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "Cache-Control": "private, no-store",
            **(extra_headers or {}),
        },
    )


@router.get("/pilots/{pilot_id}/export")
def export(pilot_id: str, session: SessionDep, user: CurrentUser) -> Response:
    """The pilot's hand-off bundle as a zip (sync: the PDF renders in the thread pool)."""
    pilot = service.pilot_for_owner(session, pilot_id=pilot_id, owner=user)
    if pilot is None:
        raise HTTPException(404, "No such pilot")
    return zip_response(
        service.export_pilot(session, pilot=pilot, settings=get_settings(), render_pdf=render_pdf)
    )


@router.get("/share/{token}/export.zip")
def shared_export(token: str, session: SessionDep) -> Response:
    """The bundle of the shared report's pilot, when the owner opened this link to it."""
    shared = sharing.open_link(session, token=token)
    if shared is None or not shared.link.include_bundle:
        raise HTTPException(404, NO_BUNDLE)
    try:
        report = reports.build_report(session, assessment=shared.assessment, owner=shared.owner)
    except (reports.ReportUnavailable, reports.PilotNotFound) as exc:
        raise HTTPException(404, NO_BUNDLE) from exc
    if report.pilot is None or report.pilot_note is not None:
        raise HTTPException(409, "The shared report has no finished pilot to export.")
    pilot = session.get(Pilot, report.pilot.id)
    assert pilot is not None
    bundle = service.export_pilot(
        session, pilot=pilot, settings=get_settings(), render_pdf=render_pdf
    )
    return zip_response(bundle, SHARED_HEADERS)
