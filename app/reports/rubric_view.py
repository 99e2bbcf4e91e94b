"""The rubric half of the report: scores, flags, costs, the factor table and its references."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.formatting import format_count, format_score, format_usd
from app.domain.scoring.citations import Citation
from app.domain.scoring.paths import PATH_LABELS
from app.domain.scoring.schemas import ScoreResult
from app.domain.verdict_inputs import option_label
from app.reports.charts import cost_chart_svg


@dataclass(frozen=True)
class ScoreRow:
    rank: int
    path: str
    label: str
    score: str


@dataclass(frozen=True)
class FlagRow:
    severity: str  # warning | blocker
    where: str  # the path's label, or "" when it concerns the whole intake
    message: str


@dataclass(frozen=True)
class CostRow:
    label: str
    one_off: str
    monthly: str
    per_1k: str
    notes: str


@dataclass(frozen=True)
class Contribution:
    text: str
    tone: str  # "pos" | "neg" | "" — a CSS class


@dataclass(frozen=True)
class FactorRow:
    name: str
    input_value: str
    weight: str
    activation: str
    contributions: tuple[Contribution, ...]  # in PATH_LABELS order
    rationale: str
    citations: tuple[int, ...]  # reference numbers
    active: bool  # False: the factor did not apply to these answers (activation 0)


@dataclass(frozen=True)
class Reference:
    number: int
    citation: Citation


@dataclass(frozen=True)
class RubricReport:
    headline: str
    scores: tuple[ScoreRow, ...]
    hybrid_label: str | None
    hybrid_reason: str | None
    hybrid_citations: tuple[int, ...]
    flags: tuple[FlagRow, ...]
    costs: tuple[CostRow, ...]
    break_even: str
    base_scores: str
    path_labels: tuple[str, ...]
    factors: tuple[FactorRow, ...]
    idle_factors: tuple[FactorRow, ...]
    adjustments: tuple[str, ...]
    references: tuple[Reference, ...]
    cost_chart: str


def rubric_report(result: ScoreResult, *, queries_per_month: float) -> RubricReport:
    """Everything the report shows about the rubric, numbered citations included."""
    numbers = _citation_numbers(result)
    paths = tuple(PATH_LABELS)
    factors = tuple(
        FactorRow(
            name=f.name,
            input_value=f.input_value,
            weight=f"{f.weight:.0f}",
            activation=f"{f.activation:.2f}",
            contributions=tuple(_contribution(f.contribution.get(p, 0.0)) for p in paths),
            rationale=f.rationale,
            citations=tuple(numbers[c] for c in f.citations if c in numbers),
            active=f.activation > 0,
        )
        for f in result.factors
    )
    by_id = {c.id: c for c in result.sources}
    references = tuple(
        Reference(number=n, citation=by_id[cid]) for cid, n in numbers.items() if cid in by_id
    )
    hybrid = result.hybrid
    if result.break_even_queries_per_month:
        break_even = (
            "Fine-tuning's shorter prompts pay back its one-off cost above "
            f"{format_count(result.break_even_queries_per_month)} queries a month."
        )
    else:
        break_even = (
            "At these prices fine-tuning's shorter prompts never pay back its one-off cost."
        )
    return RubricReport(
        headline=result.headline,
        scores=tuple(
            ScoreRow(rank=i, path=p, label=PATH_LABELS[p], score=format_score(result.scores[p]))
            for i, p in enumerate(result.ranking, start=1)
        ),
        hybrid_label=hybrid.label if hybrid else None,
        hybrid_reason=hybrid.reason if hybrid else None,
        hybrid_citations=tuple(numbers[c] for c in hybrid.citations if c in numbers)
        if hybrid
        else (),
        flags=tuple(
            FlagRow(f.severity, option_label(f.path) if f.path else "", f.message)
            for f in result.flags
        ),
        costs=tuple(
            CostRow(
                label=option_label(path),
                one_off=format_usd(cost.one_off_usd),
                monthly=format_usd(cost.monthly_usd),
                per_1k=format_usd(cost.usd_per_query * 1000),
                notes=" ".join(cost.notes),
            )
            for path, cost in result.costs.items()
        ),
        break_even=break_even,
        base_scores=", ".join(
            f"{PATH_LABELS.get(p, p)} {format_score(v)}" for p, v in result.base_scores.items()
        ),
        path_labels=tuple(PATH_LABELS[p] for p in paths),
        factors=tuple(f for f in factors if f.active),
        idle_factors=tuple(f for f in factors if not f.active),
        adjustments=tuple(
            f"{option_label(a.path)}: {a.before:.1f} → {a.after:.1f}. {a.reason}"
            for a in result.adjustments
        ),
        references=references,
        cost_chart=cost_chart_svg(
            result.costs,
            queries_per_month=queries_per_month,
            break_even=result.break_even_queries_per_month,
        ),
    )


def _citation_numbers(result: ScoreResult) -> dict[str, int]:
    """Citation id → reference number, in order of first use (factors, then the hybrid).

    Idle factors are listed on the report too, with their citations, so they count as used.
    """
    used: list[str] = [c for f in result.factors for c in f.citations]
    if result.hybrid is not None:
        used.extend(result.hybrid.citations)
    numbers: dict[str, int] = {}
    for cid in used:
        numbers.setdefault(cid, len(numbers) + 1)
    return numbers


def _contribution(value: float) -> Contribution:
    # Contributions under 0.05 round to ±0.0: not worth a colour.
    tone = "pos" if value > 0.05 else ("neg" if value < -0.05 else "")
    return Contribution(f"{value:+.1f}", tone)
