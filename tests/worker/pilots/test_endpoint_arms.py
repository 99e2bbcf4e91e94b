"""The prompting arms through a real vLLM server agree with the same arms in-process.

Both read the same prompts from the same model directory with greedy decoding; the endpoint
runs vLLM's bf16 kernels and the in-process arm transformers' bf16 kernels, so a near-tie
between two tokens may fall either way on a few items (docs/pilots.md says so), not more.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from app.domain.arms import FewShotConfig, RagConfig
from app.domain.bootstrap import bootstrap_metric, resample_indices
from app.domain.metrics import aligned_predictions, quality_statistics
from app.domain.records import ArmModel, PilotData, Prediction
from app.domain.samples.schemas import PilotTask
from app.integrations.openai_compatible.schemas import EndpointSpec
from tests.model_fixtures import read_banking77
from worker.pilots.arms import fewshot, rag
from worker.pilots.endpoint_answers import CachedAnswer, EndpointRuntime, MemoryCache

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def banking_data(n_test: int) -> PilotData:
    """All 20 intents of the shipped sample: enough items that a single near-tie is < 10%."""
    train, test = read_banking77("train")[:240], read_banking77("test")[:n_test]
    labels = sorted({e.target for e in [*train, *test]})
    return PilotData(PilotTask.classification, train, [], test, labels=labels)


def runtime(server: Any, cache: MemoryCache | None = None, **spec: Any) -> EndpointRuntime:
    return EndpointRuntime(
        spec=EndpointSpec(base_url=server.base_url, model=server.model, **spec),
        model=ArmModel(model_id=server.model, parameters=134_515_008, via="endpoint"),
        cache=cache or MemoryCache(),
    )


def interval(data: PilotData, predictions: list[Prediction]) -> tuple[float, float, float]:
    stats = quality_statistics(
        data.task,
        aligned_predictions(predictions, len(data.test)),
        [e.target for e in data.test],
        labels=data.labels,
    )
    indices = resample_indices(len(data.test), n_resamples=2000, seed=0)
    result = bootstrap_metric(stats["accuracy"], len(data.test), indices=indices)
    return result.value, result.low, result.high


@pytest.mark.parametrize(
    ("module", "config"),
    [(fewshot, FewShotConfig(k=4, batch_size=12)), (rag, RagConfig(top_k=4, batch_size=12))],
    ids=["fewshot", "rag"],
)
def test_endpoint_arm_agrees_with_the_in_process_arm(
    module: Any, config: Any, resources: Any, vllm_server: Any
) -> None:
    data = banking_data(n_test=60)
    local = module.run(config, resources, data, lambda _: None)
    remote_resources = dataclasses.replace(resources, prompt_endpoint=runtime(vllm_server))
    remote = module.run(config, remote_resources, data, lambda _: None)

    local_text = {p.index: p.prediction for p in local.predictions}
    remote_text = {p.index: p.prediction for p in remote.predictions}
    same = sum(local_text[i] == remote_text[i] for i in local_text)
    assert same >= 0.9 * len(data.test), (same, len(data.test))
    # The same prompts: the server counts the same prompt tokens the local template makes.
    assert [p.prompt_tokens for p in sorted(remote.predictions, key=lambda p: p.index)] == [
        p.prompt_tokens for p in sorted(local.predictions, key=lambda p: p.index)
    ]
    a, b = interval(data, local.predictions), interval(data, remote.predictions)
    assert b[1] <= a[0] <= b[2] and a[1] <= b[0] <= a[2], (a, b)
    assert any(f"Asked {vllm_server.model}" in note for note in remote.notes)
    assert all(p.latency_ms > 0 and p.output_tokens > 0 for p in remote.predictions)


def test_answers_already_kept_are_not_asked_again(resources: Any, vllm_server: Any) -> None:
    data = banking_data(n_test=8)
    cache = MemoryCache()
    remote = dataclasses.replace(resources, prompt_endpoint=runtime(vllm_server, cache))
    first = fewshot.run(FewShotConfig(k=2), remote, data, lambda _: None)
    assert len(cache.answers) == len(data.test)
    # A server that no longer answers: everything must come from the kept answers.
    dead = dataclasses.replace(
        resources,
        prompt_endpoint=dataclasses.replace(
            runtime(vllm_server, cache),
            spec=EndpointSpec(base_url="http://127.0.0.1:9/v1", model=vllm_server.model),
        ),
    )
    second = fewshot.run(FewShotConfig(k=2), dead, data, lambda _: None)
    assert [p.prediction for p in second.predictions] == [p.prediction for p in first.predictions]
    assert any(
        f"{len(data.test)} of {len(data.test)} answers came from earlier" in n for n in second.notes
    )
    assert isinstance(next(iter(cache.answers.values())), CachedAnswer)
