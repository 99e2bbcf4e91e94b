"""Paired bootstrap: coverage on synthetic data, pairing, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from app.domain.bootstrap import bootstrap_difference, bootstrap_metric, resample_indices
from app.domain.metrics import macro_f1_statistic, mean_statistic


def test_intervals_cover_the_true_mean_at_about_95_percent() -> None:
    rng = np.random.default_rng(1)
    true_mean, n_items, trials = 0.3, 100, 200
    covered = 0
    for trial in range(trials):
        scores = (rng.random(n_items) < true_mean).astype(float)
        interval = bootstrap_metric(mean_statistic(scores), n_items, seed=trial)
        covered += interval.low <= true_mean <= interval.high
    assert covered / trials >= 0.90


def test_point_value_is_the_full_sample_metric() -> None:
    scores = np.array([1.0, 0.0, 1.0, 1.0])
    interval = bootstrap_metric(mean_statistic(scores), 4, seed=0)
    assert interval.value == pytest.approx(0.75)
    assert 0.0 <= interval.low <= interval.value <= interval.high <= 1.0


def test_same_seed_same_interval_and_paired_resamples() -> None:
    scores = np.random.default_rng(0).random(50)
    first = bootstrap_metric(mean_statistic(scores), 50, seed=7)
    again = bootstrap_metric(mean_statistic(scores), 50, seed=7)
    assert first == again
    assert np.array_equal(resample_indices(50, seed=3), resample_indices(50, seed=3))


def test_pairing_separates_arms_whose_own_intervals_overlap() -> None:
    # Arm b is arm a plus 8 extra correct items out of 60: each arm's interval is wide
    # (item variance), but on the same items b never loses, so the paired delta is > 0.
    rng = np.random.default_rng(0)
    a = (rng.random(60) < 0.5).astype(float)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:8]] = 1.0
    indices = resample_indices(60, seed=0)
    interval_a = bootstrap_metric(mean_statistic(a), 60, indices=indices)
    interval_b = bootstrap_metric(mean_statistic(b), 60, indices=indices)
    assert interval_a.high > interval_b.low  # the marginal intervals overlap
    delta = bootstrap_difference(mean_statistic(b), mean_statistic(a), 60, indices=indices)
    assert delta.value == pytest.approx(8 / 60)
    assert delta.low > 0


def test_identical_arms_have_a_zero_difference() -> None:
    scores = np.random.default_rng(2).random(30)
    delta = bootstrap_difference(mean_statistic(scores), mean_statistic(scores), 30, seed=1)
    assert (delta.value, delta.low, delta.high) == (0.0, 0.0, 0.0)


def test_macro_f1_is_recomputed_on_each_resample() -> None:
    gold = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, -1])
    interval = bootstrap_metric(macro_f1_statistic(gold, predicted), 6, n_resamples=200, seed=0)
    # full sample: F1 = 2/3 (label 0), 4/5 (label 1), 2/3 (label 2) -> macro 32/45
    assert interval.value == pytest.approx((2 / 3 + 4 / 5 + 2 / 3) / 3)
    assert interval.low < interval.value < interval.high


def test_grouped_resamples_draw_whole_groups() -> None:
    groups = np.repeat(np.arange(10), 4)  # 40 items in 10 passages of 4
    rows = resample_indices(40, n_resamples=50, seed=3, groups=groups)
    assert rows.shape == (50, 40)
    for row in rows:
        # Each block of 4 is one whole group, in its own order.
        blocks = row.reshape(10, 4)
        assert all(len(set(groups[block])) == 1 for block in blocks)
        assert all(sorted(block) == list(range(block[0], block[0] + 4)) for block in blocks)


def test_without_groups_the_item_bootstrap_is_unchanged() -> None:
    plain = resample_indices(30, n_resamples=20, seed=5)
    assert np.array_equal(plain, resample_indices(30, n_resamples=20, seed=5, groups=None))
    assert np.array_equal(plain, resample_indices(30, n_resamples=20, seed=5, groups=np.arange(30)))
