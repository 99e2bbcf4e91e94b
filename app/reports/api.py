"""JSON API: the report's verdict as data, and its PDF, for scripts with an API token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.accounts.dependencies import ApiUser
from app.accounts.models import User
from app.assessments import service as assessments
from app.assessments.models import Assessment
from app.db import utcnow
from app.deps import SessionDep
from app.reports import service
from app.reports.schemas import VerdictOut, verdict_out
from app.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["reports"])

PilotParam = Annotated[
    str | None,
    Query(max_length=64, description="A pilot of this assessment; default the latest finished."),
]


def _owned(session: Session, assessment_id: str, user: User) -> Assessment:
    assessment = assessments.get_owned(session, assessment_id=assessment_id, owner=user)
    if assessment is None:
        raise HTTPException(404, "No such assessment")
    return assessment


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
    assessment = _owned(session, assessment_id, user)
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
    from app.reports import pdf  # WeasyPrint loads only where a PDF is asked for

    assessment = _owned(session, assessment_id, user)
    made = pdf.kept_report_pdf(
        session,
        assessment=assessment,
        owner=user,
        pilot_id=pilot,
        today=utcnow().date(),
        price_table=get_settings().price_table,
    )
    return Response(
        made.content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{made.filename}"'},
    )
