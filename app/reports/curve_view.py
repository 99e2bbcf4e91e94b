"""The learning curve's section of the report: its points, the fitted trend's chart and sentence.

The fit, its band and the extrapolation guard are in `app.domain.learning_curve`; this module
only formats them. `app.reports.pilot_view` places the section in the pilot's report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from app.domain.formatting import format_count, format_duration, format_interval, format_quality
from app.domain.learning_curve import outlook, predict
from app.domain.metric_catalogue import metric_label
from app.domain.records import LearningCurve
from app.reports.charts import CurveLine, CurveMark, learning_curve_chart_svg
from app.reports.pilot_rows import PilotRows


@dataclass(frozen=True)
class CurvePointRow:
    examples: str
    trained_on: str
    quality: str
    interval: str
    source: str  # "the QLoRA arm" or the training time of the extra run


@dataclass(frozen=True)
class CurveView:
    metric_label: str
    sentence: str  # "About N examples to reach X% if the trend holds" or "flat"
    detail: str
    points: tuple[CurvePointRow, ...]
    extra_time: str  # what the curve added to the pilot
    chart: str | None
    notes: tuple[str, ...]


# Points along the fitted line in the chart: enough for a smooth band on a log axis.
CURVE_SAMPLES: Final = 40


def learning_curve_view(
    rows: PilotRows, *, examples_available: int | None, min_difference_points: float
) -> CurveView | None:
    """The learning curve's table, chart and sentence; None when the pilot did not ask."""
    curve = LearningCurve.read(rows.pilot.learning_curve_results)
    if curve is None:
        return None
    label = metric_label(curve.metric)
    points = tuple(
        CurvePointRow(
            examples=format_count(p.examples),
            trained_on=format_count(p.trained_on),
            quality=format_quality(p.value),
            interval=format_interval(p.ci_low, p.ci_high),
            source=(
                "the QLoRA arm itself"
                if p.reused
                else f"trained for this curve ({format_duration(p.training_seconds)})"
            ),
        )
        for p in curve.points
    )
    if curve.slope is None or len(curve.points) < 2:
        return CurveView(
            metric_label=label,
            sentence="No curve: too few points to fit a trend.",
            detail="",
            points=points,
            extra_time=format_duration(curve.extra_seconds),
            chart=None,
            notes=tuple(curve.notes),
        )
    view = outlook(
        curve,
        examples_available=examples_available,
        min_difference_points=min_difference_points,
    )
    smallest = min(p.trained_on for p in curve.points)
    ratio = view.horizon / smallest
    along = [smallest * ratio ** (i / (CURVE_SAMPLES - 1)) for i in range(CURVE_SAMPLES)]
    bands = [predict(curve, n) for n in along]
    chart = learning_curve_chart_svg(
        [CurveMark(p.trained_on, p.value, p.ci_low, p.ci_high) for p in curve.points],
        CurveLine(
            examples=along,
            value=[b.value for b in bands],
            low=[b.low for b in bands],
            high=[b.high for b in bands],
        ),
        largest=view.largest,
        metric_label=label.capitalize(),
    )
    return CurveView(
        metric_label=label,
        sentence=view.sentence,
        detail=view.detail,
        points=points,
        extra_time=format_duration(curve.extra_seconds),
        chart=chart,
        notes=tuple(curve.notes),
    )
