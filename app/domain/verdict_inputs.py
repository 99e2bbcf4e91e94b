"""What the recommendation rule reads: the rubric's pick and the pilot's evidence.

The rule itself is in `app.domain.reconcile`; these are its inputs, kept apart so the report
(`app.reports.pilot_evidence`) and the calibration harness build them without the rule's
wording. `RubricPick` is the rubric's order of options with what it blocks; `PilotEvidence`
holds each arm's primary metric (`ArmEvidence`), the paired differences (`ArmGap`), the
majority floor and the arms that failed (`FailedArm`), and reads a gap against the minimum
that matters (`app.domain.evidence`). `and_list` joins names in every sentence of the
verdict; it lives here, the lowest of the rule's modules, because the proxy note uses it too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from app.domain.arm_registry import Capability
from app.domain.arms import ARMS
from app.domain.evidence import GapFacts, Reading, StoredDifference, read_gap
from app.domain.formatting import format_score
from app.domain.proxy import Comparability, comparable, describe_size, is_deployment_model
from app.domain.records import ArmModel
from app.domain.scoring.paths import HYBRID_FT_RAG, HYBRID_LABELS, PATH_LABELS
from app.domain.scoring.schemas import ScoreResult

OPTION_LABELS: Final[dict[str, str]] = {**PATH_LABELS, **HYBRID_LABELS}
OPTION_PARTS: Final[dict[str, tuple[str, ...]]] = {HYBRID_FT_RAG: ("fine_tuning", "rag")}


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
        return GapFacts.of(self, n_test)


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
        names = and_list([f"{m.model_id} ({describe_size(m.parameters)})" for m in models])
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


def and_list(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
