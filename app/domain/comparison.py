"""Paired comparisons of two arms on the same test items: the evidence a verdict may rest on.

Every figure that can decide a recommendation comes from here, computed once when a pilot
concludes and stored with the difference:

- **Paired on the items both arms can be scored on.** An item an arm has no readable score for
  (an unreadable judge verdict, stored as NaN) drops out of that pair, for both arms, so a
  difference never compares means over different items.
- **Binary metrics without groups** (accuracy, exact match, judge pass rate): Bonett and
  Price's adjusted Wald interval for a paired difference of proportions (2012; recommended
  by Fagerland, Lydersen and Laake 2014, "Recommended tests and confidence intervals for
  paired binomial proportions") and the exact McNemar test on the discordant items. Both
  behave on small counts, where a plain normal approximation or a percentile bootstrap
  claims too much.
- **Everything else** (continuous scores, or items that share a group such as a passage):
  the analytic clustered standard error of the mean difference, with a t quantile on
  (groups - 1) degrees of freedom (Miller 2024, "Adding Error Bars to Evals", sections 2-3:
  analytic standard errors, clustered when questions share a context). Without groups each
  item is its own group and this is the paired t interval.

Analytic intervals do not move with a bootstrap seed, so a case near the boundary is decided
the same way every time.

Pure: numpy and scipy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
from scipy import stats

from app.domain.records import Difference

CONFIDENCE: Final = 0.95


class Method(StrEnum):
    paired_binary = "paired_binary"  # no groups: Bonett-Price interval + exact McNemar
    clustered_t = "clustered_t"  # items in groups: cluster-robust SE, t on G - 1 df
    paired_t = "paired_t"  # continuous scores, one item per group


@dataclass(frozen=True)
class PairedComparison:
    """mean(a) - mean(b) over the items both arms were scored on, with its evidence."""

    delta: float
    ci_low: float
    ci_high: float
    n_items: int  # items both arms have a score for
    n_groups: int  # independent groups among them (= n_items without groups)
    method: Method
    p_value: float | None  # two-sided, for "no difference"; None when it cannot be computed
    binary: bool  # every score is 0 or 1
    a_only: int | None = None  # binary: items arm a got right and arm b wrong
    b_only: int | None = None  # binary: items arm b got right and arm a wrong
    design_effect: float | None = None  # clustered variance / the variance ignoring groups

    @property
    def discordant(self) -> int | None:
        if self.a_only is None or self.b_only is None:
            return None
        return self.a_only + self.b_only

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def as_difference(metric: str, arm_a: str, arm_b: str, compared: PairedComparison) -> Difference:
    """The stored record of `compared` (arm_a - arm_b on `metric`), sample included."""
    return Difference(
        metric=metric,
        arm_a=arm_a,
        arm_b=arm_b,
        delta=compared.delta,
        ci_low=compared.ci_low,
        ci_high=compared.ci_high,
        n_items=compared.n_items,
        n_groups=compared.n_groups,
        discordant=compared.discordant,
        p_value=compared.p_value,
        design_effect=compared.design_effect,
        method=compared.method.value,
    )


def paired_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Items both arms have a score for (NaN marks an item an arm could not be scored on)."""
    return ~np.isnan(np.asarray(a, dtype=float)) & ~np.isnan(np.asarray(b, dtype=float))


def compare_paired(
    a: np.ndarray,
    b: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    confidence: float = CONFIDENCE,
) -> PairedComparison:
    """Compare per-item scores `a` and `b` (same items, same order; NaN = no score).

    `groups` gives each item's group number (items sharing a passage, a document or a
    conversation); None or all-distinct means every item stands alone.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("both arms need one score per test item")
    mask = paired_mask(a, b)
    a, b = a[mask], b[mask]
    n = int(a.size)
    item_groups = np.arange(n) if groups is None else np.asarray(groups, dtype=np.int64)[mask]
    _, group_of = np.unique(item_groups, return_inverse=True)
    n_groups = int(group_of.max()) + 1 if n else 0
    binary = bool(n) and bool(np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())
    a_only = int(((a == 1) & (b == 0)).sum()) if binary else None
    b_only = int(((a == 0) & (b == 1)).sum()) if binary else None
    if n == 0:
        return PairedComparison(
            0.0, 0.0, 0.0, 0, 0, Method.paired_t, None, False, design_effect=None
        )
    clustered = n_groups < n
    if binary and not clustered:
        assert a_only is not None and b_only is not None
        low, high = paired_proportion_interval(a_only, b_only, n, confidence)
        return PairedComparison(
            delta=(a_only - b_only) / n,
            ci_low=low,
            ci_high=high,
            n_items=n,
            n_groups=n_groups,
            method=Method.paired_binary,
            p_value=mcnemar_exact(a_only, b_only),
            binary=True,
            a_only=a_only,
            b_only=b_only,
            design_effect=1.0,
        )
    delta, se, design = clustered_mean_se(a - b, group_of, n_groups)
    df = max(n_groups - 1, 1)
    critical = float(stats.t.ppf(0.5 + confidence / 2, df))
    p_value = float(2 * stats.t.sf(abs(delta) / se, df)) if se > 0 else None
    return PairedComparison(
        delta=delta,
        ci_low=delta - critical * se,
        ci_high=delta + critical * se,
        n_items=n,
        n_groups=n_groups,
        method=Method.clustered_t if clustered else Method.paired_t,
        p_value=p_value,
        binary=binary,
        a_only=a_only,
        b_only=b_only,
        design_effect=design,
    )


def clustered_mean_se(
    values: np.ndarray, group_of: np.ndarray, n_groups: int
) -> tuple[float, float, float | None]:
    """(mean, cluster-robust standard error, design effect) of per-item `values`.

    The variance sums each group's residuals first (Liang and Zeger 1986; the CR1 small-sample
    factor G / (G - 1)), so items of one group count as one piece of evidence, not several.
    With one item per group it is the usual s / sqrt(n). The design effect is that variance
    over the variance that treats every item as independent.
    """
    n = values.size
    mean = float(values.mean())
    residuals = values - mean
    if n_groups < 2:
        return mean, 0.0, None
    group_sums = np.bincount(group_of, weights=residuals, minlength=n_groups)
    clustered = n_groups / (n_groups - 1) * float((group_sums**2).sum()) / n**2
    naive = float((residuals**2).sum()) / (n - 1) / n if n > 1 else 0.0
    design = clustered / naive if naive > 0 else None
    return mean, math.sqrt(max(clustered, 0.0)), design


def paired_proportion_interval(
    a_only: int, b_only: int, n: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Interval for p_a - p_b from paired binary outcomes: Bonett and Price's adjusted Wald
    (2012), one of the intervals Fagerland, Lydersen and Laake (2014) recommend for paired
    proportions.

    Only the discordant items carry the difference; adding one to each discordant count (and
    two to n) keeps the interval honest where Wald's collapses: arms that agree on every item
    of 100 get about ±2.7 points, not [0, 0] (Newcombe's method 10 also degenerates there).
    """
    if n == 0:
        return -1.0, 1.0
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p12, p21 = (a_only + 1) / (n + 2), (b_only + 1) / (n + 2)
    centre = p12 - p21
    half = z * math.sqrt(max(p12 + p21 - centre**2, 0.0) / (n + 2))
    return max(-1.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant items at 1/2."""
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(a_only, discordant, 0.5).pvalue)


def holm_adjusted(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (Holm 1979), None kept as None.

    Rejecting where the adjusted value is under alpha keeps the chance of any false "clear
    difference" among all the pairs at alpha, where unadjusted flags over 10 pairs of equal
    arms show at least one 20% of the time.
    """
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        adjusted[index] = running
    return adjusted


# --------------------------------------------------------------------------- sizes to settle it

# 80% power at 95% confidence: the usual planning values (Miller 2024, section 5).
POWER: Final = 0.80


def resolving_test_size(
    comparison_half_width: float,
    n_items: int,
    minimum: float,
    *,
    confidence: float = CONFIDENCE,
    power: float = POWER,
) -> int | None:
    """Test items at which a comparison like this one resolves with `power`, at `minimum`.

    The per-item standard deviation of the difference (groups included, through the measured
    design effect) is read back from the interval's half-width: sd = half-width x sqrt(n) / z.
    At the returned size, two arms that are truly equal give an interval inside +-minimum
    (a tie) with probability `power` (an equivalence test needs z_(1 - beta/2): both ends must
    clear), and so do arms that truly differ by twice the minimum, whose interval then lies
    beyond it (it needs only z_(1 - beta) there, so the tie's size covers both). None when the
    minimum is 0 (nothing is a tie) or the spread is unknown (a zero-width interval).
    """
    if minimum <= 0 or comparison_half_width <= 0 or n_items <= 0:
        return None
    z_alpha = float(stats.norm.ppf(0.5 + confidence / 2))
    z_beta = float(stats.norm.ppf(1 - (1 - power) / 2))
    sd = comparison_half_width * math.sqrt(n_items) / z_alpha
    return math.ceil(((z_alpha + z_beta) * sd / minimum) ** 2)


def detecting_test_size(
    comparison_half_width: float,
    n_items: int,
    gap: float,
    *,
    confidence: float = CONFIDENCE,
    power: float = POWER,
) -> int | None:
    """Test items at which a true difference of `gap` excludes zero with `power`.

    Used when the minimum that matters is 0 (every real difference matters): then the only
    question is whether a gap of the observed size is real. None for a zero gap or spread.
    """
    if gap == 0 or comparison_half_width <= 0 or n_items <= 0:
        return None
    z_alpha = float(stats.norm.ppf(0.5 + confidence / 2))
    z_beta = float(stats.norm.ppf(power))
    sd = comparison_half_width * math.sqrt(n_items) / z_alpha
    return math.ceil(((z_alpha + z_beta) * sd / abs(gap)) ** 2)
