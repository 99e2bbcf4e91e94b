"""Score the three paths for one intake: apply the rubric, then the rules that sit on top of it.

``score`` is pure: the same intake, sample summary and price table always give the same result.
"""

from __future__ import annotations

from typing import Final

from app.domain.intake import FailureMode, Intake
from app.domain.samples.schemas import SampleSummary
from app.domain.scoring import citations as c
from app.domain.scoring.costs import CostEstimate, PriceTable, estimate_costs
from app.domain.scoring.flags import feasibility_flags
from app.domain.scoring.paths import HYBRID_FT_RAG, HYBRID_LABELS, PATH_LABELS, PATHS
from app.domain.scoring.rubric import (
    BASE_SCORES,
    MIN_FINE_TUNING_EXAMPLES,
    RUBRIC,
    Factor,
    ScoringContext,
)
from app.domain.scoring.scales import clamp
from app.domain.scoring.schemas import (
    FactorContribution,
    Flag,
    HybridRecommendation,
    ScoreAdjustment,
    ScoreResult,
)

__all__ = [
    "PATH_LABELS",
    "CostEstimate",
    "FactorContribution",
    "Flag",
    "HybridRecommendation",
    "ScoreAdjustment",
    "ScoreResult",
    "apply_factor",
    "headline",
    "rank",
    "recommend_hybrid",
    "score",
]

# Both FT and RAG at or above this, and this close, suggests doing both.
HYBRID_MIN_SCORE: Final = 60.0
HYBRID_MAX_GAP: Final = 8.0
# How far below the best other path fine-tuning is held when examples are too few.
TOO_FEW_EXAMPLES_MARGIN: Final = 1.0


def score(
    intake: Intake,
    summary: SampleSummary | None = None,
    price_table: PriceTable | None = None,
) -> ScoreResult:
    """Score prompting, RAG and fine-tuning for `intake` (0–100 each), with costs and flags."""
    costs = estimate_costs(intake, summary, price_table)
    ctx = ScoringContext(intake=intake, summary=summary, costs=costs)
    factors = [apply_factor(factor, ctx) for factor in RUBRIC]
    sums: dict[str, float] = {
        path: round(BASE_SCORES[path] + sum(f.contribution[path] for f in factors), 1)
        for path in PATHS
    }
    scores: dict[str, float] = {path: clamp(total, 0.0, 100.0) for path, total in sums.items()}
    adjustments = _capped_to_scale(sums, scores)
    adjustments += _hold_fine_tuning_below_others(intake, scores)
    ranking = rank(scores, tiebreak=sums)
    flags = feasibility_flags(ctx, ranking)
    hybrid = recommend_hybrid(intake, scores, ranking, flags)
    return ScoreResult(
        scores=scores,
        ranking=ranking,
        hybrid=hybrid,
        flags=flags,
        costs=costs.costs,
        break_even_queries_per_month=costs.break_even_queries_per_month,
        memory=costs.memory,
        base_scores=dict(BASE_SCORES),
        factors=factors,
        adjustments=adjustments,
        sources=c.get_citations(_cited_ids(factors, hybrid)),
        headline=headline(scores, ranking, hybrid, flags),
    )


def apply_factor(factor: Factor, ctx: ScoringContext) -> FactorContribution:
    """One rubric row applied: contribution = weight × activation × effect, per path."""
    activation = round(clamp(factor.activation(ctx)), 3)
    effect = factor.effect.as_dict()
    return FactorContribution(
        factor_id=factor.id,
        name=factor.name,
        reads=list(factor.reads),
        input_value=factor.describe(ctx),
        activation=activation,
        weight=factor.weight,
        effect=effect,
        # Rounded here, and the score summed from these, so the printed table adds up.
        # (+ 0.0 turns the -0.0 of a zero activation into a plain 0.0 for display.)
        contribution={
            path: round(factor.weight * activation * effect[path], 2) + 0.0 for path in PATHS
        },
        rationale=factor.rationale,
        citations=list(factor.citations),
    )


def rank(scores: dict[str, float], tiebreak: dict[str, float] | None = None) -> list[str]:
    """Paths by score, best first. Equal scores go to the larger `tiebreak` (the uncapped factor
    sums: two paths both capped at 100 are not equally supported), then to the simpler path."""
    tiebreak = tiebreak or scores
    return sorted(PATHS, key=lambda path: (-scores[path], -tiebreak[path], PATHS.index(path)))


def _capped_to_scale(sums: dict[str, float], scores: dict[str, float]) -> list[ScoreAdjustment]:
    """The cap to 0–100 recorded as an adjustment, so the factor table still adds up."""
    return [
        ScoreAdjustment(
            path=path,
            before=total,
            after=scores[path],
            reason=f"The factors add up beyond the 0–100 scale ({total:.1f}); the score is "
            f"capped at {scores[path]:.0f}, and the uncapped sum breaks ties in the ranking.",
        )
        for path, total in sums.items()
        if total != scores[path]
    ]


def _hold_fine_tuning_below_others(
    intake: Intake, scores: dict[str, float]
) -> list[ScoreAdjustment]:
    """With too few examples, fine-tuning must never be the first recommendation.

    The evidence is categorical (under ~100–200 examples, few-shot wins), so a strong intake
    elsewhere must not outvote it. Mutates `scores`; returns the adjustment for the record.
    """
    if intake.examples_available >= MIN_FINE_TUNING_EXAMPLES:
        return []
    best_other = max(scores["prompting"], scores["rag"])
    ceiling = max(0.0, round(best_other - TOO_FEW_EXAMPLES_MARGIN, 1))
    before = scores["fine_tuning"]
    if before <= ceiling:
        return []
    scores["fine_tuning"] = ceiling
    return [
        ScoreAdjustment(
            path="fine_tuning",
            before=before,
            after=ceiling,
            reason=f"Fewer than {MIN_FINE_TUNING_EXAMPLES} examples: fine-tuning is held below "
            "the best other path.",
        )
    ]


def recommend_hybrid(
    intake: Intake, scores: dict[str, float], ranking: list[str], flags: list[Flag]
) -> HybridRecommendation | None:
    """Fine-tuning + RAG when domain errors meet missing/fresh facts, or both score high."""
    modes = intake.failure_modes
    facts_problem = FailureMode.missing_facts in modes or FailureMode.needs_fresh_info in modes
    if FailureMode.domain_errors in modes and facts_problem:
        reason = (
            "Domain errors plus missing or fresh facts: fine-tune for the domain's behaviour and "
            "retrieve the facts; the two gains stack."
        )
    elif (
        set(ranking[:2]) == {"rag", "fine_tuning"}
        and min(scores["rag"], scores["fine_tuning"]) >= HYBRID_MIN_SCORE
        and abs(scores["rag"] - scores["fine_tuning"]) <= HYBRID_MAX_GAP
    ):
        reason = (
            f"RAG ({scores['rag']:.0f}) and fine-tuning ({scores['fine_tuning']:.0f}) both score "
            "high and close: they fix different problems, and their gains stack."
        )
    else:
        return None
    blockers = [f for f in flags if f.path == "fine_tuning" and f.severity == "blocker"]
    if blockers:
        reason += (
            " Start with RAG; add fine-tuning once these are resolved: "
            + "; ".join(f.id for f in blockers)
            + "."
        )
    return HybridRecommendation(
        id=HYBRID_FT_RAG,
        label=HYBRID_LABELS[HYBRID_FT_RAG],
        paths=["fine_tuning", "rag"],
        reason=reason,
        citations=[c.BALAGUER_2024, c.OPENAI_ACCURACY],
    )


def headline(
    scores: dict[str, float],
    ranking: list[str],
    hybrid: HybridRecommendation | None,
    flags: list[Flag],
) -> str:
    """One sentence a tech lead can forward: the winner, the runners-up, what to watch."""
    first, second, third = ranking
    sentence = (
        f"{PATH_LABELS[first]} fits best ({scores[first]:.0f}/100), ahead of "
        f"{PATH_LABELS[second]} ({scores[second]:.0f}) and {PATH_LABELS[third]} "
        f"({scores[third]:.0f})"
    )
    if hybrid is not None:
        sentence += f"; consider {hybrid.label} together"
    blockers = sum(1 for f in flags if f.severity == "blocker" and f.path in (first, None))
    if blockers:
        sentence += f", but resolve {blockers} blocker{'s' if blockers > 1 else ''} first"
    return sentence + "."


def _cited_ids(factors: list[FactorContribution], hybrid: HybridRecommendation | None) -> list[str]:
    ids = [cid for factor in factors for cid in factor.citations]
    if hybrid is not None:
        ids += hybrid.citations
    return list(dict.fromkeys(ids))
