"""A pilot's tasks: prepare its split, run one arm, conclude (`app.pilots.execution` holds
the states and leases). Each reads what it needs from SQL and writes progress and results
back, each write its own short transaction under the task's lease, so the web page sees
progress live and a superseded or cancelled attempt writes nothing more.

Arms of one pilot run at the same time on as many workers as take their queues; an arm
that adopts another's adapter is sent when that arm has finished, and the last arm to
finish sends the conclusion.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.assessments import service as assessments
from app.assessments.models import Assessment, DataSample
from app.db import session_scope, write_retrying
from app.domain.preparation import prepare_pilot_data
from app.domain.records import (
    ArmHandover,
    ArmModel,
    ArmOutcome,
    ArmStatus,
    MetricValue,
    PilotData,
    PilotOutcome,
    PilotStage,
    Progress,
)
from app.domain.samples.documents import parse_documents
from app.domain.samples.formats import parse_sample
from app.domain.samples.schemas import PilotTask, SampleFormat
from app.endpoints import service as endpoints
from app.endpoints.client import EndpointSpec
from app.endpoints.models import LlmModel, ModelKind
from app.pilots import execution
from app.pilots import service as pilots
from app.pilots.execution import StoredSplit
from app.pilots.models import Pilot, PilotArm
from app.settings import Settings, get_settings
from worker.pilots.conclusion import FinishedArm, conclude
from worker.pilots.endpoint_answers import CachedAnswer, EndpointRuntime
from worker.pilots.resources import Resources
from worker.pilots.runner import (
    PilotConfig,
    PilotPlan,
    PilotStopped,
    config_from_settings,
    plan_pilot,
    run_arm,
    upstream_of,
)
from worker.pilots.served_adapters import ServingRuntime

log = logging.getLogger(__name__)
T = TypeVar("T")

# Progress is written at most this often per arm, so a fast loop does not hammer SQLite.
PROGRESS_INTERVAL_S = 1.0

# A unit of work whose database connection drops is run again from the start, for about 25 s
# in all: long enough for PostgreSQL to restart or fail over. Every write here is safe to run
# twice (a conditional UPDATE under a lease, or delete-then-insert); reads go the same way, so
# a dropped connection never fails an arm.
DB_ATTEMPTS = 8


def _retrying(work: Callable[[Session], T]) -> T:
    return write_retrying(work, attempts=DB_ATTEMPTS)


def _load_inputs(settings: Settings, pilot_id: str) -> tuple[PilotData, list[str], dict[str, int]]:
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

    sample_path, fmt, task, doc_files, max_train, seed = _retrying(read)
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

        return _retrying(read)

    def put(self, key: str, answer: CachedAnswer) -> None:
        _retrying(  # once per key: a run again after a lost acknowledgement adds nothing
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

    def read(session: Session) -> _Chosen | None:
        pilot = session.get(Pilot, pilot_id)
        model_id = getattr(pilot, column) if pilot is not None else None
        if model_id is None:
            return None
        model = session.get(LlmModel, model_id)
        if model is None:
            raise LookupError(f"the pilot's {role} was deleted before it ran")
        endpoint = model.kind == ModelKind.openai_compatible
        return _Chosen(
            # A local directory is checked against LOCAL_MODEL_ROOTS again here, where it loads.
            name=model.model if endpoint else endpoints.local_model_path(model, settings),
            facts=endpoints.arm_model(model),
            spec=endpoints.endpoint_spec(model, settings) if endpoint else None,
        )

    return _retrying(read)


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
    spec = endpoints.default_endpoint_spec(settings)  # under the deployment's egress policy
    if spec is None:
        return None
    size = settings.default_endpoint_size_b
    return EndpointRuntime(
        spec=spec,
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


class Heartbeat:
    """Beats a claimed step's heartbeat under its lease from a background thread, so a long
    step with no progress (loading a model) never looks stalled, and notices within one beat
    when the lease is gone (cancelled, or superseded): the step then stops at its next
    progress point."""

    def __init__(self, what: str, beat: Callable[[Session], None], interval_s: float) -> None:
        self.what, self.beat, self.interval_s = what, beat, interval_s
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{what}", daemon=True)

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
                    self.beat(session)
            except pilots.LeaseLost:
                log.warning("%s: lease lost (cancelled or superseded)", self.what)
                self.lost.set()
                return
            except Exception:  # a database blip: the next beat tries again
                log.exception("%s: heartbeat failed", self.what)

    def check(self) -> None:
        if self.lost.is_set():
            raise PilotStopped(f"{self.what}: cancelled or superseded")


def heartbeat_interval(settings: Settings) -> float:
    """Several beats within the stall threshold, and never more than a few seconds apart, so
    a cancel is noticed quickly."""
    return max(0.2, min(3.0, settings.pilot_stalled_after_s / 4))


def _stalled_after(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.pilot_stalled_after_s)


def _guarded(write: Callable[[Session], T]) -> T:
    """One write under a lease: a lost lease stops the step (PilotStopped), never fails it."""
    try:
        return _retrying(write)
    except pilots.LeaseLost as lost:
        raise PilotStopped(str(lost)) from lost


# --------------------------------------------------------------------------- preparing


def _claim(pilot_id: str, settings: Settings) -> pilots.Claim | None:
    """This delivery's claim on the pilot's preparation, or None (finished, cancelled, live
    on another worker, or out of attempts, which fails it with the reason)."""
    worker = worker_name()
    held = _retrying(
        lambda session: pilots.claim(
            session,
            pilot_id=pilot_id,
            worker=worker,
            max_attempts=settings.pilot_max_attempts,
            stalled_after=_stalled_after(settings),
        )
    )
    if held is not None:
        return held
    with session_scope() as session:
        if pilots.give_up_if_exhausted(
            session,
            pilot_id=pilot_id,
            max_attempts=settings.pilot_max_attempts,
            stalled_after=_stalled_after(settings),
        ):
            log.warning("pilot %s used every attempt; failed", pilot_id)
        else:
            log.info("pilot %s is past preparing, cancelled or live elsewhere; dropped", pilot_id)
        return None


def _pilot_step(
    pilot_id: str, held: pilots.Claim, settings: Settings, step: Callable[[Heartbeat], None]
) -> None:
    """Run a step under the pilot's own lease (preparing, concluding); an error it can catch
    fails the pilot with the reason, a lost lease stops it without a write."""
    beat = Heartbeat(
        f"pilot {pilot_id}",
        lambda session: pilots.hold(session, pilot_id=pilot_id, lease=held.lease),
        heartbeat_interval(settings),
    )
    with beat:
        try:
            step(beat)
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


def prepare_pilot(pilot_id: str) -> None:
    """The pilot's first task: parse, split and cap once, store the split, send the arms."""
    settings = get_settings()
    held = _claim(pilot_id, settings)
    if held is None:
        return

    def step(beat: Heartbeat) -> None:
        data, warnings, params = _load_inputs(settings, pilot_id)
        plan = plan_pilot(_config(settings, pilot_id, params), data)
        beat.check()
        lease = held.lease
        _guarded(
            lambda session: execution.store_split(
                session,
                pilot_id=pilot_id,
                lease=lease,
                data=plan.data,
                caps=plan.caps,
                warnings=warnings,
            )
        )
        sent = _guarded(
            lambda session: execution.start_arms(session, pilot_id=pilot_id, lease=lease)
        )
        log.info("pilot %s prepared; arms sent: %s", pilot_id, ", ".join(sent))

    _pilot_step(pilot_id, held, settings, step)


def _config(settings: Settings, pilot_id: str, params: dict[str, int]) -> PilotConfig:
    def read(session: Session) -> tuple[list[str], bool]:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        return list(pilot.arms), pilot.learning_curve

    arms, learning_curve = _retrying(read)
    config = config_from_settings(
        settings,
        arms=arms,
        seed=params["seed"],
        max_train=params["max_train"],
        adapter_dir=settings.adapters_dir / pilot_id,
    )
    config.judge = _judge_endpoint(settings, pilot_id)
    config.learning_curve = learning_curve
    return config


def _stored_plan(settings: Settings, pilot_id: str) -> tuple[PilotPlan, StoredSplit]:
    """The plan every task of the pilot shares, from the split its preparation stored."""

    def read(session: Session) -> tuple[dict[str, int], StoredSplit]:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        params = {"seed": pilot.seed, "max_train": pilot.max_train}
        return params, execution.read_split(session, pilot_id=pilot_id)

    params, split = _retrying(read)
    plan = plan_pilot(_config(settings, pilot_id, params), split.data)
    return dataclasses.replace(plan, caps=split.caps), split


def _resources(settings: Settings, pilot_id: str) -> Resources:
    from worker.pilots.resources import load_resources

    base_settings, declared = _base_model(settings, pilot_id)
    return dataclasses.replace(
        load_resources(base_settings),
        prompt_endpoint=_prompt_endpoint(settings, pilot_id),
        serving_endpoint=_serving_endpoint(settings, pilot_id),
        declared_deployment=declared,
    )


# --------------------------------------------------------------------------- one arm


def execute_arm(pilot_id: str, arm: str) -> None:
    """Run one arm of a prepared pilot under the arm's own claim, then send what waited for
    it: an arm adopting its adapter, or the pilot's conclusion once no arm is open."""
    settings = get_settings()
    worker = worker_name()
    held = _retrying(
        lambda session: execution.claim_arm(
            session,
            pilot_id=pilot_id,
            arm=arm,
            worker=worker,
            max_attempts=settings.pilot_max_attempts,
            stalled_after=_stalled_after(settings),
        )
    )
    if held is None:
        log.info("pilot %s arm %s: finished, cancelled or live elsewhere; dropped", pilot_id, arm)
        return
    lease = held.lease
    beat = Heartbeat(
        f"pilot {pilot_id} arm {arm}",
        lambda session: execution.hold_arm(session, pilot_id=pilot_id, arm=arm, lease=lease),
        heartbeat_interval(settings),
    )
    execution_id: int | None = None
    with beat:
        try:
            execution_id = _guarded(
                lambda session: (
                    execution.start_execution(
                        session, pilot_id=pilot_id, arm=arm, lease=lease, worker=worker
                    ).id
                )
            )
            _run_one_arm(settings, pilot_id, arm, lease, beat)
            _close_execution(execution_id, "done")
        except (PilotStopped, pilots.LeaseLost):
            log.warning("pilot %s arm %s: attempt %d stopped", pilot_id, arm, held.attempt)
            _close_execution(execution_id, "stopped")
            return
        except Exception as exc:  # the arm's setup failed (its own failure is its outcome)
            log.exception("pilot %s arm %s failed", pilot_id, arm)
            _close_execution(execution_id, "failed")
            message = f"{type(exc).__name__}: {exc}"
            try:
                _guarded(lambda session: _record_failure(session, pilot_id, arm, lease, message))
            except PilotStopped:
                return
    _retrying(lambda session: execution.begin_conclusion(session, pilot_id=pilot_id))


def _record_failure(session: Session, pilot_id: str, arm: str, lease: str, message: str) -> None:
    execution.hold_arm(session, pilot_id=pilot_id, arm=arm, lease=lease)
    execution.fail_arm(session, pilot_id=pilot_id, arm=arm, message=message)


def _close_execution(execution_id: int | None, outcome: str) -> None:
    if execution_id is None:
        return
    try:
        # Retried on a dropped connection like every other write: the execution's outcome is
        # how each arm is counted as run once.
        _retrying(
            lambda session: execution.finish_execution(
                session, execution_id=execution_id, outcome=outcome
            )
        )
    except Exception:  # the audit trail must not turn a finished arm into a failure
        log.exception("could not close execution %s", execution_id)


def _run_one_arm(settings: Settings, pilot_id: str, arm: str, lease: str, beat: Heartbeat) -> None:
    plan, _ = _stored_plan(settings, pilot_id)
    resources = _resources(settings, pilot_id)
    upstream = _upstream_adapter(pilot_id, plan, arm)
    last_write = 0.0

    def on_progress(progress: Progress) -> None:
        nonlocal last_write
        beat.check()
        now = time.monotonic()
        final = progress.total and progress.step >= progress.total
        if not final and now - last_write < PROGRESS_INTERVAL_S:
            return
        last_write = now
        _guarded(
            lambda session: execution.record_progress(
                session, pilot_id=pilot_id, arm=arm, lease=lease, progress=progress
            )
        )

    ran = run_arm(plan, arm, resources, upstream_adapter=upstream, progress=on_progress)
    beat.check()

    def record(session: Session) -> None:
        if ran.curve is not None:
            execution.record_curve(
                session, pilot_id=pilot_id, arm=arm, lease=lease, curve=ran.curve
            )
        execution.record_arm(
            session,
            pilot_id=pilot_id,
            lease=lease,
            outcome=ran.outcome,
            data=plan.data,
            handover=ran.handover,
        )

    _guarded(record)


def _upstream_adapter(pilot_id: str, plan: PilotPlan, arm: str) -> str | None:
    """The adapter of the arm this one adopts, when that arm finished with one."""
    source = upstream_of(plan, arm)
    if source is None:
        return None

    def read(session: Session) -> str | None:
        row = session.scalar(
            select(PilotArm).where(PilotArm.pilot_id == pilot_id, PilotArm.arm == source)
        )
        if row is None or row.status != ArmStatus.done:
            return None
        return ArmHandover.read(row.handover).adapter_path

    return _retrying(read)


# --------------------------------------------------------------------------- concluding


def conclude_pilot(pilot_id: str) -> None:
    """The pilot's last task: judge, compare and write the manifest from what the arms
    stored, then finish the pilot."""
    settings = get_settings()
    worker = worker_name()
    held = _retrying(
        lambda session: execution.claim_conclusion(
            session,
            pilot_id=pilot_id,
            worker=worker,
            max_attempts=settings.pilot_max_attempts,
            stalled_after=_stalled_after(settings),
        )
    )
    if held is None:
        log.info("pilot %s: conclusion done, cancelled or live elsewhere; dropped", pilot_id)
        return

    def step(beat: Heartbeat) -> None:
        _conclude(settings, pilot_id, held.lease, beat)

    _pilot_step(pilot_id, held, settings, step)


def _conclude(settings: Settings, pilot_id: str, lease: str, beat: Heartbeat) -> None:
    plan, split = _stored_plan(settings, pilot_id)
    resources = _resources(settings, pilot_id)

    def read(session: Session) -> tuple[datetime | None, list[tuple[FinishedArm, str | None]]]:
        started_at = session.scalar(select(Pilot.started_at).where(Pilot.id == pilot_id))
        return started_at, [
            (
                FinishedArm(
                    arm=row.arm,
                    status=ArmStatus(row.status),
                    metrics=[MetricValue(m.name, m.value, m.ci_low, m.ci_high) for m in metrics],
                    handover=ArmHandover.read(row.handover),
                ),
                row.error,
            )
            for row, metrics in execution.finished_arms(session, pilot_id=pilot_id)
        ]

    started_at, arms = _retrying(read)
    last_write: dict[str, float] = {}

    def on_progress(arm: str, progress: Progress) -> None:
        beat.check()
        now = time.monotonic()
        if now - last_write.get(arm, 0.0) < PROGRESS_INTERVAL_S:
            return
        last_write[arm] = now
        _guarded(
            lambda session: execution.record_conclusion_progress(
                session, pilot_id=pilot_id, lease=lease, arm=arm, progress=progress
            )
        )

    conclusion = conclude(
        plan,
        [arm for arm, _ in arms],
        resources,
        started_at=started_at or datetime.now(UTC),
        on_progress=on_progress,
    )
    beat.check()
    outcome = PilotOutcome(
        task=plan.data.task,
        primary_metric=conclusion.primary_metric,
        arms=[ArmOutcome(arm=a.arm, status=a.status, error=error) for a, error in arms],
        differences=conclusion.differences,
        warnings=[*split.warnings, *conclusion.warnings],
        caps=plan.caps,
        manifest=conclusion.manifest,
        judge=conclusion.judge,
    )

    def finish(session: Session) -> None:
        for arm, added in conclusion.verdicts.items():
            execution.add_findings(
                session,
                pilot_id=pilot_id,
                lease=lease,
                arm=arm,
                metrics=added.metrics,
                notes=added.notes,
            )
        pilots.finish_pilot(session, pilot_id=pilot_id, lease=lease, outcome=outcome)

    _guarded(finish)


# --------------------------------------------------------------------------- in one process


def run_in_process(pilot_id: str) -> None:
    """Run every task of one queued pilot here, one after another, as workers would: prepare,
    each arm once it is sent (upstream first), then the conclusion. For debugging a pilot and
    for tests; a worker that takes the same messages meanwhile finds each step claimed."""
    prepare_pilot(pilot_id)
    while (arm := _next_sent_arm(pilot_id)) is not None:
        execute_arm(pilot_id, arm)
    conclude_pilot(pilot_id)


def _next_sent_arm(pilot_id: str) -> str | None:
    with session_scope() as session:
        return session.scalar(
            select(PilotArm.arm)
            .join(Pilot, Pilot.id == PilotArm.pilot_id)
            .where(
                PilotArm.pilot_id == pilot_id,
                PilotArm.status == ArmStatus.pending,
                PilotArm.task_id.is_not(None),
                Pilot.stage == PilotStage.arms,
            )
            .order_by(PilotArm.position)
            .limit(1)
        )
