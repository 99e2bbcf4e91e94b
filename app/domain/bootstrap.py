"""Paired bootstrap percentile intervals for pilot metrics and arm differences.

Paired: every arm is evaluated on the same resampled test items (one index matrix, drawn
once from the seed), so the interval of a difference reflects how the two arms disagree on
items, not the much larger item-to-item variance each arm has on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.domain.metrics import Statistic

DEFAULT_RESAMPLES = 1000


def resample_indices(
    n_items: int, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """(n_resamples, n_items) item indices drawn with replacement, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_items, size=(n_resamples, n_items))


def percentile_interval(samples: np.ndarray, *, confidence: float = 0.95) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Interval:
    value: float  # on the full test set
    low: float
    high: float


def bootstrap_metric(
    statistic: Statistic,
    n_items: int,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
    indices: np.ndarray | None = None,
) -> Interval:
    """Point value and percentile interval of one metric; pass `indices` to pair arms."""
    if n_items == 0:
        return Interval(0.0, 0.0, 0.0)
    if indices is None:
        indices = resample_indices(n_items, n_resamples=n_resamples, seed=seed)
    value = float(statistic(np.arange(n_items)[None, :])[0])
    low, high = percentile_interval(statistic(indices), confidence=confidence)
    return Interval(value, low, high)


def bootstrap_difference(
    statistic_a: Statistic,
    statistic_b: Statistic,
    n_items: int,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
    indices: np.ndarray | None = None,
) -> Interval:
    """metric(a) - metric(b) and its interval, both computed on the same resampled items.

    The difference is itself a statistic of the resampled items, so it goes through the same
    bootstrap as a single metric: one code path for the resampling and the percentiles.
    """

    def difference(items: np.ndarray) -> np.ndarray:
        return statistic_a(items) - statistic_b(items)

    return bootstrap_metric(
        difference,
        n_items,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        indices=indices,
    )
