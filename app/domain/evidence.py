"""When a measured difference between two arms may decide, and what it says when it may.

A stored difference is read against the intake's minimum difference that matters (`m`, in
percentage points) into one of four readings:

- **inconclusive**: too little evidence for any reading. Fewer than `MIN_TEST_ITEMS` paired
  items, fewer than `MIN_GROUPS` independent groups (items sharing a passage count as one),
  no interval, or an interval of zero width (no measured variance is not certainty). For
  "matters" on a paired binary metric, also fewer than `MIN_DISCORDANT` items on which the
  arms disagree: with 4 of 4 discordant items one way the exact McNemar p is 0.125, whatever
  an interval says.
- **matters**: the whole 95% interval lies at or beyond `m` (beyond zero when `m` is 0), and
  the difference's own test rejects "no difference" at 5%.
- **tie**: the whole 95% interval lies strictly inside ±m: an equivalence test with both
  one-sided tests at 2.5% (Schuirmann 1987; Lakens 2017, "Equivalence tests").
- **unresolved**: anything else. The pilot cannot tell, and the rubric decides.

Sizes are compared as the report prints them (points to one decimal), so the report never
says "+2.0 [+2.0, ...] pts, under the 2-point minimum".

Pure: the reconciliation rule and the report read it; unit tests and the calibration
harness (`bench/verdict_calibration.py`) hit it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from app.domain.comparison import holm_adjusted
from app.domain.formatting import format_count, points_value
from app.domain.records import excludes_zero

MIN_TEST_ITEMS: Final = 30
MIN_DISCORDANT: Final = 10
MIN_GROUPS: Final = 10
ALPHA: Final = 0.05


class Reading(StrEnum):
    matters = "matters"
    tie = "tie"
    unresolved = "unresolved"
    inconclusive = "inconclusive"


@dataclass(frozen=True)
class GapFacts:
    """What a stored difference says about itself: the interval and its sample.

    Fields are None for a pilot stored before they were recorded; a reading then uses only
    what is known (`n_items` falls back to the test-set size).
    """

    delta: float  # a 0-1 fraction, leader minus other
    ci_low: float
    ci_high: float
    n_items: int | None = None
    n_groups: int | None = None
    discordant: int | None = None  # binary metrics without groups
    p_value: float | None = None

    @classmethod
    def of(cls, difference: StoredDifference, n_test: int | None) -> GapFacts:
        """The facts of a stored difference; an old pilot's item count is its test-set
        size."""
        return cls(
            delta=difference.delta,
            ci_low=difference.ci_low,
            ci_high=difference.ci_high,
            n_items=difference.n_items if difference.n_items is not None else n_test,
            n_groups=difference.n_groups,
            discordant=difference.discordant,
            p_value=difference.p_value,
        )


def shortfalls(facts: GapFacts, *, for_matters: bool = True) -> list[str]:
    """Why this difference cannot carry a verdict, in words; empty when it can.

    `for_matters=False` checks what a tie needs: arms that agree on almost every one of many
    items are evidence of a tie, so the discordant minimum does not apply there.
    """
    reasons = []
    if facts.n_items is not None and facts.n_items < MIN_TEST_ITEMS:
        reasons.append(
            f"only {format_count(facts.n_items)} paired test items ({MIN_TEST_ITEMS} are needed)"
        )
    if (
        facts.n_groups is not None
        and facts.n_items is not None
        and facts.n_groups < facts.n_items
        and facts.n_groups < MIN_GROUPS
    ):
        reasons.append(
            f"only {format_count(facts.n_groups)} independent groups of items "
            f"({MIN_GROUPS} are needed)"
        )
    if facts.ci_high - facts.ci_low <= 0:
        reasons.append("its interval has zero width, so the pilot measured no variance")
    if for_matters and facts.discordant is not None and facts.discordant < MIN_DISCORDANT:
        reasons.append(
            f"the arms disagree on only {format_count(facts.discordant)} items "
            f"({MIN_DISCORDANT} are needed)"
        )
    return reasons


def read_gap(facts: GapFacts, minimum_points: float) -> Reading:
    """The reading of a difference `leader - other` against the minimum that matters.

    Read in the leader's favour only: an interval wholly below the minimum on the other side
    (possible when the leader's paired items differ from its overall ones) is unresolved, so
    the rubric decides rather than the pilot crowning an arm it did not measure ahead.
    """
    low, high = points_value(facts.ci_low), points_value(facts.ci_high)
    beyond = low >= minimum_points if minimum_points > 0 else low > 0
    if beyond and not shortfalls(facts) and _test_agrees(facts):
        return Reading.matters
    if minimum_points > 0 and -minimum_points < low and high < minimum_points:
        return Reading.tie if not shortfalls(facts, for_matters=False) else Reading.inconclusive
    if shortfalls(facts):
        return Reading.inconclusive
    return Reading.unresolved


def _test_agrees(facts: GapFacts) -> bool:
    """The difference's own test rejects "no difference" (unknown for old pilots: the interval
    alone decides there, as it did when they were stored)."""
    return facts.p_value is None or facts.p_value < ALPHA


def clearly_positive(facts: GapFacts) -> bool:
    """The leader beats the other arm by more than zero, on enough evidence."""
    return read_gap(facts, 0.0) is Reading.matters


class StoredDifference(Protocol):
    """A stored difference as the pages read it (a SQL row or a `Difference` record)."""

    @property
    def arm_a(self) -> str: ...
    @property
    def arm_b(self) -> str: ...
    @property
    def delta(self) -> float: ...
    @property
    def ci_low(self) -> float: ...
    @property
    def ci_high(self) -> float: ...
    @property
    def n_items(self) -> int | None: ...
    @property
    def n_groups(self) -> int | None: ...
    @property
    def discordant(self) -> int | None: ...
    @property
    def p_value(self) -> float | None: ...
    @property
    def design_effect(self) -> float | None: ...


@dataclass(frozen=True)
class PairFlag:
    """How the table of all pairs shows one difference (exploratory, not the verdict)."""

    clear: bool  # survives Holm's adjustment over every pair shown, on enough evidence
    p_adjusted: float | None
    thin: tuple[str, ...]  # why it is too thin to decide; empty when it is not


def exploratory_flags(
    differences: Sequence[StoredDifference], n_test: int | None
) -> list[PairFlag]:
    """Flags for every pair of arms shown together: a difference is called clear only when its
    Holm-adjusted p-value (over all of them) is under `ALPHA` and it rests on enough evidence.
    Unadjusted, ten pairs of equal arms show at least one false "clear difference" about 20%
    of the time. A pilot stored before p-values were recorded falls back on its interval."""
    adjusted = holm_adjusted([d.p_value for d in differences])
    flags = []
    for d, p in zip(differences, adjusted, strict=True):
        facts = GapFacts.of(d, n_test)
        thin = tuple(shortfalls(facts))
        clear = excludes_zero(d.ci_low, d.ci_high) if p is None else p < ALPHA
        flags.append(PairFlag(clear=clear and not thin, p_adjusted=p, thin=thin))
    return flags
