"""Run the chosen pilot arms on one split and reconcile them into a PilotOutcome.

Every arm sees the same PilotData (same test items, same base model). Arms run in the
registry's order; one arm's failure is recorded with its message and never loses another
arm's result. Metrics get paired-bootstrap intervals (one resample matrix shared by all arms),
and every pair of finished arms gets a difference on the primary metric.

Each arm's module is imported only when the arm runs (`worker.pilots.arms.load_run`): the
fine-tuning arms pull in peft and bitsandbytes, and a deployment without them still runs the
prompting arms.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import platform
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import numpy as np

from app.domain.arm_registry import AdoptsAdapter, ArmRegistry, ConfigSet, ModelRole, PilotSettings
from app.domain.arms import ARMS, QLORA, QLoRAConfig
from app.domain.bootstrap import (
    DEFAULT_RESAMPLES,
    bootstrap_difference,
    bootstrap_metric,
    resample_indices,
)
from app.domain.judging import JUDGED_TASKS
from app.domain.learning_curve import crowded_note, fit_draws, fit_log_curve, subset_sizes
from app.domain.metric_catalogue import primary_metric
from app.domain.metrics import (
    PriceRow,
    Statistic,
    aligned_predictions,
    operational_metrics,
    quality_statistics,
)
from app.domain.preparation import dataset_hash
from app.domain.records import (
    ArmModel,
    ArmOutcome,
    ArmResult,
    ArmStatus,
    BootstrapSettings,
    CurvePoint,
    Difference,
    LearningCurve,
    Manifest,
    MetricValue,
    PilotData,
    PilotOutcome,
    Progress,
    SplitSizes,
    to_json_data,
)
from app.settings import Settings
from worker.pilots.arms import ArmNotAvailable, load_run
from worker.pilots.common import config_recipe
from worker.pilots.endpoint_answers import EndpointRuntime
from worker.pilots.judge import PilotJudge
from worker.pilots.learning_curve import train_subsets
from worker.pilots.memory import PeakMemory, release_freed_memory
from worker.pilots.resources import Resources
from worker.pilots.served_adapters import in_process_metrics

logger = logging.getLogger(__name__)
T = TypeVar("T")

LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "sentence-transformers",
    "faiss-cpu",
    "numpy",
    "gguf",
)


@dataclass
class PilotConfig:
    arms: list[str] = field(
        default_factory=lambda: list(ARMS.defaults()),
        metadata={"help": "Arms to run (run in the registry's order)."},
    )
    seed: int = field(default=0, metadata={"help": "One seed for shots, training and bootstrap."})
    max_train: int = field(default=480, metadata={"help": "Cap on training examples."})
    max_test: int = field(default=120, metadata={"help": "Cap on test examples."})
    max_train_minutes: float = field(
        default=6.0, metadata={"help": "Wall-clock cap on each fine-tuning arm."}
    )
    configs: dict[str, object] = field(
        default_factory=dict,
        metadata={"help": "Arm name -> its config (app.domain.arms); unset arms get defaults."},
    )
    price: PriceRow | None = field(
        default=None, metadata={"help": "Price row for the prompting arms' cost per 1k queries."}
    )
    fine_tuned_price: PriceRow | None = field(
        default=None, metadata={"help": "Price row for fine-tuned arms; None = `price`."}
    )
    adapter_dir: Path | None = field(
        default=None, metadata={"help": "Where adapters are saved; None = a new temp dir."}
    )
    n_resamples: int = field(default=DEFAULT_RESAMPLES, metadata={"help": "Bootstrap resamples."})
    registry: ArmRegistry = field(
        default=ARMS, metadata={"help": "Which arms exist (tests and plug-ins pass their own)."}
    )
    judge: EndpointRuntime | None = field(
        default=None, metadata={"help": "A model that grades open-ended answers; None = none."}
    )
    learning_curve: bool = field(
        default=False,
        metadata={"help": "Train the QLoRA arm again on 1/4 and 1/2 of the split for a curve."},
    )


ProgressHook = Callable[[str, Progress], None]
ArmDoneHook = Callable[[ArmOutcome], None]
ArmStartHook = Callable[[str], None]


class PilotStopped(Exception):
    """Raised by a hook to stop the whole pilot at once (cancelled, or its attempt was
    superseded): unlike an arm's own failure, it is never caught and recorded as one."""


def price_row(table: Mapping[str, tuple[float, float]], name: str) -> PriceRow | None:
    """A row of settings.price_table as a PriceRow (None when the table has no such row)."""
    if name not in table:
        return None
    input_price, output_price = table[name]
    return PriceRow(name=name, input_per_million=input_price, output_per_million=output_price)


def config_from_settings(
    settings: Settings, *, arms: list[str], seed: int, max_train: int, adapter_dir: Path
) -> PilotConfig:
    """The pilot config from app settings: caps, prices and where adapters go (worker and CLI)."""
    return PilotConfig(
        arms=arms,
        seed=seed,
        max_train=max_train,
        max_test=settings.pilot_max_test,
        max_train_minutes=settings.pilot_max_train_minutes,
        price=price_row(settings.price_table, "hosted-base"),
        fine_tuned_price=price_row(settings.price_table, "hosted-fine-tuned"),
        adapter_dir=adapter_dir,
        learning_curve=settings.pilot_learning_curve,
    )


def _arm_models(
    registry: ArmRegistry, arms: Sequence[str], resources: Resources
) -> dict[str, ArmModel]:
    """Which model answered each arm that uses one (the report's proxy rule reads this)."""
    models: dict[str, ArmModel] = {}
    for arm in arms:
        if arm not in registry or registry.get(arm).needs.model is ModelRole.none:
            continue
        role = registry.get(arm).needs.model
        if role is ModelRole.prompting and resources.prompt_endpoint is not None:
            models[arm] = resources.prompt_endpoint.model
            continue
        if role is ModelRole.fine_tuned and resources.serving_endpoint is not None:
            models[arm] = resources.serving_endpoint.arm_model(resources.arm_model(adapter=True))
            continue
        models[arm] = resources.arm_model(adapter=role is ModelRole.fine_tuned)
    return models


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


def _overlap(a: MetricValue, b: MetricValue) -> bool:
    if None in (a.ci_low, a.ci_high, b.ci_low, b.ci_high):
        return False
    return bool(a.ci_low <= b.ci_high and b.ci_low <= a.ci_high)  # type: ignore[operator]


def small_sample_warnings(
    outcomes: Sequence[ArmOutcome], differences: Sequence[Difference], metric: str, n_test: int
) -> list[str]:
    """One warning per pair of arms whose intervals on the primary metric overlap."""
    by_arm = {
        outcome.arm: next((m for m in outcome.metrics if m.name == metric), None)
        for outcome in outcomes
        if outcome.status == ArmStatus.done
    }
    warnings = []
    for difference in differences:
        a, b = by_arm.get(difference.arm_a), by_arm.get(difference.arm_b)
        if a is None or b is None or not _overlap(a, b):
            continue
        if difference.significant:
            detail = "the paired difference still excludes zero, but treat it as tentative"
        else:
            detail = "the pilot cannot tell them apart; a larger test split would"
        warnings.append(
            f"Small sample: {difference.arm_a} and {difference.arm_b} have overlapping 95% "
            f"intervals on {metric} with {n_test} test items; {detail}."
        )
    return warnings


# --------------------------------------------------------------------------- manifest


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _device_description(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.machine()}, {platform.processor() or 'unknown'})"


# --------------------------------------------------------------------------- the pilot


def _cap(data: PilotData, config: PilotConfig) -> tuple[PilotData, list[str]]:
    """Enforce the caps when the caller's split is larger (a seeded subset, order kept)."""
    caps: list[str] = []
    rng = np.random.default_rng(config.seed)

    def subset(items: list[T], limit: int, name: str) -> list[T]:
        if len(items) <= limit:
            return items
        keep = sorted(rng.choice(len(items), size=limit, replace=False).tolist())
        caps.append(f"{name} capped at {limit} of {len(items)} examples")
        return [items[i] for i in keep]

    train = subset(data.train, config.max_train, "train")
    test = subset(data.test, config.max_test, "test")
    if train is data.train and test is data.test:
        return data, caps
    return dataclasses.replace(data, train=train, test=test), caps


def _run_arm(
    name: str,
    config: PilotConfig,
    configs: ConfigSet,
    data: PilotData,
    resources: Resources,
    finished: Mapping[str, ArmResult],
    progress: Callable[[Progress], None],
) -> tuple[ArmResult, dict[str, Statistic], list[MetricValue], dict[str, object]]:
    """One arm: build its config, run it with its memory measured, score its predictions."""
    spec = config.registry.get(name)
    arm_config = configs.get(spec)
    source = spec.needs.adapter_from
    upstream = finished.get(source) if source else None
    if isinstance(arm_config, AdoptsAdapter) and upstream is not None and upstream.adapter_path:
        arm_config = arm_config.with_adapter(Path(upstream.adapter_path))
    run = load_run(spec)
    started = time.perf_counter()
    with PeakMemory(resources.device) as memory:
        result = run(arm_config, resources, data, progress)
    # The arm's own peak; an adapter reused from an earlier arm may report that arm's.
    result.peak_memory_mb = max(result.peak_memory_mb, memory.peak_mb)
    n_test = len(data.test)
    targets = [example.target for example in data.test]
    stats = quality_statistics(
        data.task,
        aligned_predictions(result.predictions, n_test),
        targets,
        labels=data.labels,
        embedder=resources.embedder,
    )
    operational = [
        *operational_metrics(result.predictions, _price_for(config, spec.needs.model, resources)),
        *_resource_metrics(result, time.perf_counter() - started),
    ]
    return result, stats, operational, result.recipe or config_recipe(arm_config)


def run_pilot(
    config: PilotConfig,
    data: PilotData,
    resources: Resources,
    *,
    on_progress: ProgressHook | None = None,
    on_arm_done: ArmDoneHook | None = None,
    on_arm_start: ArmStartHook | None = None,
) -> PilotOutcome:
    """Run `config.arms` in the registry's order on `data`; one arm's failure never loses
    the others."""
    started_at = datetime.now(UTC)
    data, caps = _cap(data, config)
    n_test = len(data.test)
    indices = resample_indices(max(n_test, 1), n_resamples=config.n_resamples, seed=config.seed)
    judge, judge_warnings = _judge_for(config, data, indices)
    adapter_dir = config.adapter_dir or Path(tempfile.mkdtemp(prefix="pathpilot-adapters-"))
    settings = PilotSettings(
        seed=config.seed, max_train_minutes=config.max_train_minutes, adapter_dir=adapter_dir
    )
    configs = ConfigSet(settings, config.configs)
    # Served arms also report their in-process figure on the reference metric: the judge's
    # verdict, which may become primary after the arms, grades served answers only.
    reference_metric = primary_metric(data.task, [e.target for e in data.test])
    known = [arm for arm in config.arms if arm in config.registry]
    order = [*config.registry.in_order(known), *(a for a in config.arms if a not in known)]

    outcomes: list[ArmOutcome] = []
    curve: LearningCurve | None = None
    finished: dict[str, ArmResult] = {}
    statistics: dict[str, dict[str, Statistic]] = {}
    recipes: dict[str, object] = {}
    for arm in order:

        def progress(update: Progress, arm: str = arm) -> None:
            if on_progress is not None:
                on_progress(arm, update)

        if on_arm_start is not None:
            on_arm_start(arm)
        try:
            result, stats, operational, recipe = _run_arm(
                arm, config, configs, data, resources, finished, progress
            )
            metrics = [
                *(_metric_values(stats, n_test, indices) if n_test else []),
                *in_process_metrics(
                    result, data, primary=reference_metric, served=stats, indices=indices
                ),
                *operational,
            ]
            if config.learning_curve and arm == QLORA.name and n_test:
                curve = _learning_curve(
                    configs.get(QLORA), data, resources, (result, stats), indices, progress
                )
                result.notes.extend(curve.notes)
            if judge is not None:
                verdicts = judge.judge_arm(
                    arm, aligned_predictions(result.predictions, n_test), progress
                )
                stats = {**stats, **verdicts.statistics}
                metrics.extend(verdicts.metrics)
                result.notes.extend(verdicts.notes)
            finished[arm] = result
            statistics[arm] = stats
            recipes[arm] = recipe
            outcome = ArmOutcome(arm=arm, status=ArmStatus.done, metrics=metrics, result=result)
        except PilotStopped:
            raise
        except Exception as error:  # one arm's failure must never lose the others
            logger.exception("pilot arm %s failed", arm)
            message = str(error) if isinstance(error, ArmNotAvailable) else None
            outcome = ArmOutcome(
                arm=arm,
                status=ArmStatus.failed,
                error=message or f"{type(error).__name__}: {error}",
            )
        outcomes.append(outcome)
        if on_arm_done is not None:
            on_arm_done(outcome)
        gc.collect()
        release_freed_memory()

    judged = _judged_every_arm(judge, outcomes)
    primary = primary_metric(data.task, [e.target for e in data.test], judged=judged)
    finished_arms = {o.arm for o in outcomes if o.status == ArmStatus.done}
    ungraded = sorted(finished_arms - judge.graded) if judge is not None else []
    if judge is not None and ungraded:
        first = f" ({judge.errors[0]})" if judge.errors else ""
        judge_warnings.append(
            f"The judge has no readable verdict for {', '.join(ungraded)}{first}, so the arms "
            f"are compared on {primary}, not on the judge's pass rate."
        )
    differences = _differences(statistics, order, primary, n_test, indices)
    warnings = [*judge_warnings, *small_sample_warnings(outcomes, differences, primary, n_test)]
    manifest = Manifest(
        seed=config.seed,
        base_model_id=resources.model_id,
        base_model_sha256=resources.model_sha256,
        base_model_path=resources.llm_path,
        base_model_parameters=resources.model_parameters,
        arm_models=_arm_models(config.registry, [o.arm for o in outcomes], resources),
        embedder=resources.embedder_path,
        dataset_sha256=dataset_hash(data),
        task=str(data.task),
        split_sizes=SplitSizes(
            train=len(data.train),
            validation=len(data.validation),
            test=n_test,
            documents=len(data.documents),
            labels=len(data.labels),
        ),
        arms=order,
        hyperparameters=to_json_data(recipes),
        bootstrap=BootstrapSettings(resamples=config.n_resamples),
        price=to_json_data(dataclasses.asdict(config.price)) if config.price else None,
        fine_tuned_price=(
            to_json_data(dataclasses.asdict(config.fine_tuned_price))
            if config.fine_tuned_price
            else None
        ),
        libraries=library_versions(),
        device=_device_description(resources.device),
        started_at=started_at.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        judge_model=judge.runtime.model if judge is not None else None,
    )
    return PilotOutcome(
        task=data.task,
        primary_metric=primary,
        arms=outcomes,
        differences=differences,
        warnings=warnings,
        caps=caps,
        manifest=manifest,
        judge=judge.results() if judge is not None else None,
        learning_curve=curve,
    )


def _learning_curve(
    qlora: QLoRAConfig,
    data: PilotData,
    resources: Resources,
    full: tuple[ArmResult, Mapping[str, Statistic]],
    indices: np.ndarray,
    progress: Callable[[Progress], None],
) -> LearningCurve:
    """The fine-tuning arm's learning curve: its own result is the largest point; the
    smaller subsets are trained here. A failure leaves a curve with a note, never a failed
    arm: the arm's result stands on its own."""
    started = time.perf_counter()
    # The reference metric, as the judge (if any) grades only the arms, not the curve's points.
    metric = primary_metric(data.task, [e.target for e in data.test], judged=False)
    curve = LearningCurve(metric=metric)
    sizes = subset_sizes(len(data.train))
    if len(sizes) < 2:
        curve.notes.append(f"learning curve: {len(data.train)} training examples are too few")
        return curve
    try:
        _measure_curve(curve, qlora, data, resources, sizes, full, indices, progress)
    except Exception as error:  # the arm's own result must survive a curve that fails
        logger.exception("learning curve failed")
        curve.points, curve.intercept, curve.slope, curve.draws = [], None, None, []
        curve.notes.append(f"learning curve failed: {type(error).__name__}: {error}")
    curve.extra_seconds = time.perf_counter() - started
    return curve


def _measure_curve(
    curve: LearningCurve,
    qlora: QLoRAConfig,
    data: PilotData,
    resources: Resources,
    sizes: Sequence[int],
    full: tuple[ArmResult, Mapping[str, Statistic]],
    indices: np.ndarray,
    progress: Callable[[Progress], None],
) -> None:
    """Train the smaller subsets, score every point on the shared resamples, fit the trend."""
    runs = train_subsets(qlora, resources, data, sizes[:-1], progress)
    n_test = len(data.test)
    targets = [e.target for e in data.test]
    statistics = []
    for run in runs:
        stats = quality_statistics(
            data.task,
            aligned_predictions(run.result.predictions, n_test),
            targets,
            labels=data.labels,
            embedder=resources.embedder,
        )
        statistics.append((run.examples, run.result, stats[curve.metric]))
    full_result, full_statistics = full
    statistics.append((len(data.train), full_result, full_statistics[curve.metric]))
    for examples, result, statistic in statistics:
        interval = bootstrap_metric(statistic, n_test, indices=indices)
        curve.points.append(
            CurvePoint(
                examples=examples,
                trained_on=_trained_on(result, examples),
                value=interval.value,
                ci_low=interval.low,
                ci_high=interval.high,
                training_seconds=result.training_seconds,
                reused=result is full_result,
            )
        )
    crowded = crowded_note(curve.points)
    if crowded is not None:
        curve.notes.append(crowded)
    x = [p.trained_on for p in curve.points]
    if len(set(x)) < 2:
        # The time cap cut every subset to the same size: there is no trend to fit.
        curve.notes.append("learning curve: the time cap left every point the same size")
        return
    curve.intercept, curve.slope = fit_log_curve(x, [p.value for p in curve.points])
    resampled = np.stack([statistic(indices) for _, _, statistic in statistics], axis=1)
    curve.draws = fit_draws(x, resampled)


def _trained_on(result: ArmResult, examples: int) -> int:
    used = result.recipe.get("train_examples_used")
    return int(used) if isinstance(used, int) and used > 0 else examples


def _judge_for(
    config: PilotConfig, data: PilotData, indices: np.ndarray
) -> tuple[PilotJudge | None, list[str]]:
    """The pilot's judge, when it has one and the task is open-ended; else why not."""
    if config.judge is None:
        return None, []
    if data.task not in JUDGED_TASKS or not data.test:
        return None, [
            f"The judge ({config.judge.model.model_id}) grades open-ended answers "
            f"(generation, qa) and was not used on this {data.task} sample."
        ]
    return PilotJudge(config.judge, data, indices), []


def _judged_every_arm(judge: PilotJudge | None, outcomes: Sequence[ArmOutcome]) -> bool:
    """Whether the judge's metric can be primary: it graded every arm that finished."""
    finished = {o.arm for o in outcomes if o.status == ArmStatus.done}
    return judge is not None and bool(finished) and finished <= judge.graded


def _differences(
    statistics: dict[str, dict[str, Statistic]],
    arms: Sequence[str],
    metric: str,
    n_test: int,
    indices: np.ndarray,
) -> list[Difference]:
    """later arm - earlier arm on the primary metric, for every pair of finished arms."""
    finished = [arm for arm in arms if arm in statistics and metric in statistics[arm]]
    differences = []
    for position, earlier in enumerate(finished):
        for later in finished[position + 1 :]:
            interval = bootstrap_difference(
                statistics[later][metric], statistics[earlier][metric], n_test, indices=indices
            )
            differences.append(
                Difference(
                    metric=metric,
                    arm_a=later,
                    arm_b=earlier,
                    delta=interval.value,
                    ci_low=interval.low,
                    ci_high=interval.high,
                )
            )
    return differences
