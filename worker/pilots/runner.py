"""Run the chosen pilot arms on one split and reconcile them into a PilotOutcome.

A pilot is three steps, each usable on its own so the worker can run them as separate tasks:
`plan_pilot` caps the split and fixes the shared resamples; `run_arm` runs one arm on that
plan (an arm that adopts another's adapter is handed its path); `conclude`
(`worker.pilots.conclusion`) judges, compares and writes the manifest once every arm is done.
`run_pilot` chains them in this process, in the registry's order (the command line and tests).

Every arm sees the same PilotData (same test items, same base model); one arm's failure is
recorded with its message and never loses another arm's result. Metrics get paired-bootstrap
intervals (one resample matrix shared by all arms), and every pair of finished arms gets a
difference on the primary metric.

Each arm's module is imported only when the arm runs (`worker.pilots.arms.load_run`): the
fine-tuning arms pull in peft and bitsandbytes, and a deployment without them still runs the
prompting arms.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np

from app.domain.arm_registry import AdoptsAdapter, ArmRegistry, ModelRole
from app.domain.arms import QLORA
from app.domain.bootstrap import bootstrap_metric
from app.domain.metrics import (
    PriceRow,
    Statistic,
    aligned_predictions,
    label_match_metrics,
    operational_metrics,
    quality_statistics,
)
from app.domain.records import (
    ArmHandover,
    ArmModel,
    ArmOutcome,
    ArmResult,
    ArmStatus,
    LearningCurve,
    MetricValue,
    PilotData,
    PilotOutcome,
    Progress,
)
from worker.pilots.arm_results import config_recipe
from worker.pilots.arms import ArmNotAvailable, load_run
from worker.pilots.conclusion import FinishedArm, conclude, device_description
from worker.pilots.learning_curve import measure_learning_curve
from worker.pilots.memory import PeakMemory, release_freed_memory
from worker.pilots.plan import (
    PilotConfig,
    PilotPlan,
    config_from_settings,
    plan_pilot,
    price_row,
    upstream_of,
)
from worker.pilots.resources import Resources
from worker.pilots.served_adapters import in_process_metrics

__all__ = [
    "ArmRun",
    "PilotConfig",
    "PilotPlan",
    "PilotStopped",
    "config_from_settings",
    "plan_pilot",
    "price_row",
    "run_arm",
    "run_pilot",
    "upstream_of",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")


ProgressHook = Callable[[str, Progress], None]
ArmDoneHook = Callable[[ArmOutcome], None]
ArmStartHook = Callable[[str], None]


class PilotStopped(Exception):
    """Raised by a hook to stop the whole pilot at once (cancelled, or its attempt was
    superseded): unlike an arm's own failure, it is never caught and recorded as one."""


def arm_model_for(registry: ArmRegistry, arm: str, resources: Resources) -> ArmModel | None:
    """Which model answers the arm, if it uses one (the report's proxy rule reads this)."""
    if arm not in registry or registry.get(arm).needs.model is ModelRole.none:
        return None
    role = registry.get(arm).needs.model
    if role is ModelRole.prompting and resources.prompt_endpoint is not None:
        return resources.prompt_endpoint.model
    if role is ModelRole.fine_tuned and resources.serving_endpoint is not None:
        return resources.serving_endpoint.arm_model(resources.arm_model(adapter=True))
    return resources.arm_model(adapter=role is ModelRole.fine_tuned)


def _price_for(config: PilotConfig, role: ModelRole, resources: Resources) -> PriceRow | None:
    if role is ModelRole.none:
        return None
    if role is ModelRole.prompting and resources.prompt_endpoint is not None:
        # The endpoint's own prices; without them, the configured hosted-base row.
        return resources.prompt_endpoint.price or config.price
    if role is ModelRole.fine_tuned:
        return config.fine_tuned_price or config.price
    return config.price


# --------------------------------------------------------------------------- metrics


def _metric_values(
    statistics: dict[str, Statistic], n_items: int, indices: np.ndarray
) -> list[MetricValue]:
    values = []
    for name, statistic in statistics.items():
        interval = bootstrap_metric(statistic, n_items, indices=indices)
        values.append(MetricValue(name, interval.value, interval.low, interval.high))
    return values


def _resource_metrics(result: ArmResult, wall_seconds: float) -> list[MetricValue]:
    values = [
        MetricValue("wall_seconds", wall_seconds),
        MetricValue("peak_memory_mb", result.peak_memory_mb),
    ]
    if result.training_seconds:
        values.append(MetricValue("training_seconds", result.training_seconds))
    if result.trainable_parameters:
        values.append(MetricValue("trainable_parameters", float(result.trainable_parameters)))
    if result.adapter_bytes:
        values.append(MetricValue("adapter_bytes", float(result.adapter_bytes)))
    if result.retrieval_recall_at_k is not None:
        values.append(MetricValue("retrieval_recall_at_k", result.retrieval_recall_at_k))
    return values


# --------------------------------------------------------------------------- the pilot


@dataclass
class ArmRun:
    """One arm's run: its outcome, what it hands to the conclusion, and (for the QLoRA arm
    with the option on) the learning curve."""

    outcome: ArmOutcome
    handover: ArmHandover
    curve: LearningCurve | None = None

    def finished(self) -> FinishedArm:
        return FinishedArm(
            arm=self.outcome.arm,
            status=self.outcome.status,
            metrics=self.outcome.metrics,
            handover=self.handover,
        )


def run_arm(
    plan: PilotPlan,
    arm: str,
    resources: Resources,
    *,
    upstream_adapter: str | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> ArmRun:
    """Run one arm of the plan and score it; an arm's own failure is its outcome, never an
    exception (only PilotStopped, from a hook, stops it). `upstream_adapter`: the adapter the
    arm adopts (from the arm it runs after), when that arm left one."""
    report = progress or (lambda _: None)
    handover = ArmHandover(
        model=arm_model_for(plan.config.registry, arm, resources),
        device=device_description(resources.device),
    )
    try:
        outcome, curve = _run_and_score(plan, arm, resources, upstream_adapter, report, handover)
    except PilotStopped:
        raise
    except Exception as error:  # one arm's failure must never lose the others
        logger.exception("pilot arm %s failed", arm)
        message = str(error) if isinstance(error, ArmNotAvailable) else None
        outcome = ArmOutcome(
            arm=arm, status=ArmStatus.failed, error=message or f"{type(error).__name__}: {error}"
        )
        handover.answers, handover.recipe, curve = None, {}, None
    finally:
        gc.collect()
        release_freed_memory()
    return ArmRun(outcome=outcome, handover=handover, curve=curve)


def _run_and_score(
    plan: PilotPlan,
    name: str,
    resources: Resources,
    upstream_adapter: str | None,
    progress: Callable[[Progress], None],
    handover: ArmHandover,
) -> tuple[ArmOutcome, LearningCurve | None]:
    """One arm: build its config, run it with its memory measured, score its predictions."""
    config, data = plan.config, plan.data
    spec = config.registry.get(name)
    arm_config = plan.configs.get(spec)
    if isinstance(arm_config, AdoptsAdapter) and upstream_adapter:
        arm_config = arm_config.with_adapter(Path(upstream_adapter))
    run = load_run(spec)
    started = time.perf_counter()
    with PeakMemory(resources.device) as memory:
        result = run(arm_config, resources, data, progress)
    # The arm's own peak; an adapter reused from an earlier arm may report that arm's.
    result.peak_memory_mb = max(result.peak_memory_mb, memory.peak_mb)
    n_test = len(data.test)
    answers = aligned_predictions(result.predictions, n_test)
    targets = [e.target for e in data.test]
    stats = quality_statistics(
        data.task,
        answers,
        targets,
        labels=data.labels,
        embedder=resources.embedder,
        alternatives=[e.alternatives for e in data.test],
    )
    operational = [
        *operational_metrics(result.predictions, _price_for(config, spec.needs.model, resources)),
        *label_match_metrics(data.task, answers, targets, data.labels),
        *_resource_metrics(result, time.perf_counter() - started),
    ]
    metrics = [
        *(_metric_values(stats, n_test, plan.indices) if n_test else []),
        *in_process_metrics(
            result, data, primary=plan.reference_metric, served=stats, indices=plan.indices
        ),
        *operational,
    ]
    curve = None
    if config.learning_curve and name == QLORA.name and n_test:
        curve = measure_learning_curve(
            plan.configs.get(QLORA), data, resources, result, plan.indices, progress
        )
        result.notes.extend(curve.notes)
    handover.answers = answers
    handover.recipe = result.recipe or config_recipe(arm_config)
    handover.adapter_path = result.adapter_path
    outcome = ArmOutcome(arm=name, status=ArmStatus.done, metrics=metrics, result=result)
    return outcome, curve


def run_pilot(
    config: PilotConfig,
    data: PilotData,
    resources: Resources,
    *,
    on_progress: ProgressHook | None = None,
    on_arm_done: ArmDoneHook | None = None,
    on_arm_start: ArmStartHook | None = None,
    data_warnings: Sequence[str] = (),
) -> PilotOutcome:
    """Run `config.arms` in the registry's order on `data` in this process, then conclude;
    one arm's failure never loses the others."""
    started_at = datetime.now(UTC)
    plan = plan_pilot(config, data)
    runs: dict[str, ArmRun] = {}
    curve: LearningCurve | None = None
    for arm in plan.order:

        def progress(update: Progress, arm: str = arm) -> None:
            if on_progress is not None:
                on_progress(arm, update)

        if on_arm_start is not None:
            on_arm_start(arm)
        source = upstream_of(plan, arm)
        upstream = runs[source].handover.adapter_path if source in runs else None
        ran = run_arm(plan, arm, resources, upstream_adapter=upstream, progress=progress)
        runs[arm] = ran
        curve = ran.curve or curve
        if on_arm_done is not None:
            on_arm_done(ran.outcome)

    conclusion = conclude(
        plan,
        [ran.finished() for ran in runs.values()],
        resources,
        started_at=started_at,
        on_progress=on_progress,
    )
    outcomes = [ran.outcome for ran in runs.values()]
    for outcome in outcomes:  # the judge's figures and notes join the arm's own
        added = conclusion.verdicts.get(outcome.arm)
        if added is not None:
            outcome.metrics.extend(added.metrics)
            if outcome.result is not None:
                outcome.result.notes.extend(added.notes)
    return conclusion.outcome(plan, outcomes, data_warnings=data_warnings, learning_curve=curve)
