"""Report pages and the PDF. Thin: find the owner's assessment, build the report, render."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from app.accounts.dependencies import CurrentUser
from app.assessments import service as assessments
from app.assessments.models import Assessment
from app.deps import SessionDep
from app.reports import service
from app.web import render

router = APIRouter(tags=["reports"], include_in_schema=False)

PilotParam = Annotated[str | None, Query(max_length=64)]


def _owned(session: SessionDep, assessment_id: str, user: CurrentUser) -> Assessment:
    assessment = assessments.get_owned(session, assessment_id=assessment_id, owner=user)
    if assessment is None:
        raise HTTPException(404, "No such assessment")
    return assessment


def _report(
    session: SessionDep, assessment_id: str, user: CurrentUser, pilot: str | None
) -> service.Report:
    assessment = _owned(session, assessment_id, user)
    return service.build_report(session, assessment=assessment, owner=user, pilot_id=pilot)


@router.get("/assessments/{assessment_id}/report")
def show(
    request: Request,
    assessment_id: str,
    session: SessionDep,
    user: CurrentUser,
    pilot: PilotParam = None,
) -> Response:
    report = _report(session, assessment_id, user, pilot)
    return render(request, "reports/show.html", {"report": report, "pdf": False})


@router.get("/assessments/{assessment_id}/report.pdf")
def download_pdf(
    assessment_id: str, session: SessionDep, user: CurrentUser, pilot: PilotParam = None
) -> Response:
    # A sync route: FastAPI runs it in the thread pool, so WeasyPrint never blocks the loop.
    from app.reports import pdf

    report = _report(session, assessment_id, user, pilot)
    return Response(
        pdf.render_pdf(report),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{pdf.filename(report)}"'},
    )


@router.get("/assessments/{assessment_id}/report/compare")
def compare(
    request: Request,
    assessment_id: str,
    session: SessionDep,
    user: CurrentUser,
    pilots: Annotated[list[str] | None, Query()] = None,
) -> Response:
    assessment = _owned(session, assessment_id, user)
    comparison = service.build_comparison(session, assessment=assessment, pilot_ids=pilots or [])
    return render(request, "reports/compare.html", {"comparison": comparison})
