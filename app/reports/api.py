"""JSON API: the report's verdict as data, and its PDF, for scripts with an API token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.accounts.dependencies import ApiUser
from app.db import utcnow
from app.deps import SessionDep
from app.reports import service
from app.reports.downloads import owned_assessment, pdf_download
from app.reports.schemas import VerdictOut, verdict_out
from app.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["reports"])

PilotParam = Annotated[
    str | None,
    Query(max_length=64, description="A pilot of this assessment; default the latest finished."),
]


@router.get(
    "/assessments/{assessment_id}/report",
    response_model=VerdictOut,
    responses={
        404: {"description": "No such assessment among yours, or no such pilot of it"},
        409: {"description": "The assessment is not scored yet"},
    },
)
def get_report(
    assessment_id: str, session: SessionDep, user: ApiUser, pilot: PilotParam = None
) -> VerdictOut:
    """The verdict the report page shows: path, confidence, reasons, what decided, what would
    resolve an open comparison, failed arms, the 12-month cost and where it flips."""
    assessment = owned_assessment(session, assessment_id, user)
    report = service.build_report(
        session,
        assessment=assessment,
        owner=user,
        pilot_id=pilot,
        today=utcnow().date(),
        price_table=get_settings().price_table,
    )
    return verdict_out(report)


@router.get(
    "/assessments/{assessment_id}/report.pdf",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "The report as an A4 PDF"},
        404: {"description": "No such assessment among yours, or no such pilot of it"},
        409: {"description": "The assessment is not scored yet"},
    },
)
def get_report_pdf(
    assessment_id: str, session: SessionDep, user: ApiUser, pilot: PilotParam = None
) -> Response:
    """The same report as a PDF (the page's PDF, byte for byte)."""
    return pdf_download(session, owned_assessment(session, assessment_id, user), user, pilot)
