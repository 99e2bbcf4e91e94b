"""One arm's primary figure (value, 95% interval, sample), shown as soon as the arm finishes.

The interval is the one the arm stored when it finished: its worker bootstraps it on the
pilot's one resample matrix (group-aware, `app.domain.bootstrap.resample_indices`), and the
conclusion keeps it unchanged. So an arm's figure is final once the arm is done; only which
metric is primary can still change (a judge's pass rate may become primary at the conclusion),
and the comparison between arms needs every arm. Until the pilot concludes the figure is
provisional, and no difference, leader or verdict is shown beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from app.domain.formatting import format_count, format_interval
from app.domain.metric_catalogue import format_metric_value, metric_label, primary_metric
from app.domain.samples.groups import group_summary
from app.domain.samples.schemas import Example, PilotTask

PROVISIONAL_NOTE: Final = "provisional: the comparison and verdict come when every arm has finished"


class Measured(Protocol):
    """A stored figure: a `MetricValue`, or its SQL row."""

    @property
    def value(self) -> float: ...
    @property
    def ci_low(self) -> float | None: ...
    @property
    def ci_high(self) -> float | None: ...


@dataclass(frozen=True)
class ScoredSample:
    """What every arm of a pilot is scored on before the conclusion."""

    metric: str  # the primary metric without a judge (the judge grades at the conclusion)
    n_items: int
    n_groups: int  # items sharing a group (a passage) count once


def scored_sample(task: PilotTask, test: Sequence[Example]) -> ScoredSample:
    """The metric and sample of a pilot's test split, as the worker scores its arms."""
    summary = group_summary(test)
    return ScoredSample(
        metric=primary_metric(task, [example.target for example in test]),
        n_items=summary.n_items,
        n_groups=summary.n_groups,
    )


@dataclass(frozen=True)
class ArmFigure:
    metric: str
    value: float
    low: float | None
    high: float | None
    n_items: int | None  # None: a pilot stored before its split was kept
    n_groups: int | None
    provisional: bool  # True until the pilot has concluded

    @property
    def label(self) -> str:
        return metric_label(self.metric)

    @property
    def figure(self) -> str:
        """'72.5%', as the report prints the metric."""
        return format_metric_value(self.metric, self.value)

    @property
    def interval(self) -> str:
        """'[64.2, 80.1]', or '' without an interval."""
        return format_interval(self.low, self.high)

    @property
    def text(self) -> str:
        """'accuracy 72.5% [64.2, 80.1] on 120 items in 80 groups'."""
        parts = (self.label, self.figure, self.interval, self.sample)
        return " ".join(part for part in parts if part)

    @property
    def sample(self) -> str:
        """'on 120 items', 'on 120 items in 80 groups', or '' when unknown."""
        text = sample_text(self.n_items, self.n_groups)
        return f"on {text}" if text else ""


def sample_text(n_items: int | None, n_groups: int | None) -> str:
    """'120 items', or '312 items in 80 groups' when items share groups; '' when unknown."""
    if n_items is None:
        return ""
    if n_groups is None or n_groups >= n_items:
        return f"{format_count(n_items)} items"
    return f"{format_count(n_items)} items in {format_count(n_groups)} groups"


def arm_figure(
    measured: Mapping[str, Measured],
    *,
    metric: str,
    n_items: int | None,
    n_groups: int | None,
    concluded: bool,
) -> ArmFigure | None:
    """The arm's figure on `metric` from its stored figures; None when it has none."""
    stored = measured.get(metric)
    if stored is None:
        return None
    return ArmFigure(
        metric=metric,
        value=stored.value,
        low=stored.ci_low,
        high=stored.ci_high,
        n_items=n_items,
        n_groups=n_groups,
        provisional=not concluded,
    )
