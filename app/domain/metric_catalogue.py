"""Every metric a pilot stores: its name, label, unit and which direction is better.

The runner writes metrics under these names, SQL stores them, and the report, the PDF and the
CLI read labels, units and the primary metric from here, so a new metric is added once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from app.domain.formatting import format_count, format_quality, format_usd
from app.domain.judging import (
    JUDGE_AGREEMENT,
    JUDGE_COST,
    JUDGE_PASS,
    JUDGE_SCORE,
    JUDGE_UNREADABLE,
    JUDGED_TASKS,
)
from app.domain.metrics import LABEL_UNMATCHED, targets_are_json
from app.domain.samples.schemas import PilotTask


class Unit(StrEnum):
    fraction = "fraction"  # quality, 0–1, shown as a percentage
    milliseconds = "milliseconds"
    tokens = "tokens"
    usd = "usd"
    seconds = "seconds"
    megabytes = "megabytes"
    bytes = "bytes"
    integer = "integer"
    coefficient = "coefficient"  # a correlation, -1 to 1


@dataclass(frozen=True)
class MetricSpec:
    name: str
    label: str
    unit: Unit
    higher_is_better: bool
    quality: bool = False  # quality metrics get bootstrap intervals and can be primary


_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("accuracy", "accuracy", Unit.fraction, True, quality=True),
    MetricSpec("macro_f1", "macro-F1", Unit.fraction, True, quality=True),
    MetricSpec("exact_match", "exact match", Unit.fraction, True, quality=True),
    MetricSpec("token_f1", "token F1", Unit.fraction, True, quality=True),
    MetricSpec("json_valid", "JSON validity", Unit.fraction, True, quality=True),
    MetricSpec("field_f1", "field F1", Unit.fraction, True, quality=True),
    MetricSpec("rouge_l", "ROUGE-L", Unit.fraction, True, quality=True),
    MetricSpec("embedding_similarity", "embedding similarity", Unit.fraction, True, quality=True),
    MetricSpec(JUDGE_PASS, "judge pass rate", Unit.fraction, True, quality=True),
    MetricSpec(JUDGE_SCORE, "judge score", Unit.fraction, True, quality=True),
    MetricSpec("latency_p50_ms", "latency p50", Unit.milliseconds, False),
    MetricSpec("latency_p95_ms", "latency p95", Unit.milliseconds, False),
    MetricSpec("prompt_tokens_per_query", "prompt tokens per query", Unit.tokens, False),
    MetricSpec("output_tokens_per_query", "output tokens per query", Unit.tokens, False),
    MetricSpec("cost_per_1k_usd", "cost per 1,000 queries", Unit.usd, False),
    MetricSpec("wall_seconds", "arm wall time", Unit.seconds, False),
    MetricSpec("training_seconds", "training time", Unit.seconds, False),
    MetricSpec("peak_memory_mb", "peak memory", Unit.megabytes, False),
    MetricSpec("trainable_parameters", "trainable parameters", Unit.integer, False),
    MetricSpec("adapter_bytes", "adapter size", Unit.bytes, False),
    MetricSpec("retrieval_recall_at_k", "retrieval recall@k", Unit.fraction, True),
    # Classification: the share of predictions that named no label (each counts as wrong).
    MetricSpec(LABEL_UNMATCHED, "unmatched predictions", Unit.fraction, False),
    MetricSpec(JUDGE_UNREADABLE, "unreadable judge verdicts", Unit.integer, False),
    MetricSpec(JUDGE_AGREEMENT, "judge agreement (Spearman)", Unit.coefficient, True),
    MetricSpec(JUDGE_COST, "judge cost", Unit.usd, False),
)
CATALOGUE: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}
QUALITY_METRICS: tuple[str, ...] = tuple(spec.name for spec in _SPECS if spec.quality)


# A fine-tuned arm answered through its serving endpoint also stores its in-process figure
# on the primary metric, under this prefix ("in_process_accuracy"): the served figure is what
# production gets, the in-process one is the model as trained.
IN_PROCESS_PREFIX = "in_process_"


def in_process_metric(name: str) -> str:
    """The name the in-process figure of quality metric `name` is stored under."""
    return IN_PROCESS_PREFIX + name


def metric_spec(name: str) -> MetricSpec:
    """The catalogue entry; an unknown name (from a newer writer) gets a readable default."""
    known = CATALOGUE.get(name)
    if known is not None:
        return known
    served = CATALOGUE.get(name.removeprefix(IN_PROCESS_PREFIX))
    if name.startswith(IN_PROCESS_PREFIX) and served is not None and served.quality:
        return MetricSpec(
            name, f"in-process {served.label}", served.unit, served.higher_is_better, quality=True
        )
    return MetricSpec(name, name.replace("_", " "), Unit.integer, True)


def metric_label(name: str) -> str:
    return metric_spec(name).label


def is_quality(name: str) -> bool:
    return metric_spec(name).quality


def format_metric_value(name: str, value: float) -> str:
    """One figure as the report prints it, by the metric's unit (intervals apart)."""
    unit = metric_spec(name).unit
    if unit is Unit.fraction:
        return format_quality(value)
    if unit is Unit.usd:
        return format_usd(value)
    if unit is Unit.coefficient:
        return f"{value:+.2f}"
    if unit is Unit.integer:
        return format_count(value)
    return f"{value:,.1f}"


def primary_metric(task: PilotTask, targets: Sequence[str], *, judged: bool = False) -> str:
    """The metric arms are compared on, and differences are computed for, per task.

    When a judge graded an open-ended task, its pass rate is primary: string overlap with
    one reference undercounts answers that are right in other words."""
    if judged and task in JUDGED_TASKS:
        return JUDGE_PASS
    if task is PilotTask.classification:
        return "accuracy"
    if task is PilotTask.extraction and targets_are_json(targets):
        return "field_f1"
    if task is PilotTask.generation:
        return "rouge_l"
    return "token_f1"
