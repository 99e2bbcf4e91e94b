"""The judge in the runner, against a scripted endpoint: verdicts, retries, both orders,
the primary metric, cost, the answer cache, and a judge that stops answering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import worker.pilots.judge as judge_module
from app.domain.arm_registry import ArmRegistry
from app.domain.judging import JUDGE_PASS, JUDGE_SCORE, JUDGE_UNREADABLE
from app.domain.records import ArmModel, PilotData
from app.domain.samples.schemas import Example, PilotTask
from app.integrations.openai_compatible.client import OpenAICompatibleClient
from app.integrations.openai_compatible.schemas import EndpointSpec
from tests.conftest import REPO
from tests.factories.engine import RESOURCES, stand_in
from tests.worker.pilots.fake_judge import COMPLETION_TOKENS, PROMPT_TOKENS, FakeJudge
from worker.cli_pilot import pilot_command
from worker.pilots.endpoint_answers import EndpointRuntime, MemoryCache
from worker.pilots.runner import PilotConfig, run_pilot

N_TEST = 20
# Two stand-in arms: few-shot right on 8 of 20 items, RAG on 18.
REGISTRY = ArmRegistry([stand_in("fewshot", 10, 0.4), stand_in("rag", 20, 0.9)])
PRICES = {"input_price_per_1m": 2.0, "output_price_per_1m": 6.0}


def generation_data(n_test: int = N_TEST, *, malformed: int = 0, garbled: int = 0) -> PilotData:
    """Targets the stand-in arms get right or replace with "wrong"; the first `malformed`
    targets make the fake judge answer in prose once, the next `garbled` always."""

    def target(i: int) -> str:
        tag = "MALFORMED " if i < malformed else "GARBLED " if i < malformed + garbled else ""
        return f"{tag}the summary of text {i} says it well"

    test = [Example(input=f"text {i}", target=target(i)) for i in range(n_test)]
    train = [Example(input=f"t{i}", target=f"s{i}") for i in range(10)]
    return PilotData(PilotTask.generation, train, [], test)


def judge_runtime(cache: MemoryCache | None = None, **spec: Any) -> EndpointRuntime:
    return EndpointRuntime(
        spec=EndpointSpec(base_url="http://judge.invalid/v1", model="judge-8b", **spec),
        model=ArmModel(model_id="judge-8b", via="endpoint"),
        cache=cache if cache is not None else MemoryCache(),
    )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeJudge:
    judge = FakeJudge()
    monkeypatch.setattr(
        judge_module,
        "OpenAICompatibleClient",
        lambda spec: OpenAICompatibleClient(spec, transport=judge.transport()),
    )
    return judge


def run(data: PilotData, judge: EndpointRuntime | None) -> Any:
    config = PilotConfig(registry=REGISTRY, arms=["fewshot", "rag"], n_resamples=200, judge=judge)
    return run_pilot(config, data, RESOURCES)


def metrics_of(outcome: Any, arm: str) -> dict[str, Any]:
    return {m.name: m for m in next(a for a in outcome.arms if a.arm == arm).metrics}


def test_without_a_judge_generation_is_compared_on_rouge_l() -> None:
    outcome = run(generation_data(), None)
    assert outcome.primary_metric == "rouge_l"
    assert outcome.judge is None and outcome.manifest.judge_model is None
    assert JUDGE_PASS not in metrics_of(outcome, "rag")


def test_a_judge_that_ran_makes_its_pass_rate_the_primary_metric(fake: FakeJudge) -> None:
    outcome = run(generation_data(), judge_runtime(**PRICES))
    assert outcome.primary_metric == JUDGE_PASS
    assert {d.metric for d in outcome.differences} == {JUDGE_PASS}
    (difference,) = outcome.differences
    assert (difference.arm_a, difference.arm_b) == ("rag", "fewshot")
    assert difference.delta == pytest.approx(0.9 - 0.4)

    rag = metrics_of(outcome, "rag")
    assert rag[JUDGE_PASS].value == pytest.approx(0.9)
    assert rag[JUDGE_PASS].ci_low < 0.9 < rag[JUDGE_PASS].ci_high  # a paired bootstrap interval
    assert rag[JUDGE_SCORE].value == pytest.approx(0.9)  # 5 → 1.0, 1 → 0.0
    assert rag[JUDGE_UNREADABLE].value == 0
    # Judge scores and ROUGE-L rank the items the same way.
    assert rag["judge_agreement"].value == pytest.approx(1.0)
    assert outcome.manifest.judge_model == ArmModel(model_id="judge-8b", via="endpoint")
    assert "api_key" not in str(outcome.manifest.as_json())


def test_pairwise_asks_both_orders_and_counts_a_win_only_when_they_agree(
    fake: FakeJudge,
) -> None:
    data = generation_data()
    outcome = run(data, judge_runtime())
    (pair,) = outcome.judge.pairs
    assert (pair.arm_a, pair.arm_b) == ("rag", "fewshot")
    # RAG right where few-shot is wrong on items 8-17; both right on 0-7 (identical, not
    # asked); both wrong on 18-19 (identical "wrong").
    assert (pair.wins, pair.ties, pair.losses, pair.unreadable) == (10, 10, 0, 0)
    assert pair.identical == 10
    asked = set(fake.pairwise)
    for i in range(8, 18):
        assert (data.test[i].target, "wrong") in asked and ("wrong", data.test[i].target) in asked
    assert len(fake.pairwise) == 2 * 10


def test_a_position_biased_judge_gives_ties_not_wins(fake: FakeJudge) -> None:
    fake.position_bias = True
    outcome = run(generation_data(), judge_runtime())
    (pair,) = outcome.judge.pairs
    assert (pair.wins, pair.losses) == (0, 0)
    assert pair.disagreements == 10 and pair.ties == 20


def test_malformed_verdicts_are_retried_once_then_counted_not_dropped(fake: FakeJudge) -> None:
    data = generation_data(malformed=3, garbled=2)
    outcome = run(data, judge_runtime())
    rag = next(a for a in outcome.judge.arms if a.arm == "rag")
    assert rag.verdicts == N_TEST
    assert rag.retried == 5  # each malformed first reply, asked again once
    assert rag.unreadable == 2  # still malformed after the reminder
    assert rag.unreadable_line == "2 of 20 verdicts unreadable"
    metrics = metrics_of(outcome, "rag")
    assert metrics[JUDGE_UNREADABLE].value == 2
    # The mean covers the 18 readable items: RAG is right on items 0-17, and 3-4 are
    # unreadable, so 16 of the 18 pass.
    assert metrics[JUDGE_PASS].value == pytest.approx(16 / 18)
    assert any("2 of 20 verdicts unreadable" in note for note in outcome.arms[1].result.notes)
    # Each item of few-shot and its 5 retries; of RAG only the 10 items where its answer
    # differs: the same request is asked once, and its kept answer serves both arms.
    assert len(fake.grading) == N_TEST + 5 + 10
    assert outcome.judge.shared == N_TEST - 10 + 5
    assert outcome.judge.unreadable == 4


def test_cost_comes_from_usage_and_the_judge_models_prices(fake: FakeJudge) -> None:
    outcome = run(generation_data(), judge_runtime(**PRICES))
    judge = outcome.judge
    per_request = (PROMPT_TOKENS * 2.0 + COMPLETION_TOKENS * 6.0) / 1_000_000
    requests = len(fake.grading) + len(fake.pairwise)
    assert judge.requests == requests and judge.reused == 0
    # The total pays each distinct request once.
    assert judge.prompt_tokens == PROMPT_TOKENS * requests
    assert judge.completion_tokens == COMPLETION_TOKENS * requests
    assert judge.cost_usd == pytest.approx(per_request * requests)
    # An arm's figure is what grading all of its answers costs, shared ones included.
    for arm in ("fewshot", "rag"):
        assert metrics_of(outcome, arm)["judge_cost_usd"].value == pytest.approx(
            per_request * N_TEST
        )
    (pair,) = judge.pairs
    assert pair.cost_usd == pytest.approx(per_request * len(fake.pairwise))
    # Without prices: tokens, but no cost invented.
    unpriced = run(generation_data(), judge_runtime()).judge
    assert unpriced.cost_usd is None and unpriced.prompt_tokens > 0


def test_kept_judge_answers_are_not_asked_again(fake: FakeJudge) -> None:
    cache = MemoryCache()
    first = run(generation_data(malformed=2), judge_runtime(cache))
    asked = len(fake.grading) + len(fake.pairwise)
    assert first.judge.requests == asked > 0
    second = run(generation_data(malformed=2), judge_runtime(cache))
    assert len(fake.grading) + len(fake.pairwise) == asked  # nothing new reached the endpoint
    assert second.judge.requests == 0 and second.judge.reused == asked
    assert second.judge.model_dump(exclude={"requests", "reused"}) == first.judge.model_dump(
        exclude={"requests", "reused"}
    )


def test_a_judge_that_does_not_answer_leaves_the_arms_and_rouge_l() -> None:
    """Nothing listens on port 9: the breaker opens, the judge's error is kept, the arms
    finish and are compared on ROUGE-L."""
    runtime = EndpointRuntime(
        spec=EndpointSpec(
            base_url="http://127.0.0.1:9/v1", model="judge", max_retries=0, timeout_s=2
        ),
        model=ArmModel(model_id="judge", via="endpoint"),
        cache=MemoryCache(),
    )
    outcome = run(generation_data(), runtime)
    assert [a.status for a in outcome.arms] == ["done", "done"]
    assert outcome.primary_metric == "rouge_l"
    assert outcome.judge.errors and "fewshot" in outcome.judge.errors[0]
    assert any("no readable verdict for fewshot, rag" in w for w in outcome.warnings)
    assert JUDGE_PASS not in metrics_of(outcome, "fewshot")


def test_a_judge_on_a_classification_sample_is_not_used() -> None:
    data = PilotData(
        PilotTask.classification,
        [Example(input=f"t{i}", target="ab"[i % 2]) for i in range(10)],
        [],
        [Example(input=f"q{i}", target="ab"[i % 2]) for i in range(10)],
        labels=["a", "b"],
    )
    outcome = run(data, judge_runtime())
    assert outcome.primary_metric == "accuracy" and outcome.judge is None
    assert any("grades open-ended answers" in w for w in outcome.warnings)


def pilot_app() -> typer.Typer:
    app = typer.Typer()
    app.command("pilot")(pilot_command)
    app.command("unused")(lambda: None)
    return app


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--judge-model", "m"], "give --judge-endpoint too"),
        (["--judge-endpoint", "http://127.0.0.1:9/v1"], "name the served model"),
        (["--judge-endpoint", "ftp://x", "--judge-model", "m"], "must start with http"),
        (
            ["--judge-endpoint", "http://127.0.0.1:9/v1", "--judge-model", "m",
             "--judge-api-key-env", "PATHPILOT_NO_SUCH_VARIABLE"],
            "PATHPILOT_NO_SUCH_VARIABLE is not set",
        ),
        (
            ["--judge-endpoint", "http://127.0.0.1:9/v1", "--judge-model", "m"],
            "grades open-ended answers",
        ),
    ],
)  # fmt: skip
def test_the_command_line_checks_its_judge_options(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    sample = REPO / "examples" / "banking77-sample.csv"  # a classification sample
    result = CliRunner().invoke(pilot_app(), ["pilot", str(sample), *args])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_the_command_line_prints_and_writes_what_the_judge_found(fake: FakeJudge) -> None:
    from rich.console import Console

    from worker.cli_pilot_output import outcome_json, print_outcome

    outcome = run(generation_data(malformed=1, garbled=1), judge_runtime(**PRICES))
    console = Console(record=True, width=80)
    print_outcome(outcome, console)
    text = " ".join(console.export_text().translate({ord(c): " " for c in "│┃"}).split())
    assert "Judge judge-8b: 2 of 40 verdicts unreadable" in text
    assert "both orders" in text and "rag fewshot 10 10 0 0" in text
    assert "Judge agreement with rouge_l" in text and "cost $" in text
    written = json.loads(outcome_json(outcome))
    assert written["judge"]["pairs"][0]["wins"] == 10
    assert written["manifest"]["judge_model"] == {
        "model_id": "judge-8b", "parameters": None, "via": "endpoint", "adapter": False,
        "deployment": False,
    }  # fmt: skip


def test_an_arm_without_a_readable_verdict_keeps_the_pilot_on_rouge_l(fake: FakeJudge) -> None:
    fake.never_readable = True
    outcome = run(generation_data(), judge_runtime())
    assert outcome.primary_metric == "rouge_l"
    assert {d.metric for d in outcome.differences} == {"rouge_l"}
    assert all(a.unreadable == N_TEST for a in outcome.judge.arms)
    assert metrics_of(outcome, "rag")[JUDGE_UNREADABLE].value == N_TEST
    assert JUDGE_PASS not in metrics_of(outcome, "rag")  # nothing to average, nothing invented
    assert any("no readable verdict for fewshot, rag" in w for w in outcome.warnings)
