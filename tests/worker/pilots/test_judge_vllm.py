"""The judge against a real vLLM server serving SmolLM2-135M.

A 135M model is a weak judge: these tests check the mechanics, not its taste. Every item gets
a verdict or is counted unreadable, a malformed reply is asked again with the reminder, each
pair of differing answers is asked in both orders, and cost and agreement follow from what
the server answered. A proxy in front of the server records what was asked.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.domain.arm_registry import ArmRegistry
from app.domain.judging import (
    GRADING_REMINDER,
    GRADING_SYSTEM,
    JUDGE_PASS,
    JUDGE_UNREADABLE,
    PAIRWISE_SYSTEM,
    VERDICT_MAX_TOKENS,
    grading_messages,
    parse_verdict,
    reference_scores,
    spearman,
    with_reminder,
)
from app.domain.records import ArmModel, PilotData
from app.domain.samples.schemas import Example, PilotTask
from app.integrations.openai_compatible.schemas import ChatRequest, EndpointSpec
from tests.app.endpoints.fault_server import CHAT, FaultServer
from tests.factories.engine import RESOURCES, stand_in
from tests.worker.pilots.fake_judge import section
from worker.pilots.endpoint_answers import CachedAnswer, EndpointRuntime, MemoryCache, request_key
from worker.pilots.runner import PilotConfig, run_pilot

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

ITEMS = [
    (
        "Summarise: The meeting moved from Monday to Wednesday at noon.",
        "The meeting is now Wednesday at noon.",
    ),
    (
        "Summarise: Sales rose by ten percent in March after the spring campaign.",
        "March sales grew 10% thanks to the campaign.",
    ),
    (
        "Summarise: The library closes early on Fridays during the summer.",
        "In summer the library closes early on Fridays.",
    ),
    (
        "Summarise: Our new phone battery lasts two days on a single charge.",
        "The new phone runs two days per charge.",
    ),
    (
        "Summarise: Heavy rain flooded the main road, so buses take the bridge.",
        "Buses use the bridge because the road flooded.",
    ),
    (
        "Summarise: The recipe needs two eggs, flour, sugar and one hour of baking.",
        "Two eggs, flour and sugar, baked for an hour.",
    ),
]
PRICES = {"input_price_per_1m": 0.2, "output_price_per_1m": 0.6}
# Few-shot answers the first half right and the rest "wrong"; RAG answers all right.
REGISTRY = ArmRegistry([stand_in("fewshot", 10, 0.5), stand_in("rag", 20, 1.0)])


def data() -> PilotData:
    test = [Example(input=source, target=target) for source, target in ITEMS]
    return PilotData(PilotTask.generation, [Example(input="x", target="y")], [], test)


def first_grading_request(example: Example, answer: str) -> ChatRequest:
    messages = grading_messages(
        PilotTask.generation,
        source=example.input,
        instruction=example.instruction,
        reference=example.target,
        answer=answer,
    )
    return ChatRequest(messages, max_tokens=VERDICT_MAX_TOKENS)


def kept_verdict(runtime: EndpointRuntime, example: Example, answer: str) -> Any:
    """The verdict the pilot read for one answer, re-read from the kept replies."""
    request = first_grading_request(example, answer)
    first = runtime.cache.get(request_key(runtime.spec, request))
    assert first is not None
    verdict = parse_verdict(first.text)
    if verdict is not None:
        return verdict
    retry = ChatRequest(
        with_reminder(request.messages, first.text, GRADING_REMINDER),
        max_tokens=VERDICT_MAX_TOKENS,
    )
    second = runtime.cache.get(request_key(runtime.spec, retry))
    assert second is not None, "a malformed reply was not asked again"
    return parse_verdict(second.text)


def test_smollm_judges_a_handful_of_generation_items(vllm_server: Any) -> None:
    pilot_data = data()
    with FaultServer(upstream=vllm_server.base_url) as proxy:
        runtime = EndpointRuntime(
            spec=EndpointSpec(base_url=proxy.base_url, model=vllm_server.model, **PRICES),
            model=ArmModel(model_id=vllm_server.model, via="endpoint"),
            cache=MemoryCache(),
        )
        # Kept replies, as from an earlier attempt: one certainly malformed (its retry must
        # reach the server), and two readable ones far apart on a few-shot item it answered
        # right and one it answered wrong, so agreement is defined whatever the 135M judge says.
        for index, answer, reply in (
            (0, pilot_data.test[0].target, "Four out of five, I think."),
            (1, pilot_data.test[1].target, '{"score": 5, "pass": true}'),
            (4, "wrong", '{"score": 1, "pass": false}'),
        ):
            request = first_grading_request(pilot_data.test[index], answer)
            runtime.cache.put(request_key(runtime.spec, request), CachedAnswer(reply, 0, 0, 1.0))
        config = PilotConfig(
            registry=REGISTRY, arms=["fewshot", "rag"], n_resamples=200, judge=runtime
        )
        outcome = run_pilot(config, pilot_data, RESOURCES)
        bodies = [json.loads(seen.body) for seen in proxy.seen if seen.path == CHAT]

    results = outcome.judge
    assert results is not None and not results.errors, results
    assert [a.status for a in outcome.arms] == ["done", "done"]

    # Every item gets a verdict or is counted unreadable, and the count is a metric.
    answers = {
        "fewshot": [e.target if i < 3 else "wrong" for i, e in enumerate(pilot_data.test)],
        "rag": [e.target for e in pilot_data.test],
    }
    pooled: list[tuple[int, float]] = []
    for record in results.arms:
        verdicts = [
            kept_verdict(runtime, example, answer)
            for example, answer in zip(pilot_data.test, answers[record.arm], strict=True)
        ]
        assert record.verdicts == len(ITEMS)
        assert record.unreadable == sum(v is None for v in verdicts)
        assert record.failed_requests == 0
        metrics = {m.name: m for m in next(a for a in outcome.arms if a.arm == record.arm).metrics}
        assert metrics[JUDGE_UNREADABLE].value == record.unreadable
        if record.unreadable < record.verdicts:
            assert metrics[JUDGE_PASS].ci_low is not None
        # Agreement is Spearman's rho of the readable scores against ROUGE-L.
        rouge = reference_scores(
            PilotTask.generation, answers[record.arm], [e.target for e in pilot_data.test]
        )
        readable = [(v.score, r) for v, r in zip(verdicts, rouge, strict=True) if v is not None]
        pooled.extend(readable)
        expected = (
            spearman([s for s, _ in readable], [r for _, r in readable]) if readable else None
        )
        assert record.agreement == (pytest.approx(expected) if expected is not None else None)

    # The seeded malformed reply (and any real one) was asked again, with the reminder.
    grading = [b for b in bodies if b["messages"][0]["content"] == GRADING_SYSTEM]
    reminded = [b for b in grading if b["messages"][-1]["content"] == GRADING_REMINDER]
    assert any(b["messages"][2]["content"] == "Four out of five, I think." for b in reminded)
    assert sum(r.retried for r in results.arms) >= 2  # both arms read the seeded reply
    assert all(b["temperature"] == 0 for b in bodies)  # greedy

    # Pairwise: the items where the answers differ, each asked in both orders.
    pairwise = [
        (
            section(b["messages"][1]["content"], "Answer A"),
            section(b["messages"][1]["content"], "Answer B"),
        )
        for b in bodies
        if b["messages"][0]["content"] == PAIRWISE_SYSTEM and len(b["messages"]) == 2
    ]
    for example in pilot_data.test[3:]:
        assert (example.target, "wrong") in pairwise and ("wrong", example.target) in pairwise
    (pair,) = results.pairs
    assert pair.identical == 3 and pair.compared == len(ITEMS)

    # Cost: the server's usage at the judge model's prices, each distinct request once.
    assert results.requests == len(bodies) and results.reused >= 3
    assert results.prompt_tokens > 0 and results.completion_tokens > 0
    assert results.cost_usd == pytest.approx(
        (results.prompt_tokens * 0.2 + results.completion_tokens * 0.6) / 1_000_000
    )
    judge_model = outcome.manifest.judge_model
    assert judge_model is not None and judge_model.model_id == vllm_server.model
    # Over all arms, the readable scores pooled.
    expected = spearman([s for s, _ in pooled], [r for _, r in pooled])
    assert expected is not None and results.agreement == pytest.approx(expected)
    fewshot = next(r for r in results.arms if r.arm == "fewshot")
    assert fewshot.agreement is not None and -1 <= fewshot.agreement <= 1
