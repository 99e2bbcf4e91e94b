"""The read side of a pilot's worker steps (`worker.jobs`): the sample a preparation parses,
the one-transaction record of the pilot every step runs from (`app.pilots.step_inputs`), and
the endpoint answers kept in SQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.orm import Session

from app.assessments import service as assessments
from app.assessments.models import Assessment, DataSample
from app.db import write_retrying
from app.domain.preparation import prepare_pilot_data
from app.domain.records import PilotData
from app.domain.samples.documents import parse_documents
from app.domain.samples.formats import parse_sample
from app.domain.samples.schemas import PilotTask, SampleFormat
from app.pilots import service as pilots
from app.pilots.models import Pilot
from app.pilots.step_inputs import ALL_ROLES, Role, StepInputs, read_step_inputs
from app.settings import Settings
from worker import runtime
from worker.pilots.endpoint_answers import CachedAnswer
from worker.runtime import RuntimeInputs

T = TypeVar("T")

# A unit of work whose database connection drops is run again from the start, for about 25 s
# in all: long enough for PostgreSQL to restart or fail over. Every write here is safe to run
# twice (a conditional UPDATE under a lease, or delete-then-insert); reads go the same way, so
# a dropped connection never fails an arm.
DB_ATTEMPTS = 8


def retrying(work: Callable[[Session], T]) -> T:
    return write_retrying(work, attempts=DB_ATTEMPTS)


def load_inputs(settings: Settings, pilot_id: str) -> tuple[PilotData, list[str], dict[str, int]]:
    def read(
        session: Session,
    ) -> tuple[Path, str | None, str | None, list[tuple[str, Path]], int, int]:
        pilot = session.get(Pilot, pilot_id)
        if pilot is None:
            raise LookupError(f"pilot {pilot_id} does not exist")
        assessment = session.get(Assessment, pilot.assessment_id)
        assert assessment is not None
        sample = assessments.current_sample(session, assessment=assessment)
        if sample is None:
            raise ValueError("the assessment has no data sample")
        docs: list[DataSample] = assessments.documents(session, assessment=assessment)
        return (
            settings.uploads_dir / sample.stored_name,
            sample.format,
            sample.task,
            [(d.original_name, settings.uploads_dir / d.stored_name) for d in docs],
            pilot.max_train,
            pilot.seed,
        )

    sample_path, fmt, task, doc_files, max_train, seed = retrying(read)
    parsed = parse_sample(
        sample_path.read_bytes(),
        None,
        assessments.sample_limits(settings),
        fmt=SampleFormat(fmt) if fmt else None,
        task=PilotTask(task) if task else None,
    )
    documents = parse_documents(
        [(name, Path(path).read_bytes()) for name, path in doc_files],
        max_documents=settings.max_documents,
        max_bytes=settings.max_upload_bytes,
    )
    data, warnings = prepare_pilot_data(
        parsed, documents, seed=seed, max_train=max_train, max_test=settings.pilot_max_test
    )
    return data, warnings, {"seed": seed, "max_train": max_train}


class SqlAnswerCache:
    """Endpoint answers kept in SQL per pilot: a re-queued pilot asks only what is missing."""

    def __init__(self, pilot_id: str) -> None:
        self.pilot_id = pilot_id

    def get(self, key: str) -> CachedAnswer | None:
        def read(session: Session) -> CachedAnswer | None:
            row = pilots.kept_answer(session, pilot_id=self.pilot_id, request_key=key)
            if row is None:
                return None
            return CachedAnswer(row.text, row.prompt_tokens, row.completion_tokens, row.latency_ms)

        return retrying(read)

    def put(self, key: str, answer: CachedAnswer) -> None:
        retrying(  # once per key: a run again after a lost acknowledgement adds nothing
            lambda session: pilots.keep_answer(
                session,
                pilot_id=self.pilot_id,
                request_key=key,
                text=answer.text,
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                latency_ms=answer.latency_ms,
            )
        )


def read_step(
    settings: Settings,
    pilot_id: str,
    *,
    roles: tuple[Role, ...] = ALL_ROLES,
    split: bool = True,
    finished: bool = False,
) -> tuple[StepInputs, RuntimeInputs]:
    """What the step reads of the pilot, in one transaction, and the runtime inputs made of it
    (`worker.runtime` builds the config, endpoints and resources from those)."""
    inputs = retrying(
        lambda session: read_step_inputs(
            session,
            pilot_id=pilot_id,
            settings=settings,
            roles=roles,
            split=split,
            finished=finished,
        )
    )
    return inputs, runtime.from_step(settings, inputs)


def answers(pilot_id: str) -> runtime.CacheFactory:
    return lambda: SqlAnswerCache(pilot_id)
