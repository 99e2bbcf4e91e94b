"""Fine-tuned arms evaluated as production serves them: the adapter loaded into a real vLLM.

One small QLoRA adapter is trained once for the module (four Banking77 intents, twelve
steps), then the qlora and qlora_rag arms answer the same test prompts in-process and through
the vLLM fixture with the adapter loaded at runtime. vLLM applies the adapter to the bf16
base it was not trained on (the NF4 one), so a few answers may differ; the served figure must
still land within the in-process figure's 95% interval.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.arms import QLoRAConfig, QLoRARagConfig, RagConfig
from app.domain.bootstrap import resample_indices
from app.domain.metric_catalogue import is_quality, metric_label
from app.domain.metrics import quality_statistics
from app.domain.prompts import short_messages
from app.domain.records import (
    ArmModel,
    ArmResult,
    ArmStatus,
    MetricValue,
    PilotData,
    PilotOutcome,
    Prediction,
    Progress,
)
from app.domain.samples.schemas import Example, PilotTask
from app.integrations.openai_compatible.exceptions import EndpointUnavailable
from app.integrations.openai_compatible.schemas import EndpointSpec
from tests.model_fixtures import read_banking77
from tests.vllm_server import MAX_LORA_RANK, VLLMServer
from worker.pilots.endpoint_answers import MemoryCache
from worker.pilots.prompt_rendering import Prompt
from worker.pilots.runner import PilotConfig, run_pilot
from worker.pilots.served_adapters import (
    AdapterNotServed,
    ServingRuntime,
    answer_as_served,
    in_process_metrics,
)

INTENTS = ("card_acceptance", "country_support", "pin_blocked", "top_up_limits")
# 64 examples, batch 8, four epochs: 32 optimizer steps. The adapter is trained on the NF4
# base and served on the bf16 one, so answers near a tie flip: a half-trained adapter (cut
# short by the time cap on a busy machine) agreed with itself on 19 of 36 items; one trained
# for 16 steps on 34 (97% in-process, 92% served, and 36 of 36 against PEFT on the bf16 base,
# so vLLM applies it as PEFT does).
FAST = {"epochs": 4, "batch_size": 8, "grad_accum": 1, "eval_every_steps": 8}


def four_intents(train_per_label: int = 16, test_per_label: int = 10) -> PilotData:
    train, validation, test = [], [], []
    for label in INTENTS:
        rows = [e for e in read_banking77("train") if e.target == label]
        train += rows[:train_per_label]
        validation += rows[train_per_label : train_per_label + 2]
        test += [e for e in read_banking77("test") if e.target == label][:test_per_label]
    return PilotData(PilotTask.classification, train, validation, test, labels=sorted(INTENTS))


def serving(server: VLLMServer, scope: str, **spec: Any) -> ServingRuntime:
    return ServingRuntime(
        spec=EndpointSpec(base_url=server.base_url, model=server.model, **spec),
        model=ArmModel(model_id=server.model, via="endpoint"),
        cache=MemoryCache(),
        scope=scope,
    )


def served_models(server: VLLMServer) -> list[str]:
    """What GET /v1/models lists: the base and every adapter loaded at this moment."""
    listing = httpx.get(f"{server.base_url}/models", timeout=10).json()
    return [model["id"] for model in listing["data"]]


def metric(outcome: PilotOutcome, arm: str, name: str) -> MetricValue:
    found = next(a for a in outcome.arms if a.arm == arm)
    return next(m for m in found.metrics if m.name == name)


# --------------------------------------------------------------------------- quick checks


def test_the_in_process_figure_is_stored_beside_the_served_one() -> None:
    test = [Example(input=f"q{i}", target="a" if i % 2 else "b") for i in range(10)]
    data = PilotData(PilotTask.classification, [], [], test, labels=["a", "b"])

    def answers(right: int) -> list[Prediction]:
        return [
            Prediction(i, e.target if i < right else "wrong", 1.0, 1, 1) for i, e in enumerate(test)
        ]

    result = ArmResult(arm="qlora", predictions=answers(6), reference_predictions=answers(8))
    served_answers = [p.prediction for p in result.predictions]
    targets = [e.target for e in test]
    served = quality_statistics(data.task, served_answers, targets, labels=data.labels)
    indices = resample_indices(10, n_resamples=500, seed=0)
    [figure] = in_process_metrics(result, data, primary="accuracy", served=served, indices=indices)
    assert figure.name == "in_process_accuracy" and figure.value == pytest.approx(0.8)
    assert figure.ci_low is not None and figure.ci_high is not None
    assert figure.ci_low < 0.8 < figure.ci_high
    assert result.notes[-1].startswith("In-process accuracy 80.0% [")
    assert "served 60.0%, the arm's figure" in result.notes[-1]
    # The report labels it and lists it with the other quality figures.
    assert metric_label("in_process_accuracy") == "in-process accuracy"
    assert is_quality("in_process_accuracy") and not is_quality("in_process_wall_seconds")
    # An arm answered in-process only has no second figure.
    alone = ArmResult(arm="qlora", predictions=answers(6))
    assert in_process_metrics(alone, data, primary="accuracy", served=served, indices=indices) == []


def test_a_served_arm_is_recorded_as_the_endpoint_with_its_adapter() -> None:
    runtime = ServingRuntime(
        spec=EndpointSpec(base_url="http://vllm:8000/v1", model="base"),
        model=ArmModel(model_id="base", via="endpoint"),
        cache=MemoryCache(),
        scope="pilot1",
    )
    # The server holds the pilot's base weights: the record names them, as in-process.
    base = ArmModel(model_id="SmolLM2-135M-Instruct", parameters=134_515_008, adapter=True)
    recorded = runtime.arm_model(base)
    assert (recorded.model_id, recorded.parameters) == ("SmolLM2-135M-Instruct", 134_515_008)
    assert (recorded.via, recorded.adapter, recorded.deployment) == ("endpoint", True, False)
    declared = dataclasses.replace(runtime, model=ArmModel(model_id="base", deployment=True))
    assert declared.arm_model(base).deployment  # declared on the serving endpoint
    names = {runtime.adapter_name(arm, "ab" * 32) for arm in ("qlora", "qlora_rag")}
    assert len(names) == 2 and all(name.startswith("pathpilot-pilot1-") for name in names)


# --------------------------------------------------------------------------- real vLLM


@dataclass
class ServedPilot:
    outcome: PilotOutcome
    data: PilotData
    listed_while_answering: dict[str, list[str]]
    seconds: float


@pytest.fixture(scope="module")
def served_pilot(
    resources: Any, vllm_server: VLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> ServedPilot:
    """The qlora and qlora_rag arms through the runner, as the worker runs them: trained once,
    evaluated in-process, then answered through vLLM with the adapter loaded."""
    data = four_intents()
    qlora = QLoRAConfig(
        adapter_dir=tmp_path_factory.mktemp("served") / "adapter",
        seed=0,
        # Never cut short: on a loaded machine a 5-minute cap stopped it half-way, and the
        # figures must not depend on how busy the machine is.
        max_train_minutes=60.0,
        recipe_overrides=FAST,
        seconds_per_step=1.0,  # skip the step-time probe: the recipe is pinned anyway
    )
    config = PilotConfig(
        arms=["qlora", "qlora_rag"],
        configs={
            "qlora": qlora,
            "qlora_rag": QLoRARagConfig(qlora=qlora, retrieval=RagConfig(top_k=2)),
        },
    )
    listed: dict[str, list[str]] = {}

    def on_progress(arm: str, update: Progress) -> None:
        if update.stage == "asking endpoint" and arm not in listed:
            listed[arm] = served_models(vllm_server)

    with_server = dataclasses.replace(
        resources, serving_endpoint=serving(vllm_server, "served-test")
    )
    started = time.perf_counter()
    outcome = run_pilot(config, data, with_server, on_progress=on_progress)
    return ServedPilot(outcome, data, listed, time.perf_counter() - started)


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.parametrize("arm", ["qlora", "qlora_rag"])
def test_the_served_adapter_lands_within_the_in_process_interval(
    served_pilot: ServedPilot, vllm_server: VLLMServer, arm: str
) -> None:
    outcome, n_test = served_pilot.outcome, len(served_pilot.data.test)
    found = next(a for a in outcome.arms if a.arm == arm)
    assert found.status == ArmStatus.done, found.error
    served = metric(outcome, arm, "accuracy")
    in_process = metric(outcome, arm, "in_process_accuracy")
    result = found.result
    assert result is not None and result.reference_predictions is not None
    agreement = next(n for n in result.notes if n.startswith("Served by vLLM at"))
    print(
        f"\n{arm}: served {served.value:.3f} [{served.ci_low:.3f}, {served.ci_high:.3f}], "
        f"in-process {in_process.value:.3f} [{in_process.ci_low:.3f}, {in_process.ci_high:.3f}]"
        f" on {n_test} items; pilot {served_pilot.seconds:.0f} s; {agreement.rsplit('; ', 1)[1]}"
    )
    assert in_process.ci_low is not None and in_process.ci_high is not None
    assert served.ci_low is not None and served.ci_high is not None
    # The same adapter asked the same prompts: one figure lies within the other's interval,
    # either way round, not only the served one in the in-process interval: a perfect
    # in-process score has the interval [1, 1], and vLLM's bf16 kernels may flip a near-tie.
    assert (
        in_process.ci_low <= served.value <= in_process.ci_high
        or served.ci_low <= in_process.value <= served.ci_high
    )
    # The adapter learned the task: far above the 25% of guessing among four intents.
    assert in_process.value >= 0.5

    # Both sets of answers are on the result; the served ones are the arm's predictions.
    assert len(result.predictions) == len(result.reference_predictions) == n_test
    assert all(p.latency_ms > 0 and p.output_tokens > 0 for p in result.predictions)
    assert agreement.startswith(f"Served by vLLM at {vllm_server.base_url}")
    # The same prompts: the server counts the prompt tokens the local chat template made.
    assert [p.prompt_tokens for p in sorted(result.predictions, key=lambda p: p.index)] == [
        p.prompt_tokens for p in sorted(result.reference_predictions, key=lambda p: p.index)
    ]
    assert any(n.startswith("In-process accuracy") for n in result.notes)
    recorded = outcome.manifest.arm_models[arm]
    assert (recorded.model_id, recorded.via, recorded.adapter) == (
        outcome.manifest.base_model_id,
        "endpoint",
        True,
    )

    # Loaded under a name of its own while the arm asked, asked by that name (with retrieved
    # shots the base alone lands in the interval too), gone afterwards.
    loaded = [m for m in served_pilot.listed_while_answering[arm] if m != vllm_server.model]
    assert len(loaded) == 1 and loaded[0].startswith(f"pathpilot-served-test-{arm}-")
    assert any(n.startswith(f"Asked {loaded[0]} at {vllm_server.base_url}") for n in result.notes)
    assert served_models(vllm_server) == [vllm_server.model]


@pytest.fixture(scope="module")
def rank_32_adapter(tmp_path_factory: pytest.TempPathFactory, llm_dir: Path) -> Path:
    """A PEFT adapter the in-process model takes but the server cannot: its rank is above the
    server's --max-lora-rank (as a recipe with a larger rank would produce)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    rank = 2 * MAX_LORA_RANK
    model = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.bfloat16)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["q_proj", "v_proj"])
    path = tmp_path_factory.mktemp("rank32") / "adapter"
    get_peft_model(model, config).save_pretrained(str(path))
    return path


@pytest.mark.slow
@pytest.mark.vllm
def test_an_adapter_the_server_refuses_fails_the_arm_and_leaves_nothing_loaded(
    resources: Any, vllm_server: VLLMServer, rank_32_adapter: Path, tmp_path: Path
) -> None:
    data = four_intents(train_per_label=4, test_per_label=2)
    config = PilotConfig(
        arms=["qlora_rag"],
        configs={
            "qlora_rag": QLoRARagConfig(
                qlora=QLoRAConfig(adapter_dir=tmp_path / "unused"),
                adapter_path=rank_32_adapter,
                retrieval=RagConfig(top_k=2),
            )
        },
        n_resamples=100,
    )
    with_server = dataclasses.replace(resources, serving_endpoint=serving(vllm_server, "refused"))
    outcome = run_pilot(config, data, with_server)
    [arm] = outcome.arms
    assert arm.status == ArmStatus.failed
    assert arm.error is not None
    assert arm.error.startswith("AdapterNotServed: the fine-tuned adapter could not be served")
    assert f"{vllm_server.model} at {vllm_server.base_url}" in arm.error
    assert f"LoRA rank {2 * MAX_LORA_RANK} is greater than max_lora_rank {MAX_LORA_RANK}" in (
        arm.error
    )
    assert served_models(vllm_server) == [vllm_server.model]


def _tiny_result(adapter: Path, n: int) -> ArmResult:
    """An arm's in-process result: n answers and the adapter that gave them."""
    return ArmResult(
        arm="qlora",
        predictions=[Prediction(i, "card_acceptance", 1.0, 1, 1) for i in range(n)],
        adapter_path=str(adapter),
    )


def _prompts(data: PilotData, tokenizer: Any) -> list[Prompt]:
    from worker.pilots.prompt_rendering import make_prompt

    return [make_prompt(tokenizer, short_messages(data.task, e)) for e in data.test]


@pytest.mark.slow
@pytest.mark.vllm
def test_an_adapter_directory_without_weights_is_refused_and_nothing_stays_loaded(
    vllm_server: VLLMServer, tiny_lora_adapter: Path, tmp_path: Path, tokenizer: Any
) -> None:
    weightless = tmp_path / "adapter"
    weightless.mkdir()
    shutil.copy(tiny_lora_adapter / "adapter_config.json", weightless)
    data = four_intents(train_per_label=1, test_per_label=1)
    with pytest.raises(AdapterNotServed, match=r"could not be served.*cannot load LoRA adapter"):
        answer_as_served(
            serving(vllm_server, "weightless"),
            _tiny_result(weightless, len(data.test)),
            _prompts(data, tokenizer),
            task=data.task,
            max_new_tokens=8,
            progress=lambda _: None,
        )
    assert served_models(vllm_server) == [vllm_server.model]


@pytest.mark.slow
@pytest.mark.vllm
def test_the_adapter_is_unloaded_when_answering_fails(
    vllm_server: VLLMServer, tiny_lora_adapter: Path
) -> None:
    # Prompts longer than the server's context: every request is refused, the client's
    # breaker opens and the arm fails, after the adapter was loaded.
    too_long = Prompt([{"role": "user", "content": "word " * 3000}], text="")
    listed: list[list[str]] = []

    def on_progress(update: Progress) -> None:
        if update.stage == "asking endpoint" and not listed:
            listed.append(served_models(vllm_server))

    with pytest.raises(EndpointUnavailable):
        answer_as_served(
            serving(vllm_server, "failing", max_consecutive_failures=2, max_concurrency=1),
            _tiny_result(tiny_lora_adapter, 4),
            [too_long] * 4,
            task=PilotTask.classification,
            max_new_tokens=8,
            progress=on_progress,
        )
    assert any(name.startswith("pathpilot-failing-qlora-") for name in listed[0])
    assert served_models(vllm_server) == [vllm_server.model]


@pytest.mark.slow
@pytest.mark.vllm
def test_kept_served_answers_are_not_asked_again(
    vllm_server: VLLMServer, tiny_lora_adapter: Path, tokenizer: Any
) -> None:
    data = four_intents(train_per_label=1, test_per_label=2)
    first = serving(vllm_server, "kept")
    asked = answer_as_served(
        first,
        _tiny_result(tiny_lora_adapter, len(data.test)),
        _prompts(data, tokenizer),
        task=data.task,
        max_new_tokens=8,
        progress=lambda _: None,
    )
    # A re-queued pilot: same scope, same adapter, same kept answers, and a server that is
    # gone. Nothing is loaded or asked, so nothing fails.
    gone = dataclasses.replace(
        first, spec=EndpointSpec(base_url="http://127.0.0.1:9/v1", model=vllm_server.model)
    )
    again = answer_as_served(
        gone,
        _tiny_result(tiny_lora_adapter, len(data.test)),
        _prompts(data, tokenizer),
        task=data.task,
        max_new_tokens=8,
        progress=lambda _: None,
    )
    assert [p.prediction for p in again.predictions] == [p.prediction for p in asked.predictions]
    assert any(f"{len(data.test)} of {len(data.test)} answers came from" in n for n in again.notes)
