"""The proxy rule: when a measured gap between two arms may overrule the rubric."""

from __future__ import annotations

from app.domain.arm_registry import Capability
from app.domain.proxy import comparable, is_deployment_model, known_capable
from app.domain.records import ArmModel

PROXY = ArmModel(model_id="SmolLM2-135M", parameters=135_000_000)
SMALL_8B = ArmModel(model_id="llama-8b", parameters=8_000_000_000)
HOSTED = ArmModel(model_id="gpt-x", parameters=None, via="endpoint", deployment=True)
UNKNOWN = ArmModel(model_id="mystery", parameters=None)

IN_CONTEXT = {Capability.in_context}
READING = {Capability.reading}
TUNING = {Capability.fine_tuning}


def test_the_deployment_model_is_declared_or_of_the_target_size() -> None:
    assert is_deployment_model(HOSTED, None)
    assert is_deployment_model(SMALL_8B, 8)
    assert is_deployment_model(SMALL_8B, 16)  # within a factor of two
    assert not is_deployment_model(SMALL_8B, 70)
    assert not is_deployment_model(PROXY, 8)
    assert not is_deployment_model(UNKNOWN, 8)


def test_capability_thresholds() -> None:
    assert known_capable(PROXY, TUNING)
    assert not known_capable(PROXY, IN_CONTEXT)
    assert not known_capable(PROXY, READING)
    assert known_capable(SMALL_8B, IN_CONTEXT | READING | TUNING)
    assert not known_capable(UNKNOWN, IN_CONTEXT)  # size unknown: not known capable
    assert known_capable(UNKNOWN, set())


def test_both_arms_on_the_deployment_model_count() -> None:
    verdict = comparable(SMALL_8B, IN_CONTEXT, SMALL_8B, TUNING, 8)
    assert verdict.counts and verdict.reason == "both ran on the deployment model"


def test_a_proxy_gap_between_fewshot_and_qlora_does_not_count() -> None:
    verdict = comparable(PROXY, IN_CONTEXT, PROXY, TUNING, 8)
    assert not verdict.counts
    assert "not known to be capable of in-context" in verdict.reason
    assert "135M parameters" in verdict.reason


def test_a_proxy_gap_between_two_tuned_arms_needing_reading_does_not_count() -> None:
    assert not comparable(PROXY, TUNING, PROXY, TUNING | READING, 8).counts


def test_the_same_capable_model_counts_even_if_it_is_not_deployed() -> None:
    verdict = comparable(SMALL_8B, IN_CONTEXT, SMALL_8B, READING, 70)
    assert verdict.counts and "capable of both" in verdict.reason


def test_a_proxy_gap_where_the_proxy_is_capable_of_both_counts() -> None:
    assert comparable(PROXY, TUNING, PROXY, TUNING, 8).counts


def test_different_models_never_count_unless_both_are_deployed() -> None:
    assert not comparable(SMALL_8B, IN_CONTEXT, PROXY, TUNING, 70).counts
    assert comparable(HOSTED, IN_CONTEXT, SMALL_8B, TUNING, 8).counts


def test_an_arm_without_a_recorded_model_never_counts() -> None:
    assert not comparable(None, IN_CONTEXT, SMALL_8B, TUNING, 8).counts
