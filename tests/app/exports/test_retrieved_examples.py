"""A prompting path whose evidence was "Prompting with retrieved examples" (the RAG arm run
without documents) hands off that prompt: an index over the training examples and per-query
shots, not the few-shot arm's fixed shots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from app.domain.arms import ARMS
from app.exports.bundle import ArmFacts, build_bundle
from tests.factories.bundles import LABELS, classification_data, inputs

RAG_EXAMPLES = {"top_k": 4, "labels_listed": True, "mode": "examples"}
RETRIEVED_LABEL = ARMS.label("rag", documents=False)
ARMS_RUN = {
    "fewshot": ArmFacts("fewshot", "done", recipe={"k": 8, "k_used": 4, "seed": 13}),
    "rag": ArmFacts("rag", "done", recipe=RAG_EXAMPLES, metrics={"accuracy": (0.8, 0.6, 0.9)}),
}


def prompting_bundle(label: str, folder: Path) -> Path:
    return build_bundle(
        inputs(classification_data(), option="prompting", option_label=label, arms=ARMS_RUN)
    ).write_to(folder)


def test_the_retrieved_examples_prompt_is_handed_off(tmp_path: Path) -> None:
    assert RETRIEVED_LABEL == "Prompting with retrieved examples"
    bundle = prompting_bundle(RETRIEVED_LABEL, tmp_path / "b")
    prompt = json.loads((bundle / "serve" / "prompt.json").read_text())
    assert prompt["arm"] == "rag" and prompt["shots"] == [] and prompt["labels"] == LABELS
    assert prompt["retrieved_examples"]["top_k"] == 4
    assert prompt["pilot"]["metrics"]["accuracy"]["value"] == 0.8  # the rag arm's figures
    config = json.loads((bundle / "rag" / "rag_config.json").read_text())
    assert config["mode"] == "examples" and config["top_k"] == 4
    assert config["prompt"]["labels"] == LABELS
    readme = (bundle / "README.md").read_text()
    assert "**Prompting with retrieved examples**" in readme and "rag/query.py" in readme
    assert "rag/query.py --endpoint" in (bundle / "serve" / "README.md").read_text()


def test_the_client_refuses_to_send_that_prompt_without_its_shots(tmp_path: Path) -> None:
    bundle = prompting_bundle(RETRIEVED_LABEL, tmp_path / "b")
    done = subprocess.run(
        [sys.executable, "serve/client.py", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m"],
        cwd=bundle, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "nearest training examples" in done.stderr and "rag/query.py" in done.stderr


def test_plain_prompting_chosen_by_the_owner_stays_few_shot(tmp_path: Path) -> None:
    bundle = prompting_bundle("Prompting", tmp_path / "b")
    prompt = json.loads((bundle / "serve" / "prompt.json").read_text())
    assert prompt["arm"] == "fewshot" and len(prompt["shots"]) == 4
    assert "retrieved_examples" not in prompt
    assert "retrieved examples**" not in (bundle / "README.md").read_text()
