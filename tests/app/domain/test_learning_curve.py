"""The learning curve's pure parts: nested subsets, the log(n) fit and its bootstrap, the
extrapolation guard and the sentence the report prints."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from app.domain.bootstrap import resample_indices
from app.domain.learning_curve import (
    MAX_EXTRAPOLATION,
    crowded_note,
    examples_for,
    fit_draws,
    fit_log_curve,
    horizon_for,
    nested_order,
    outlook,
    predict,
    round_examples,
    subset_sizes,
)
from app.domain.records import CurvePoint, LearningCurve


def test_subset_sizes_are_a_quarter_a_half_and_all() -> None:
    assert subset_sizes(480) == [120, 240, 480]
    assert subset_sizes(24) == [6, 12, 24]
    assert subset_sizes(10) == [5, 10]  # a quarter (2 or 3) is too few to learn from
    assert subset_sizes(3) == [3]
    assert subset_sizes(0) == []


def test_nested_order_keeps_every_prefix_label_balanced() -> None:
    labels = ["a"] * 40 + ["b"] * 40 + ["c"] * 10
    order = nested_order(labels, seed=5)
    assert sorted(order) == list(range(len(labels)))
    for k in (12, 24, 30):
        counts = Counter(labels[i] for i in order[:k])
        # Each label about k/3 times while it lasts: never more than one apart.
        assert max(counts.values()) - min(counts.values()) <= 1, (k, counts)
    later = Counter(labels[i] for i in order[:60])
    assert later["c"] == 10 and later["a"] == later["b"] == 25  # c ran out; a, b share the rest
    assert nested_order(labels, seed=5) == order
    assert nested_order(labels, seed=6) != order


def test_fit_recovers_a_log_linear_trend_and_its_bootstrap_is_exact_on_exact_data() -> None:
    sizes = [100, 200, 400]
    values = [0.2 + 0.05 * math.log(n) for n in sizes]
    intercept, slope = fit_log_curve(sizes, values)
    assert intercept == pytest.approx(0.2) and slope == pytest.approx(0.05)
    draws = fit_draws(sizes, np.tile(values, (7, 1)))
    assert len(draws) == 7
    assert all(a == pytest.approx(0.2) and b == pytest.approx(0.05) for a, b in draws)
    with pytest.raises(ValueError):
        fit_log_curve([100, 100], [0.1, 0.2])


def _curve(
    sizes: list[int], accuracies: list[float], n_test: int = 120, *, same_answers: bool = False
) -> LearningCurve:
    """A curve scored like the runner does: one item-level vector per point, one paired
    resample matrix, a percentile interval per point and a refit per resample.
    `same_answers`: every adapter gets the same items right (draws from one uniform)."""
    rng = np.random.default_rng(1)
    uniform = rng.random(n_test)
    correct = [(uniform if same_answers else rng.random(n_test)) < p for p in accuracies]
    indices = resample_indices(n_test, n_resamples=400, seed=3)
    resampled = np.stack([c[indices].mean(axis=1) for c in correct], axis=1)
    points = [
        CurvePoint(
            examples=n,
            trained_on=n,
            value=float(c.mean()),
            ci_low=float(np.percentile(column, 2.5)),
            ci_high=float(np.percentile(column, 97.5)),
        )
        for n, c, column in zip(sizes, correct, resampled.T, strict=True)
    ]
    intercept, slope = fit_log_curve(sizes, [p.value for p in points])
    return LearningCurve(
        metric="accuracy",
        points=points,
        intercept=intercept,
        slope=slope,
        draws=fit_draws(sizes, resampled),
    )


def test_the_guard_reads_the_trend_no_further_than_four_times_the_largest_size() -> None:
    assert horizon_for(480, 100_000) == (1920, True)
    assert horizon_for(480, 1920) == (1920, False)
    assert horizon_for(480, 1000) == (1000, False)
    assert horizon_for(480, 480) == (960, False)  # no more data: one doubling
    assert horizon_for(480, None) == (960, False)

    rising = _curve([120, 240, 480], [0.30, 0.45, 0.60])
    view = outlook(rising, examples_available=100_000, min_difference_points=2.0)
    assert view.limit == MAX_EXTRAPOLATION * 480 == view.horizon
    assert view.capped and view.extrapolated and not view.flat
    assert "100,000 examples lie past 4x" in view.detail
    assert view.sentence.startswith("About ")
    assert "if the trend holds" in view.sentence
    assert "an extrapolation beyond the 480 examples trained" in view.sentence
    needed = int(view.sentence.split()[1].replace(",", ""))
    assert 480 < needed <= view.limit  # never a figure from past the guard
    target = int(view.sentence.split("reach ")[1].split("%")[0])
    assert target <= round(predict(rising, view.limit).value * 100)


def test_within_the_data_trained_the_sentence_is_not_labelled_an_extrapolation() -> None:
    rising = _curve([120, 240, 480], [0.30, 0.45, 0.60])
    # The fit reaches 45% at about 240 examples: inside what was trained.
    needed = examples_for(rising, 0.45)
    assert needed is not None and 120 < needed < 480
    view = outlook(rising, examples_available=1000, min_difference_points=2.0)
    assert view.horizon == 1000 and not view.capped and view.extrapolated
    assert "extrapolation" in view.sentence


def test_a_flat_curve_says_more_data_of_this_kind_will_not_help() -> None:
    # Three adapters that answer alike: the paired bootstrap sees no trend at all.
    flat = _curve([120, 240, 480], [0.70, 0.70, 0.70], same_answers=True)
    view = outlook(flat, examples_available=5000, min_difference_points=2.0)
    assert view.flat
    assert view.sentence == "The curve is flat: more data of this kind will not help."
    # The same curve is not flat for a team to whom any gain at all matters.
    assert not outlook(flat, examples_available=5000, min_difference_points=0.0).flat


def test_a_falling_but_noisy_curve_is_neither_flat_nor_a_promise() -> None:
    # The fit falls, but its bootstrap draws run from a clear fall to a clear rise.
    points = [
        CurvePoint(examples=n, trained_on=n, value=v, ci_low=v - 0.15, ci_high=v + 0.15)
        for n, v in ((120, 0.55), (240, 0.45), (480, 0.50))
    ]
    slopes = np.linspace(-0.08, 0.06, 101)
    noisy = LearningCurve(
        metric="accuracy",
        points=points,
        intercept=0.7,
        slope=-0.036,
        draws=[(0.7, float(b)) for b in slopes],
    )
    view = outlook(noisy, examples_available=5000, min_difference_points=2.0)
    assert not view.flat
    assert "does not rise" in view.sentence
    assert examples_for(noisy, 0.9) is None


def test_predict_has_a_band_that_widens_away_from_the_points() -> None:
    rising = _curve([120, 240, 480], [0.30, 0.45, 0.60])
    inside, outside = predict(rising, 240), predict(rising, 1920)
    assert inside.low <= inside.value <= inside.high
    assert outside.high - outside.low > inside.high - inside.low


def test_a_curve_whose_runs_the_time_cap_cut_to_the_same_size_says_so() -> None:
    def points(*trained_on: int) -> list[CurvePoint]:
        return [
            CurvePoint(examples=n, trained_on=t, value=0.1, ci_low=0.0, ci_high=0.2)
            for n, t in zip((120, 240, 480), trained_on, strict=True)
        ]

    assert crowded_note(points(120, 240, 480)) is None
    note = crowded_note(points(8, 32, 32))
    assert note is not None and "8, 32, 32 examples" in note


def test_round_examples_keeps_two_significant_figures() -> None:
    assert [round_examples(n) for n in (37, 480, 1874, 23_456)] == [37, 480, 1900, 23_000]
