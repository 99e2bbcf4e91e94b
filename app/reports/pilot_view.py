"""The pilot half of the report: arms table, differences, charts, predictions and manifest.

Rows come from `app.reports.pilot_rows` (SQL), price assumptions from `app.reports.pricing`;
this module only turns them into what the page and the PDF show, and assembles the sections
built beside it into `PilotReport`: the arms table's rows (`app.reports.arm_table`), the
judge's section (`app.reports.judge_view`) and the learning curve's (`app.reports.curve_view`).
The verdict's evidence from the same rows is built in `app.reports.pilot_evidence`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from app.domain.arms import ARMS
from app.domain.evidence import exploratory_flags
from app.domain.formatting import format_count, format_ms, format_points, format_signed_interval
from app.domain.intake import DEFAULT_MIN_DIFFERENCE_POINTS
from app.domain.verdict_inputs import option_label
from app.domain.verdicts import Recommendation
from app.pilots.models import PilotArm, SamplePrediction
from app.reports.arm_table import ArmRow, arm_row
from app.reports.charts import (
    LossSeries,
    QualityBar,
    latency_chart_svg,
    loss_chart_svg,
    quality_chart_svg,
)
from app.reports.curve_view import CurveView, learning_curve_view
from app.reports.judge_view import JudgeView, judge_view
from app.reports.pilot_rows import PilotRows
from app.reports.pricing import training_price_note, training_usd_per_hour

# Right and wrong predictions shown per arm: enough to see the pattern, short enough to print.
PREDICTIONS_SHOWN: Final = 3
PREDICTION_CHARS: Final = 280


@dataclass(frozen=True)
class DifferenceRow:
    label_a: str
    label_b: str
    delta: str
    interval: str
    significant: bool  # clear after Holm's adjustment over every pair shown, on enough evidence
    sample: str  # "120 items", "312 items in 80 groups", "" for old pilots
    p_adjusted: str  # Holm-adjusted p-value, "" when none was stored
    thin: str  # why the comparison is too thin to decide, "" when it is not


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
    models_differ: bool  # the arms were answered by more than one model
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
    judge: JudgeView | None = None
    learning_curve: CurveView | None = None
    # (path, label) for each path whose own arm finished: what the export may hand off
    # (app.exports.service.PATH_ARMS), in the registry's order.
    exportable_paths: tuple[tuple[str, str], ...] = ()


def pilot_report(
    rows: PilotRows,
    recommendation: Recommendation,
    *,
    examples_available: int | None = None,
    min_difference_points: float = DEFAULT_MIN_DIFFERENCE_POINTS,
) -> PilotReport:
    """The pilot's tables and charts, with the recommended arm marked; the intake's examples
    and minimum difference decide how far the learning curve is read and when it is flat."""
    pilot, metric = rows.pilot, rows.metric or ""
    manifest = rows.manifest
    device = manifest.device if manifest is not None else None
    answered = {m.model_id for m in rows.arm_models().values()}
    price = training_usd_per_hour(device)
    recommended_arms = {a for a in pilot.arms if rows.evidence_for(a) == recommendation.option}
    arm_rows = tuple(
        arm_row(rows, arm, metric, price, arm.arm in recommended_arms) for arm in rows.arms
    )
    bars = [
        QualityBar(
            arm=a.arm,
            label=rows.arm_label(a.arm),
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
            label=rows.arm_label(a.arm),
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
    differences = difference_rows(rows, metric)
    return PilotReport(
        id=pilot.id,
        status=pilot.status,
        started=pilot.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        task=pilot.task or "",
        metric=metric,
        metric_label=rows.metric_label,
        max_train=pilot.max_train,
        # The model that answered every arm when there is one; else the in-process base.
        base_model=(
            next(iter(answered))
            if len(answered) == 1
            else (manifest.base_model_id if manifest is not None else None)
        ),
        models_differ=len(answered) > 1,
        device=device,
        n_test=rows.n_test,
        arms=arm_rows,
        differences=differences,
        clear_differences=sum(d.significant for d in differences),
        warnings=tuple(pilot.warnings or ()),
        caps=tuple(pilot.caps or ()),
        manifest=flatten_manifest(manifest.as_json()) if manifest is not None else (),
        predictions=tuple(
            _predictions(a, rows.arm_label(a.arm), rows.predictions.get(a.arm, []))
            for a in rows.done_arms
        ),
        training_price_note=training_price_note(device),
        quality_chart=quality_chart_svg(bars, rows.metric_label.capitalize()) if bars else None,
        loss_chart=loss_chart_svg(losses) if losses else None,
        latency_chart=(
            latency_chart_svg(latencies, {a.arm: rows.arm_label(a.arm) for a in rows.arms})
            if has_latency
            else None
        ),
        error=pilot.error,
        judge=judge_view(rows),
        exportable_paths=tuple(
            (path, option_label(path))
            for a in rows.done_arms
            if (path := ARMS.evidence_for(a.arm)) is not None
        ),
        learning_curve=learning_curve_view(
            rows,
            examples_available=examples_available,
            min_difference_points=min_difference_points,
        ),
    )


def difference_rows(rows: PilotRows, metric: str) -> tuple[DifferenceRow, ...]:
    """Every pair of arms on the primary metric, flagged as exploratory
    (`app.domain.evidence.exploratory_flags`); the verdict itself compares the leader with
    each arm (`app.domain.reconcile`)."""
    stored = [d for d in rows.differences if d.metric == metric]
    flags = exploratory_flags(stored, rows.n_test)
    return tuple(
        DifferenceRow(
            label_a=rows.arm_label(d.arm_a),
            label_b=rows.arm_label(d.arm_b),
            delta=format_points(d.delta),
            interval=format_signed_interval(d.ci_low, d.ci_high),
            significant=flag.clear,
            sample=_sample(d.n_items, d.n_groups, d.design_effect),
            p_adjusted=f"{flag.p_adjusted:.3f}" if flag.p_adjusted is not None else "",
            thin="; ".join(flag.thin),
        )
        for d, flag in zip(stored, flags, strict=True)
    )


def _sample(n_items: int | None, n_groups: int | None, design_effect: float | None) -> str:
    """'120 items', or '312 items in 80 groups (design effect 2.1)': what a difference rests on."""
    if n_items is None:
        return ""
    if n_groups is not None and n_groups < n_items:
        effect = f" (design effect {design_effect:.1f})" if design_effect is not None else ""
        return f"{format_count(n_items)} items in {format_count(n_groups)} groups{effect}"
    return f"{format_count(n_items)} items"


def _predictions(arm: PilotArm, label: str, stored: list[SamplePrediction]) -> ArmPredictions:
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
    return ArmPredictions(arm.arm, label, right, wrong, unscored)


def _clip(text: str) -> str:
    return text if len(text) <= PREDICTION_CHARS else text[: PREDICTION_CHARS - 1] + "…"


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
