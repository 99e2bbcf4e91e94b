"""Small, pure mappings from raw answers onto 0..1, shared by the rubric and the cost model."""

from __future__ import annotations

import itertools
import math


def clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    """`value` limited to [low, high]; NaN maps to `low`, so bad input never inflates a score."""
    if math.isnan(value):
        return low
    return max(low, min(high, value))


def log_scale(value: float, low: float, high: float) -> float:
    """0 at or below `low`, 1 at or above `high`, logarithmic in between.

    Logarithmic because each doubling of examples or traffic matters about as much as the last.
    """
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return clamp(math.log(value / low) / math.log(high / low))


def interpolate(x: float, points: tuple[tuple[float, float], ...]) -> float:
    """Piecewise-linear through `points` (sorted by x); beyond the last, extend its last segment."""
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    (x0, y0), (x1, y1) = points[-2], points[-1]
    return y1 + (y1 - y0) * (x - x1) / (x1 - x0)
