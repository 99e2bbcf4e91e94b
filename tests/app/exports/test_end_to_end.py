"""The exported scripts reproduce the pilot: a real adapter, TRL, vLLM, FAISS.

Two small real pilots (the session's QLoRA pilot on 4 Banking77 intents, pilot_runs.py, and
the RAG arm on passages with gold documents), exported with the same builder the web uses,
then each generated script is run as a user would, in a subprocess, with no PathPilot code
on its path.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.arms import RagConfig
from app.domain.records import PilotData
from app.domain.samples.schemas import Example, PilotTask
from tests.app.exports.pilot_runs import export, facts, run_script

pytestmark = pytest.mark.slow


def test_train_trl_runs_two_steps_with_the_pilots_loss(qlora_pilot: tuple, llm_dir: Path) -> None:
    outcome, _, bundle = qlora_pilot
    result = run_script(
        "finetune/train_trl.py",
        "--recipe", "pilot",
        "--base-model", str(llm_dir),
        "--max-steps", "2",
        "--cpu",
        "--output-dir", str(bundle / "finetune" / "outputs"),
        cwd=bundle,
    )  # fmt: skip
    pilot_first = facts(outcome)["qlora"].first_train_loss
    print(f"train_trl.py first loss {result['first_loss']:.4f}, pilot's first {pilot_first}")
    assert result["steps"] == 2
    assert math.isfinite(result["first_loss"]) and pilot_first is not None
    # Both are the base model's completion loss on a first batch of 8 training examples
    # (TRL draws and pads its batches its own way), so close, not equal: measured 5.695 vs
    # 5.701.
    assert abs(result["first_loss"] - pilot_first) <= 0.1 * pilot_first, (
        result["first_loss"],
        pilot_first,
    )
    assert (bundle / "finetune" / "outputs" / "adapter" / "adapter_config.json").is_file()


@pytest.mark.vllm
def test_the_adapter_served_by_vllm_reproduces_the_pilots_accuracy(
    qlora_pilot: tuple, vllm_server: Any
) -> None:
    outcome, data, bundle = qlora_pilot
    root = vllm_server.base_url.removesuffix("/v1")
    loaded = httpx.post(
        f"{root}/v1/load_lora_adapter",
        json={"lora_name": "pilot-adapter", "lora_path": str(bundle / "adapter")},
        timeout=120,
    )
    assert loaded.status_code == 200, loaded.text
    try:
        served = run_script(
            "serve/client.py",
            "--endpoint", vllm_server.base_url,
            "--model", "pilot-adapter",
            "--out", str(bundle / "answers.jsonl"),
            cwd=bundle,
        )  # fmt: skip
    finally:  # the server is shared by the session's tests: leave it serving the base only
        httpx.post(
            f"{root}/v1/unload_lora_adapter", json={"lora_name": "pilot-adapter"}, timeout=60
        )
    pilot = next(m for m in outcome.arms[0].metrics if m.name == "accuracy")
    measured = served["metrics"]["accuracy"]
    n = len(data.test)
    for who, value, low, high in (
        ("pilot, in-process", pilot.value, pilot.ci_low, pilot.ci_high),
        ("vLLM + client.py", measured["value"], measured["ci_low"], measured["ci_high"]),
    ):
        print(f"{who}: accuracy {value:.3f} [{low:.3f}, {high:.3f}]")
    within_one_item = abs(measured["value"] - pilot.value) * n <= 1 + 1e-9
    inside_interval = measured["ci_low"] <= pilot.value <= measured["ci_high"]
    assert within_one_item or inside_interval, (measured, pilot)
    assert served["pilot"]["metrics"]["accuracy"]["value"] == pytest.approx(pilot.value)
    assert pilot.value >= 0.25, pilot  # the pilot learned something: the check means something
    answers = [json.loads(line) for line in (bundle / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == n and all("\n" not in a["prediction"] for a in answers)


def passages_data() -> PilotData:
    topics = {
        "cards": "A lost card can be frozen in the app and a new card arrives in five days.",
        "refunds": "Refunds reach your account within three working days of approval.",
        "fees": "Transfers abroad cost one percent, at least two euros, shown before you pay.",
        "pins": "You can change your PIN at any cash machine or see it in the app settings.",
        "limits": "The daily cash withdrawal limit is 500 euros and can be raised once a year.",
    }
    asked = {  # (a clear question, a vague one that top-1 retrieval may miss)
        "cards": ("How do I freeze a lost card?", "How long until it comes?"),
        "refunds": ("How long does a refund take?", "When do I get the money back?"),
        "fees": ("What does a transfer abroad cost?", "Is it free?"),
        "pins": ("Where can I change my PIN?", "Can I do it at a machine?"),
        "limits": ("What is the cash withdrawal limit?", "How much can I take out?"),
    }
    train = [Example(input=clear, target=t, context=topics[t]) for t, (clear, _) in asked.items()]
    test = [Example(input=vague, target=t, context=topics[t]) for t, (_, vague) in asked.items()]
    return PilotData(PilotTask.qa, train, [], test)


def test_build_index_and_query_reproduce_the_recall(resources: Any, tmp_path: Path) -> None:
    from worker.model_store import default_embedder_path
    from worker.pilots.runner import PilotConfig, run_pilot

    data = passages_data()
    config = PilotConfig(
        arms=["rag"], seed=13, configs={"rag": RagConfig(top_k=1, chunk_tokens=12, overlap=4)}
    )
    outcome = run_pilot(config, data, resources)
    recall = outcome.arms[0].result.retrieval_recall_at_k if outcome.arms[0].result else None
    assert recall is not None and 0 < recall < 1, recall  # top-1 misses some: a real check
    bundle = export(outcome, data, "rag", tmp_path / "b")
    embedder = str(default_embedder_path())
    print(f"pilot recall@1 {recall:.3f}")
    built = run_script("rag/build_index.py", "--embedder", embedder, cwd=bundle)
    assert built["mode"] == "documents" and built["index"] == "flat"
    queried = run_script("rag/query.py", "--embedder", embedder, cwd=bundle)
    assert queried["top_k"] == 1
    print(f"rag/query.py recall@1 {queried['retrieval_recall_at_k']:.3f}")
    assert queried["retrieval_recall_at_k"] == pytest.approx(recall)
