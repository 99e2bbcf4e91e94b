"""The report's arms table: one row per arm with its quality, cost, latency and training figures.

`app.reports.pilot_view` builds the table from these rows; `model_label` names the model that
answered an arm, the same way the judge's section (`app.reports.judge_view`) names its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from app.domain.formatting import (
    format_bytes,
    format_count,
    format_duration,
    format_interval,
    format_megabytes,
    format_ms,
    format_quality,
    format_tokens,
    format_usd,
)
from app.domain.metric_catalogue import is_quality, metric_label
from app.domain.records import ArmModel
from app.domain.verdict_inputs import option_label
from app.pilots.models import MetricRow, PilotArm
from app.reports.pilot_evidence import COST_PER_1K, LATENCY_P50, OUTPUT_TOKENS, PROMPT_TOKENS
from app.reports.pilot_rows import PilotRows

# The worker's share of answers off the label set (app.domain.metric_catalogue).
LABEL_UNMATCHED: Final = "label_unmatched"


@dataclass(frozen=True)
class ArmRow:
    arm: str
    label: str
    path_label: str
    model: str  # which model answered, e.g. "llama-8b (endpoint)"
    status: str
    error: str | None
    quality: str  # e.g. "72.5%", exactly as the chart labels it
    interval: str  # e.g. "[64.2, 80.1]"
    other_quality: str  # the task's other quality metrics, e.g. "macro-F1 61.0%"
    latency_p50: str
    latency_p95: str
    tokens: str  # prompt + output tokens per query
    cost_per_1k: str
    training_time: str
    training_cost: str
    peak_memory: str
    trainable_parameters: str
    adapter_size: str
    recommended: bool
    notes: tuple[str, ...]


def arm_row(rows: PilotRows, arm: PilotArm, metric: str, price: float, recommended: bool) -> ArmRow:
    m = rows.metrics.get(arm.arm, {})
    quality = m.get(metric)
    others = [
        f"{metric_label(name)} {format_quality(row.value)}"
        for name, row in sorted(m.items())
        if is_quality(name) and name != metric
    ]
    if (unmatched := m.get(LABEL_UNMATCHED)) is not None:
        # Beside the quality it explains: answers off the label set count as wrong.
        others.append(f"{metric_label(LABEL_UNMATCHED)} {format_quality(unmatched.value)}")
    prompt, output = m.get(PROMPT_TOKENS), m.get(OUTPUT_TOKENS)
    trained = arm.training_seconds > 0
    return ArmRow(
        arm=arm.arm,
        label=rows.arm_label(arm.arm),
        path_label=_path_label(rows, arm.arm),
        model=model_label(rows.arm_models().get(arm.arm)),
        status=arm.status,
        error=arm.error,
        quality=format_quality(quality.value) if quality else "—",
        interval=format_interval(quality.ci_low, quality.ci_high) if quality else "",
        other_quality="; ".join(others),
        latency_p50=_fmt(m.get(LATENCY_P50), format_ms),
        latency_p95=_fmt(m.get("latency_p95_ms"), format_ms),
        tokens=(
            f"{format_tokens(prompt.value)} + {format_tokens(output.value)}"
            if prompt and output
            else _fmt(prompt, format_tokens)
        ),
        cost_per_1k=_fmt(m.get(COST_PER_1K), format_usd),
        training_time=format_duration(arm.training_seconds) if trained else "—",
        training_cost=format_usd(arm.training_seconds / 3600 * price) if trained else "—",
        peak_memory=format_megabytes(arm.peak_memory_mb) if arm.peak_memory_mb else "—",
        trainable_parameters=(
            format_count(arm.trainable_parameters) if arm.trainable_parameters else "—"
        ),
        adapter_size=format_bytes(arm.adapter_bytes) if arm.adapter_bytes else "—",
        recommended=recommended,
        notes=tuple(arm.notes or ()),
    )


def model_label(model: ArmModel | None) -> str:
    if model is None:
        return "—"
    extra = " + adapter" if model.adapter else ""
    return f"{model.model_id}{extra} ({model.via})"


def _path_label(rows: PilotRows, arm: str) -> str:
    option = rows.evidence_for(arm)
    return option_label(option) if option is not None else "floor (no path)"


def _fmt(row: MetricRow | None, fmt: Any) -> str:
    return str(fmt(row.value)) if row is not None else "—"
