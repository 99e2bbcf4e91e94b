"""A pilot job: read the pilot from SQL, run it, write progress and results back.

Each write is its own short transaction so the web page sees progress live and one arm's
result is safe in SQL before the next arm starts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from app.assessments import service as assessments
from app.assessments.models import Assessment, DataSample
from app.db import session_scope
from app.domain.preparation import prepare_pilot_data
from app.domain.records import (
    ArmModel,
    ArmOutcome,
    PilotData,
    Progress,
)
from app.domain.samples.documents import parse_documents
from app.domain.samples.formats import parse_sample
from app.domain.samples.schemas import PilotTask, SampleFormat
from app.endpoints import service as endpoints
from app.endpoints.client import EndpointSpec
from app.endpoints.models import LlmModel, ModelKind
from app.pilots import service as pilots
from app.pilots.models import Pilot
from app.settings import Settings, get_settings
from worker.pilots.endpoint_answers import CachedAnswer, EndpointRuntime
from worker.pilots.runner import PilotStopped, config_from_settings, run_pilot
from worker.pilots.served_adapters import ServingRuntime

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


class SqlAnswerCache:
    """Endpoint answers kept in SQL per pilot: a re-queued pilot asks only what is missing."""

    def __init__(self, pilot_id: str) -> None:
        self.pilot_id = pilot_id

    def get(self, key: str) -> CachedAnswer | None:
        with session_scope() as session:
            row = pilots.kept_answer(session, pilot_id=self.pilot_id, request_key=key)
            if row is None:
                return None
            return CachedAnswer(row.text, row.prompt_tokens, row.completion_tokens, row.latency_ms)

    def put(self, key: str, answer: CachedAnswer) -> None:
        with session_scope() as session:
            pilots.keep_answer(
                session,
                pilot_id=self.pilot_id,
                request_key=key,
                text=answer.text,
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                latency_ms=answer.latency_ms,
            )


@dataclasses.dataclass(frozen=True)
class _Chosen:
    """What the worker needs of a registered model the pilot chose, read inside one session
    (the SQL row is gone once it closes)."""

    name: str  # the model's served name, or its directory for a local model
    facts: ArmModel
    spec: EndpointSpec | None  # with the key decrypted; None for a local model


def _chosen_model(settings: Settings, pilot_id: str, column: str, role: str) -> _Chosen | None:
    """The registered model in the pilot's `column` (e.g. `judge_model_id`), or None when the
    pilot chose none; a model deleted before the pilot ran is an error that names its role."""
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        model_id = getattr(pilot, column) if pilot is not None else None
        if model_id is None:
            return None
        model = session.get(LlmModel, model_id)
        if model is None:
            raise LookupError(f"the pilot's {role} was deleted before it ran")
        endpoint = model.kind == ModelKind.openai_compatible
        return _Chosen(
            name=model.model,
            facts=endpoints.arm_model(model),
            spec=endpoints.endpoint_spec(model, settings) if endpoint else None,
        )


def _endpoint(chosen: _Chosen | None) -> tuple[EndpointSpec, ArmModel] | None:
    if chosen is None:
        return None
    assert chosen.spec is not None, "the pilot service accepts only endpoints here"
    return chosen.spec, chosen.facts


def _prompt_endpoint(settings: Settings, pilot_id: str) -> EndpointRuntime | None:
    """The endpoint the pilot's prompting arms ask: the user's choice, else the deployment's
    shared endpoint (DEFAULT_ENDPOINT_URL) when one is configured, else None (in-process)."""
    chosen = _endpoint(_chosen_model(settings, pilot_id, "prompt_model_id", "prompting model"))
    if chosen is None:
        return _default_endpoint(settings, pilot_id)
    spec, facts = chosen
    return EndpointRuntime(spec=spec, model=facts, cache=SqlAnswerCache(pilot_id))


def _default_endpoint(settings: Settings, pilot_id: str) -> EndpointRuntime | None:
    """The deployment's shared endpoint (DEFAULT_ENDPOINT_URL), when one is configured."""
    if not settings.default_endpoint_url:
        return None
    size = settings.default_endpoint_size_b
    return EndpointRuntime(
        spec=EndpointSpec(
            base_url=settings.default_endpoint_url,
            model=settings.default_endpoint_model,
            api_key=settings.default_endpoint_api_key or None,
        ),
        model=ArmModel(
            model_id=settings.default_endpoint_model,
            parameters=round(size * 1e9) if size else None,
            via="endpoint",
            deployment=settings.default_endpoint_is_deployment,
        ),
        cache=SqlAnswerCache(pilot_id),
    )


def _judge_endpoint(settings: Settings, pilot_id: str) -> EndpointRuntime | None:
    """The endpoint that grades the pilot's open-ended answers, when the user chose one. Its
    answers are kept like the arms' own, so a re-queued pilot does not pay for them again."""
    chosen = _endpoint(_chosen_model(settings, pilot_id, "judge_model_id", "judge model"))
    if chosen is None:
        return None
    spec, facts = chosen
    return EndpointRuntime(spec=spec, model=facts, cache=SqlAnswerCache(pilot_id))


def _serving_endpoint(settings: Settings, pilot_id: str) -> ServingRuntime | None:
    """The endpoint serving the pilot's fine-tuning base with LoRA, when the user chose one."""
    chosen = _endpoint(_chosen_model(settings, pilot_id, "serving_model_id", "serving endpoint"))
    if chosen is None:
        return None
    spec, facts = chosen
    return ServingRuntime(spec=spec, model=facts, cache=SqlAnswerCache(pilot_id), scope=pilot_id)


def _base_model(settings: Settings, pilot_id: str) -> tuple[Settings, bool]:
    """Settings whose LLM_MODEL is the pilot's registered local base model (if it chose one),
    and whether the user declared that model the one they will deploy."""
    chosen = _chosen_model(settings, pilot_id, "base_model_id", "base model")
    if chosen is None:
        return settings, False
    return settings.model_copy(update={"llm_model": chosen.name}), chosen.facts.deployment


def worker_name() -> str:
    """Which worker process holds a claim: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim(pilot_id: str, settings: Settings) -> pilots.Claim | None:
    """This delivery's claim on the pilot, or None (finished, cancelled, live on another
    worker, or out of attempts, which fails it with the reason)."""
    stalled_after = timedelta(seconds=settings.pilot_stalled_after_s)
    with session_scope() as session:
        held = pilots.claim(
            session,
            pilot_id=pilot_id,
            worker=worker_name(),
            max_attempts=settings.pilot_max_attempts,
            stalled_after=stalled_after,
        )
        if held is not None:
            return held
        if pilots.give_up_if_exhausted(
            session,
            pilot_id=pilot_id,
            max_attempts=settings.pilot_max_attempts,
            stalled_after=stalled_after,
        ):
            log.warning("pilot %s used every attempt; failed", pilot_id)
        else:
            log.info(
                "pilot %s is finished, cancelled or live elsewhere; delivery dropped", pilot_id
            )
        return None


class Heartbeat:
    """Beats the pilot's heartbeat under its lease from a background thread, so a long step
    with no progress (loading a model) never looks stalled, and notices within one beat when
    the lease is gone (cancelled, or superseded): the attempt then stops at its next progress
    point."""

    def __init__(self, pilot_id: str, lease: str, interval_s: float) -> None:
        self.pilot_id, self.lease, self.interval_s = pilot_id, lease, interval_s
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{pilot_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=self.interval_s + 5)

    def _run(self) -> None:
        while not self._done.wait(self.interval_s):
            try:
                with session_scope() as session:
                    pilots.hold(session, pilot_id=self.pilot_id, lease=self.lease)
            except pilots.LeaseLost:
                log.warning("pilot %s: lease lost (cancelled or superseded)", self.pilot_id)
                self.lost.set()
                return
            except Exception:  # a database blip: the next beat tries again
                log.exception("pilot %s: heartbeat failed", self.pilot_id)

    def check(self) -> None:
        if self.lost.is_set():
            raise PilotStopped(f"pilot {self.pilot_id}: cancelled or superseded")


def heartbeat_interval(settings: Settings) -> float:
    """Several beats within the stall threshold, and never more than a few seconds apart, so
    a cancel is noticed quickly."""
    return max(0.2, min(3.0, settings.pilot_stalled_after_s / 4))


def execute_pilot(pilot_id: str) -> None:
    """Run one pilot end to end under one claim; never leaves it 'running' on an error it can
    catch, and stops without writing once its lease is gone."""
    settings = get_settings()
    held = _claim(pilot_id, settings)
    if held is None:
        return
    with Heartbeat(pilot_id, held.lease, heartbeat_interval(settings)) as heartbeat:
        try:
            _execute(settings, pilot_id, held.lease, heartbeat)
        except (PilotStopped, pilots.LeaseLost):
            log.warning("pilot %s: attempt %d stopped (lease lost)", pilot_id, held.attempt)
        except Exception as exc:
            log.exception("pilot %s failed", pilot_id)
            try:
                with session_scope() as session:
                    pilots.fail_pilot(
                        session,
                        pilot_id=pilot_id,
                        lease=held.lease,
                        message=f"{type(exc).__name__}: {exc}",
                    )
            except pilots.LeaseLost:
                log.warning("pilot %s: failed after its lease was lost; not recorded", pilot_id)


def _execute(settings: Settings, pilot_id: str, lease: str, heartbeat: Heartbeat) -> None:
    from worker.pilots.resources import load_resources

    data, warnings, params = _load_inputs(settings, pilot_id)
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        arms = list(pilot.arms)
        learning_curve = pilot.learning_curve
    base_settings, declared = _base_model(settings, pilot_id)
    resources = dataclasses.replace(
        load_resources(base_settings),
        prompt_endpoint=_prompt_endpoint(settings, pilot_id),
        serving_endpoint=_serving_endpoint(settings, pilot_id),
        declared_deployment=declared,
    )
    config = config_from_settings(
        settings,
        arms=arms,
        seed=params["seed"],
        max_train=params["max_train"],
        adapter_dir=settings.adapters_dir / pilot_id,
    )
    config.judge = _judge_endpoint(settings, pilot_id)
    config.learning_curve = learning_curve
    last_write: dict[str, float] = {}
    executions: dict[str, int] = {}
    worker = worker_name()

    def stopped() -> None:
        """Close the open execution records of a stopped attempt (best effort)."""
        for execution_id in executions.values():
            with session_scope() as session:
                pilots.finish_execution(session, execution_id=execution_id, outcome="stopped")
        executions.clear()

    def guarded(write: Callable[[Session], None]) -> None:
        try:
            with session_scope() as session:
                write(session)
        except pilots.LeaseLost as lost:
            stopped()
            raise PilotStopped(str(lost)) from lost

    def on_arm_start(arm: str) -> None:
        heartbeat.check()

        def start(session: Session) -> None:
            execution = pilots.start_execution(
                session, pilot_id=pilot_id, lease=lease, arm=arm, worker=worker
            )
            executions[arm] = execution.id

        guarded(start)

    def on_progress(arm: str, progress: Progress) -> None:
        if heartbeat.lost.is_set():
            stopped()
            heartbeat.check()
        now = time.monotonic()
        final = progress.total and progress.step >= progress.total
        if not final and now - last_write.get(arm, 0.0) < PROGRESS_INTERVAL_S:
            return
        last_write[arm] = now
        guarded(
            lambda session: pilots.record_progress(
                session, pilot_id=pilot_id, lease=lease, arm=arm, progress=progress
            )
        )

    def on_arm_done(outcome: ArmOutcome) -> None:
        def done(session: Session) -> None:
            pilots.record_arm(session, pilot_id=pilot_id, lease=lease, outcome=outcome, data=data)
            execution_id = executions.pop(outcome.arm, None)
            if execution_id is not None:
                pilots.finish_execution(
                    session, execution_id=execution_id, outcome=str(outcome.status)
                )

        guarded(done)

    outcome = run_pilot(
        config,
        data,
        resources,
        on_progress=on_progress,
        on_arm_done=on_arm_done,
        on_arm_start=on_arm_start,
    )
    outcome.warnings = [*warnings, *outcome.warnings]
    guarded(
        lambda session: pilots.finish_pilot(
            session, pilot_id=pilot_id, lease=lease, outcome=outcome
        )
    )
