"""Run the chosen pilot arms on one split and reconcile them into a PilotOutcome.

Every arm sees the same PilotData (same test items, same base model). Arms run in a fixed
order; one arm's failure is recorded with its message and never loses another arm's
result. Metrics get paired-bootstrap intervals (one resample matrix shared by all arms),
and every pair of finished arms gets a difference on the primary metric.

The QLoRA arms are imported lazily: they pull in peft and bitsandbytes, and a deployment
without them (or with them broken) still runs the prompting arms.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import importlib
import inspect
import json
import logging
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from app.domain.bootstrap import (
    DEFAULT_RESAMPLES,
    bootstrap_difference,
    bootstrap_metric,
    resample_indices,
)
from app.domain.metrics import (
    PriceRow,
    Statistic,
    aligned_predictions,
    operational_metrics,
    primary_metric,
    quality_statistics,
)
from app.domain.records import (
    ARM_NAMES,
    ArmOutcome,
    ArmResult,
    Difference,
    MetricValue,
    PilotData,
    PilotOutcome,
    Progress,
)
from worker.pilots.arms import fewshot, rag
from worker.pilots.common import config_recipe

logger = logging.getLogger(__name__)

FINE_TUNED_ARMS = ("qlora", "qlora_rag")
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
        default_factory=lambda: list(ARM_NAMES), metadata={"help": "Arms to run, in this order."}
    )
    seed: int = field(default=0, metadata={"help": "One seed for shots, training and bootstrap."})
    max_train: int = field(default=480, metadata={"help": "Cap on training examples."})
    max_test: int = field(default=120, metadata={"help": "Cap on test examples."})
    max_train_minutes: float = field(
        default=6.0, metadata={"help": "Wall-clock cap on each fine-tuning arm."}
    )
    fewshot: fewshot.FewShotConfig = field(
        default_factory=fewshot.FewShotConfig, metadata={"help": "Few-shot arm settings."}
    )
    rag: rag.RagConfig = field(
        default_factory=rag.RagConfig,
        metadata={"help": "RAG arm settings (also the QLoRA + RAG arm's retrieval)."},
    )
    qlora: Any = field(default=None, metadata={"help": "QLoRAConfig; None = defaults."})
    qlora_rag: Any = field(default=None, metadata={"help": "qlora_rag config; None = defaults."})
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


ProgressHook = Callable[[str, Progress], None]
ArmDoneHook = Callable[[ArmOutcome], None]


def price_row(table: dict[str, tuple[float, float]], name: str) -> PriceRow | None:
    """A row of settings.price_table as a PriceRow (None when the table has no such row)."""
    if name not in table:
        return None
    input_price, output_price = table[name]
    return PriceRow(name=name, input_per_million=input_price, output_per_million=output_price)


def config_from_settings(
    settings: Any, *, arms: list[str], seed: int, max_train: int, adapter_dir: Path
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
    )


# --------------------------------------------------------------------------- arm dispatch


def _with_seed(config: Any, seed: int) -> Any:
    names = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, seed=seed) if "seed" in names else config


def _config_class(module: Any) -> Any:
    """The config class an arm's `run` is annotated with.

    Looked up by name in the arm's module rather than with `typing.get_type_hints`, which
    fails when any *other* parameter is annotated with a name imported only for type checking.
    """
    annotation = inspect.signature(module.run).parameters["config"].annotation
    return getattr(module, annotation) if isinstance(annotation, str) else annotation


def _build_config(config_class: Any, offered: dict[str, Any]) -> Any:
    """`config_class` from the offered values its fields name (the rest keep defaults)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{key: value for key, value in offered.items() if key in names})


def _default_lazy_config(
    module: Any, config: PilotConfig, adapter_dir: Path, qlora_adapter: str | None = None
) -> Any:
    """The arm's config built from the pilot's settings.

    The QLoRA + RAG arm gets the QLoRA arm's config (same adapter dir, seed and time cap),
    the adapter that arm trained (so training happens once and the two arms differ only by
    retrieval) and the RAG arm's retrieval settings (so it differs from RAG only by the
    adapter).
    """
    offered: dict[str, Any] = {
        "adapter_dir": adapter_dir,
        "seed": config.seed,
        "max_train_minutes": config.max_train_minutes,
        "rag": config.rag,
        "retrieval": config.rag,
        "adapter_path": Path(qlora_adapter) if qlora_adapter else None,
    }
    names = {f.name for f in dataclasses.fields(_config_class(module))}
    if "qlora" in names:
        qlora_module = importlib.import_module("worker.pilots.arms.qlora")
        offered["qlora"] = config.qlora or _build_config(_config_class(qlora_module), offered)
    return _build_config(_config_class(module), offered)


def _arm_call(
    arm: str, config: PilotConfig, adapter_dir: Path, qlora_adapter: str | None = None
) -> tuple[Callable[..., ArmResult], Any]:
    """(run function, config) for one arm; imports the fine-tuning arms only when asked.

    `qlora_adapter` is the adapter the qlora arm saved in this pilot, if it ran.
    """
    if arm == "fewshot":
        return fewshot.run, _with_seed(config.fewshot, config.seed)
    if arm == "rag":
        return rag.run, _with_seed(config.rag, config.seed)
    if arm in FINE_TUNED_ARMS:
        module = importlib.import_module(f"worker.pilots.arms.{arm}")
        given = getattr(config, arm)
        if given is None:
            return module.run, _default_lazy_config(module, config, adapter_dir, qlora_adapter)
        names = {f.name for f in dataclasses.fields(given)}
        if "adapter_path" in names and given.adapter_path is None and qlora_adapter:
            given = dataclasses.replace(given, adapter_path=Path(qlora_adapter))
        return module.run, given
    raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARM_NAMES)}")


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
        if outcome.status == "done"
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


def dataset_hash(data: PilotData) -> str:
    """sha256 over the split as canonical JSON: the same data and split give the same hash."""
    payload = {
        "task": str(data.task),
        "labels": data.labels,
        "train": [example.model_dump(mode="json") for example in data.train],
        "validation": [example.model_dump(mode="json") for example in data.validation],
        "test": [example.model_dump(mode="json") for example in data.test],
        "documents": [document.model_dump(mode="json") for document in data.documents],
    }
    encoded = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


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


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# --------------------------------------------------------------------------- the pilot


def _cap(data: PilotData, config: PilotConfig) -> tuple[PilotData, list[str]]:
    """Enforce the caps when the caller's split is larger (a seeded subset, order kept)."""
    caps: list[str] = []
    rng = np.random.default_rng(config.seed)

    def subset(items: list[Any], limit: int, name: str) -> list[Any]:
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


def run_pilot(
    config: PilotConfig,
    data: PilotData,
    resources: Any,
    *,
    on_progress: ProgressHook | None = None,
    on_arm_done: ArmDoneHook | None = None,
) -> PilotOutcome:
    """Run `config.arms` in order on `data`; never lets one arm's failure lose the others."""
    started_at = datetime.now(UTC)
    data, caps = _cap(data, config)
    n_test = len(data.test)
    targets = [example.target for example in data.test]
    primary = primary_metric(data.task, targets)
    indices = resample_indices(max(n_test, 1), n_resamples=config.n_resamples, seed=config.seed)
    adapter_dir = config.adapter_dir or Path(tempfile.mkdtemp(prefix="pathpilot-adapters-"))

    outcomes: list[ArmOutcome] = []
    statistics: dict[str, dict[str, Statistic]] = {}
    recipes: dict[str, Any] = {}
    for arm in config.arms:
        arm_started = time.perf_counter()

        def progress(update: Progress, arm: str = arm) -> None:
            if on_progress is not None:
                on_progress(arm, update)

        try:
            qlora_result = next(
                (o.result for o in outcomes if o.arm == "qlora" and o.result is not None), None
            )
            qlora_adapter = qlora_result.adapter_path if qlora_result is not None else None
            run, arm_config = _arm_call(arm, config, adapter_dir, qlora_adapter)
            recipes[arm] = config_recipe(arm_config)
            result = run(arm_config, resources, data, progress)
            predictions = aligned_predictions(result.predictions, n_test)
            stats = quality_statistics(
                data.task,
                predictions,
                targets,
                labels=data.labels,
                embedder=resources.embedder,
            )
            price = config.fine_tuned_price if arm in FINE_TUNED_ARMS else config.price
            metrics = [
                *(_metric_values(stats, n_test, indices) if n_test else []),
                *operational_metrics(result.predictions, price or config.price),
                *_resource_metrics(result, time.perf_counter() - arm_started),
            ]
            recipes[arm] = result.recipe or recipes[arm]
            statistics[arm] = stats
            outcome = ArmOutcome(arm=arm, status="done", metrics=metrics, result=result)
        except Exception as error:  # one arm's failure must never lose the others
            logger.exception("pilot arm %s failed", arm)
            message = f"{type(error).__name__}: {error}"
            if isinstance(error, ModuleNotFoundError) and arm in FINE_TUNED_ARMS:
                message = f"arm not available in this installation ({message})"
            outcome = ArmOutcome(arm=arm, status="failed", error=message)
        outcomes.append(outcome)
        if on_arm_done is not None:
            on_arm_done(outcome)
        gc.collect()

    differences = _differences(statistics, config.arms, primary, n_test, indices)
    warnings = small_sample_warnings(outcomes, differences, primary, n_test)
    manifest = {
        "seed": config.seed,
        "base_model_id": getattr(resources, "model_id", None),
        "base_model_sha256": getattr(resources, "model_sha256", None),
        "base_model_path": getattr(resources, "llm_path", None),
        "embedder": getattr(resources, "embedder_path", None),
        "dataset_sha256": dataset_hash(data),
        "task": str(data.task),
        "split_sizes": {
            "train": len(data.train),
            "validation": len(data.validation),
            "test": n_test,
            "documents": len(data.documents),
            "labels": len(data.labels),
        },
        "arms": list(config.arms),
        "hyperparameters": _json_safe(recipes),
        "bootstrap": {"resamples": config.n_resamples, "confidence": 0.95, "paired": True},
        "price": _json_safe(dataclasses.asdict(config.price)) if config.price else None,
        "fine_tuned_price": (
            _json_safe(dataclasses.asdict(config.fine_tuned_price))
            if config.fine_tuned_price
            else None
        ),
        "libraries": library_versions(),
        "device": _device_description(getattr(resources, "device", "cpu")),
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
    }
    return PilotOutcome(
        task=data.task,
        primary_metric=primary,
        arms=outcomes,
        differences=differences,
        warnings=warnings,
        caps=caps,
        manifest=manifest,
    )


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
