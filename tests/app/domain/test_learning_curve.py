"""The learning curve's pure parts: nested subsets, the bounded fit on log(n) and its
bootstrap, the extrapolation guard, the figures every point is scored on and the sentence the
report prints."""

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
    fit_curve,
    fit_draws,
    horizon_for,
    nested_order,
    outlook,
    point_statistic,
    predict,
    round_examples,
    subset_sizes,
)
from app.domain.records import (
    ArmResult,
    CurveFit,
    CurvePoint,
    LearningCurve,
    PointEvaluation,
    Prediction,
)
from app.domain.samples.schemas import Example, PilotTask


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


def _logit(q: float) -> float:
    return math.log(q / (1 - q))


def test_fit_recovers_a_logit_linear_trend_and_its_bootstrap_is_exact_on_exact_data() -> None:
    sizes = [100, 200, 400]
    values = [1 / (1 + math.exp(-(-3.0 + 0.5 * math.log(n)))) for n in sizes]
    intercept, slope = fit_curve(sizes, values, items=120)
    assert intercept == pytest.approx(-3.0) and slope == pytest.approx(0.5)
    draws = fit_draws(sizes, np.tile(values, (7, 1)), items=120)
    assert len(draws) == 7
    assert all(a == pytest.approx(-3.0) and b == pytest.approx(0.5) for a, b in draws)
    with pytest.raises(ValueError):
        fit_curve([100, 100], [0.1, 0.2], items=120)


def test_a_point_at_zero_or_one_is_fitted_half_a_test_item_inside() -> None:
    # logit(0) is minus infinity: the fit reads 0 of 120 as 0.5 of 120, and 120 of 120 alike.
    intercept, slope = fit_curve([100, 400], [0.0, 1.0], items=120)
    low, high = _logit(0.5 / 120), _logit(1 - 0.5 / 120)
    assert slope == pytest.approx((high - low) / math.log(4))
    assert intercept + slope * math.log(100) == pytest.approx(low)


def _curve(
    sizes: list[int],
    accuracies: list[float],
    n_test: int = 120,
    *,
    same_answers: bool = False,
    own_answers: float = 1.0,
    exact: bool = False,
) -> LearningCurve:
    """A curve scored like the runner does: one item-level vector per point, one paired
    resample matrix, a percentile interval per point and a refit per resample.
    `same_answers`: every adapter gets the same items right (draws from one uniform);
    `own_answers`: the share of items on which each adapter draws its own answer, the rest
    shared (adapters of one base model that mostly agree); `exact`: each adapter gets exactly
    its share of the items right, at its own places."""
    rng = np.random.default_rng(1)
    uniform = rng.random(n_test)
    own = 0.0 if same_answers else own_answers
    correct = [
        np.where(rng.random(n_test) < own, rng.random(n_test), uniform) < p for p in accuracies
    ]
    if exact:
        correct = [rng.permutation(n_test) < round(p * n_test) for p in accuracies]
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
    intercept, slope = fit_curve(sizes, [p.value for p in points], items=n_test)
    return LearningCurve(
        metric="accuracy",
        points=points,
        intercept=intercept,
        slope=slope,
        draws=fit_draws(sizes, resampled, items=n_test),
        evaluated=PointEvaluation.in_process,
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
    assert 0.0 <= view.at_horizon.low <= view.at_horizon.value <= view.at_horizon.high <= 1.0
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


def test_a_flat_curve_with_a_tight_interval_says_more_data_of_this_kind_will_not_help() -> None:
    # Adapters that answer 4,000 items alike but for one item in twenty: the gain's interval is
    # narrow, and even its upper end is under the difference that matters.
    flat = _curve([120, 240, 480], [0.70, 0.70, 0.70], n_test=4000, own_answers=0.05)
    view = outlook(flat, examples_available=5000, min_difference_points=2.0)
    assert view.flat and view.reach.high > view.reach.low
    assert view.sentence == "The curve is flat: more data of this kind will not help."
    assert "upper end" in view.detail
    # The same curve is not flat for a team to whom any gain at all matters.
    assert not outlook(flat, examples_available=5000, min_difference_points=0.0).flat


def test_a_band_of_zero_width_is_no_evidence_that_the_curve_is_flat() -> None:
    # Three adapters that get the very same items right: no resample of the test items can
    # move one point without the others, so the bootstrap sees no uncertainty at all.
    same = _curve([120, 240, 480], [0.70, 0.70, 0.70], same_answers=True)
    view = outlook(same, examples_available=5000, min_difference_points=2.0)
    assert not view.flat
    assert "will not help" not in view.sentence
    assert "cannot tell whether more data helps" in view.sentence


@pytest.mark.parametrize("min_difference", [2.0, 50.0])
def test_every_size_at_zero_is_not_a_flat_curve(min_difference: float) -> None:
    zero = _curve([120, 240, 480], [0.0, 0.0, 0.0])
    assert [p.value for p in zero.points] == [0.0, 0.0, 0.0]
    view = outlook(zero, examples_available=5000, min_difference_points=min_difference)
    assert not view.flat
    assert view.sentence == "Every size scored 0%: the curve cannot tell whether more data helps."


def test_sizes_within_noise_of_zero_are_not_a_flat_curve() -> None:
    # The shipped sample's CPU run: 0 %, 0.8 % and 1.7 % of 120, every interval reaching 0 %.
    points = [
        CurvePoint(examples=n, trained_on=t, value=v, ci_low=0.0, ci_high=h)
        for n, t, v, h in ((120, 8, 0.0, 0.0), (240, 32, 1 / 120, 0.025), (480, 32, 2 / 120, 0.042))
    ]
    curve = LearningCurve(
        metric="accuracy", points=points, intercept=-5.0, slope=0.01, draws=[(-5.0, 0.01)] * 9
    )
    view = outlook(curve, examples_available=None, min_difference_points=2.0)
    assert not view.flat
    assert "cannot tell whether more data helps" in view.sentence
    assert "0%" in view.sentence


def test_every_size_at_the_ceiling_says_so_and_is_not_flat() -> None:
    full = _curve([120, 240, 480], [1.0, 1.0, 1.0])
    view = outlook(full, examples_available=5000, min_difference_points=2.0)
    assert not view.flat
    assert "already at the ceiling" in view.sentence
    assert "will not help" not in view.sentence


def test_a_rising_curve_never_reaches_one_hundred_percent() -> None:
    # 80 %, 88 %, 95 %: a straight line on log(n) would reach 100 % at about 740 examples.
    rising = _curve([120, 240, 480], [0.80, 0.88, 0.95], n_test=100, exact=True)
    assert [p.value for p in rising.points] == pytest.approx([0.80, 0.88, 0.95])
    view = outlook(rising, examples_available=100_000, min_difference_points=2.0)
    assert not view.flat and view.sentence.startswith("About ")
    target = int(view.sentence.split("reach ")[1].split("%")[0])
    assert target < 100
    assert examples_for(rising, 1.0) is None
    for n in (1, 120, 480, 1920, 10**6, 10**12):
        band = predict(rising, n)
        assert 0.0 <= band.low <= band.value <= band.high <= 1.0
        assert band.value < 1.0
    # Each doubling buys less as the curve nears the top: a ceiling, not a straight line.
    first = predict(rising, 960).value - predict(rising, 480).value
    second = predict(rising, 1920).value - predict(rising, 960).value
    assert 0 < second < first


def test_a_point_at_zero_under_a_rising_curve_is_named_as_what_sets_the_slope() -> None:
    rising = _curve([120, 240, 480], [0.0, 0.2, 0.4])
    assert rising.points[0].value == 0.0
    view = outlook(rising, examples_available=None, min_difference_points=2.0)
    assert view.sentence.startswith("About ")
    assert "1 of the 3 points scored 0% or 100%" in view.detail
    assert "half a test item inside" in view.detail


def test_the_outlook_says_its_band_is_test_item_noise_from_one_run_per_size() -> None:
    view = outlook(
        _curve([120, 240, 480], [0.30, 0.45, 0.60]),
        examples_available=None,
        min_difference_points=2.0,
    )
    assert "test-item noise only, not training-seed variance" in view.detail
    assert "one training run per size" in view.detail
    assert "evaluated in-process" in view.detail


def test_a_curve_stored_before_the_bounded_fit_still_loads_and_reads() -> None:
    # The JSON a pilot stored before: a straight line on ln(n), no fit or evaluation recorded.
    stored: dict[str, object] = {
        "metric": "accuracy",
        "points": [
            {
                "examples": n,
                "trained_on": n,
                "value": v,
                "ci_low": v - 0.08,
                "ci_high": v + 0.08,
                "training_seconds": 60.0,
                "reused": n == 480,
            }
            for n, v in ((120, 0.30), (240, 0.45), (480, 0.60))
        ],
        "intercept": 0.3 - 0.15 / math.log(2) * math.log(120),
        "slope": 0.15 / math.log(2),
        "draws": [[0.3 - b * math.log(120), b] for b in np.linspace(0.15, 0.28, 50)],
        "extra_seconds": 310.0,
        "notes": [],
    }
    curve = LearningCurve.read(stored)
    assert curve is not None
    assert curve.fit is CurveFit.linear and curve.evaluated is None
    assert predict(curve, 240).value == pytest.approx(0.45)
    assert predict(curve, 10**6).value == 1.0  # the straight line, clipped as it always was
    view = outlook(curve, examples_available=None, min_difference_points=2.0)
    assert view.sentence.startswith("About ") and "100%" not in view.sentence
    assert "not recorded" in view.detail
    # Read back from its own JSON, it stays the curve it was.
    again = LearningCurve.read(curve.as_json())
    assert again is not None and again.fit is CurveFit.linear


def test_every_point_is_scored_on_the_answers_of_the_model_as_trained() -> None:
    def answers(texts: list[str]) -> list[Prediction]:
        return [
            Prediction(i, t, latency_ms=1.0, prompt_tokens=1, output_tokens=1)
            for i, t in enumerate(texts)
        ]

    test = [Example(input=f"q{i}", target=t) for i, t in enumerate("abab")]
    labels = ["a", "b"]
    # The arm answered through its endpoint: the served answers are its predictions, the
    # in-process ones its reference. The subsets are never served.
    served = ArmResult(
        arm="qlora",
        predictions=answers(["b", "a", "b", "a"]),
        reference_predictions=answers(["a", "b", "a", "a"]),
    )
    subset = ArmResult(arm="qlora", predictions=answers(["a", "b", "b", "b"]))
    every_item = np.arange(4)[None, :]
    scored = [
        point_statistic(PilotTask.classification, r, test, labels=labels, metric="accuracy")
        for r in (subset, served)
    ]
    assert [float(s(every_item)[0]) for s in scored] == [0.75, 0.75]  # not the served 0 %
    # Scored as the arms are: a SQuAD answer that matches one of the other gold answers counts.
    squad = [Example(input="q", target="the city of Paris", alternatives=("Paris",))]
    found = ArmResult(arm="qlora", predictions=answers(["Paris"]))
    statistic = point_statistic(PilotTask.extraction, found, squad, labels=[], metric="exact_match")
    assert float(statistic(np.zeros((1, 1), dtype=int))[0]) == 1.0


def test_a_falling_but_noisy_curve_is_neither_flat_nor_a_promise() -> None:
    # The fit falls, but its bootstrap draws run from a clear fall to a clear rise.
    points = [
        CurvePoint(examples=n, trained_on=n, value=v, ci_low=v - 0.15, ci_high=v + 0.15)
        for n, v in ((120, 0.55), (240, 0.45), (480, 0.50))
    ]
    # On the logit scale, about 50 % at 480 examples.
    slopes = np.linspace(-0.5, 0.4, 101)
    noisy = LearningCurve(
        metric="accuracy",
        points=points,
        intercept=0.2 * math.log(480),
        slope=-0.2,
        draws=[(-float(b) * math.log(480), float(b)) for b in slopes],
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
