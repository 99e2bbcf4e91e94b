"""The Export button's download: a zip, or 404 / 409 with why.

Only the owner exports a pilot (another user's id is a 404, as everywhere). A share link's
bundle is `app.sharing.routes.shared_export`: pinned to the link's pilot and kept on disk.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from app.accounts.dependencies import CurrentUser
from app.deps import SessionDep
from app.exports import service
from app.reports.pdf import render_pdf
from app.settings import get_settings

router = APIRouter(tags=["exports"], include_in_schema=False)


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


# `?path=` hands off a path other than the recommended one (its arm must have run).
PathQuery = Query(None, description="The path to hand off; default: the recommended one")


@router.get("/pilots/{pilot_id}/export")
def export(
    pilot_id: str,
    session: SessionDep,
    user: CurrentUser,
    path: service.ExportPath | None = PathQuery,
) -> Response:
    """The pilot's hand-off bundle as a zip (sync: the PDF renders in the thread pool)."""
    pilot = service.pilot_for_owner(session, pilot_id=pilot_id, owner=user)
    if pilot is None:
        raise HTTPException(404, "No such pilot")
    return zip_response(
        service.export_pilot(
            session,
            pilot=pilot,
            settings=get_settings(),
            render_pdf=render_pdf,
            path=path.value if path else None,
        )
    )
