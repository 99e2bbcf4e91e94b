"""How much more test data would settle an open comparison, in numbers and in one sentence.

The verdict (`app.domain.verdicts`) quotes the first estimate when the pilot could not tell
the leader from another arm; the report prints every estimate with `MORE_DATA_TEXT`, the
formula in words. The sizes come from `app.domain.comparison`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from app.domain.comparison import detecting_test_size, resolving_test_size
from app.domain.evidence import MIN_TEST_ITEMS, shortfalls
from app.domain.formatting import format_count, format_points, format_quality
from app.domain.verdict_inputs import ArmEvidence, PilotEvidence

MORE_DATA_TEXT: Final = (
    "Test items needed ≈ ((1.96 + 1.28) × sd ÷ minimum)², where sd is the per-item spread of "
    "the difference read back from its 95% interval (sd = half-width × √n ÷ 1.96, groups "
    "included). At that size, arms that are truly equal show a tie, and arms that truly "
    "differ by twice the minimum show a difference that matters, each with 80% power. With a "
    "minimum of 0 the size is for showing the observed gap as real: ((1.96 + 0.84) × sd ÷ "
    "gap)²."
)


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
