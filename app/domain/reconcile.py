"""The recommendation rule: reconcile the rubric's ranking with the pilot's measurements.

The rule, stated once here and printed on every report (``RULE_TEXT``; docs/pilots.md gives
each step with the literature it follows):

1. **Enough evidence first** (`app.domain.evidence`). A difference decides nothing unless it
   rests on at least 30 paired test items (and 10 independent groups where items share a
   passage), and, for a paired binary metric, on at least 10 items where the arms disagree.
   A zero-width interval never decides. Otherwise the pilot is *inconclusive* and the rubric
   decides.
2. **The interval against the minimum that matters.** The leader (best point estimate) wins on
   quality against another arm only when the whole 95% interval of their difference lies at
   or beyond the intake's minimum; they are *tied* when the whole interval lies inside
   ±minimum; anything else is *unresolved*: the rubric decides, confidence is low, and the
   report gives the test size that would resolve it with 80% power.
3. **One primary comparison per arm.** The leader is compared with each other arm and must
   win or tie against every one (an intersection-union test: no adjustment is needed for the
   verdict; the exploratory table of all pairs is Holm-adjusted).
4. **The floor competes.** An arm that does not clearly beat the majority-label floor is not
   recommended on pilot evidence.
5. **Proxies** (`app.domain.proxy`): a difference counts only between arms run on the model
   you will deploy, or on one model known to be capable of what both arms need.
6. **Feasibility** comes from the rubric: an arm whose path it blocks is never recommended.
7. **Ties** under the minimum: cost, then latency, then simplicity decide (`app.domain.tiebreak`).
8. **Failures are named**: an arm that did not run is said in the headline, with its reason.

Pure functions over small dataclasses: no database, no web, so the rule is unit-tested alone
and the calibration harness (`bench/verdict_calibration.py`) simulates it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from app.domain.arm_registry import Capability
from app.domain.arms import ARMS
from app.domain.comparison import detecting_test_size, resolving_test_size
from app.domain.evidence import (
    MIN_DISCORDANT,
    MIN_GROUPS,
    MIN_TEST_ITEMS,
    GapFacts,
    Reading,
    StoredDifference,
    clearly_positive,
    read_gap,
    shortfalls,
)
from app.domain.formatting import (
    format_count,
    format_points,
    format_quality,
    format_score,
    format_signed_interval,
)
from app.domain.intake import DEFAULT_MIN_DIFFERENCE_POINTS
from app.domain.proxy import Comparability, comparable, describe_size, is_deployment_model
from app.domain.records import ArmModel
from app.domain.scoring.paths import HYBRID_FT_RAG, HYBRID_LABELS, PATH_LABELS
from app.domain.scoring.schemas import ScoreResult
from app.domain.tiebreak import Contender, break_tie, explain, format_minimum

Confidence = Literal["high", "medium", "low"]

OPTION_LABELS: Final[dict[str, str]] = {**PATH_LABELS, **HYBRID_LABELS}
OPTION_PARTS: Final[dict[str, tuple[str, ...]]] = {HYBRID_FT_RAG: ("fine_tuning", "rag")}

# A rubric-only pick earns "medium" when its score leads the runner-up by at least this many
# points out of 100; closer than that, small changes to the answers could flip the ranking.
RUBRIC_CLEAR_MARGIN: Final = 10.0

RULE_TEXT: Final = (
    "The pilot decides only on enough evidence: a difference needs at least "
    f"{MIN_TEST_ITEMS} paired test items (and {MIN_GROUPS} independent groups where items "
    f"share a passage or document), {MIN_DISCORDANT} items on which the arms disagree for a "
    "right-or-wrong metric, and an interval of non-zero width; otherwise the pilot is "
    "inconclusive and the rubric decides. The best-measured arm wins on quality against "
    "another only when the whole 95% interval of their difference lies at or beyond the "
    "minimum gain you said matters; the two are tied when the whole interval lies inside "
    "plus or minus that minimum, and then the lower cost per 1,000 queries, then the lower "
    "median latency, then the simpler path decides; anything else is unresolved: the rubric "
    "decides with low confidence, and the report gives the test size that would resolve it "
    "with 80% power. The winner must win or tie against every other arm and clearly beat "
    "the majority-label floor. A difference counts only between arms run on the model you "
    "will deploy, or on one model known to be capable of what both arms need (a model under "
    "1B parameters is not known to learn from shots or to read retrieved passages); a pilot "
    "on another model than the one you will deploy caps confidence at medium. Feasibility, "
    "cost and volatility come from the rubric and the measured token counts, so an arm the "
    "rubric marks as blocked is never recommended."
)
MORE_DATA_TEXT: Final = (
    "Test items needed ≈ ((1.96 + 1.28) × sd ÷ minimum)², where sd is the per-item spread of "
    "the difference read back from its 95% interval (sd = half-width × √n ÷ 1.96, groups "
    "included). At that size, arms that are truly equal show a tie, and arms that truly "
    "differ by twice the minimum show a difference that matters, each with 80% power. With a "
    "minimum of 0 the size is for showing the observed gap as real: ((1.96 + 0.84) × sd ÷ "
    "gap)²."
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
    documents: bool = True  # False: the pilot had no documents, so retrieval took examples

    @property
    def needs(self) -> frozenset[Capability]:
        return ARMS.capabilities(self.arm, documents=self.documents)

    @property
    def option(self) -> str:
        """The path (or combination) this arm is evidence for (`app.domain.arms`)."""
        return ARMS.evidence_for(self.arm, documents=self.documents) or self.arm

    @property
    def approach(self) -> str:
        """What a team would build from this arm, in words: the option's label, or what the
        arm measured when that is narrower ("Prompting with retrieved examples")."""
        if not self.documents and ARMS.label(self.arm, documents=False) != ARMS.label(self.arm):
            return ARMS.label(self.arm, documents=False)
        return option_label(self.option)

    @property
    def half_width(self) -> float | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class FailedArm:
    """An arm that was asked for but produced no result."""

    arm: str
    label: str
    reason: str


@dataclass(frozen=True)
class ArmGap:
    """quality(arm_a) − quality(arm_b) with its 95% interval and the sample behind it."""

    arm_a: str
    arm_b: str
    delta: float
    ci_low: float
    ci_high: float
    paired: bool = True  # False: approximated from the two arms' own intervals
    n_items: int | None = None  # None: a pilot stored before this was recorded
    n_groups: int | None = None
    discordant: int | None = None
    p_value: float | None = None
    design_effect: float | None = None

    @classmethod
    def stored(cls, difference: StoredDifference) -> ArmGap:
        """The gap a stored difference (a `Difference`, or its SQL row) describes."""
        return cls(
            difference.arm_a,
            difference.arm_b,
            difference.delta,
            difference.ci_low,
            difference.ci_high,
            n_items=difference.n_items,
            n_groups=difference.n_groups,
            discordant=difference.discordant,
            p_value=difference.p_value,
            design_effect=difference.design_effect,
        )

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    def flipped(self) -> ArmGap:
        return replace(
            self,
            arm_a=self.arm_b,
            arm_b=self.arm_a,
            delta=-self.delta,
            ci_low=-self.ci_high,
            ci_high=-self.ci_low,
        )

    def facts(self, n_test: int | None) -> GapFacts:
        """What the evidence rules read; an old pilot's item count is its test-set size."""
        return GapFacts(
            delta=self.delta,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            n_items=self.n_items if self.n_items is not None else n_test,
            n_groups=self.n_groups,
            discordant=self.discordant,
            p_value=self.p_value,
        )


@dataclass(frozen=True)
class PilotEvidence:
    """A pilot's quality evidence on its primary metric."""

    metric_label: str
    arms: tuple[ArmEvidence, ...]
    differences: tuple[ArmGap, ...] = ()
    n_test: int | None = None  # test-set size, for the more-data estimate
    target_size_b: float | None = None  # the intake's deployment model size, billions
    floor: ArmEvidence | None = None  # the majority-label floor, when it ran
    failed: tuple[FailedArm, ...] = ()  # arms asked for that produced nothing
    # The pilot failed after some of its arms finished (its conclusion, say): nothing compared.
    pilot_error: str | None = None

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

    def failure_lines(self) -> tuple[str, ...]:
        """One headline line per arm that did not run: "QLoRA fine-tune did not run: …"."""
        return tuple(f"{f.label} did not run: {f.reason}" for f in self.failed)

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
        a = self.arm(arm_a) or (self.floor if self.floor and self.floor.arm == arm_a else None)
        b = self.arm(arm_b) or (self.floor if self.floor and self.floor.arm == arm_b else None)
        if a is None or b is None or a.half_width is None or b.half_width is None:
            return None
        delta = a.value - b.value
        half = math.hypot(a.half_width, b.half_width)
        return ArmGap(arm_a, arm_b, delta, delta - half, delta + half, paired=False)

    def reading(self, leader: ArmEvidence, other: ArmEvidence, minimum: float) -> Reading:
        gap = self.gap(leader.arm, other.arm)
        if gap is None:
            return Reading.inconclusive
        return read_gap(gap.facts(self.n_test), minimum)


@dataclass(frozen=True)
class MoreData:
    """How much more test data would settle one open comparison."""

    arm_a: str
    arm_b: str
    delta: float
    half_width: float
    n_now: int | None
    n_needed: int | None
    text: str


def more_data(
    evidence: PilotEvidence, leader: ArmEvidence, other: ArmEvidence, minimum: float
) -> MoreData:
    """The size that would resolve `leader` vs `other` with 80% power, in one sentence."""
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
    facts = gap.facts(evidence.n_test)
    n_now = facts.n_items
    missing = shortfalls(facts)
    because = f" The comparison rests on {'; '.join(missing)}." if missing else ""
    if n_now is None or gap.half_width <= 0:
        text = (
            f"{pair} cannot be told apart yet: rerun the pilot with at least "
            f"{MIN_TEST_ITEMS} test items on which the arms can vary.{because}"
        )
        return MoreData(gap.arm_a, gap.arm_b, gap.delta, gap.half_width, n_now, None, text)
    if minimum > 0:
        needed = resolving_test_size(gap.half_width, n_now, minimum / 100)
        reading = (
            f"at that size, arms that are truly equal show a tie inside ±{minimum:g} points, "
            f"and arms {2 * minimum:g} points apart show a difference that matters, each with "
            "80% power"
        )
    else:
        needed = detecting_test_size(gap.half_width, n_now, gap.delta)
        reading = (
            f"at that size a true gap of {format_points(gap.delta)} shows as real with 80% "
            "power (your minimum that matters is 0, so no difference counts as a tie)"
        )
    if needed is None:
        text = (
            f"{pair} measured the same, and with a minimum of 0 no test size would separate "
            f"them: set a minimum difference that matters to test for a tie.{because}"
        )
        return MoreData(gap.arm_a, gap.arm_b, gap.delta, gap.half_width, n_now, None, text)
    needed = max(needed, MIN_TEST_ITEMS)
    groups = ""
    if facts.n_groups is not None and facts.n_groups < n_now:
        per_group = n_now / max(facts.n_groups, 1)
        groups = f", in about {format_count(math.ceil(needed / per_group))} groups of this size"
    text = (
        f"Resolving {pair} would take about {format_count(needed)} test items (now "
        f"{format_count(n_now)}){groups}: {reading}.{because}"
    )
    return MoreData(gap.arm_a, gap.arm_b, gap.delta, gap.half_width, n_now, needed, text)


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
    if evidence is None:
        return decided
    decided = replace(decided, failures=evidence.failure_lines())
    return _with_proxy_cap(decided, evidence)


def _reconcile(
    rubric: RubricPick, evidence: PilotEvidence | None, minimum: float
) -> Recommendation:
    if evidence is None or (
        not evidence.arms and not evidence.failed and evidence.pilot_error is None
    ):
        return _rubric_only(
            rubric,
            "No pilot has finished yet; a pilot on your own sample would add measured "
            "evidence on quality, latency and tokens per query.",
        )
    if evidence.pilot_error is not None:
        return _rubric_only(
            rubric,
            f"The pilot failed before it could compare its arms ({evidence.pilot_error}), "
            "so it measured nothing the verdict can use; run it again.",
            evidence=evidence,
        )
    if not evidence.arms:
        return _rubric_only(
            rubric,
            "Every arm of the pilot failed, so it measured nothing: "
            + "; ".join(evidence.failure_lines())
            + ".",
            evidence=evidence,
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
    others = [o for o in feasible if o is not leader]
    readings = {o.arm: evidence.reading(leader, o, minimum) for o in others}
    decisive = (Reading.matters, Reading.tie)
    proxied = [
        o
        for o in others
        if readings[o.arm] in decisive and not evidence.comparability(leader, o).counts
    ]
    counted = [o for o in others if o not in proxied]
    ties = [o for o in counted if readings[o.arm] is Reading.tie]
    open_ = [o for o in counted if readings[o.arm] not in decisive]
    if proxied:
        return _proxy_cannot_decide(rubric, evidence, leader, [*open_, *ties], proxied, notes)
    if open_:
        return _unresolved(rubric, evidence, leader, open_, ties, notes, minimum)
    if ties:
        return _practical_tie(rubric, evidence, [leader, *ties], notes, minimum)
    return _pilot_decides(rubric, evidence, leader, others, notes)


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
    proxied: list[ArmEvidence],
    notes: list[str],
) -> Recommendation:
    """The leader's gaps ran on a model that cannot show them: the rubric decides."""
    candidates = [leader, *tied, *proxied]
    pick = min(candidates, key=lambda a: rubric.rank(a.option))
    confidence = rubric_confidence(rubric)
    reason = evidence.comparability(leader, proxied[0]).reason
    measured = _and_list([_gap_phrase(evidence, leader, o) for o in proxied])
    rerun = _and_list(sorted({a.label for a in candidates}))
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


def _pilot_decides(
    rubric: RubricPick,
    evidence: PilotEvidence,
    leader: ArmEvidence,
    others: list[ArmEvidence],
    notes: list[str],
) -> Recommendation:
    refusal = _floor_refusal(evidence, leader)
    if refusal is not None:
        return _rubric_only(rubric, f"{refusal}. " + " ".join(notes), evidence=evidence)
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


def _unresolved(
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
    names = _and_list([f"{a.label} at {format_quality(a.value)}" for a in tied])
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
            _and_list([o.label for o in ties])
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


def _practical_tie(
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
        return _rubric_only(rubric, f"{refusal}. " + " ".join(notes), evidence=evidence)
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
        why=why.strip(),
        rubric_option=choice,
        pilot_leader=leader,
    )


def _and_list(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
