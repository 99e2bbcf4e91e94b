"""The assessment page: the rubric's result with the pilot panel beside it.

It composes two features (assessments and pilots) on one page, so it sits above both rather
than in either: `app.pilots` depends on `app.assessments`, never the other way round.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.accounts.dependencies import CurrentUser
from app.assessments import service
from app.deps import SessionDep
from app.domain.scoring.chart import score_chart_svg
from app.domain.scoring.paths import PATH_LABELS
from app.domain.scoring.schemas import ScoreResult
from app.pilots.service import panel_context
from app.settings import get_settings
from app.web import render

router = APIRouter(include_in_schema=False)


@router.get("/assessments/{assessment_id}")
def show_assessment(
    request: Request, assessment_id: str, session: SessionDep, user: CurrentUser
) -> Response:
    assessment = service.get_owned(session, assessment_id=assessment_id, owner=user)
    if assessment is None:
        raise HTTPException(404, "No such assessment")
    if assessment.score_result is None:
        return RedirectResponse(f"/assessments/{assessment.id}/steps/{assessment.step}", 303)
    result = ScoreResult.model_validate(assessment.score_result)
    ctx = {
        "assessment": assessment,
        "result": result,
        "chart_svg": score_chart_svg(result),
        "path_labels": PATH_LABELS,
        "sample": service.current_sample(session, assessment=assessment),
    }
    ctx.update(panel_context(session, assessment=assessment, settings=get_settings()))
    return render(request, "assessments/show.html", ctx)
