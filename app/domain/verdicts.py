"""The verdicts the recommendation rule can reach, each with its reasons in plain words.

`app.domain.reconcile` decides which one applies; each function here builds that
`Recommendation`: the pilot decides (`pilot_decides`), a tie on quality is broken by cost,
latency and simplicity (`practical_tie`), the pilot cannot tell the arms apart
(`unresolved`), a stand-in model cannot show the gap (`proxy_cannot_decide`), or the rubric
decides alone (`rubric_only`). A winner that does not clearly beat the majority floor falls
back to the rubric here, where the winner is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from app.domain.evidence import Reading, clearly_positive, shortfalls
from app.domain.formatting import (
    format_count,
    format_points,
    format_quality,
    format_score,
    format_signed_interval,
)
from app.domain.more_data import MoreData, more_data
from app.domain.tiebreak import Contender, break_tie, explain, format_minimum
from app.domain.verdict_inputs import (
    ArmEvidence,
    ArmGap,
    PilotEvidence,
    RubricPick,
    and_list,
    option_label,
)

Confidence = Literal["high", "medium", "low"]

# A rubric-only pick earns "medium" when its score leads the runner-up by at least this many
# points out of 100; closer than that, small changes to the answers could flip the ranking.
RUBRIC_CLEAR_MARGIN: Final = 10.0


@dataclass(frozen=True)
class Recommendation:
    """The report's headline: one option, how sure we are, and why, in plain words."""

    option: str  # a path id or a combination id such as "fine_tuning+rag"
    label: str
    confidence: Confidence
    decided_by: Literal["pilot", "rubric"]
    why: str
    rubric_option: str
    pilot_leader: str | None = None  # the arm with the best point estimate
    proxy_note: str | None = None  # set when the pilot ran on a stand-in for the deployed model
    unresolved: tuple[str, ...] = ()  # arms the pilot could not tell apart (leader first)
    more_data: tuple[MoreData, ...] = ()
    decided_on: tuple[str, ...] = ()  # quality tied under the minimum: cost, latency, simplicity
    failures: tuple[str, ...] = ()  # arms that did not run, each with its reason
    inconclusive: bool = False  # the pilot's evidence was too thin to read at all

    @property
    def rubric_label(self) -> str:
        return option_label(self.rubric_option)


def rubric_confidence(rubric: RubricPick) -> Confidence:
    """Rubric alone: never high; medium when the favourite leads clearly."""
    ranked = sorted(rubric.scores.values(), reverse=True)
    if len(ranked) >= 2 and ranked[0] - ranked[1] >= RUBRIC_CLEAR_MARGIN:
        return "medium"
    return "low"


def _floor_refusal(evidence: PilotEvidence, winner: ArmEvidence) -> str | None:
    """Why `winner` may not be recommended on pilot evidence against the floor; None if it
    clearly beats the majority label (or the floor did not run)."""
    floor = evidence.floor
    if floor is None:
        return None
    gap = evidence.gap(winner.arm, floor.arm)
    if gap is not None and clearly_positive(gap.facts(evidence.n_test)):
        return None
    interval = (
        f" (difference {format_points(gap.delta)}, 95% CI "
        f"{format_signed_interval(gap.ci_low, gap.ci_high)} pts)"
        if gap is not None
        else ""
    )
    return (
        f"{winner.label} at {format_quality(winner.value)} does not clearly beat always "
        f"answering the commonest label ({format_quality(floor.value)}){interval}, so the "
        "pilot cannot recommend it on measured quality"
    )


def proxy_cannot_decide(
    rubric: RubricPick,
    evidence: PilotEvidence,
    leader: ArmEvidence,
    tied: list[ArmEvidence],
    proxied: list[ArmEvidence],
    notes: list[str],
) -> Recommendation:
    """The leader's gaps ran on a model that cannot show them: the rubric decides."""
    candidates = [leader, *tied, *proxied]
    pick = min(candidates, key=lambda a: rubric.rank(a.option))
    confidence = rubric_confidence(rubric)
    reason = evidence.comparability(leader, proxied[0]).reason
    measured = and_list([_gap_phrase(evidence, leader, o) for o in proxied])
    rerun = and_list(sorted({a.label for a in candidates}))
    why = (
        f"{pick.approach} is recommended with {confidence} confidence, by the rubric"
        f"{rubric.score_clause(pick.option)}. On the pilot, {leader.label} against "
        f"{measured} on {evidence.metric_label}, but {reason}, so the comparison measures the "
        "model more than the paths and does not overrule the rubric. To settle it, register "
        f"the model you will deploy and re-run {rerun} on it."
    )
    return Recommendation(
        option=pick.option,
        label=pick.approach,
        confidence=confidence,
        decided_by="rubric",
        why=" ".join([why, *notes]),
        rubric_option=rubric.choice,
        pilot_leader=leader.arm,
        unresolved=tuple(a.arm for a in candidates),
    )


def _gap_phrase(evidence: PilotEvidence, leader: ArmEvidence, other: ArmEvidence) -> str:
    gap = evidence.gap(leader.arm, other.arm)
    if gap is None:
        return other.label
    return (
        f"{other.label} differed by {format_points(gap.delta)} (95% CI "
        f"{format_signed_interval(gap.ci_low, gap.ci_high)} pts)"
    )


def pilot_decides(
    rubric: RubricPick,
    evidence: PilotEvidence,
    leader: ArmEvidence,
    others: list[ArmEvidence],
    notes: list[str],
) -> Recommendation:
    refusal = _floor_refusal(evidence, leader)
    if refusal is not None:
        return rubric_only(rubric, f"{refusal}. " + " ".join(notes), evidence=evidence)
    option, choice = leader.option, rubric.choice
    label = leader.approach
    # The weakest lead is the one a reader should check: the smallest lower bound.
    gaps = [(o, g) for o in others if (g := evidence.gap(leader.arm, o.arm)) is not None]
    closest_arm, closest = min(gaps, key=lambda item: item[1].ci_low)
    sample = _sample_clause(closest, evidence.n_test)
    measured = (
        f"on your sample {leader.label} scored {format_quality(leader.value)} "
        f"{evidence.metric_label}, ahead of every other arm by a margin whose whole 95% "
        f"interval clears the minimum that matters (the closest: "
        f"{format_points(closest.delta)} over {closest_arm.label}, 95% CI "
        f"{format_signed_interval(closest.ci_low, closest.ci_high)} pts{sample})"
    )
    if option == choice:
        confidence: Confidence = "high"
        why = (
            f"{label} is recommended with high confidence: {measured}. The rubric ranks "
            f"{option_label(option)} first as well{rubric.score_clause(option)}, so "
            "feasibility, cost and volatility agree with the measured quality."
        )
    else:
        confidence = "medium"
        why = (
            f"{label} is recommended with medium confidence. The rubric ranked "
            f"{option_label(choice)} first{rubric.score_clause(choice)}, but {measured}. A "
            "measured difference like this outranks the rubric on quality; the rubric's cost "
            f"and feasibility notes for {option_label(option)} still apply."
        )
    return Recommendation(
        option=option,
        label=label,
        confidence=confidence,
        decided_by="pilot",
        why=" ".join([why, *notes]),
        rubric_option=choice,
        pilot_leader=leader.arm,
    )


def _sample_clause(gap: ArmGap, n_test: int | None) -> str:
    """', on 120 paired items' or ', on 312 items in 80 groups' (nothing for old pilots)."""
    n = gap.n_items if gap.n_items is not None else n_test
    if n is None:
        return ""
    if gap.n_groups is not None and gap.n_groups < n:
        return f", on {format_count(n)} items in {format_count(gap.n_groups)} groups"
    return f", on {format_count(n)} paired items"


def unresolved(
    rubric: RubricPick,
    evidence: PilotEvidence,
    leader: ArmEvidence,
    open_: list[ArmEvidence],
    ties: list[ArmEvidence],
    notes: list[str],
    minimum: float,
) -> Recommendation:
    """Some comparison with the leader is inconclusive or unresolved: the rubric decides
    among the leader, those arms and the arms tied with it, with low confidence."""
    tied = [leader, *open_]
    pick = min([*tied, *ties], key=lambda a: rubric.rank(a.option))
    estimates = tuple(more_data(evidence, leader, other, minimum) for other in open_)
    thin = all(evidence.reading(leader, o, minimum) is Reading.inconclusive for o in open_)
    names = and_list([f"{a.label} at {format_quality(a.value)}" for a in tied])
    first = open_[0]
    gap = evidence.gap(leader.arm, first.arm)
    if gap is None:
        detail = ""
    else:
        facts = gap.facts(evidence.n_test)
        missing = shortfalls(facts)
        if missing:
            detail = f": the comparison of {leader.label} with {first.label} rests on " + (
                "; ".join(missing)
            )
        else:
            detail = (
                f": the 95% interval of {leader.label} minus {first.label}, "
                f"{format_signed_interval(gap.ci_low, gap.ci_high)} pts"
                f"{_sample_clause(gap, evidence.n_test)}, " + _against_minimum(minimum)
            )
    if ties:
        notes.append(
            and_list([o.label for o in ties])
            + f" {'is' if len(ties) == 1 else 'are'} tied with {leader.label} (the whole "
            f"interval inside ±{minimum:g} points), so "
            f"{'it joins' if len(ties) == 1 else 'they join'} the rubric's choice too."
        )
    verb = "is inconclusive about" if thin else "could not resolve"
    why = (
        f"{pick.approach} is recommended with low confidence. On {evidence.metric_label} the "
        f"pilot {verb} {names}{detail}. So the rubric decides between them: of these, it "
        f"ranks {option_label(pick.option)} first{rubric.score_clause(pick.option)}. "
        f"{estimates[0].text}"
    )
    return Recommendation(
        option=pick.option,
        label=pick.approach,
        confidence="low",
        decided_by="rubric",
        why=" ".join([why, *notes]),
        rubric_option=rubric.choice,
        pilot_leader=leader.arm,
        unresolved=tuple(a.arm for a in tied),
        more_data=estimates,
        inconclusive=thin,
    )


def _against_minimum(minimum: float) -> str:
    if minimum > 0:
        return (
            f"neither lies wholly beyond the {format_minimum(minimum)} minimum that matters "
            f"nor wholly inside ±{minimum:g} points"
        )
    return "includes zero"


def practical_tie(
    rubric: RubricPick,
    evidence: PilotEvidence,
    tied: list[ArmEvidence],
    notes: list[str],
    min_points: float,
) -> Recommendation:
    """Every other arm is tied with the leader or clearly behind it: cost, latency and
    simplicity decide among the tied ones (rule 7)."""
    by_arm = {a.arm: a for a in tied}
    result = break_tie(
        [Contender(a.arm, a.label, a.option, a.cost_per_1k_usd, a.latency_p50_ms) for a in tied]
    )
    winner = by_arm[result.winner.arm]
    refusal = _floor_refusal(evidence, winner)
    if refusal is not None:
        return rubric_only(rubric, f"{refusal}. " + " ".join(notes), evidence=evidence)
    option, choice = winner.option, rubric.choice
    reasons = " ".join(
        explain(result.winner, v, winner.value - by_arm[v.other.arm].value, min_points)
        for v in result.verdicts
    )
    agreement = (
        f"The rubric ranks {option_label(option)} first as well{rubric.score_clause(option)}."
        if option == choice
        else f"The rubric ranked {option_label(choice)} first{rubric.score_clause(choice)}; its "
        f"cost and feasibility notes for {option_label(option)} still apply."
    )
    confidence: Confidence = "high" if option == choice else "medium"
    why = (
        f"{winner.approach} is recommended with {confidence} confidence. On "
        f"{evidence.metric_label} the pilot measured differences whose whole 95% interval "
        f"lies inside ±{min_points:g} points, a tie on quality: {reasons} {agreement}"
    )
    return Recommendation(
        option=option,
        label=winner.approach,
        confidence=confidence,
        decided_by="pilot",
        why=" ".join([why, *notes]),
        rubric_option=choice,
        pilot_leader=tied[0].arm,
        decided_on=result.criteria,
    )


def rubric_only(
    rubric: RubricPick, note: str, *, evidence: PilotEvidence | None = None
) -> Recommendation:
    choice = rubric.choice
    label = option_label(choice)
    confidence = rubric_confidence(rubric)
    ranked = sorted(rubric.scores.items(), key=lambda kv: -kv[1])
    runner_up = next(((p, s) for p, s in ranked if p != choice), None)
    versus = (
        f", ahead of {option_label(runner_up[0])} at {format_score(runner_up[1])}"
        if runner_up is not None and choice in rubric.scores
        else ""
    )
    why = (
        f"{label} is recommended with {confidence} confidence, from the rubric alone"
        f"{rubric.score_clause(choice)}{versus}. {note}"
    )
    leader = max(evidence.arms, key=lambda a: a.value).arm if evidence and evidence.arms else None
    return Recommendation(
        option=choice,
        label=label,
        confidence=confidence,
        decided_by="rubric",
        why=why.strip(),
        rubric_option=choice,
        pilot_leader=leader,
    )
