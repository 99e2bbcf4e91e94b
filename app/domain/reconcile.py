"""The recommendation rule: reconcile the rubric's ranking with the pilot's measurements.

The rule, stated once here and printed on every report (``RULE_TEXT``):

1. A pilot difference whose 95% interval excludes zero outranks the rubric on quality, but
   only between arms that ran on the deployment model, or on one model known to be capable
   of what both arms need (`app.domain.proxy`): a gap on a small proxy measures the proxy.
2. Feasibility, cost and volatility come from the rubric (and the pilot's measured token
   counts): an arm whose path the rubric flags as a blocker is never recommended.
3. Where intervals overlap, the pilot cannot tell the arms apart: the rubric decides between
   them, confidence is low, and the report estimates the test-set size that would settle it.
4. A clear difference smaller than the intake's minimum that matters is a tie on quality: cost,
   then latency, then simplicity decide (`app.domain.tiebreak`).

Pure functions over small dataclasses: no database, no web, so the rule is unit-tested alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from app.domain.arm_registry import Capability
from app.domain.arms import ARMS
from app.domain.formatting import (
    format_count,
    format_points,
    format_quality,
    format_score,
    format_signed_interval,
)
from app.domain.intake import DEFAULT_MIN_DIFFERENCE_POINTS
from app.domain.proxy import Comparability, comparable, describe_size, is_deployment_model
from app.domain.records import ArmModel, excludes_zero
from app.domain.scoring.paths import HYBRID_FT_RAG, HYBRID_LABELS, PATH_LABELS
from app.domain.scoring.schemas import ScoreResult
from app.domain.tiebreak import Contender, break_tie, difference_matters, explain, format_minimum

Confidence = Literal["high", "medium", "low"]

OPTION_LABELS: Final[dict[str, str]] = {**PATH_LABELS, **HYBRID_LABELS}
OPTION_PARTS: Final[dict[str, tuple[str, ...]]] = {HYBRID_FT_RAG: ("fine_tuning", "rag")}

# A rubric-only pick earns "medium" when its score leads the runner-up by at least this many
# points out of 100; closer than that, small changes to the answers could flip the ranking.
RUBRIC_CLEAR_MARGIN: Final = 10.0

RULE_TEXT: Final = (
    "A difference between two pilot arms whose 95% interval excludes zero outranks the rubric "
    "on quality, but only between arms run on the model you will deploy, or on one model known "
    "to be capable of what both arms need (a model under 1B parameters is not known to learn "
    "from shots or to read retrieved passages); otherwise the rubric decides and the report "
    "names the run that would settle it. A pilot on another model than the one you will "
    "deploy caps confidence at medium. Feasibility, cost and volatility come from the rubric "
    "and the measured token counts, so an arm the rubric marks as blocked is never "
    "recommended. When intervals overlap the pilot cannot tell the arms apart: the rubric "
    "decides between them, confidence is low, and the report estimates how many test "
    "examples would settle it. A clear difference smaller than the minimum gain you said "
    "matters is a tie on quality: then the lower cost per 1,000 queries, then the lower median "
    "latency, then the simpler path decides (a difference of exactly the minimum matters)."
)
MORE_DATA_TEXT: Final = (
    "Test examples needed ≈ n_now × (half-width of the difference's 95% interval ÷ |observed "
    "difference|)². An interval narrows with the square root of the test-set size, so this is "
    "the size at which it would just exclude zero if the difference stayed as observed."
)


def option_label(option: str) -> str:
    return OPTION_LABELS.get(option, option)


@dataclass(frozen=True)
class RubricPick:
    """What the rubric says, reduced to what the rule needs."""

    order: tuple[str, ...]  # every option (paths and combinations), the rubric's favourite first
    scores: Mapping[str, float]  # 0–100 per single path
    blocked: Mapping[str, str] = field(default_factory=dict)  # option → the blocker's message

    @property
    def choice(self) -> str:
        """The rubric's favourite among options it does not block."""
        return next((o for o in self.order if o not in self.blocked), self.order[0])

    def rank(self, option: str) -> int:
        return self.order.index(option) if option in self.order else len(self.order)

    def score_clause(self, option: str) -> str:
        if option in self.scores:
            return f" ({format_score(self.scores[option])}/100)"
        parts = OPTION_PARTS.get(option, tuple(option.split("+")))
        return " (as a combination of " + " and ".join(option_label(p) for p in parts) + ")"


def rubric_pick(result: ScoreResult) -> RubricPick:
    """The rubric's order of options: its hybrid first when it recommends one, then its ranking.

    The fine-tuning + RAG combination is always an option (the pilot can measure it); when the
    rubric did not recommend it, it ranks after the single paths, as the most complex choice.
    """
    order: list[str] = []
    parts: dict[str, tuple[str, ...]] = dict(OPTION_PARTS)
    if result.hybrid is not None:
        order.append(result.hybrid.id)
        parts[result.hybrid.id] = tuple(result.hybrid.paths)
    order.extend(p for p in result.ranking if p not in order)
    if HYBRID_FT_RAG not in order:
        order.append(HYBRID_FT_RAG)
    blocked: dict[str, str] = {}
    for flag in result.flags:
        # A flag without a path concerns the whole intake, so it cannot separate the options.
        if flag.severity == "blocker" and flag.path is not None:
            blocked.setdefault(flag.path, flag.message)
    for option in order:
        for part in parts.get(option, ()):
            if part in blocked:
                blocked.setdefault(option, blocked[part])
    return RubricPick(order=tuple(order), scores=dict(result.scores), blocked=blocked)


@dataclass(frozen=True)
class ArmEvidence:
    """One arm's primary quality metric (a 0–1 fraction) with its 95% interval."""

    arm: str
    label: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    model: ArmModel | None = None  # which model answered (None: an old pilot did not say)
    cost_per_1k_usd: float | None = None  # priced from the measured tokens
    latency_p50_ms: float | None = None

    @property
    def needs(self) -> frozenset[Capability]:
        return ARMS.get(self.arm).needs.capabilities if self.arm in ARMS else frozenset()

    @property
    def option(self) -> str:
        """The path (or combination) this arm is evidence for (`app.domain.arms`)."""
        return ARMS.evidence_for(self.arm) or self.arm

    @property
    def half_width(self) -> float | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class ArmGap:
    """quality(arm_a) − quality(arm_b) with its 95% interval."""

    arm_a: str
    arm_b: str
    delta: float
    ci_low: float
    ci_high: float
    paired: bool = True  # False: approximated from the two arms' own intervals

    @property
    def significant(self) -> bool:
        return excludes_zero(self.ci_low, self.ci_high)

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    def flipped(self) -> ArmGap:
        return ArmGap(self.arm_b, self.arm_a, -self.delta, -self.ci_high, -self.ci_low, self.paired)


@dataclass(frozen=True)
class PilotEvidence:
    """A finished pilot's quality evidence on its primary metric."""

    metric_label: str
    arms: tuple[ArmEvidence, ...]
    differences: tuple[ArmGap, ...] = ()
    n_test: int | None = None  # test-set size, for the more-data estimate
    target_size_b: float | None = None  # the intake's deployment model size, billions

    def comparability(self, a: ArmEvidence, b: ArmEvidence) -> Comparability:
        return comparable(a.model, a.needs, b.model, b.needs, self.target_size_b)

    def proxy_models(self) -> list[ArmModel]:
        """The models that answered but are not the deployment model, without repeats."""
        seen: dict[str, ArmModel] = {}
        for arm in self.arms:
            if arm.model is not None and not is_deployment_model(arm.model, self.target_size_b):
                seen.setdefault(arm.model.model_id, arm.model)
        return list(seen.values())

    def proxy_note(self) -> str | None:
        """The headline's line when the pilot did not run on the model the team deploys."""
        models = self.proxy_models()
        if not models:
            return None
        names = _and_list([f"{m.model_id} ({describe_size(m.parameters)})" for m in models])
        target = f"the {self.target_size_b:g}B model" if self.target_size_b else "the model"
        return (
            f"The pilot ran on {names}, not {target} you plan to deploy: it measures the "
            "paths on a stand-in, so confidence is capped at medium."
        )

    def arm(self, name: str) -> ArmEvidence | None:
        return next((a for a in self.arms if a.arm == name), None)

    def gap(self, arm_a: str, arm_b: str) -> ArmGap | None:
        """The stored paired difference a − b; else one approximated from the arms' intervals.

        The approximation treats the arms as independent (half-widths add in quadrature). A
        paired interval on the same test items is narrower, so the fallback errs towards
        "cannot tell apart" — never towards overruling the rubric.
        """
        for diff in self.differences:
            if (diff.arm_a, diff.arm_b) == (arm_a, arm_b):
                return diff
            if (diff.arm_a, diff.arm_b) == (arm_b, arm_a):
                return diff.flipped()
        a, b = self.arm(arm_a), self.arm(arm_b)
        if a is None or b is None or a.half_width is None or b.half_width is None:
            return None
        delta = a.value - b.value
        half = math.hypot(a.half_width, b.half_width)
        return ArmGap(arm_a, arm_b, delta, delta - half, delta + half, paired=False)


def needed_test_size(n_now: int, half_width: float, delta: float) -> int | None:
    """Test examples needed to resolve `delta` at the observed variance; None if delta is 0.

    n ≈ n_now × (half_width / |delta|)²: the interval narrows with √n.
    """
    if delta == 0:
        return None
    return math.ceil(n_now * (half_width / abs(delta)) ** 2)


@dataclass(frozen=True)
class MoreData:
    """How much more test data would settle one unresolved comparison."""

    arm_a: str
    arm_b: str
    delta: float
    half_width: float
    n_now: int | None
    n_needed: int | None
    text: str


def more_data(evidence: PilotEvidence, leader: ArmEvidence, other: ArmEvidence) -> MoreData:
    """The estimate for `leader` vs `other`, in one sentence a reader can act on."""
    gap = evidence.gap(leader.arm, other.arm)
    pair = (
        f"{leader.label} at {format_quality(leader.value)} and {other.label} at "
        f"{format_quality(other.value)}"
    )
    if gap is None:
        text = f"The pilot stored no interval for {pair}; rerun it to measure the difference."
        return MoreData(
            leader.arm, other.arm, leader.value - other.value, 0.0, evidence.n_test, None, text
        )
    if gap.delta == 0:
        text = (
            f"{pair} measured the same, so no test-set size would separate them: treat them "
            "as equal and let cost decide."
        )
        return MoreData(gap.arm_a, gap.arm_b, 0.0, gap.half_width, evidence.n_test, None, text)
    factor = (gap.half_width / abs(gap.delta)) ** 2
    needed = (
        needed_test_size(evidence.n_test, gap.half_width, gap.delta) if evidence.n_test else None
    )
    size = (
        f"about {format_count(needed)} test examples (now {format_count(evidence.n_test or 0)})"
        if needed is not None
        else f"a test set about {factor:.1f}× the current one"
    )
    text = (
        f"Separating {pair} would take {size}, if the difference stays at "
        f"{format_points(gap.delta)} with this variance."
    )
    return MoreData(gap.arm_a, gap.arm_b, gap.delta, gap.half_width, evidence.n_test, needed, text)


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

    @property
    def rubric_label(self) -> str:
        return option_label(self.rubric_option)


def rubric_confidence(rubric: RubricPick) -> Confidence:
    """Rubric alone: never high; medium when the favourite leads clearly."""
    ranked = sorted(rubric.scores.values(), reverse=True)
    if len(ranked) >= 2 and ranked[0] - ranked[1] >= RUBRIC_CLEAR_MARGIN:
        return "medium"
    return "low"


def reconcile(
    rubric: RubricPick,
    evidence: PilotEvidence | None,
    *,
    min_difference_points: float = DEFAULT_MIN_DIFFERENCE_POINTS,
) -> Recommendation:
    """Apply the rule (module docstring) to the rubric's order and the pilot's evidence.

    `min_difference_points` is the intake's smallest quality gain that matters.
    """
    decided = _reconcile(rubric, evidence, min_difference_points)
    return _with_proxy_cap(decided, evidence) if evidence is not None else decided


def _reconcile(
    rubric: RubricPick, evidence: PilotEvidence | None, min_difference_points: float
) -> Recommendation:
    if evidence is None or not evidence.arms:
        return _rubric_only(
            rubric,
            "No pilot has finished yet; a pilot on your own sample would add measured "
            "evidence on quality, latency and tokens per query.",
        )
    notes = [
        f"{a.label} was left out: {rubric.blocked[a.option]}"
        for a in evidence.arms
        if a.option in rubric.blocked
    ]
    feasible = [a for a in evidence.arms if a.option not in rubric.blocked]
    choice = rubric.choice
    if len(feasible) < 2:
        measured = _and_list([f"{a.label} at {format_quality(a.value)}" for a in feasible])
        notes.append(
            f"The pilot measured {measured or 'no feasible arm'}; with nothing to compare "
            "against it cannot rank the paths."
        )
        return _rubric_only(rubric, " ".join(notes), evidence=evidence)
    if choice not in {a.option for a in feasible}:
        notes.append(
            f"The pilot did not run an arm for {option_label(choice)}, so it cannot overrule "
            "the rubric's choice; add that arm to a pilot to test it."
        )
        return _rubric_only(rubric, " ".join(notes), evidence=evidence)

    # Best point estimate first; on equal values, the rubric's order breaks the tie.
    leader = max(feasible, key=lambda a: (a.value, -rubric.rank(a.option)))
    gaps = [
        (other, evidence.gap(leader.arm, other.arm)) for other in feasible if other is not leader
    ]
    tied = [leader] + [o for o, g in gaps if g is None or not g.significant]
    proxied = [
        (o, g)
        for o, g in gaps
        if g is not None and g.significant and not evidence.comparability(leader, o).counts
    ]
    # Clear, counted, but smaller than the minimum that matters: tied on quality.
    small = [
        o
        for o, g in gaps
        if g is not None
        and g.significant
        and evidence.comparability(leader, o).counts
        and not difference_matters(g.delta, min_difference_points)
    ]
    if proxied:
        return _proxy_cannot_decide(rubric, evidence, leader, tied + small, proxied, notes)
    if len(tied) == 1 and small:
        return _practical_tie(rubric, evidence, [leader, *small], notes, min_difference_points)
    if len(tied) == 1:
        return _pilot_decides(rubric, evidence, leader, gaps, notes)
    if small:
        notes.append(
            _and_list([o.label for o in small])
            + f" trail{'s' if len(small) == 1 else ''} {leader.label} by less than the "
            f"{format_minimum(min_difference_points)} minimum that matters to you, so "
            f"{'it counts' if len(small) == 1 else 'they count'} as tied on quality too."
        )
    return _overlap(rubric, evidence, tied, gaps, notes, also_tied=small)


def _with_proxy_cap(recommendation: Recommendation, evidence: PilotEvidence) -> Recommendation:
    """A pilot on a stand-in model caps confidence at medium, and the headline says so."""
    note = evidence.proxy_note()
    if note is None:
        return recommendation
    capped: Confidence = (
        "medium" if recommendation.confidence == "high" else (recommendation.confidence)
    )
    return replace(recommendation, confidence=capped, proxy_note=note)


def _proxy_cannot_decide(
    rubric: RubricPick,
    evidence: PilotEvidence,
    leader: ArmEvidence,
    tied: list[ArmEvidence],
    proxied: list[tuple[ArmEvidence, ArmGap]],
    notes: list[str],
) -> Recommendation:
    """The leader's clear gaps ran on a model that cannot show them: the rubric decides."""
    candidates = [*tied, *(o for o, _ in proxied)]
    pick = min(candidates, key=lambda a: rubric.rank(a.option))
    label = option_label(pick.option)
    confidence = rubric_confidence(rubric)
    reason = evidence.comparability(leader, proxied[0][0]).reason
    measured = _and_list(
        [
            f"{o.label} by {format_points(g.delta)} (95% CI "
            f"{format_signed_interval(g.ci_low, g.ci_high)} pts)"
            for o, g in proxied
        ]
    )
    rerun = _and_list(sorted({a.label for a in candidates}))
    why = (
        f"{label} is recommended with {confidence} confidence, by the rubric"
        f"{rubric.score_clause(pick.option)}. On the pilot, {leader.label} led "
        f"{measured} on {evidence.metric_label}, but {reason}, so the gap measures the model "
        "more than the paths and does not overrule the rubric. To settle it, register the "
        f"model you will deploy and re-run {rerun} on it."
    )
    return Recommendation(
        option=pick.option,
        label=label,
        confidence=confidence,
        decided_by="rubric",
        why=" ".join([why, *notes]),
        rubric_option=rubric.choice,
        pilot_leader=leader.arm,
        unresolved=tuple(a.arm for a in candidates),
    )


def _pilot_decides(
    rubric: RubricPick,
    evidence: PilotEvidence,
    leader: ArmEvidence,
    gaps: list[tuple[ArmEvidence, ArmGap | None]],
    notes: list[str],
) -> Recommendation:
    option, choice = leader.option, rubric.choice
    label = option_label(option)
    # The weakest lead is the one a reader should check: the smallest lower bound.
    closest_arm, closest = min(
        ((o, g) for o, g in gaps if g is not None), key=lambda item: item[1].ci_low
    )
    measured = (
        f"on your sample {leader.label} scored {format_quality(leader.value)} "
        f"{evidence.metric_label}, ahead of every other arm by a margin whose 95% interval "
        f"excludes zero (the closest: {format_points(closest.delta)} over {closest_arm.label}, "
        f"95% CI {format_signed_interval(closest.ci_low, closest.ci_high)} pts)"
    )
    if option == choice:
        confidence: Confidence = "high"
        why = (
            f"{label} is recommended with high confidence: {measured}. The rubric ranks "
            f"{label} first as well{rubric.score_clause(option)}, so feasibility, cost and "
            "volatility agree with the measured quality."
        )
    else:
        confidence = "medium"
        why = (
            f"{label} is recommended with medium confidence. The rubric ranked "
            f"{option_label(choice)} first{rubric.score_clause(choice)}, but {measured}. A "
            "measured difference like this outranks the rubric on quality; the rubric's cost "
            f"and feasibility notes for {label} still apply."
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


def _overlap(
    rubric: RubricPick,
    evidence: PilotEvidence,
    tied: list[ArmEvidence],
    gaps: list[tuple[ArmEvidence, ArmGap | None]],
    notes: list[str],
    also_tied: list[ArmEvidence] | None = None,
) -> Recommendation:
    leader = tied[0]
    pick = min([*tied, *(also_tied or ())], key=lambda a: rubric.rank(a.option))
    label = option_label(pick.option)
    estimates = tuple(more_data(evidence, leader, other) for other in tied[1:])
    names = _and_list([f"{a.label} at {format_quality(a.value)}" for a in tied])
    closest = next((g for o, g in gaps if o is tied[1] and g is not None), None)
    interval = (
        f": the 95% interval of {leader.label} minus {tied[1].label}, "
        f"{format_signed_interval(closest.ci_low, closest.ci_high)} pts, includes zero"
        if closest is not None
        else ""
    )
    why = (
        f"{label} is recommended with low confidence. On {evidence.metric_label} the pilot "
        f"could not separate {names}{interval}. So the rubric decides between them: of these, "
        f"it ranks {label} first{rubric.score_clause(pick.option)}. {estimates[0].text}"
    )
    return Recommendation(
        option=pick.option,
        label=label,
        confidence="low",
        decided_by="rubric",
        why=" ".join([why, *notes]),
        rubric_option=rubric.choice,
        pilot_leader=leader.arm,
        unresolved=tuple(a.arm for a in tied),
        more_data=estimates,
    )


def _practical_tie(
    rubric: RubricPick,
    evidence: PilotEvidence,
    tied: list[ArmEvidence],
    notes: list[str],
    min_points: float,
) -> Recommendation:
    """The pilot separated the arms, but by less than the minimum that matters (rule 4)."""
    by_arm = {a.arm: a for a in tied}
    result = break_tie(
        [Contender(a.arm, a.label, a.option, a.cost_per_1k_usd, a.latency_p50_ms) for a in tied]
    )
    winner = by_arm[result.winner.arm]
    option, choice = winner.option, rubric.choice
    label = option_label(option)
    reasons = " ".join(
        explain(result.winner, v, winner.value - by_arm[v.other.arm].value, min_points)
        for v in result.verdicts
    )
    agreement = (
        f"The rubric ranks {label} first as well{rubric.score_clause(option)}."
        if option == choice
        else f"The rubric ranked {option_label(choice)} first{rubric.score_clause(choice)}; its "
        f"cost and feasibility notes for {label} still apply."
    )
    confidence: Confidence = "high" if option == choice else "medium"
    why = (
        f"{label} is recommended with {confidence} confidence. On {evidence.metric_label} the "
        f"pilot measured clear but small differences: {reasons} {agreement}"
    )
    return Recommendation(
        option=option,
        label=label,
        confidence=confidence,
        decided_by="pilot",
        why=" ".join([why, *notes]),
        rubric_option=choice,
        pilot_leader=tied[0].arm,
        decided_on=result.criteria,
    )


def _rubric_only(
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
        why=why,
        rubric_option=choice,
        pilot_leader=leader,
    )


def _and_list(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
