"""The pilot half of the report: arms table, differences, charts, predictions and manifest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from sqlalchemy.orm import Session

from app.pilots import service as pilots
from app.pilots.models import (
    ArmDifference,
    LossCurvePoint,
    MetricRow,
    Pilot,
    PilotArm,
    SamplePrediction,
)
from app.reports.charts import (
    LossSeries,
    QualityBar,
    latency_chart_svg,
    loss_chart_svg,
    quality_chart_svg,
)
from app.reports.formatting import (
    format_bytes,
    format_count,
    format_duration,
    format_interval,
    format_megabytes,
    format_ms,
    format_points,
    format_quality,
    format_signed_interval,
    format_tokens,
    format_usd,
)
from app.reports.reconcile import (
    ARM_TO_OPTION,
    ArmEvidence,
    ArmGap,
    PilotEvidence,
    Recommendation,
    option_label,
)

# Training cost = training seconds × an hourly price. These are stated assumptions, printed
# next to the figure, not quotes: a typical on-demand price for one data-centre GPU, and for
# the few CPU cores a pilot uses on a general-purpose cloud VM.
GPU_USD_PER_HOUR: Final = 2.00
CPU_USD_PER_HOUR: Final = 0.10

QUALITY_LABELS: Final[dict[str, str]] = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "exact_match": "exact match",
    "token_f1": "token F1",
    "json_validity": "JSON validity",
    "json_valid": "JSON validity",
    "field_f1": "field F1",
    "rouge_l": "ROUGE-L",
    "embedding_similarity": "embedding similarity",
}
# The worker's operational metric names (app.domain.metrics.operational_metrics).
PROMPT_TOKENS: Final = "prompt_tokens_per_query"
OUTPUT_TOKENS: Final = "output_tokens_per_query"
# Right and wrong predictions shown per arm: enough to see the pattern, short enough to print.
PREDICTIONS_SHOWN: Final = 3
PREDICTION_CHARS: Final = 280


@dataclass
class PilotRows:
    """One pilot's rows, read once and shared by the evidence, the tables and the charts."""

    pilot: Pilot
    arms: list[PilotArm]
    metrics: dict[str, dict[str, MetricRow]]
    differences: list[ArmDifference]
    losses: dict[str, list[LossCurvePoint]]
    predictions: dict[str, list[SamplePrediction]]

    @property
    def done_arms(self) -> list[PilotArm]:
        return [a for a in self.arms if a.status == "done"]

    @property
    def metric(self) -> str | None:
        return self.pilot.primary_metric

    @property
    def metric_label(self) -> str:
        return metric_label(self.metric or "")

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self.pilot.manifest or {})


def load_pilot(session: Session, *, pilot: Pilot) -> PilotRows:
    """Read everything the report needs about one pilot."""
    arms = pilots.arms_of(session, pilot=pilot)
    return PilotRows(
        pilot=pilot,
        arms=arms,
        metrics=pilots.metrics_of(session, pilot=pilot),
        differences=pilots.differences_of(session, pilot=pilot),
        losses={a.arm: pilots.loss_curve_of(session, arm=a) for a in arms},
        predictions={a.arm: pilots.predictions_of(session, arm=a) for a in arms},
    )


def metric_label(name: str) -> str:
    return QUALITY_LABELS.get(name, name.replace("_", " "))


def pilot_evidence(rows: PilotRows) -> PilotEvidence | None:
    """The primary metric per finished arm plus the stored paired differences."""
    metric = rows.metric
    if rows.pilot.status != "done" or not metric:
        return None
    arms = []
    for arm in rows.done_arms:
        value = rows.metrics.get(arm.arm, {}).get(metric)
        if value is not None:
            arms.append(
                ArmEvidence(
                    arm.arm,
                    pilots.ARM_LABELS.get(arm.arm, arm.arm),
                    value.value,
                    value.ci_low,
                    value.ci_high,
                )
            )
    gaps = tuple(
        ArmGap(d.arm_a, d.arm_b, d.delta, d.ci_low, d.ci_high)
        for d in rows.differences
        if d.metric == metric
    )
    return PilotEvidence(
        metric_label=rows.metric_label,
        arms=tuple(arms),
        differences=gaps,
        n_test=test_size(rows.manifest),
    )


# --- view model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmRow:
    arm: str
    label: str
    path_label: str
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


@dataclass(frozen=True)
class DifferenceRow:
    label_a: str
    label_b: str
    delta: str
    interval: str
    significant: bool


@dataclass(frozen=True)
class PredictionRow:
    input: str
    target: str
    prediction: str
    correct: bool | None
    latency: str


@dataclass(frozen=True)
class ArmPredictions:
    arm: str
    label: str
    right: tuple[PredictionRow, ...]
    wrong: tuple[PredictionRow, ...]
    unscored: tuple[PredictionRow, ...]


@dataclass(frozen=True)
class PilotReport:
    id: str
    status: str
    started: str
    task: str
    metric: str
    metric_label: str
    max_train: int
    base_model: str | None
    device: str | None
    n_test: int | None
    arms: tuple[ArmRow, ...]
    differences: tuple[DifferenceRow, ...]
    clear_differences: int  # how many differences' intervals exclude zero
    warnings: tuple[str, ...]
    caps: tuple[str, ...]
    manifest: tuple[tuple[str, str], ...]
    predictions: tuple[ArmPredictions, ...]
    training_price_note: str
    quality_chart: str | None
    loss_chart: str | None
    latency_chart: str | None
    error: str | None


def pilot_report(rows: PilotRows, recommendation: Recommendation) -> PilotReport:
    """The pilot's tables and charts, with the recommended arm marked."""
    pilot, metric = rows.pilot, rows.metric or ""
    manifest = rows.manifest
    gpu = _is_gpu(manifest)
    price = GPU_USD_PER_HOUR if gpu else CPU_USD_PER_HOUR
    recommended_arms = {a for a, o in ARM_TO_OPTION.items() if o == recommendation.option}
    arm_rows = tuple(
        _arm_row(rows, arm, metric, price, gpu, arm.arm in recommended_arms) for arm in rows.arms
    )
    bars = [
        QualityBar(
            arm=a.arm,
            label=pilots.ARM_LABELS.get(a.arm, a.arm),
            value=m.value,
            ci_low=m.ci_low,
            ci_high=m.ci_high,
            recommended=a.arm in recommended_arms,
        )
        for a in rows.done_arms
        if (m := rows.metrics.get(a.arm, {}).get(metric)) is not None
    ]
    losses = [
        LossSeries(
            arm=a.arm,
            label=pilots.ARM_LABELS.get(a.arm, a.arm),
            steps=[p.step for p in rows.losses[a.arm]],
            train=[p.train_loss for p in rows.losses[a.arm]],
            validation=[p.validation_loss for p in rows.losses[a.arm]],
        )
        for a in rows.done_arms
        if rows.losses.get(a.arm)
    ]
    losses = merge_identical_curves(losses)
    latencies = {
        a.arm: [p.latency_ms for p in rows.predictions.get(a.arm, [])] for a in rows.done_arms
    }
    has_latency = any(latencies.values())
    differences = tuple(
        DifferenceRow(
            label_a=pilots.ARM_LABELS.get(d.arm_a, d.arm_a),
            label_b=pilots.ARM_LABELS.get(d.arm_b, d.arm_b),
            delta=format_points(d.delta),
            interval=format_signed_interval(d.ci_low, d.ci_high),
            significant=d.ci_low > 0 or d.ci_high < 0,
        )
        for d in rows.differences
        if d.metric == metric
    )
    return PilotReport(
        id=pilot.id,
        status=pilot.status,
        started=pilot.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        task=pilot.task or "",
        metric=metric,
        metric_label=rows.metric_label,
        max_train=pilot.max_train,
        base_model=base_model(manifest),
        device=_text(manifest.get("device")) if manifest.get("device") else None,
        n_test=test_size(manifest),
        arms=arm_rows,
        differences=differences,
        clear_differences=sum(d.significant for d in differences),
        warnings=tuple(pilot.warnings or ()),
        caps=tuple(pilot.caps or ()),
        manifest=flatten_manifest(manifest),
        predictions=tuple(_predictions(a, rows.predictions.get(a.arm, [])) for a in rows.done_arms),
        training_price_note=(
            f"Training cost = training time × {format_usd(price)} per hour of "
            f"{'GPU' if gpu else 'CPU'} time (an assumed cloud price, not a quote)."
        ),
        quality_chart=quality_chart_svg(bars, rows.metric_label.capitalize()) if bars else None,
        loss_chart=loss_chart_svg(losses) if losses else None,
        latency_chart=(latency_chart_svg(latencies, pilots.ARM_LABELS) if has_latency else None),
        error=pilot.error,
    )


def _arm_row(
    rows: PilotRows, arm: PilotArm, metric: str, price: float, gpu: bool, recommended: bool
) -> ArmRow:
    m = rows.metrics.get(arm.arm, {})
    quality = m.get(metric)
    others = [
        f"{metric_label(name)} {format_quality(row.value)}"
        for name, row in sorted(m.items())
        if name in QUALITY_LABELS and name != metric
    ]
    prompt, output = m.get(PROMPT_TOKENS), m.get(OUTPUT_TOKENS)
    trained = arm.training_seconds > 0
    return ArmRow(
        arm=arm.arm,
        label=pilots.ARM_LABELS.get(arm.arm, arm.arm),
        path_label=option_label(ARM_TO_OPTION.get(arm.arm, arm.arm)),
        status=arm.status,
        error=arm.error,
        quality=format_quality(quality.value) if quality else "—",
        interval=format_interval(quality.ci_low, quality.ci_high) if quality else "",
        other_quality="; ".join(others),
        latency_p50=_fmt(m.get("latency_p50_ms"), format_ms),
        latency_p95=_fmt(m.get("latency_p95_ms"), format_ms),
        tokens=(
            f"{format_tokens(prompt.value)} + {format_tokens(output.value)}"
            if prompt and output
            else _fmt(prompt, format_tokens)
        ),
        cost_per_1k=_fmt(m.get("cost_per_1k_usd"), format_usd),
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


def _fmt(row: MetricRow | None, fmt: Any) -> str:
    return str(fmt(row.value)) if row is not None else "—"


def _predictions(arm: PilotArm, stored: list[SamplePrediction]) -> ArmPredictions:
    def row(p: SamplePrediction) -> PredictionRow:
        return PredictionRow(
            input=_clip(p.input),
            target=_clip(p.target),
            prediction=_clip(p.prediction),
            correct=p.correct,
            latency=format_ms(p.latency_ms),
        )

    right = tuple(row(p) for p in stored if p.correct is True)[:PREDICTIONS_SHOWN]
    wrong = tuple(row(p) for p in stored if p.correct is False)[:PREDICTIONS_SHOWN]
    # Free-text tasks have no right/wrong per item: show a few as they are.
    unscored = tuple(row(p) for p in stored if p.correct is None)[: PREDICTIONS_SHOWN * 2]
    return ArmPredictions(arm.arm, pilots.ARM_LABELS.get(arm.arm, arm.arm), right, wrong, unscored)


def _clip(text: str) -> str:
    return text if len(text) <= PREDICTION_CHARS else text[: PREDICTION_CHARS - 1] + "…"


# --- manifest -----------------------------------------------------------------------------
# The worker writes the manifest as free-form JSON; these read it defensively, accepting the
# spellings a manifest may use, because an old pilot's report must still render.

_MODEL_KEYS: Final = ("base_model", "base_model_id", "model_id", "model", "llm_model")
_SPLIT_KEYS: Final = ("split_sizes", "splits", "sizes")
_TEST_KEYS: Final = ("test", "n_test", "test_size", "test_examples")


def base_model(manifest: Mapping[str, Any]) -> str | None:
    """The base model id the pilot ran on, wherever the manifest keeps it."""
    for key in _MODEL_KEYS:
        value = manifest.get(key)
        if isinstance(value, Mapping):
            value = value.get("id") or value.get("name") or value.get("model_id")
        if value:
            return _text(value)
    return None


def test_size(manifest: Mapping[str, Any]) -> int | None:
    """How many test examples every arm was scored on (the runner writes split_sizes.test)."""
    splits = [manifest.get(k) for k in _SPLIT_KEYS]
    nested = [v for k, v in manifest.items() if k not in _SPLIT_KEYS]
    for container in (*splits, manifest, *nested):
        if not isinstance(container, Mapping):
            continue
        for key in _TEST_KEYS:
            value = container.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def merge_identical_curves(series: list[LossSeries]) -> list[LossSeries]:
    """One line per distinct curve: QLoRA + RAG reuses the QLoRA arm's adapter, so the two
    arms store the same curve, and two identical lines would hide one under the other."""
    merged: list[LossSeries] = []
    for s in series:
        twin = next(
            (
                m
                for m in merged
                if (m.steps, m.train, m.validation) == (s.steps, s.train, s.validation)
            ),
            None,
        )
        if twin is None:
            merged.append(s)
        else:
            merged[merged.index(twin)] = replace(
                twin, label=f"{twin.label} and {s.label} (one adapter)"
            )
    return merged


def flatten_manifest(manifest: Mapping[str, Any], prefix: str = "") -> tuple[tuple[str, str], ...]:
    """Nested keys as dotted names with printable values, in the manifest's order."""
    rows: list[tuple[str, str]] = []
    for key, value in manifest.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(flatten_manifest(value, prefix=f"{name}."))
        else:
            rows.append((name, _text(value)))
    return tuple(rows)


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 300 else text[:299] + "…"


def _is_gpu(manifest: Mapping[str, Any]) -> bool:
    device = str(manifest.get("device", "")).lower()
    return "cuda" in device or "gpu" in device
