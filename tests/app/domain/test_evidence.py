"""When a difference may decide, and what it says: matters, tie, unresolved, inconclusive."""

from __future__ import annotations

import pytest

from app.domain.evidence import GapFacts, Reading, clearly_positive, read_gap, shortfalls


def facts(
    delta: float,
    low: float,
    high: float,
    *,
    n: int | None = 200,
    groups: int | None = None,
    discordant: int | None = 40,
    p: float | None = 0.001,
) -> GapFacts:
    return GapFacts(delta, low, high, n, groups if groups is not None else n, discordant, p)


def test_a_lead_matters_only_when_its_whole_interval_clears_the_minimum() -> None:
    # The case: +2.0 [+0.1, +3.9] used to "matter" on its point estimate.
    assert read_gap(facts(0.020, 0.001, 0.039), 2.0) is Reading.unresolved
    assert read_gap(facts(0.050, 0.021, 0.079), 2.0) is Reading.matters


def test_a_tie_needs_the_whole_interval_inside_the_minimum() -> None:
    # +1.9 [+0.5, +3.3] used to be a tie, and then prompting with high confidence.
    assert read_gap(facts(0.019, 0.005, 0.033), 2.0) is Reading.unresolved
    assert read_gap(facts(0.005, -0.012, 0.018), 2.0) is Reading.tie


@pytest.mark.parametrize(
    ("low", "minimum", "matters"),
    [
        (0.020, 2.0, True),  # exactly the minimum matters
        (0.019, 2.0, False),
        (0.0196, 2.0, True),  # prints as 2.0 points, so it is not called "under 2"
        (0.0194, 2.0, False),  # prints as 1.9
        (0.29, 29.0, True),  # 0.29 × 100 is 28.999… in floating point
        (0.005, 0.0, True),  # a minimum of 0: an interval above zero matters
        (0.0, 0.0, False),  # touching zero does not
    ],
)
def test_the_boundary_is_compared_as_printed(low: float, minimum: float, matters: bool) -> None:
    reading = read_gap(facts(low + 0.02, low, low + 0.04), minimum)
    assert (reading is Reading.matters) is matters


@pytest.mark.parametrize(
    ("evidence", "reason"),
    [
        (facts(1.0, 1.0, 1.0, n=1, discordant=1), "only 1 paired test items"),
        (facts(0.4, 0.1, 0.7, n=10, discordant=4, p=0.125), "only 10 paired test items"),
        (facts(0.1, 0.05, 0.15, n=200, discordant=8), "disagree on only 8 items"),
        (facts(0.1, 0.05, 0.15, n=160, groups=6), "only 6 independent groups"),
        (facts(0.1, 0.1, 0.1), "zero width"),
    ],
)
def test_thin_evidence_is_inconclusive_and_says_why(evidence: GapFacts, reason: str) -> None:
    assert read_gap(evidence, 0.0) is Reading.inconclusive
    assert read_gap(evidence, 2.0) is not Reading.matters
    assert any(reason in r for r in shortfalls(evidence))


def test_the_test_must_agree_with_the_interval() -> None:
    # An interval above zero whose exact McNemar p is 0.07 does not decide.
    assert read_gap(facts(0.1, 0.01, 0.19, p=0.07), 0.0) is Reading.unresolved


def test_agreement_on_many_items_can_be_a_tie_with_few_disagreements() -> None:
    # 500 items, 3 disagreements: strong evidence of a tie, though too few to show a winner.
    tie = facts(0.002, -0.008, 0.012, n=500, discordant=3, p=1.0)
    assert read_gap(tie, 2.0) is Reading.tie
    assert not clearly_positive(tie)


def test_an_old_pilot_without_recorded_facts_reads_on_its_interval() -> None:
    old = GapFacts(0.3, 0.2, 0.4, n_items=100)
    assert read_gap(old, 2.0) is Reading.matters
    assert read_gap(GapFacts(0.3, 0.2, 0.4, n_items=12), 2.0) is Reading.inconclusive
