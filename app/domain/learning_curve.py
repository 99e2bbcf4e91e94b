"""The fine-tuning arm's learning curve: how quality grows with the number of examples.

The worker trains the fine-tuning arm again on nested subsets of the (capped) training split,
a quarter and a half of it, with the same seed, and evaluates each adapter on the same test
split as every arm. This module holds the pure parts:

- `nested_order`: one seeded order of the training examples whose every prefix keeps the
  labels as balanced as the data allows, so ¼ ⊂ ½ ⊂ all and each subset is stratified;
- `fit_log_curve` / `fit_draws`: quality = a + b·ln(n) by least squares, and the fit's
  uncertainty by refitting on each paired bootstrap resample of the test items (the same
  resample matrix as every arm, so the three points move together as they really do);
- `outlook`: the extrapolation guard (never past 4× the largest size trained, and always
  labelled as an extrapolation) and the sentence the report prints.

Why log(n): learning curves of fine-tuned models are close to linear in log(examples) over a
decade or two (each doubling buys about the same gain), and a two-parameter fit is all three
points can support. It is a trend, not a law, which is why the extrapolation is bounded.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from app.domain.bootstrap import percentile_interval
from app.domain.formatting import format_count, points_value
from app.domain.records import CurvePoint, LearningCurve

# The subsets trained, as fractions of the training split; the largest is the arm itself.
FRACTIONS: Final[tuple[float, ...]] = (0.25, 0.5, 1.0)
# How far past the largest size trained the fitted trend may be read. Two doublings: further
# out, a log-linear trend fitted on three points says more about the fit than the data.
MAX_EXTRAPOLATION: Final = 4.0
# Fewest examples a subset may have: below this a "point" measures noise, not learning.
MIN_SUBSET: Final = 4


def subset_sizes(n_train: int) -> list[int]:
    """The sizes trained: ¼, ½ and all of `n_train`; a fraction under MIN_SUBSET is dropped."""
    if n_train <= 0:
        return []
    parts = {round(n_train * f) for f in FRACTIONS if f < 1}
    return [*sorted(n for n in parts if MIN_SUBSET <= n < n_train), n_train]


def nested_order(labels: Sequence[Hashable | None], *, seed: int) -> list[int]:
    """Indices of the examples in an order whose every prefix is label-balanced.

    Examples are shuffled within their label, then dealt one per label in turn (labels in a
    seeded order): the first k examples hold each label about k/labels times, or all of a
    label's examples when it has fewer. Taking prefixes makes the subsets nested, which is
    what makes the points of one curve comparable (the half contains the quarter).
    """
    rng = random.Random(seed)
    groups: dict[Hashable | None, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(label, []).append(index)
    keys = list(groups)
    rng.shuffle(keys)
    for key in keys:
        rng.shuffle(groups[key])
    order: list[int] = []
    for round_ in range(max((len(g) for g in groups.values()), default=0)):
        order.extend(groups[key][round_] for key in keys if round_ < len(groups[key]))
    return order


def crowded_note(points: Sequence[CurvePoint]) -> str | None:
    """A note when the points did not train on growing numbers of examples.

    The time cap plans each run's examples from a measured step time: on a slow or busy
    machine it can cut the ½ run and the full run to the same few examples, and then the
    curve says little about what more data would buy.
    """
    sizes = [p.trained_on for p in points]
    if all(a < b for a, b in itertools.pairwise(sizes)):
        return None
    return (
        f"The time cap cut the curve's runs to {', '.join(format_count(n) for n in sizes)} "
        "examples, so its points do not grow with the data; a longer "
        "PILOT_MAX_TRAIN_MINUTES (or a GPU) gives a curve worth reading."
    )


# --------------------------------------------------------------------------- the fit


def fit_log_curve(sizes: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of value = intercept + slope * ln(size)."""
    if len(sizes) != len(values) or len(sizes) < 2:
        raise ValueError("a curve needs two or more points, one value per size")
    x = np.log(np.asarray(sizes, dtype=float))
    if np.ptp(x) == 0:
        raise ValueError("a curve needs two or more distinct sizes")
    slope, intercept = np.polyfit(x, np.asarray(values, dtype=float), 1)
    return float(intercept), float(slope)


def fit_draws(sizes: Sequence[float], resampled: np.ndarray) -> list[tuple[float, float]]:
    """The fit on every bootstrap resample: `resampled` is (resamples, points), each row the
    points' metric on one resample of the test items (the same items for every point)."""
    x = np.log(np.asarray(sizes, dtype=float))
    if resampled.ndim != 2 or resampled.shape[1] != len(x):
        raise ValueError("resampled must have one column per size")
    slopes, intercepts = np.polyfit(x, resampled.T, 1)
    return [(float(a), float(b)) for a, b in zip(intercepts, slopes, strict=True)]


@dataclass(frozen=True)
class Band:
    value: float  # the fit's own prediction
    low: float
    high: float


def predict(curve: LearningCurve, n: float) -> Band:
    """The fitted quality at `n` examples with its 95% bootstrap band (clipped to 0-1)."""
    if curve.intercept is None or curve.slope is None:
        raise ValueError("the curve has no fit")
    x = math.log(n)
    value = curve.intercept + curve.slope * x
    if not curve.draws:
        return Band(_clip(value), _clip(value), _clip(value))
    samples = np.array([a + b * x for a, b in curve.draws])
    low, high = percentile_interval(samples)
    return Band(_clip(value), _clip(low), _clip(high))


def gain_per_doubling(curve: LearningCurve) -> Band:
    """What one doubling of the data adds (slope x ln 2), with its 95% bootstrap interval."""
    if curve.slope is None:
        raise ValueError("the curve has no fit")
    doubling = math.log(2)
    if not curve.draws:
        gain = curve.slope * doubling
        return Band(gain, gain, gain)
    low, high = percentile_interval(np.array([b for _, b in curve.draws]) * doubling)
    return Band(curve.slope * doubling, low, high)


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


# --------------------------------------------------------------------------- the outlook


@dataclass(frozen=True)
class Outlook:
    """What the report says about more data: where the trend is read, and the sentence."""

    largest: int  # the largest size trained
    limit: int  # the furthest the trend may be read: MAX_EXTRAPOLATION x largest
    horizon: int  # where it is read: the intake's examples, within the limit
    at_horizon: Band
    gain: Band  # per doubling
    flat: bool
    extrapolated: bool  # the horizon lies past the largest size trained
    capped: bool  # the intake has more examples than the limit allows reading
    sentence: str
    detail: str  # how the sentence was reached, in one line


def horizon_for(largest: int, examples_available: int | None) -> tuple[int, bool]:
    """Where to read the trend, and whether the guard cut it short.

    The intake's `examples_available` when it is more than was trained, never past
    MAX_EXTRAPOLATION x the largest size; when the team has no more examples than the pilot
    trained on (or did not say), one doubling: what the next round of labelling would buy.
    """
    limit = int(MAX_EXTRAPOLATION * largest)
    if examples_available is None or examples_available <= largest:
        return 2 * largest, False
    return min(examples_available, limit), examples_available > limit


def outlook(
    curve: LearningCurve, *, examples_available: int | None, min_difference_points: float
) -> Outlook:
    """The extrapolation guard and the report's sentence.

    Flat: even the optimistic end of the gain (95% upper bound) over the whole range the
    trend may be read (two doublings) is less than the minimum difference that matters, so
    more data of this kind will not help. Otherwise: about how many examples reach the fitted
    quality at the horizon, if the trend holds.
    """
    if curve.slope is None or not curve.points:
        raise ValueError("the curve has no fit")
    largest = max(p.trained_on for p in curve.points)
    limit = int(MAX_EXTRAPOLATION * largest)
    horizon, capped = horizon_for(largest, examples_available)
    gain = gain_per_doubling(curve)
    doublings = math.log2(MAX_EXTRAPOLATION)
    flat = points_value(gain.high * doublings) < min_difference_points
    at_horizon = predict(curve, horizon)
    extrapolated = horizon > largest
    gain_text = f"{points_value(gain.value):+.1f} points per doubling"
    gain_interval = f"[{points_value(gain.low):+.1f}, {points_value(gain.high):+.1f}]"
    detail = (
        f"Fit: {gain_text} (95% interval {gain_interval}), from "
        f"{', '.join(format_count(p.trained_on) for p in curve.points)} examples trained on."
    )
    if flat:
        sentence = "The curve is flat: more data of this kind will not help."
        detail += (
            f" Even its upper bound over two doublings stays under the "
            f"{min_difference_points:g}-point minimum difference that matters."
        )
    elif gain.value <= 0:
        sentence = (
            "The curve does not rise on this data, but its interval is too wide to call it "
            "flat: a larger test split would tell."
        )
    else:
        target = math.floor(points_value(at_horizon.value))
        needed = examples_for(curve, target / 100)
        shown = needed if needed is not None and needed <= limit else horizon
        sentence = (
            f"About {format_count(round_examples(shown))} examples to reach {target}% "
            "if the trend holds"
            + (
                f" (an extrapolation beyond the {format_count(largest)} examples trained)."
                if shown > largest
                else "."
            )
        )
        detail += (
            f" At {format_count(horizon)} examples the band is "
            f"{points_value(at_horizon.low):.1f}–{points_value(at_horizon.high):.1f}%."
        )
    if capped:
        detail += (
            f" The intake's {format_count(examples_available or 0)} examples lie past "
            f"{MAX_EXTRAPOLATION:g}x the largest size trained; the trend is read only up to "
            f"{format_count(limit)}."
        )
    return Outlook(
        largest=largest,
        limit=limit,
        horizon=horizon,
        at_horizon=at_horizon,
        gain=gain,
        flat=flat,
        extrapolated=extrapolated,
        capped=capped,
        sentence=sentence,
        detail=detail,
    )


def examples_for(curve: LearningCurve, quality: float) -> int | None:
    """Examples the fit needs to reach `quality` (None when the fit does not rise)."""
    if curve.intercept is None or curve.slope is None or curve.slope <= 0:
        return None
    return math.ceil(math.exp((quality - curve.intercept) / curve.slope))


def round_examples(n: int) -> int:
    """Two significant figures: 'about 1,900', not 'about 1,874', for a fitted trend."""
    if n < 100:
        return n
    scale = 10 ** (len(str(n)) - 2)
    return round(n / scale) * scale
