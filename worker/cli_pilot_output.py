"""What `pathpilot pilot` prints and writes: the provisional line as each arm finishes, the
quality, cost, difference, judge and learning-curve tables, and the outcome as JSON. The
figures are formatted as the report formats them (app.domain.formatting), so the two agree."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from app.domain.arm_figures import PROVISIONAL_NOTE, ScoredSample, arm_figure, sample_text
from app.domain.evidence import exploratory_flags
from app.domain.formatting import (
    format_count,
    format_duration,
    format_interval,
    format_points,
    format_quality,
    format_signed_interval,
    format_usd,
)
from app.domain.intake import DEFAULT_MIN_DIFFERENCE_POINTS
from app.domain.judging import JUDGE_AGREEMENT, JUDGE_PASS, JUDGE_SCORE
from app.domain.learning_curve import outlook
from app.domain.metric_catalogue import (
    QUALITY_METRICS,
    Unit,
    format_metric_value,
    in_process_metric,
    metric_spec,
)
from app.domain.records import ArmOutcome, ArmStatus, PilotOutcome, to_json_data, unreadable_line


def _format_metric(outcome: ArmOutcome, name: str) -> str:
    """The figures as the report prints them (app.domain.formatting), so the two agree."""
    metric = next((m for m in outcome.metrics if m.name == name), None)
    if metric is None:
        return "-"
    unit = metric_spec(name).unit
    if unit is Unit.fraction:
        interval = format_interval(metric.ci_low, metric.ci_high)
        return f"{format_quality(metric.value)} {interval}".strip()
    if unit is Unit.usd:
        return format_usd(metric.value)
    if unit is Unit.tokens:
        return f"{metric.value:.0f}"
    return f"{metric.value:.1f}"


OPERATIONAL_COLUMNS = (
    ("latency_p50_ms", "p50 ms"),
    ("latency_p95_ms", "p95 ms"),
    ("prompt_tokens_per_query", "prompt tok"),
    ("output_tokens_per_query", "output tok"),
    ("cost_per_1k_usd", "$/1k queries"),
    ("training_seconds", "train s"),
    ("wall_seconds", "wall s"),
)


def arm_done_line(outcome: ArmOutcome, sample: ScoredSample) -> str:
    """What the command prints as soon as an arm finishes: its primary figure with its 95%
    interval and sample, marked provisional (the comparison needs every arm), or why it
    failed. The figure is the one the conclusion keeps (`app.domain.arm_figures`)."""
    if outcome.status != ArmStatus.done:
        return f"{outcome.arm}: failed: {outcome.error}"
    figure = arm_figure(
        {metric.name: metric for metric in outcome.metrics},
        metric=sample.metric,
        n_items=sample.n_items,
        n_groups=sample.n_groups,
        concluded=False,
    )
    if figure is None:
        return f"{outcome.arm}: done"
    return f"{outcome.arm}: done; {figure.text} ({PROVISIONAL_NOTE})"


def print_outcome(outcome: PilotOutcome, console: Any, sample: ScoredSample | None = None) -> None:
    """Quality (with intervals) and cost tables, differences, warnings and caps; `sample`
    (the test split's size and groups) titles the quality table.

    Two narrow tables rather than one wide one, so a plain 80-column terminal shows every
    interval in full.
    """
    from rich.table import Table

    present = [
        name
        for name in QUALITY_METRICS
        if name not in (JUDGE_PASS, JUDGE_SCORE)  # the judge's own table, below
        and any(m.name == name for arm in outcome.arms for m in arm.metrics)
    ]
    rests_on = f" on {sample_text(sample.n_items, sample.n_groups)}" if sample else ""
    quality = Table(
        title=f"Pilot: {outcome.task} (primary metric: {outcome.primary_metric}{rests_on})"
    )
    quality.add_column("arm")
    quality.add_column("status")
    for name in present:
        quality.add_column(f"{name} [95% CI]", no_wrap=True)
    operations = Table(title="Cost and speed per query (latency = batch time / batch size)")
    operations.add_column("arm")
    for _, header in OPERATIONAL_COLUMNS:
        operations.add_column(header, justify="right")
    for arm in outcome.arms:
        if arm.status != ArmStatus.done:
            quality.add_row(arm.arm, f"[red]{arm.status}[/red]", *["-"] * len(present))
            continue
        quality.add_row(arm.arm, "done", *[_format_metric(arm, name) for name in present])
        operations.add_row(arm.arm, *[_format_metric(arm, name) for name, _ in OPERATIONAL_COLUMNS])
    console.print(quality)
    console.print(operations)

    for arm in outcome.arms:
        if arm.error:
            console.print(f"[red]{arm.arm} failed:[/red] {arm.error}")
        if arm.result is not None and arm.result.retrieval_recall_at_k is not None:
            console.print(f"{arm.arm}: retrieval recall@k {arm.result.retrieval_recall_at_k:.3f}")
        in_process = in_process_metric(outcome.primary_metric)
        if any(m.name == in_process for m in arm.metrics):
            console.print(
                f"{arm.arm}: served by its endpoint; {metric_spec(in_process).label} "
                f"{_format_metric(arm, in_process)}"
            )
    if outcome.differences:
        print_differences(outcome, console)
    print_judge(outcome, console)
    print_learning_curve(outcome, console)
    for line in [*outcome.caps, *outcome.warnings]:
        console.print(f"[yellow]! {line}[/yellow]")
    for name, model in outcome.manifest.arm_models.items():
        via = f"{model.via}{', with its adapter' if model.adapter else ''}"
        console.print(f"{name} answered by {model.model_id} ({via})")
    console.print(
        f"Base model: {outcome.manifest.base_model_id}. A pilot on a small proxy model "
        "is evidence about the relative merit of the paths on this data, not a forecast of "
        "production accuracy."
    )


def print_differences(outcome: PilotOutcome, console: Any) -> None:
    """Every pair of arms on the primary metric, read as the report reads it: paired on the
    items both arms were scored on, "clear" only when its Holm-adjusted p-value is under 5% and
    it rests on enough evidence (`app.domain.evidence.exploratory_flags`), else why not."""
    from rich.table import Table

    stored = [d for d in outcome.differences if d.metric == outcome.primary_metric]
    flags = exploratory_flags(stored, outcome.manifest.split_sizes.test or None)
    table = Table(
        title=f"Differences on {outcome.primary_metric} (paired; every pair, exploratory)"
    )
    for header in ("arm A", "minus arm B", "delta", "95% CI", "sample", "Holm p", "clear"):
        table.add_column(header)
    for diff, flag in zip(stored, flags, strict=True):
        verdict = "yes" if flag.clear else "no"
        clear = f"thin: {'; '.join(flag.thin)}" if flag.thin else verdict
        table.add_row(
            diff.arm_a,
            diff.arm_b,
            format_points(diff.delta),
            format_signed_interval(diff.ci_low, diff.ci_high),
            _sample(diff.n_items, diff.n_groups),
            f"{flag.p_adjusted:.3f}" if flag.p_adjusted is not None else "-",
            clear,
        )
    console.print(table)


def _sample(n_items: int | None, n_groups: int | None) -> str:
    """'120 items', or '312 items in 80 groups': what a difference rests on."""
    return sample_text(n_items, n_groups) or "-"


def print_learning_curve(outcome: PilotOutcome, console: Any) -> None:
    """The curve's points and its sentence, read as the report reads it without an intake
    (one doubling out, the default minimum difference that matters)."""
    from rich.table import Table

    curve = outcome.learning_curve
    if curve is None:
        return
    table = Table(title=f"Learning curve of qlora ({curve.metric}, 95% CI)")
    for header in ("examples", "trained on", curve.metric, "95% CI", "training"):
        table.add_column(header, justify="right")
    for point in curve.points:
        table.add_row(
            format_count(point.examples),
            format_count(point.trained_on),
            format_quality(point.value),
            format_interval(point.ci_low, point.ci_high),
            "the arm itself" if point.reused else format_duration(point.training_seconds),
        )
    console.print(table)
    if curve.slope is not None and len(curve.points) > 1:
        view = outlook(
            curve, examples_available=None, min_difference_points=DEFAULT_MIN_DIFFERENCE_POINTS
        )
        console.print(f"{view.sentence} {view.detail}")
    console.print(f"The curve added {format_duration(curve.extra_seconds)}.")
    for note in curve.notes:
        console.print(f"[yellow]! {note}[/yellow]")


def print_judge(outcome: PilotOutcome, console: Any) -> None:
    """The judge's grading per arm, the pairwise tallies, its agreement and its cost."""
    from rich.table import Table

    judge = outcome.judge
    if judge is None:
        return
    by_arm = {arm.arm: arm for arm in outcome.arms}
    grading = Table(
        title=f"Judge {judge.model_id}: {unreadable_line(judge.unreadable, judge.verdicts)}"
    )
    # The score's interval is in --out and the report: six columns fit 80 characters.
    for header in ("arm", "pass rate [95% CI]", "score", "unreadable", "rho", "cost"):
        grading.add_column(header, no_wrap=True)
    for record in judge.arms:
        arm = by_arm.get(record.arm)
        score = next((m for m in arm.metrics if m.name == JUDGE_SCORE), None) if arm else None
        grading.add_row(
            record.arm,
            _format_metric(arm, JUDGE_PASS) if arm else "-",
            "-" if score is None else format_metric_value(JUDGE_SCORE, score.value),
            f"{record.unreadable}/{record.verdicts}",
            "-"
            if record.agreement is None
            else format_metric_value(JUDGE_AGREEMENT, record.agreement),
            "-" if record.cost_usd is None else format_usd(record.cost_usd),
        )
    console.print(grading)
    if judge.pairs:
        pairs = Table(title="Judge, pairwise in both orders (a win needs both)")
        for header in ("arm A", "vs arm B", "A wins", "ties", "B wins", "unreadable"):
            pairs.add_column(header)
        for pair in judge.pairs:
            pairs.add_row(
                pair.arm_a,
                pair.arm_b,
                str(pair.wins),
                str(pair.ties),
                str(pair.losses),
                str(pair.unreadable),
            )
        console.print(pairs)
    rho = "undefined" if judge.agreement is None else f"{judge.agreement:+.2f}"
    cost = "not priced" if judge.cost_usd is None else format_usd(judge.cost_usd)
    console.print(
        f"Judge agreement with {judge.reference_metric} (Spearman, all arms): {rho}; "
        f"cost {cost} for {judge.prompt_tokens} prompt + {judge.completion_tokens} output tokens."
    )
    for error in judge.errors:
        console.print(f"[red]Judge: {error}[/red]")


def outcome_json(outcome: PilotOutcome) -> str:
    """The whole outcome as JSON; the manifest as the same typed record SQL stores."""
    payload = dataclasses.asdict(outcome) | {
        "manifest": outcome.manifest.as_json(),
        "judge": outcome.judge.as_json() if outcome.judge is not None else None,
        "learning_curve": (
            outcome.learning_curve.as_json() if outcome.learning_curve is not None else None
        ),
    }
    return json.dumps(to_json_data(payload), indent=2, ensure_ascii=False)
