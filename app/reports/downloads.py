"""What the report's page routes and its JSON API share: the owner check and the PDF download.

A module of its own, so that pages and API, one layer, never import each other.
"""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.assessments import service as assessments
from app.assessments.models import Assessment
from app.db import utcnow
from app.settings import get_settings


def owned_assessment(session: Session, assessment_id: str, user: User) -> Assessment:
    """The caller's assessment, or a 404 (the page and the JSON API share it)."""
    assessment = assessments.get_owned(session, assessment_id=assessment_id, owner=user)
    if assessment is None:
        raise HTTPException(404, "No such assessment")
    return assessment


def pdf_download(
    session: Session, assessment: Assessment, user: User, pilot: str | None
) -> Response:
    """The report's PDF as an attachment: the page's button and the JSON API serve this."""
    from app.reports import pdf

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
