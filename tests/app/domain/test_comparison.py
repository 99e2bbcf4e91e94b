"""Paired comparisons: the intervals and tests a verdict may rest on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from app.domain.comparison import (
    Method,
    compare_paired,
    detecting_test_size,
    holm_adjusted,
    mcnemar_exact,
    paired_proportion_interval,
    resolving_test_size,
)


def test_exact_mcnemar_on_four_of_four_discordant_items_is_not_significant() -> None:
    # The case: 4 of 4 discordant items one way; exact McNemar gives p = 0.125.
    assert mcnemar_exact(4, 0) == pytest.approx(0.125)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(25, 13) == pytest.approx(stats.binomtest(25, 38, 0.5).pvalue)


def test_the_paired_interval_is_honest_on_zero_discordant_items() -> None:
    low, high = paired_proportion_interval(a_only=0, b_only=0, n=100)
    # Arms that agree on all 100 items: about ±2.7 points (Bonett-Price), not [0, 0].
    assert low < 0 < high
    assert (round(low, 3), round(high, 3)) == (-0.027, 0.027)
    low, high = paired_proportion_interval(a_only=8, b_only=2, n=40)
    assert low < (8 - 2) / 40 < high
    assert paired_proportion_interval(0, 0, 0) == (-1.0, 1.0)


def test_the_paired_interval_narrows_as_the_arms_agree_more() -> None:
    # The same difference (+10 points on 100 items), with more or fewer disagreements.
    agreeing = paired_proportion_interval(a_only=10, b_only=0, n=100)
    disagreeing = paired_proportion_interval(a_only=30, b_only=20, n=100)
    assert agreeing[1] - agreeing[0] < disagreeing[1] - disagreeing[0]


def test_the_paired_interval_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    covered, reps, n = 0, 400, 60
    for _ in range(reps):
        item = rng.standard_normal(n)
        a = (0.7 * item + 0.71 * rng.standard_normal(n) < 0.25).astype(float)
        b = (0.7 * item + 0.71 * rng.standard_normal(n) < 0.0).astype(float)
        c = compare_paired(a, b)
        covered += c.ci_low <= stats.norm.cdf(0.25) - 0.5 <= c.ci_high
    assert 0.92 <= covered / reps <= 0.985


def test_binary_without_groups_uses_the_paired_interval_and_mcnemar() -> None:
    a = np.array([1.0] * 30 + [0.0] * 10)
    b = np.array([1.0] * 20 + [0.0] * 20)
    c = compare_paired(a, b)
    assert c.method is Method.paired_binary
    assert (c.a_only, c.b_only, c.discordant) == (10, 0, 10)
    assert c.delta == pytest.approx(0.25)
    assert c.p_value == pytest.approx(mcnemar_exact(10, 0))
    assert c.n_items == c.n_groups == 40


def test_items_without_a_score_leave_the_pair_for_both_arms() -> None:
    # Arm a has one readable verdict out of 120: the comparison rests on one item, not 120.
    a = np.full(120, np.nan)
    a[0] = 1.0
    b = np.array([1.0, 0.0] * 60)
    c = compare_paired(a, b)
    assert c.n_items == 1
    assert c.delta == 0.0  # item 0: both right


def test_continuous_scores_get_a_paired_t_interval() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 1, 50)
    b = a - 0.05 + rng.normal(0, 0.1, 50)
    c = compare_paired(a, b)
    d = a - b
    half = stats.t.ppf(0.975, 49) * d.std(ddof=1) / math.sqrt(50)
    assert c.method is Method.paired_t
    assert c.ci_low == pytest.approx(d.mean() - half)
    assert c.ci_high == pytest.approx(d.mean() + half)
    assert c.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_groups_widen_the_interval_by_the_design_effect() -> None:
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(20), 8)
    effect = rng.normal(0, 0.3, 20)[groups]  # one arm does well on some passages
    a = np.clip(0.5 + effect + rng.normal(0, 0.2, 160), 0, 1)
    b = np.clip(0.5 + rng.normal(0, 0.2, 160), 0, 1)
    clustered = compare_paired(a, b, groups)
    alone = compare_paired(a, b)
    assert clustered.method is Method.clustered_t
    assert clustered.n_groups == 20 and clustered.n_items == 160
    assert clustered.design_effect is not None and clustered.design_effect > 2
    assert clustered.half_width > 1.4 * alone.half_width


def test_a_pair_is_decided_the_same_way_every_time() -> None:
    # 25 vs 13 discordant items: with 1,000 bootstrap resamples the call depended on the seed.
    a = np.array([1.0] * 25 + [0.0] * 13 + [1.0] * 40 + [0.0] * 42)
    b = np.array([0.0] * 25 + [1.0] * 13 + [1.0] * 40 + [0.0] * 42)
    assert compare_paired(a, b) == compare_paired(a.copy(), b.copy())
    assert compare_paired(a, b).p_value == pytest.approx(stats.binomtest(25, 38).pvalue)


def test_holm_adjustment() -> None:
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjusted([None, 0.02]) == [None, 0.02]
    assert holm_adjusted([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_holm_keeps_false_clear_flags_among_equal_arms_near_five_percent() -> None:
    # Five equal arms, ten pairs: unadjusted, some pair is flagged ~20% of the time.
    rng = np.random.default_rng(11)
    reps, n, any_raw, any_holm = 300, 120, 0, 0
    for _ in range(reps):
        item = rng.standard_normal(n)
        arms = [(0.7 * item + 0.71 * rng.standard_normal(n) < 0.25).astype(float) for _ in range(5)]
        p = [compare_paired(arms[i], arms[j]).p_value for i in range(5) for j in range(i + 1, 5)]
        any_raw += any(x is not None and x < 0.05 for x in p)
        any_holm += any(x is not None and x < 0.05 for x in holm_adjusted(p))
    assert any_raw / reps > 0.1
    assert any_holm / reps <= 0.07


def test_sizes_for_80_percent_power() -> None:
    # sd = 0.06 × √100 / 1.96; n = ((1.96 + 1.2816) × sd / 0.02)².
    sd = 0.06 * 10 / stats.norm.ppf(0.975)
    expected = math.ceil(((stats.norm.ppf(0.975) + stats.norm.ppf(0.9)) * sd / 0.02) ** 2)
    assert resolving_test_size(0.06, 100, 0.02) == expected
    assert resolving_test_size(0.06, 100, 0.0) is None
    assert resolving_test_size(0.0, 100, 0.02) is None
    detect = math.ceil(((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sd / 0.04) ** 2)
    assert detecting_test_size(0.06, 100, 0.04) == detect
    assert detecting_test_size(0.06, 100, 0.0) is None


def test_the_resolving_size_reaches_80_percent_power_in_simulation() -> None:
    # A follow-up at the planned size, with truly equal arms, shows a tie ~80% of the time.
    rng = np.random.default_rng(13)
    n_now, minimum = 100, 0.05
    item = rng.standard_normal(n_now)
    a = (0.6 * item + 0.8 * rng.standard_normal(n_now) < 0.25).astype(float)
    b = (0.6 * item + 0.8 * rng.standard_normal(n_now) < 0.25).astype(float)
    planned = resolving_test_size(compare_paired(a, b).half_width, n_now, minimum)
    assert planned is not None
    ties, reps = 0, 200
    for _ in range(reps):
        item = rng.standard_normal(planned)
        a = (0.6 * item + 0.8 * rng.standard_normal(planned) < 0.25).astype(float)
        b = (0.6 * item + 0.8 * rng.standard_normal(planned) < 0.25).astype(float)
        c = compare_paired(a, b)
        ties += -minimum < c.ci_low and c.ci_high < minimum
    assert 0.7 <= ties / reps <= 0.95
