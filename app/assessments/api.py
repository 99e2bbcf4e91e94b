"""JSON API for assessments. The request body is the same Intake as `pathpilot score` reads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from app.accounts.dependencies import ApiUser
from app.assessments import service
from app.deps import SessionDep
from app.domain.intake import Intake
from app.domain.scoring.schemas import ScoreResult
from app.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["assessments"])


class AssessmentOut(BaseModel):
    id: str
    title: str
    status: str
    intake: dict[str, Any] | None
    result: ScoreResult | None


def _out(assessment: Any) -> AssessmentOut:
    result = (
        ScoreResult.model_validate(assessment.score_result) if assessment.score_result else None
    )
    return AssessmentOut(
        id=assessment.id,
        title=assessment.title,
        status=assessment.status,
        intake=assessment.intake,
        result=result,
    )


@router.post("/assessments", status_code=201, response_model=AssessmentOut)
def create_assessment(intake: Intake, session: SessionDep, user: ApiUser) -> AssessmentOut:
    """Create and score an assessment from a complete intake."""
    assessment, _ = service.create_scored(
        session, owner=user, intake=intake, settings=get_settings()
    )
    return _out(assessment)


@router.get("/assessments/{assessment_id}", response_model=AssessmentOut)
def get_assessment(assessment_id: str, session: SessionDep, user: ApiUser) -> AssessmentOut:
    """One assessment of the caller's; 404 for anyone else's."""
    assessment = service.get_owned(session, assessment_id=assessment_id, owner=user)
    if assessment is None:
        raise HTTPException(404, "No such assessment")
    return _out(assessment)
