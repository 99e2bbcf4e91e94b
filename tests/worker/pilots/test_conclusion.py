"""A pilot concluded from arms run as separate tasks equals the same pilot run in one process:
the split, the arms' hand-overs and figures cross process lines as JSON, in any order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.domain.preparation import split_as_json, split_from_json
from app.domain.records import ArmHandover, MetricValue
from tests.factories.engine import RESOURCES, config, make_data
from worker.pilots.conclusion import FinishedArm, conclude
from worker.pilots.plan import plan_pilot, upstream_of
from worker.pilots.runner import run_arm, run_pilot

DATA_WARNING = "3 rows appear twice in the sample."


def test_arms_run_apart_and_concluded_from_json_give_the_one_process_outcome() -> None:
    whole = run_pilot(config(n_resamples=300), make_data(), RESOURCES, data_warnings=[DATA_WARNING])

    # As the worker does: the preparation stores the capped split, each arm task rebuilds the
    # plan from it, and the conclusion reads every arm back from what was stored.
    prepared = plan_pilot(config(n_resamples=300), make_data())
    stored_split = split_as_json(prepared.data)
    finished: list[FinishedArm] = []
    adapters: dict[str, str | None] = {}
    # Arms that wait for none run first, in reverse order: as tasks they may finish any way.
    order = sorted(prepared.order, key=lambda arm: upstream_of(prepared, arm) is not None)
    for arm in [*reversed(order[:3]), *order[3:]]:
        plan = plan_pilot(config(n_resamples=300), split_from_json(stored_split))
        source = upstream_of(plan, arm)
        ran = run_arm(plan, arm, RESOURCES, upstream_adapter=adapters.get(source or ""))
        adapters[arm] = ran.handover.adapter_path
        finished.append(
            FinishedArm(
                arm=arm,
                status=ran.outcome.status,
                metrics=[
                    MetricValue(m.name, m.value, m.ci_low, m.ci_high) for m in ran.outcome.metrics
                ],
                handover=ArmHandover.read(ran.handover.as_json()),
            )
        )
    conclusion = conclude(
        plan_pilot(config(n_resamples=300), split_from_json(stored_split)),
        finished,
        RESOURCES,
        started_at=datetime.now(UTC),
    )

    assert conclusion.primary_metric == whole.primary_metric
    assert [(d.arm_a, d.arm_b) for d in conclusion.differences] == [
        (d.arm_a, d.arm_b) for d in whole.differences
    ]
    for mine, theirs in zip(conclusion.differences, whole.differences, strict=True):
        assert (mine.delta, mine.ci_low, mine.ci_high) == pytest.approx(
            (theirs.delta, theirs.ci_low, theirs.ci_high)
        )
    # One outcome builder for both ways: the data's warnings first, then the conclusion's.
    apart = conclusion.outcome(plan, whole.arms, data_warnings=[DATA_WARNING])
    assert apart.warnings == whole.warnings == [DATA_WARNING, *conclusion.warnings]
    assert (apart.task, apart.primary_metric, apart.caps) == (
        whole.task,
        whole.primary_metric,
        whole.caps,
    )
    manifest, expected = conclusion.manifest.as_json(), whole.manifest.as_json()
    for key in ("started_at", "finished_at"):
        manifest.pop(key), expected.pop(key)
    assert manifest == expected
