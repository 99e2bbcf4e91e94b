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
    n_items: int,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """(n_resamples, n_items) item indices drawn with replacement, reproducible from `seed`.

    With `groups` (one group number per item) whole groups are drawn, so items that share a
    passage are resampled together and the interval reflects how few independent groups
    there are (Miller 2024, section 3). Each row takes groups in a random order until it holds
    n_items items and cuts the last one short: a fixed-size cluster bootstrap, exact when the
    groups are of one size. Without groups (or with every item its own) the draw is the
    item bootstrap, unchanged.
    """
    rng = np.random.default_rng(seed)
    if groups is None or len(np.unique(groups)) >= n_items:
        return rng.integers(0, n_items, size=(n_resamples, n_items))
    _, group_of = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(group_of == g) for g in range(int(group_of.max()) + 1)]
    smallest = min(len(m) for m in members)
    draws_per_row = -(-n_items // smallest)  # enough groups to fill a row, whatever is drawn
    rows = np.empty((n_resamples, n_items), dtype=np.int64)
    drawn = rng.integers(0, len(members), size=(n_resamples, draws_per_row))
    for r in range(n_resamples):
        rows[r] = np.concatenate([members[g] for g in drawn[r]])[:n_items]
    return rows


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
