"""The judge's section of the report: grading per arm, pairwise tallies, agreement and cost.

Read from the pilot's stored judge results (`app.domain.records.JudgeResults`);
`app.reports.pilot_view` places it in the pilot's report.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.formatting import format_count, format_interval, format_quality, format_usd
from app.domain.judging import JUDGE_AGREEMENT, JUDGE_PASS, JUDGE_SCORE
from app.domain.metric_catalogue import format_metric_value, metric_label
from app.domain.records import JudgeResults, unreadable_line
from app.reports.arm_table import model_label
from app.reports.pilot_rows import PilotRows


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
        model=model_label(model) if model is not None else f"{results.model_id} ({results.via})",
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
