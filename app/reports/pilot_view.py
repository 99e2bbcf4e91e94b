"""The pilot half of the report: arms table, differences, charts, predictions and manifest.

Rows come from `app.reports.pilot_rows` (SQL), price assumptions from `app.reports.pricing`;
this module only turns them into what the page and the PDF show."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from app.domain.arms import ARMS, MAJORITY
from app.domain.evidence import exploratory_flags
from app.domain.formatting import (
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
from app.domain.intake import DEFAULT_MIN_DIFFERENCE_POINTS
from app.domain.judging import JUDGE_AGREEMENT, JUDGE_PASS, JUDGE_SCORE
from app.domain.learning_curve import outlook, predict
from app.domain.metric_catalogue import format_metric_value, is_quality, metric_label
from app.domain.reconcile import (
    ArmEvidence,
    ArmGap,
    FailedArm,
    PilotEvidence,
    Recommendation,
    option_label,
)
from app.domain.records import (
    ArmModel,
    ArmStatus,
    JudgeResults,
    LearningCurve,
    PilotStatus,
    unreadable_line,
)
from app.pilots.models import (
    MetricRow,
    PilotArm,
    SamplePrediction,
)
from app.reports.charts import (
    CurveLine,
    CurveMark,
    LossSeries,
    QualityBar,
    latency_chart_svg,
    learning_curve_chart_svg,
    loss_chart_svg,
    quality_chart_svg,
)
from app.reports.pilot_rows import PilotRows
from app.reports.pricing import training_price_note, training_usd_per_hour

# The worker's operational metric names (app.domain.metric_catalogue).
PROMPT_TOKENS: Final = "prompt_tokens_per_query"
OUTPUT_TOKENS: Final = "output_tokens_per_query"
COST_PER_1K: Final = "cost_per_1k_usd"
LATENCY_P50: Final = "latency_p50_ms"
LABEL_UNMATCHED: Final = "label_unmatched"
# The arm that measures the majority-label floor: no path, but a bar to clear.
FLOOR_ARM: Final = MAJORITY.name
# Right and wrong predictions shown per arm: enough to see the pattern, short enough to print.
PREDICTIONS_SHOWN: Final = 3
PREDICTION_CHARS: Final = 280


def pilot_evidence(rows: PilotRows, *, target_size_b: float | None = None) -> PilotEvidence | None:
    """The primary metric per finished arm, which model produced it, the stored paired
    differences with their samples, the majority floor and the arms that failed;
    `target_size_b` is the intake's deployment model size.

    A pilot whose every arm failed is evidence too: of nothing measured, which the headline
    must say rather than "no pilot has finished"."""
    metric = rows.metric
    pilot_failed = rows.pilot.status == PilotStatus.failed
    failed = tuple(
        FailedArm(arm.arm, rows.arm_label(arm.arm), arm.error or rows.pilot.error or "unknown")
        for arm in rows.arms
        # A pilot that failed as a whole (its preparation, say) failed every arm it had not run.
        if arm.status == ArmStatus.failed or (pilot_failed and arm.status != ArmStatus.done)
    )
    finished = rows.pilot.status == PilotStatus.done and metric
    if pilot_failed:
        # A failed pilot compared nothing (its conclusion may be what failed), so none of its
        # arms' figures are evidence: the headline says what failed instead.
        return PilotEvidence(
            metric_label=rows.metric_label,
            arms=(),
            n_test=rows.n_test,
            target_size_b=target_size_b,
            failed=failed,
            # With no arm finished, every arm failed, and the headline lists them; else the
            # pilot failed on its own account after some arms had finished.
            pilot_error=(rows.pilot.error or "no reason was recorded") if rows.done_arms else None,
        )
    if not finished:
        return None
    # Only arms that are evidence for a path compete; the floor is checked against the winner.
    competing = {a.arm for a in rows.done_arms if rows.evidence_for(a.arm) is not None}
    models = rows.arm_models()
    arms, floor = [], None
    for arm in rows.done_arms:
        measured = rows.metrics.get(arm.arm, {})
        value = measured.get(metric or "")
        if value is None:
            continue
        cost, latency = measured.get(COST_PER_1K), measured.get(LATENCY_P50)
        evidence = ArmEvidence(
            arm.arm,
            rows.arm_label(arm.arm),
            value.value,
            value.ci_low,
            value.ci_high,
            model=models.get(arm.arm),
            cost_per_1k_usd=cost.value if cost is not None else None,
            latency_p50_ms=latency.value if latency is not None else None,
            documents=rows.documents,
        )
        if arm.arm in competing:
            arms.append(evidence)
        elif arm.arm == FLOOR_ARM:
            floor = evidence
    measured_arms = competing | ({floor.arm} if floor is not None else set())
    gaps = tuple(
        ArmGap.stored(d)
        for d in rows.differences
        if d.metric == metric and {d.arm_a, d.arm_b} <= measured_arms
    )
    return PilotEvidence(
        metric_label=rows.metric_label,
        arms=tuple(arms),
        differences=gaps,
        n_test=rows.n_test,
        target_size_b=target_size_b,
        floor=floor,
        failed=failed,
    )


# --- view model ---------------------------------------------------------------------------


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
class JudgeArmRow:
    label: str
    pass_rate: str  # with its 95% interval, e.g. "72.5% [64.2, 80.1]"
    score: str
    unreadable: str  # "3 of 120 verdicts unreadable"
    retried: int
    agreement: str  # Spearman rho with the reference metric, "+0.42", or "—"
    cost: str


@dataclass(frozen=True)
class PairRow:
    label_a: str
    label_b: str
    wins: int
    ties: int
    losses: int
    unreadable: int
    detail: str  # how many ties came from disagreeing orders or identical answers


@dataclass(frozen=True)
class JudgeView:
    """The judge's part of the report: grading per arm, pairwise tallies, agreement, cost."""

    model: str
    reference_label: str
    unreadable: str
    arms: tuple[JudgeArmRow, ...]
    pairs: tuple[PairRow, ...]
    agreement: str
    cost: str
    tokens: str
    reused: int
    errors: tuple[str, ...]


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


@dataclass(frozen=True)
class CurvePointRow:
    examples: str
    trained_on: str
    quality: str
    interval: str
    source: str  # "the QLoRA arm" or the training time of the extra run


@dataclass(frozen=True)
class CurveView:
    metric_label: str
    sentence: str  # "About N examples to reach X% if the trend holds" or "flat"
    detail: str
    points: tuple[CurvePointRow, ...]
    extra_time: str  # what the curve added to the pilot
    chart: str | None
    notes: tuple[str, ...]


# Points along the fitted line in the chart: enough for a smooth band on a log axis.
CURVE_SAMPLES: Final = 40


def learning_curve_view(
    rows: PilotRows, *, examples_available: int | None, min_difference_points: float
) -> CurveView | None:
    """The learning curve's table, chart and sentence; None when the pilot did not ask."""
    curve = LearningCurve.read(rows.pilot.learning_curve_results)
    if curve is None:
        return None
    label = metric_label(curve.metric)
    points = tuple(
        CurvePointRow(
            examples=format_count(p.examples),
            trained_on=format_count(p.trained_on),
            quality=format_quality(p.value),
            interval=format_interval(p.ci_low, p.ci_high),
            source=(
                "the QLoRA arm itself"
                if p.reused
                else f"trained for this curve ({format_duration(p.training_seconds)})"
            ),
        )
        for p in curve.points
    )
    if curve.slope is None or len(curve.points) < 2:
        return CurveView(
            metric_label=label,
            sentence="No curve: too few points to fit a trend.",
            detail="",
            points=points,
            extra_time=format_duration(curve.extra_seconds),
            chart=None,
            notes=tuple(curve.notes),
        )
    view = outlook(
        curve,
        examples_available=examples_available,
        min_difference_points=min_difference_points,
    )
    smallest = min(p.trained_on for p in curve.points)
    ratio = view.horizon / smallest
    along = [smallest * ratio ** (i / (CURVE_SAMPLES - 1)) for i in range(CURVE_SAMPLES)]
    bands = [predict(curve, n) for n in along]
    chart = learning_curve_chart_svg(
        [CurveMark(p.trained_on, p.value, p.ci_low, p.ci_high) for p in curve.points],
        CurveLine(
            examples=along,
            value=[b.value for b in bands],
            low=[b.low for b in bands],
            high=[b.high for b in bands],
        ),
        largest=view.largest,
        metric_label=label.capitalize(),
    )
    return CurveView(
        metric_label=label,
        sentence=view.sentence,
        detail=view.detail,
        points=points,
        extra_time=format_duration(curve.extra_seconds),
        chart=chart,
        notes=tuple(curve.notes),
    )


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
        _arm_row(rows, arm, metric, price, arm.arm in recommended_arms) for arm in rows.arms
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


def judge_view(rows: PilotRows) -> JudgeView | None:
    """What the judge found, formatted; None when no judge graded this pilot."""
    results = JudgeResults.read(rows.pilot.judge_results)
    if results is None:
        return None
    manifest = rows.manifest
    model = manifest.judge_model if manifest is not None else None

    def quality(arm: str, name: str) -> str:
        row = rows.metrics.get(arm, {}).get(name)
        if row is None:
            return "—"
        return f"{format_quality(row.value)} {format_interval(row.ci_low, row.ci_high)}".strip()

    arms = tuple(
        JudgeArmRow(
            label=rows.arm_label(a.arm),
            pass_rate=quality(a.arm, JUDGE_PASS),
            score=quality(a.arm, JUDGE_SCORE),
            unreadable=a.unreadable_line,
            retried=a.retried,
            agreement=_coefficient(a.agreement),
            cost=format_usd(a.cost_usd) if a.cost_usd is not None else "—",
        )
        for a in results.arms
    )
    pairs = tuple(
        PairRow(
            label_a=rows.arm_label(p.arm_a),
            label_b=rows.arm_label(p.arm_b),
            wins=p.wins,
            ties=p.ties,
            losses=p.losses,
            unreadable=p.unreadable,
            detail=_pair_detail(p.disagreements, p.identical),
        )
        for p in results.pairs
    )
    return JudgeView(
        model=_model_label(model) if model is not None else f"{results.model_id} ({results.via})",
        reference_label=metric_label(results.reference_metric),
        unreadable=unreadable_line(results.unreadable, results.verdicts),
        arms=arms,
        pairs=pairs,
        agreement=_coefficient(results.agreement),
        cost=(
            format_usd(results.cost_usd)
            if results.cost_usd is not None
            else "not priced (the judge model has no registered prices)"
        ),
        tokens=f"{format_count(results.prompt_tokens)} prompt + "
        f"{format_count(results.completion_tokens)} output tokens",
        reused=results.reused,
        errors=tuple(results.errors),
    )


def _coefficient(value: float | None) -> str:
    """Spearman's rho as the catalogue formats it; "—" where it is undefined."""
    return format_metric_value(JUDGE_AGREEMENT, value) if value is not None else "—"


def _pair_detail(disagreements: int, identical: int) -> str:
    parts = []
    if disagreements:
        parts.append(f"{disagreements} where the order decided")
    if identical:
        parts.append(f"{identical} with identical answers")
    return f"ties include {' and '.join(parts)}" if parts else ""


def _arm_row(
    rows: PilotRows, arm: PilotArm, metric: str, price: float, recommended: bool
) -> ArmRow:
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
        model=_model_label(rows.arm_models().get(arm.arm)),
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


def _model_label(model: ArmModel | None) -> str:
    if model is None:
        return "—"
    extra = " + adapter" if model.adapter else ""
    return f"{model.model_id}{extra} ({model.via})"


def _path_label(rows: PilotRows, arm: str) -> str:
    option = rows.evidence_for(arm)
    return option_label(option) if option is not None else "floor (no path)"


def _fmt(row: MetricRow | None, fmt: Any) -> str:
    return str(fmt(row.value)) if row is not None else "—"


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
