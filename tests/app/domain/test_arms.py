"""The arm registry: one place that says which arms exist, in which order, for which path."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.domain.arm_registry import (
    ArmRegistry,
    ArmSpec,
    ModelRole,
    Needs,
    PilotSettings,
    UnknownArm,
)
from app.domain.arms import ARMS, FEWSHOT, MajorityConfig
from app.domain.samples.schemas import PilotTask


def spec(name: str, order: int, **needs: object) -> ArmSpec[MajorityConfig]:
    return ArmSpec(
        name=name,
        label=name,
        order=order,
        evidence_for=None,
        config_type=MajorityConfig,
        default_config=lambda settings, _: MajorityConfig(),
        needs=Needs(model=ModelRole.none, **needs),  # type: ignore[arg-type]
        implementation="worker.pilots.arms.majority",
    )


def test_the_shipped_arms_in_order_with_their_paths() -> None:
    assert ARMS.names == ("majority", "fewshot", "rag", "qlora", "qlora_rag")
    assert [ARMS.evidence_for(a) for a in ARMS.names] == [
        None,
        "prompting",
        "rag",
        "fine_tuning",
        "fine_tuning+rag",
    ]
    assert ARMS.label("qlora_rag") == "QLoRA + RAG"
    assert ARMS.label("retired_arm") == "retired_arm"  # an old pilot's arm still reads


def test_defaults_depend_on_the_task() -> None:
    assert ARMS.defaults(PilotTask.classification)[0] == "majority"
    assert "majority" not in ARMS.defaults(PilotTask.qa)
    assert ARMS.defaults(PilotTask.qa) == ("fewshot", "rag", "qlora", "qlora_rag")


def test_order_comes_from_the_registry_and_unknown_names_are_refused() -> None:
    assert ARMS.in_order(["qlora", "fewshot"]) == ("fewshot", "qlora")
    with pytest.raises(UnknownArm, match="unknown arm 'magic'; choose from majority, fewshot"):
        ARMS.in_order(["magic"])


def test_a_registry_refuses_duplicates_and_an_adapter_source_that_runs_later() -> None:
    with pytest.raises(ValueError, match="unique"):
        ArmRegistry([spec("a", 1), spec("a", 2)])
    with pytest.raises(ValueError, match="needs 'b' registered before it"):
        ArmRegistry([spec("a", 1, adapter_from="b"), spec("b", 2)])
    grown = ArmRegistry([spec("a", 1)]).with_arm(spec("b", 0))
    assert grown.names == ("b", "a")


def test_default_configs_take_the_pilot_seed() -> None:
    from app.domain.arm_registry import ConfigSet

    settings = PilotSettings(seed=41, max_train_minutes=1.0, adapter_dir=Path("/tmp/a"))
    assert ConfigSet(settings, {}).get(FEWSHOT).seed == 41
