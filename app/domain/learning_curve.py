"""The fine-tuning arm's learning curve: how quality grows with the number of examples.

The worker trains the fine-tuning arm again on nested subsets of the (capped) training split,
a quarter and a half of it, with the same seed, and evaluates each adapter on the same test
split as every arm, in the same way (in-process, `point_statistic`). This module holds the
pure parts:

- `nested_order`: one seeded order of the training examples whose every prefix keeps the
  labels as balanced as the data allows, so ¼ ⊂ ½ ⊂ all and each subset is stratified;
- `point_statistic`: what each point is scored on, the answers of the model as trained;
- `fit_curve` / `fit_draws`: logit(quality) = a + b·ln(n) by least squares, and the fit's
  uncertainty by refitting on each paired bootstrap resample of the test items (the same
  resample matrix as every arm, so the three points move together as they really do);
- `outlook`: the extrapolation guard (never past 4× the largest size trained, and always
  labelled as an extrapolation) and the sentence the report prints.

Why logit(quality) on log(n): a straight line on log(n) has no ceiling, so read two doublings
out it promises 100% (80, 88, 95% gave "about 740 examples to reach 100%"). The logit line
is the smallest change that cannot: it is the same as the odds of an error falling as a power
of the data, (1 - q)/q = e^-a · n^-b. Near the ceiling that is the power law in training-set
size that Hestness et al. (2017, arXiv:1712.00409) measured across tasks and Kaplan et al.
(2020, arXiv:2001.08361) for language models; in the middle it is close to the log-linear
trend (each doubling buys about the same); and it can never cross 0% or 100%. It keeps two
parameters, which is all three points can support: a power law to a free asymptote,
q = c - a·n^-b, has three and would pass through three points exactly, leaving its bootstrap
refits to chase noise. It is a trend, not a law, which is why the extrapolation is bounded.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np

from app.domain.bootstrap import percentile_interval
from app.domain.formatting import format_count, points_value
from app.domain.metrics import Statistic, aligned_predictions, quality_statistics
from app.domain.records import ArmResult, CurveFit, CurvePoint, LearningCurve, PointEvaluation
from app.domain.samples.schemas import Example, PilotTask

# The subsets trained, as fractions of the training split; the largest is the arm itself.
FRACTIONS: Final[tuple[float, ...]] = (0.25, 0.5, 1.0)
# How far past the largest size trained the fitted trend may be read. Two doublings: further
# out, a two-parameter trend fitted on three points says more about the fit than the data.
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


# --------------------------------------------------------------------------- the points


def point_statistic(
    task: PilotTask,
    result: ArmResult,
    test: Sequence[Example],
    *,
    labels: Sequence[str],
    metric: str,
) -> Statistic:
    """The statistic one point of the curve is scored on: the answers of the model as trained.

    The subsets are only ever answered in-process. The arm itself, when a serving endpoint
    answered it, keeps the served answers as its predictions and the in-process ones as its
    reference: the curve takes the reference, so every size is evaluated the same way and the
    largest point does not move by the served-versus-trained shift alone.
    """
    answers = result.reference_predictions
    if answers is None:
        answers = result.predictions
    # The curve's metric is a reference metric, never the embedding similarity: no embedder.
    stats = quality_statistics(
        task,
        aligned_predictions(answers, len(test)),
        [e.target for e in test],
        labels=labels,
        alternatives=[e.alternatives for e in test],
    )
    return stats[metric]


# --------------------------------------------------------------------------- the fit


def _logit(values: np.ndarray, items: int) -> np.ndarray:
    """logit(value), with 0 and 1 moved half a test item inside: a point that got nothing (or
    everything) right has a finite logit, as close to the bound as the test split can tell."""
    if items < 1:
        raise ValueError("a curve needs one or more test items")
    edge = 0.5 / items
    clipped = np.clip(values, edge, 1 - edge)
    return np.log(clipped / (1 - clipped))


def _expit(z: np.ndarray) -> np.ndarray:
    # tanh form: no overflow for a steep fit read far out.
    return 0.5 * (1 + np.tanh(z / 2))


def fit_curve(
    sizes: Sequence[float], values: Sequence[float], *, items: int
) -> tuple[float, float]:
    """Least-squares (intercept, slope) of logit(value) = intercept + slope * ln(size);
    `items`: the test split's size, which sets how close to 0 or 1 a point may sit."""
    if len(sizes) != len(values) or len(sizes) < 2:
        raise ValueError("a curve needs two or more points, one value per size")
    x = np.log(np.asarray(sizes, dtype=float))
    if np.ptp(x) == 0:
        raise ValueError("a curve needs two or more distinct sizes")
    slope, intercept = np.polyfit(x, _logit(np.asarray(values, dtype=float), items), 1)
    return float(intercept), float(slope)


def fit_draws(
    sizes: Sequence[float], resampled: np.ndarray, *, items: int
) -> list[tuple[float, float]]:
    """The fit on every bootstrap resample: `resampled` is (resamples, points), each row the
    points' metric on one resample of the test items (the same items for every point)."""
    x = np.log(np.asarray(sizes, dtype=float))
    if resampled.ndim != 2 or resampled.shape[1] != len(x):
        raise ValueError("resampled must have one column per size")
    slopes, intercepts = np.polyfit(x, _logit(resampled, items).T, 1)
    return [(float(a), float(b)) for a, b in zip(intercepts, slopes, strict=True)]


@dataclass(frozen=True)
class Band:
    value: float  # the fit's own prediction
    low: float
    high: float


def _quality(
    curve: LearningCurve, intercept: np.ndarray, slope: np.ndarray, n: float
) -> np.ndarray:
    """The fitted quality at `n`, on the curve's own scale, within 0-1."""
    z = intercept + slope * math.log(n)
    if curve.fit is CurveFit.logit:
        return _expit(z)
    return np.clip(z, 0.0, 1.0)  # a straight line, stored before the bounded fit


def _fitted(curve: LearningCurve) -> tuple[float, float]:
    if curve.intercept is None or curve.slope is None:
        raise ValueError("the curve has no fit")
    return curve.intercept, curve.slope


def predict(curve: LearningCurve, n: float) -> Band:
    """The fitted quality at `n` examples with its 95% bootstrap band, within 0-1."""
    intercept, slope = _fitted(curve)
    value = float(_quality(curve, np.asarray(intercept), np.asarray(slope), n))
    if not curve.draws:
        return Band(value, value, value)
    draws = np.asarray(curve.draws, dtype=float)
    low, high = percentile_interval(_quality(curve, draws[:, 0], draws[:, 1], n))
    return Band(value, low, high)


def gain_between(curve: LearningCurve, start: float, end: float) -> Band:
    """What the fit adds from `start` to `end` examples, with its 95% bootstrap interval: on
    the logit scale a doubling buys less as the curve nears 0% or 100%, so the gain is read
    where it applies, not as one figure per doubling."""
    intercept, slope = _fitted(curve)
    a, b = np.asarray(intercept), np.asarray(slope)
    gain = float(_quality(curve, a, b, end) - _quality(curve, a, b, start))
    if not curve.draws:
        return Band(gain, gain, gain)
    draws = np.asarray(curve.draws, dtype=float)
    a, b = draws[:, 0], draws[:, 1]
    low, high = percentile_interval(_quality(curve, a, b, end) - _quality(curve, a, b, start))
    return Band(gain, low, high)


# --------------------------------------------------------------------------- the outlook


class Reading(StrEnum):
    """What the curve can say about more data."""

    floor = "floor"  # every point at (or within noise of) 0%: it cannot tell
    ceiling = "ceiling"  # every point at (or within noise of) 100%: it cannot tell
    no_band = "no_band"  # the bootstrap saw no uncertainty at all: it cannot tell
    flat = "flat"  # even the gain's upper bound is under the difference that matters
    falling = "falling"  # the fit falls, but its interval reaches a gain that matters
    rising = "rising"  # about N examples to reach X%, if the trend holds


@dataclass(frozen=True)
class Outlook:
    """What the report says about more data: where the trend is read, and the sentence."""

    largest: int  # the largest size trained
    limit: int  # the furthest the trend may be read: MAX_EXTRAPOLATION x largest
    horizon: int  # where it is read: the intake's examples, within the limit
    at_horizon: Band
    gain: Band  # over the next doubling of the largest size trained
    reach: Band  # over the whole range the trend may be read (largest to limit)
    reading: Reading
    extrapolated: bool  # the horizon lies past the largest size trained
    capped: bool  # the intake has more examples than the limit allows reading
    sentence: str
    detail: str  # how the sentence was reached, and what the band does not cover

    @property
    def flat(self) -> bool:
        return self.reading is Reading.flat


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


def _bound_reading(points: Sequence[CurvePoint]) -> tuple[Reading, str] | None:
    """The floor or the ceiling: every point at, or within its interval of, 0% (or 100%).

    There the test split cannot show a change either way: a model that gets nothing right at
    every size may need more data or may never learn the task, and one that gets everything
    right has nothing left to show. Neither is a flat curve.
    """
    if all(p.ci_low <= 0 for p in points):
        if all(p.value <= 0 for p in points):
            return Reading.floor, (
                "Every size scored 0%: the curve cannot tell whether more data helps."
            )
        return Reading.floor, (
            "No size scored clearly above 0% (every point's 95% interval reaches 0%): the "
            "curve cannot tell whether more data helps."
        )
    if all(p.ci_high >= 1 for p in points):
        if all(p.value >= 1 for p in points):
            return Reading.ceiling, (
                "Every size scored 100%: already at the ceiling, so the curve cannot tell what "
                "more data would add; a harder test split would."
            )
        return Reading.ceiling, (
            "The curve is already at the ceiling (every point's 95% interval reaches 100%): "
            "it cannot tell what more data would add; a harder test split would."
        )
    return None


def _method(curve: LearningCurve) -> str:
    """How the fit was made and what its band covers, in words."""
    fit = (
        "logit(quality) fitted on log(examples), which stays within 0% and 100%"
        if curve.fit is CurveFit.logit
        else "quality fitted as a straight line on log(examples) (stored before the bounded "
        "fit, so read near 100% with care)"
    )
    evaluated = (
        "every point evaluated in-process (the model as trained)"
        if curve.evaluated is PointEvaluation.in_process
        else "how its points were evaluated was not recorded (stored before the curve said; "
        "its largest point may be the served figure)"
    )
    runs = curve.training_runs_per_size
    run_text = "one training run per size" if runs == 1 else f"{runs} training runs per size"
    return (
        f"{fit.capitalize()}; {evaluated}. The band covers test-item noise only, not "
        f"training-seed variance: {run_text}."
    )


def outlook(
    curve: LearningCurve, *, examples_available: int | None, min_difference_points: float
) -> Outlook:
    """The extrapolation guard and the report's sentence.

    First what the curve cannot tell: every point at 0% or at 100% (within its interval), or a
    band of no width (the bootstrap saw no uncertainty, which is not evidence of none). Flat
    needs an interval, not a point estimate: even the optimistic end of the gain (95% upper
    bound) over the whole range the trend may be read (two doublings) is less than the minimum
    difference that matters. Otherwise: about how many examples reach the fitted quality at
    the horizon, if the trend holds.
    """
    if curve.slope is None or not curve.points:
        raise ValueError("the curve has no fit")
    largest = max(p.trained_on for p in curve.points)
    limit = int(MAX_EXTRAPOLATION * largest)
    horizon, capped = horizon_for(largest, examples_available)
    gain = gain_between(curve, largest, 2 * largest)
    reach = gain_between(curve, largest, limit)
    at_horizon = predict(curve, horizon)
    extrapolated = horizon > largest
    gain_interval = f"[{points_value(gain.low):+.1f}, {points_value(gain.high):+.1f}]"
    detail = (
        f"Fit: {points_value(gain.value):+.1f} points from {format_count(largest)} to "
        f"{format_count(2 * largest)} examples (95% interval {gain_interval}), from "
        f"{', '.join(format_count(p.trained_on) for p in curve.points)} examples trained on."
    )
    bound = _bound_reading(curve.points)
    if bound is not None:
        reading, sentence = bound
    elif points_value(reach.low) == points_value(reach.high):
        reading = Reading.no_band
        sentence = (
            "The curve's band has no width: its points do not vary across resamples of the "
            "test items, so it measures no uncertainty and cannot tell whether more data "
            "helps; a larger test split would."
        )
    elif points_value(reach.high) < min_difference_points:
        reading = Reading.flat
        sentence = "The curve is flat: more data of this kind will not help."
        detail += (
            f" Even the upper end of its 95% interval over two doublings "
            f"({points_value(reach.high):+.1f} points) stays under the "
            f"{min_difference_points:g}-point minimum difference that matters."
        )
    elif gain.value <= 0:
        reading = Reading.falling
        sentence = (
            "The curve does not rise on this data, but its interval is too wide to call it "
            "flat: a larger test split would tell."
        )
    else:
        reading = Reading.rising
        # Never "to reach 100%": the fit only approaches it, and a rounded 100 would say more.
        target = min(math.floor(points_value(at_horizon.value)), 99)
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
    pinned = sum(1 for p in curve.points if p.value <= 0 or p.value >= 1)
    if curve.fit is CurveFit.logit and pinned and bound is None:
        # 0% and 100% have no logit: the fit reads them half a test item inside, and how
        # steeply it rises from there leans on that choice more than on the measurement.
        detail += (
            f" {pinned} of the {len(curve.points)} points scored 0% or 100%, which the fit "
            "reads as half a test item inside: its slope leans on that reading."
        )
    if capped:
        detail += (
            f" The intake's {format_count(examples_available or 0)} examples lie past "
            f"{MAX_EXTRAPOLATION:g}x the largest size trained; the trend is read only up to "
            f"{format_count(limit)}."
        )
    detail += f" {_method(curve)}"
    return Outlook(
        largest=largest,
        limit=limit,
        horizon=horizon,
        at_horizon=at_horizon,
        gain=gain,
        reach=reach,
        reading=reading,
        extrapolated=extrapolated,
        capped=capped,
        sentence=sentence,
        detail=detail,
    )


# Past this the fit says nothing worth printing: e^28 is over a trillion examples.
_LARGEST_LOG_EXAMPLES: Final = 28.0


def examples_for(curve: LearningCurve, quality: float) -> int | None:
    """Examples the fit needs to reach `quality` (None when it does not rise, or never gets
    there: the logit fit never reaches 0% or 100%, the straight line never passes 100%)."""
    if curve.intercept is None or curve.slope is None or curve.slope <= 0:
        return None
    if not 0 < quality < 1:
        return None
    level = math.log(quality / (1 - quality)) if curve.fit is CurveFit.logit else quality
    log_examples = (level - curve.intercept) / curve.slope
    if log_examples > _LARGEST_LOG_EXAMPLES:
        return None
    return math.ceil(math.exp(log_examples))


def round_examples(n: int) -> int:
    """Two significant figures: 'about 1,900', not 'about 1,874', for a fitted trend."""
    if n < 100:
        return n
    scale = 10 ** (len(str(n)) - 2)
    return round(n / scale) * scale
