"""JSON API for assessments. The request body is the same Intake as `pathpilot score` reads;
the sample and the documents are the wizard's uploads, through the same service calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from app.accounts.dependencies import ApiUser
from app.assessments import service
from app.assessments.models import Assessment, DataSample
from app.deps import SessionDep
from app.domain.intake import Intake
from app.domain.samples.schemas import PilotTask, SampleFormat, SampleSummary
from app.domain.scoring.schemas import ScoreResult
from app.pagination import LIST_RESPONSES, PageRequest, page_request, paginate, set_page_headers
from app.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["assessments"])
# The uploads, included (app.main) with the upload forms' request cap, MAX_UPLOAD_REQUEST_BYTES,
# instead of the API's 1 MiB. Plain functions, as the wizard's: FastAPI runs them in its
# thread pool, so reading and parsing a large file never holds up the event loop.
uploads_router = APIRouter(prefix="/api/v1", tags=["assessments"])


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


@router.get("/assessments", response_model=list[AssessmentOut], responses=LIST_RESPONSES)
def list_assessments(
    request: Request,
    response: Response,
    session: SessionDep,
    user: ApiUser,
    page: Annotated[PageRequest, Depends(page_request)],
) -> list[AssessmentOut]:
    """Your assessments, newest first, a page at a time (follow the Link header)."""
    found = paginate(session, service.owned_query(user), page)
    set_page_headers(request, response, found)
    return [_out(a) for a in found.items]


def _owned(session: SessionDep, assessment_id: str, user: ApiUser) -> Assessment:
    assessment = service.get_owned(session, assessment_id=assessment_id, owner=user)
    if assessment is None:
        raise HTTPException(404, "No such assessment")
    return assessment


@router.get("/assessments/{assessment_id}", response_model=AssessmentOut)
def get_assessment(assessment_id: str, session: SessionDep, user: ApiUser) -> AssessmentOut:
    """One assessment of the caller's; 404 for anyone else's."""
    return _out(_owned(session, assessment_id, user))


class SampleOut(SampleSummary):
    """What the wizard shows of a stored sample: its summary, and the file it came from."""

    file_name: str = Field(description="The uploaded file's name, without any path")
    size_bytes: int
    sha256: str
    uploaded_at: datetime


class DocumentOut(BaseModel):
    id: int
    file_name: str = Field(description="The uploaded file's name, without any path")
    size_bytes: int
    sha256: str
    format: str | None = Field(description="The file's extension: txt, md, html, pdf")
    title: str | None
    characters: int | None = Field(description="Characters of text extracted")
    uploaded_at: datetime


class DocumentsOut(BaseModel):
    documents: list[DocumentOut]
    documents_left: int = Field(description="How many more the corpus takes (MAX_DOCUMENTS)")


def _utc(moment: datetime) -> datetime:
    # SQLite gives stored times back without their zone (UTC, app.db.utcnow); a row written in
    # this request still has it: one form in every answer.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _document(row: DataSample) -> DocumentOut:
    summary = row.summary or {}
    return DocumentOut(
        id=row.id,
        file_name=row.original_name,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        format=row.format,
        title=summary.get("title"),
        characters=summary.get("characters"),
        uploaded_at=_utc(row.created_at),
    )


def _refused(exc: service.UploadRejected) -> Exception:
    """413 with the wizard's message; otherwise FastAPI's 422 shape, one entry a problem."""
    if exc.status_code != 422:
        return HTTPException(exc.status_code, str(exc))
    return RequestValidationError(
        [
            {"type": "upload_invalid", "loc": ("body", field), "msg": message, "input": None}
            for field, message in exc.problems
        ]
    )


UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such assessment of yours"},
    413: {"description": "Over MAX_UPLOAD_BYTES, the request cap or your storage quota"},
}
CHOICE_HELP = "auto (detect), or one of: "


@uploads_router.put("/assessments/{assessment_id}/sample", responses=UPLOAD_RESPONSES)
def put_sample(
    assessment_id: str,
    session: SessionDep,
    user: ApiUser,
    file: Annotated[UploadFile, File(description="The sample: JSONL, CSV/TSV or SQuAD JSON")],
    format: Annotated[
        str, Form(description=CHOICE_HELP + ", ".join(f.value for f in SampleFormat))
    ] = "auto",
    task: Annotated[
        str, Form(description=CHOICE_HELP + ", ".join(t.value for t in PilotTask))
    ] = "auto",
) -> SampleOut:
    """Upload or replace the sample, checked as the wizard checks it. A refused file keeps the
    stored one. A scored assessment is scored again with the new sample, as the wizard's
    submit would score it."""
    assessment = _owned(session, assessment_id, user)
    settings = get_settings()
    try:
        sample = service.upload_sample(
            session, assessment=assessment, upload=file, format=format, task=task, settings=settings
        )
    except service.UploadRejected as exc:
        raise _refused(exc) from None
    service.rescore(session, assessment=assessment, settings=settings)
    summary = SampleSummary.model_validate(sample.summary)
    return SampleOut(
        **summary.model_dump(),
        file_name=sample.original_name,
        size_bytes=sample.size_bytes,
        sha256=sample.sha256,
        uploaded_at=_utc(sample.created_at),
    )


@uploads_router.post(
    "/assessments/{assessment_id}/documents", status_code=201, responses=UPLOAD_RESPONSES
)
def post_documents(
    assessment_id: str,
    session: SessionDep,
    user: ApiUser,
    files: Annotated[list[UploadFile], File(description="RAG documents: .txt, .md, .html, .pdf")],
) -> DocumentsOut:
    """Add documents to the RAG corpus; one bad file stores none. Answers the ones stored."""
    assessment = _owned(session, assessment_id, user)
    settings = get_settings()
    try:
        stored = service.upload_documents(
            session, assessment=assessment, uploads=list(files), settings=settings
        )
    except service.UploadRejected as exc:
        raise _refused(exc) from None
    left = service.documents_left(session, assessment=assessment, settings=settings)
    return DocumentsOut(documents=[_document(d) for d in stored], documents_left=left)


@router.get("/assessments/{assessment_id}/documents")
def list_documents(assessment_id: str, session: SessionDep, user: ApiUser) -> DocumentsOut:
    """The RAG corpus, in upload order."""
    assessment = _owned(session, assessment_id, user)
    left = service.documents_left(session, assessment=assessment, settings=get_settings())
    docs = service.documents(session, assessment=assessment)
    return DocumentsOut(documents=[_document(d) for d in docs], documents_left=left)


@router.delete("/assessments/{assessment_id}/documents", status_code=204)
def delete_documents(assessment_id: str, session: SessionDep, user: ApiUser) -> Response:
    """Remove the whole corpus (the files go once this commits)."""
    assessment = _owned(session, assessment_id, user)
    service.remove_documents(session, assessment=assessment, settings=get_settings())
    return Response(status_code=204)
