"""The majority-label floor: the commonest training label, every time."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from app.domain.arms import MajorityConfig
from app.domain.records import PilotData, Progress
from app.domain.samples.schemas import Example, PilotTask
from worker.pilots.arms.majority import majority_label, run


def data(train_targets: list[str], test_targets: list[str]) -> PilotData:
    return PilotData(
        PilotTask.classification,
        [Example(input=f"t{i}", target=t) for i, t in enumerate(train_targets)],
        [],
        [Example(input=f"q{i}", target=t) for i, t in enumerate(test_targets)],
        labels=sorted(set(train_targets) | set(test_targets)),
    )


def test_answers_the_commonest_training_label_for_every_test_item() -> None:
    progress: list[Progress] = []
    resources: Any = SimpleNamespace()
    result = run(
        MajorityConfig(), resources, data(["a", "b", "b", "c"], ["a", "b", "c"]), progress.append
    )
    assert [p.prediction for p in result.predictions] == ["b", "b", "b"]
    assert [p.index for p in result.predictions] == [0, 1, 2]
    assert result.recipe == {"label": "b", "train_share": 0.5}
    assert progress[-1].step == progress[-1].total == 3


def test_ties_go_to_the_label_that_sorts_first() -> None:
    assert majority_label(data(["z", "y", "y", "z"], [])) == "y"


def test_no_training_examples_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one training example"):
        majority_label(data([], ["a"]))
