"""JSON API: a finished pilot's hand-off bundle as a zip."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from app.accounts.dependencies import ApiUser
from app.deps import SessionDep
from app.exports import service
from app.exports.routes import PathQuery, zip_response
from app.reports.pdf import render_pdf
from app.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["pilots"])


@router.get(
    "/pilots/{pilot_id}/export",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The hand-off bundle"},
        404: {"description": "No such pilot among yours"},
        409: {"description": "Not finished, or the chosen path's arm or adapter missing"},
        422: {"description": "`path` is not one of the paths"},
    },
)
def export_pilot(
    pilot_id: str,
    session: SessionDep,
    user: ApiUser,
    path: service.ExportPath | None = PathQuery,
) -> Response:
    """The pilot's hand-off bundle: data, fine-tuning scripts, adapter, serving, RAG, PDF.

    `path` (prompting, rag, fine_tuning, fine_tuning+rag) hands off a path whose arm ran
    instead of the recommended one."""
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
