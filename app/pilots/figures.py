"""Each finished arm's primary figure, for the pilot page and the API, from the moment the arm
is recorded (`app.domain.arm_figures`): the figure is the one the arm stored, the metric and
the sample come from the split the pilot's preparation stored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.arm_figures import ArmFigure, ScoredSample, arm_figure, scored_sample
from app.domain.records import ArmStatus, Manifest, PilotStatus
from app.domain.samples.schemas import Example, PilotTask
from app.pilots.models import MetricRow, Pilot, PilotArm, PilotSplit


def split_sample(session: Session, *, pilot: Pilot) -> ScoredSample | None:
    """The metric and sample of the pilot's stored test split; None before its preparation
    stored one. Only the task and the test items are read, not the training split."""
    row = session.execute(
        select(PilotSplit.data["task"].as_string(), PilotSplit.data["test"]).where(
            PilotSplit.pilot_id == pilot.id
        )
    ).first()
    if row is None:
        return None
    task, test = row
    return scored_sample(PilotTask(task), [Example.model_validate(item) for item in test or []])


def arm_figures(
    session: Session,
    *,
    pilot: Pilot,
    arms: Sequence[PilotArm],
    metrics: Mapping[str, Mapping[str, MetricRow]],
) -> dict[str, ArmFigure]:
    """The primary figure of every finished arm that stored one, by arm: provisional until
    the pilot has concluded, then on the metric the conclusion chose."""
    concluded = pilot.status == PilotStatus.done and pilot.primary_metric is not None
    sample = split_sample(session, pilot=pilot)
    n_items: int | None
    if sample is not None:
        metric, n_items, n_groups = sample.metric, sample.n_items, sample.n_groups
    else:
        # A pilot stored before its split was kept: its manifest's size, no group count.
        manifest = Manifest.read(pilot.manifest, seed=pilot.seed)
        metric, n_groups = "", None
        n_items = manifest.split_sizes.test or None if manifest is not None else None
    if concluded and pilot.primary_metric is not None:
        metric = pilot.primary_metric  # the judge's pass rate, when the judge may decide
    if not metric:
        return {}
    figures = {}
    for arm in arms:
        if arm.status != ArmStatus.done:
            continue
        figure = arm_figure(
            metrics.get(arm.arm, {}),
            metric=metric,
            n_items=n_items,
            n_groups=n_groups,
            concluded=concluded,
        )
        if figure is not None:
            figures[arm.arm] = figure
    return figures
