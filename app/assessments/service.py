"""Assessments: drafts, wizard answers, uploads and scoring. Services flush; callers commit."""

from __future__ import annotations

import hashlib
import logging
import uuid
from pathlib import Path
from typing import IO, Any, Final, Protocol

from pydantic import ValidationError
from sqlalchemy import Select, delete, event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from app.accounts.models import User
from app.assessments.models import Assessment, DataSample, PathScore
from app.assessments.wizard import STEP_NAMES, Step, validate_step
from app.domain.intake import Intake
from app.domain.samples.decoding import describe_size
from app.domain.samples.documents import DocumentError, check_document_count, parse_documents
from app.domain.samples.formats import SampleError, SampleLimits, parse_sample
from app.domain.samples.schemas import PilotTask, SampleFormat, SampleSummary
from app.domain.samples.summary import summarise
from app.domain.scoring.engine import score
from app.domain.scoring.schemas import ScoreResult
from app.errors import DomainError
from app.settings import Settings

log = logging.getLogger(__name__)

# Files to remove once the session commits (replaced uploads), and files written in the open
# transaction (removed if it rolls back): a file goes only when the row naming it is gone.
_DELETE_AFTER_COMMIT: Final = "pathpilot_uploads_to_delete"
_WRITTEN_UNCOMMITTED: Final = "pathpilot_uploads_written"


class StorageQuotaExceeded(DomainError):
    """The upload would take the owner's stored files over USER_STORAGE_QUOTA_BYTES."""

    status_code = 413


class UploadRejected(Exception):
    """An upload refused by `upload_sample` or `upload_documents`: every problem as (form
    field, message), each message as the user sees it, and the HTTP status that fits."""

    def __init__(self, problems: list[tuple[str, str]], status_code: int = 422) -> None:
        super().__init__("\n".join(message for _, message in problems))
        self.problems = problems
        self.status_code = status_code


class Upload(Protocol):
    """An uploaded file as the web layer holds it (Starlette's UploadFile fits)."""

    @property
    def filename(self) -> str | None: ...

    @property
    def size(self) -> int | None: ...

    @property
    def file(self) -> IO[bytes]: ...


class IntakeIncomplete(Exception):
    """The draft misses or has invalid answers; `errors` maps field → message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def create_draft(session: Session, *, owner: User) -> Assessment:
    """A new empty draft owned by `owner`."""
    assessment = Assessment(owner_id=owner.id, answers={}, step=STEP_NAMES[0])
    session.add(assessment)
    session.flush()
    return assessment


def list_owned(session: Session, *, owner: User) -> list[Assessment]:
    """The owner's assessments, newest first."""
    stmt = (
        select(Assessment)
        .where(Assessment.owner_id == owner.id)
        .order_by(Assessment.updated_at.desc())
    )
    return list(session.scalars(stmt))


def owned_query(owner: User) -> Select[Assessment]:
    """The owner's assessments, unordered (for `app.pagination`)."""
    return select(Assessment).where(Assessment.owner_id == owner.id)


def get_owned(session: Session, *, assessment_id: str, owner: User) -> Assessment | None:
    """The assessment when `owner` owns it; None otherwise, so callers answer 404 either way."""
    assessment = session.get(Assessment, assessment_id)
    if assessment is None or assessment.owner_id != owner.id:
        return None
    return assessment


def save_step(
    session: Session, *, assessment: Assessment, step: Step, raw: dict[str, Any]
) -> dict[str, str]:
    """Validate and store one step's answers; returns errors by field (empty when saved).

    Valid fields of a step with errors are kept too, so nothing typed is lost.
    """
    values, errors = validate_step(step, raw)
    answers = dict(assessment.answers or {})
    answers.update(values)
    assessment.answers = answers
    if "title" in values:
        assessment.title = values["title"]
    if not errors:
        assessment.step = step.name
    session.flush()
    return errors


def validate_intake(answers: dict[str, Any]) -> Intake:
    """The complete intake, or IntakeIncomplete naming every missing or invalid answer."""
    try:
        return Intake.model_validate(answers)
    except ValidationError as exc:
        from app.validation import friendly_message

        errors: dict[str, str] = {}
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "__all__"
            errors.setdefault(field, friendly_message(dict(err)))
        raise IntakeIncomplete(errors) from exc


def current_sample(session: Session, *, assessment: Assessment) -> DataSample | None:
    stmt = select(DataSample).where(
        DataSample.assessment_id == assessment.id, DataSample.kind == "sample"
    )
    return session.scalar(stmt)


def documents(session: Session, *, assessment: Assessment) -> list[DataSample]:
    stmt = (
        select(DataSample)
        .where(DataSample.assessment_id == assessment.id, DataSample.kind == "document")
        .order_by(DataSample.id)
    )
    return list(session.scalars(stmt))


def sample_summary(session: Session, *, assessment: Assessment) -> SampleSummary | None:
    sample = current_sample(session, assessment=assessment)
    if sample is None or sample.summary is None:
        return None
    return SampleSummary.model_validate(sample.summary)


def _write_upload(session: Session, settings: Settings, data: bytes) -> tuple[str, str]:
    """Store bytes under a server-chosen name; returns (stored_name, sha256). The file is
    removed again if the session rolls back (no row will name it)."""
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    stored_name = uuid.uuid4().hex
    path = settings.uploads_dir / stored_name
    path.write_bytes(data)
    session.info.setdefault(_WRITTEN_UNCOMMITTED, []).append(path)
    return stored_name, hashlib.sha256(data).hexdigest()


def _delete_after_commit(session: Session, settings: Settings, rows: list[DataSample]) -> None:
    """Remove these rows' files once their deletion is committed, never before: a rollback
    keeps the rows, and then their files too."""
    paths = [settings.uploads_dir / row.stored_name for row in rows]
    session.info.setdefault(_DELETE_AFTER_COMMIT, []).extend(paths)


@event.listens_for(Session, "after_commit")
def _remove_replaced_files(session: Session) -> None:
    session.info.pop(_WRITTEN_UNCOMMITTED, None)
    for path in session.info.pop(_DELETE_AFTER_COMMIT, []):
        _unlink(path)


@event.listens_for(Session, "after_soft_rollback")
def _remove_unstored_files(session: Session, previous_transaction: SessionTransaction) -> None:
    # Nothing replaced is deleted after a rollback. A savepoint's rollback leaves the outer
    # transaction going: its new files may still be committed, so only the outermost
    # rollback removes them.
    session.info.pop(_DELETE_AFTER_COMMIT, None)
    if previous_transaction.nested:
        return
    for path in session.info.pop(_WRITTEN_UNCOMMITTED, []):
        _unlink(path)


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as error:  # the commit stands; a leftover file only costs disk space
        log.warning("could not remove upload %s: %s", path.name, error)


def storage_used(session: Session, *, owner_id: int) -> int:
    """Bytes of uploaded files the owner keeps, over all their assessments."""
    stmt = (
        select(func.coalesce(func.sum(DataSample.size_bytes), 0))
        .join(Assessment, Assessment.id == DataSample.assessment_id)
        .where(Assessment.owner_id == owner_id)
    )
    return int(session.scalar(stmt) or 0)


def check_quota(
    session: Session, *, assessment: Assessment, adding: int, freeing: int, settings: Settings
) -> None:
    """StorageQuotaExceeded, naming the quota and the usage, when storing `adding` bytes (and
    dropping `freeing`, a file being replaced) takes the owner over their quota."""
    used = storage_used(session, owner_id=assessment.owner_id)
    quota = settings.user_storage_quota_bytes
    if used - freeing + adding <= quota:
        return
    raise StorageQuotaExceeded(
        f"This upload ({describe_size(adding)}) does not fit in your storage quota of "
        f"{describe_size(quota)}: your uploaded files use {describe_size(used)} already. "
        "Replace the sample with a smaller one, or ask the operator to raise "
        "USER_STORAGE_QUOTA_BYTES."
    )


def _display_name(filename: str | None) -> str:
    # Only for display: strip any path a client sent and cap the length.
    name = (filename or "upload").replace("\\", "/").rsplit("/", 1)[-1].strip() or "upload"
    return name[:255]


def sample_limits(settings: Settings) -> SampleLimits:
    return SampleLimits(
        max_bytes=settings.max_upload_bytes,
        max_rows=settings.max_rows,
        max_line_chars=settings.max_line_chars,
    )


def store_sample(
    session: Session,
    *,
    assessment: Assessment,
    data: bytes,
    filename: str | None,
    settings: Settings,
    fmt: SampleFormat | None = None,
    task: PilotTask | None = None,
) -> DataSample:
    """Parse, summarise and store a sample, replacing the previous one only once it is valid.

    Raises SampleError (with per-line errors) or StorageQuotaExceeded and leaves the stored
    sample untouched. The replaced sample's file is removed once the replacement commits.
    """
    previous = current_sample(session, assessment=assessment)
    check_quota(
        session,
        assessment=assessment,
        adding=len(data),
        freeing=previous.size_bytes if previous is not None else 0,
        settings=settings,
    )
    parsed = parse_sample(data, filename, sample_limits(settings), fmt=fmt, task=task)
    summary = summarise(parsed)
    stored_name, digest = _write_upload(session, settings, data)
    if previous is not None:
        _delete_after_commit(session, settings, [previous])
        session.delete(previous)
        session.flush()
    sample = DataSample(
        assessment_id=assessment.id,
        kind="sample",
        original_name=_display_name(filename),
        stored_name=stored_name,
        sha256=digest,
        size_bytes=len(data),
        format=parsed.format.value,
        task=parsed.task.value,
        summary=summary.model_dump(mode="json"),
    )
    session.add(sample)
    session.flush()
    return sample


def store_documents(
    session: Session,
    *,
    assessment: Assessment,
    files: list[tuple[str, bytes]],
    settings: Settings,
) -> list[DataSample]:
    """Validate every document first, then store them all; one bad file stores none.
    Raises DocumentError or StorageQuotaExceeded."""
    check_document_room(session, assessment=assessment, count=len(files), settings=settings)
    check_quota(
        session,
        assessment=assessment,
        adding=sum(len(data) for _, data in files),
        freeing=0,
        settings=settings,
    )
    parsed = parse_documents(
        files,
        max_documents=documents_left(session, assessment=assessment, settings=settings),
        max_bytes=settings.max_upload_bytes,
    )
    stored: list[DataSample] = []
    for (filename, data), doc in zip(files, parsed, strict=True):
        stored_name, digest = _write_upload(session, settings, data)
        row = DataSample(
            assessment_id=assessment.id,
            kind="document",
            original_name=_display_name(filename),
            stored_name=stored_name,
            sha256=digest,
            size_bytes=len(data),
            format=_display_name(filename).rsplit(".", 1)[-1].lower(),
            summary={"title": doc.title, "characters": len(doc.text)},
        )
        session.add(row)
        stored.append(row)
    session.flush()
    return stored


def documents_left(session: Session, *, assessment: Assessment, settings: Settings) -> int:
    """How many more documents the assessment's corpus takes (MAX_DOCUMENTS in all)."""
    return max(settings.max_documents - len(documents(session, assessment=assessment)), 0)


def check_document_room(
    session: Session, *, assessment: Assessment, count: int, settings: Settings
) -> None:
    """DocumentError when `count` more documents do not fit; callers check before reading."""
    check_document_count(count, documents_left(session, assessment=assessment, settings=settings))


def upload_sample(
    session: Session,
    *,
    assessment: Assessment,
    upload: Upload,
    format: str,
    task: str,
    settings: Settings,
) -> DataSample:
    """The wizard's and the API's sample upload: the format and task choices ("auto" or a
    value), the file read up to one byte over MAX_UPLOAD_BYTES (enough to report it), then
    `store_sample`. Raises UploadRejected: 413 for a file over the cap or the quota."""
    problems: list[tuple[str, str]] = []
    fmt = _parse_choice(SampleFormat, format, "format", problems)
    task_choice = _parse_choice(PilotTask, task, "task", problems)
    if problems:
        raise UploadRejected(problems)
    # The spooled file, read in the caller's worker thread, never on the event loop.
    data = upload.file.read(settings.max_upload_bytes + 1)
    try:
        return store_sample(
            session,
            assessment=assessment,
            data=data,
            filename=upload.filename,
            settings=settings,
            fmt=fmt,
            task=task_choice,
        )
    except StorageQuotaExceeded as exc:
        raise UploadRejected([("file", str(exc))], exc.status_code) from exc
    except SampleError as exc:
        status = 413 if len(data) > settings.max_upload_bytes else 422
        raise UploadRejected([("file", str(e)) for e in exc.errors], status) from exc


def _parse_choice(enum: Any, value: str, field: str, problems: list[tuple[str, str]]) -> Any:
    if value in ("", "auto"):
        return None
    try:
        return enum(value)
    except ValueError:
        problems.append(
            (field, f"Unknown {field} '{value[:40]}'; choose one of the listed options.")
        )
        return None


def upload_documents(
    session: Session, *, assessment: Assessment, uploads: list[Upload], settings: Settings
) -> list[DataSample]:
    """The wizard's and the API's document upload: counted, and their spooled sizes held
    against the quota, before any is read; then `store_documents`. Raises UploadRejected."""
    try:
        check_document_room(session, assessment=assessment, count=len(uploads), settings=settings)
        check_quota(
            session,
            assessment=assessment,
            adding=sum(u.size or 0 for u in uploads),
            freeing=0,
            settings=settings,
        )
        payload = [
            (u.filename or "document", u.file.read(settings.max_upload_bytes + 1)) for u in uploads
        ]
        return store_documents(session, assessment=assessment, files=payload, settings=settings)
    except DocumentError as exc:
        raise UploadRejected([("files", str(e)) for e in exc.errors]) from exc
    except StorageQuotaExceeded as exc:
        raise UploadRejected([("files", str(exc))], exc.status_code) from exc


def remove_documents(session: Session, *, assessment: Assessment, settings: Settings) -> None:
    """Drop the corpus; its files go once the caller commits."""
    docs = documents(session, assessment=assessment)
    _delete_after_commit(session, settings, docs)
    session.execute(delete(DataSample).where(DataSample.id.in_([d.id for d in docs])))
    session.flush()


def apply_score(
    session: Session,
    *,
    assessment: Assessment,
    intake: Intake,
    summary: SampleSummary | None,
    settings: Settings,
) -> ScoreResult:
    """Score the intake and store the result on the assessment and as per-path rows."""
    result = score(intake, summary, price_table=settings.price_table)
    _store_result(session, assessment=assessment, result=result)
    assessment.intake = intake.model_dump(mode="json")
    assessment.answers = intake.model_dump(mode="json")
    assessment.title = intake.title
    assessment.status = "scored"
    assessment.step = "review"
    session.flush()
    return result


def rescore(session: Session, *, assessment: Assessment, settings: Settings) -> ScoreResult | None:
    """Score a scored assessment's intake again with its current sample, as `submit` would
    (the API has no submit: a sample sent there counts at once). Answers being edited in the
    wizard stay as they are. None for a draft: its submit will read the sample."""
    if assessment.intake is None:
        return None
    intake = Intake.model_validate(assessment.intake)
    summary = sample_summary(session, assessment=assessment)
    result = score(intake, summary, price_table=settings.price_table)
    _store_result(session, assessment=assessment, result=result)
    session.flush()
    return result


def _store_result(session: Session, *, assessment: Assessment, result: ScoreResult) -> None:
    session.execute(delete(PathScore).where(PathScore.assessment_id == assessment.id))
    for rank, path in enumerate(result.ranking, start=1):
        session.add(
            PathScore(
                assessment_id=assessment.id,
                path=path,
                score=result.scores[path],
                rank=rank,
                factors=[f.model_dump(mode="json") for f in result.factors],
                rationale=result.headline,
            )
        )
    assessment.score_result = result.model_dump(mode="json")


def submit(session: Session, *, assessment: Assessment, settings: Settings) -> ScoreResult:
    """Validate the whole draft and score it; raises IntakeIncomplete naming what is missing."""
    intake = validate_intake(assessment.answers or {})
    summary = sample_summary(session, assessment=assessment)
    return apply_score(
        session, assessment=assessment, intake=intake, summary=summary, settings=settings
    )


def create_scored(
    session: Session, *, owner: User, intake: Intake, settings: Settings
) -> tuple[Assessment, ScoreResult]:
    """API path: a complete intake in one request, scored at once."""
    assessment = create_draft(session, owner=owner)
    result = apply_score(
        session, assessment=assessment, intake=intake, summary=None, settings=settings
    )
    return assessment, result
