"""A pilot job: read the pilot from SQL, run it, write progress and results back.

Each write is its own short transaction so the web page sees progress live and one arm's
result is safe in SQL before the next arm starts.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

from app.assessments import service as assessments
from app.assessments.models import Assessment, DataSample
from app.db import session_scope
from app.domain.preparation import prepare_pilot_data
from app.domain.records import FINISHED_PILOT, ArmOutcome, PilotData, PilotStatus, Progress
from app.domain.samples.documents import parse_documents
from app.domain.samples.formats import parse_sample
from app.domain.samples.schemas import PilotTask, SampleFormat
from app.pilots import service as pilots
from app.pilots.models import Pilot
from app.settings import Settings, get_settings
from worker.pilots.runner import config_from_settings, run_pilot

log = logging.getLogger(__name__)

# Progress is written at most this often per arm, so a fast loop does not hammer SQLite.
PROGRESS_INTERVAL_S = 1.0


def _load_inputs(settings: Settings, pilot_id: str) -> tuple[PilotData, list[str], dict[str, int]]:
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        if pilot is None:
            raise LookupError(f"pilot {pilot_id} does not exist")
        assessment = session.get(Assessment, pilot.assessment_id)
        assert assessment is not None
        sample = assessments.current_sample(session, assessment=assessment)
        if sample is None:
            raise ValueError("the assessment has no data sample")
        docs: list[DataSample] = assessments.documents(session, assessment=assessment)
        sample_path = settings.uploads_dir / sample.stored_name
        fmt, task = sample.format, sample.task
        doc_files = [(d.original_name, settings.uploads_dir / d.stored_name) for d in docs]
        pilots.mark_running(session, pilot=pilot)
        max_train, seed = pilot.max_train, pilot.seed

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


def _claim(pilot_id: str, settings: Settings) -> bool:
    """Whether this delivery should run the pilot (not finished, not live elsewhere)."""
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        if pilot is None or pilot.status in FINISHED_PILOT:
            return False
        live = pilot.status == PilotStatus.running and not pilots.is_stalled(
            pilot, older_than=timedelta(seconds=settings.pilot_stalled_after_s)
        )
        if live:
            log.warning("pilot %s is running on another worker; delivery dropped", pilot_id)
            return False
        if pilot.attempts >= settings.pilot_max_attempts:
            pilots.fail_pilot(
                session,
                pilot_id=pilot_id,
                message=f"Gave up after {pilot.attempts} attempts; see the worker log.",
            )
            return False
        return True


def execute_pilot(pilot_id: str) -> None:
    """Run one pilot end to end; never leaves it 'running' on an error it can catch."""
    from worker.resources import load_resources

    settings = get_settings()
    if not _claim(pilot_id, settings):
        return
    try:
        data, warnings, params = _load_inputs(settings, pilot_id)
        with session_scope() as session:
            pilot = session.get(Pilot, pilot_id)
            assert pilot is not None
            arms = list(pilot.arms)
        resources = load_resources(settings)
        config = config_from_settings(
            settings,
            arms=arms,
            seed=params["seed"],
            max_train=params["max_train"],
            adapter_dir=settings.adapters_dir / pilot_id,
        )
        last_write: dict[str, float] = {}

        def on_progress(arm: str, progress: Progress) -> None:
            now = time.monotonic()
            final = progress.total and progress.step >= progress.total
            if not final and now - last_write.get(arm, 0.0) < PROGRESS_INTERVAL_S:
                return
            last_write[arm] = now
            with session_scope() as session:
                pilots.record_progress(session, pilot_id=pilot_id, arm=arm, progress=progress)

        def on_arm_done(outcome: ArmOutcome) -> None:
            with session_scope() as session:
                pilots.record_arm(session, pilot_id=pilot_id, outcome=outcome, data=data)

        outcome = run_pilot(
            config, data, resources, on_progress=on_progress, on_arm_done=on_arm_done
        )
        outcome.warnings = [*warnings, *outcome.warnings]
        with session_scope() as session:
            pilots.finish_pilot(session, pilot_id=pilot_id, outcome=outcome)
    except Exception as exc:
        log.exception("pilot %s failed", pilot_id)
        with session_scope() as session:
            pilots.fail_pilot(session, pilot_id=pilot_id, message=f"{type(exc).__name__}: {exc}")
