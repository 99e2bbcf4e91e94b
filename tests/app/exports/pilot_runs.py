"""A small real pilot exported as a team gets it, shared by the end-to-end tests of the bundle.

The QLoRA arm's smallest recipe on 4 Banking77 intents, trained once per session (the
llama.cpp hand-off test and the vLLM one use the same adapter), exported with the same
builder the web uses; each generated script then runs as a user would run it, in a
subprocess, with no PathPilot code on its path.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from app.domain.arms import QLoRAConfig
from app.domain.records import PilotData, PilotOutcome
from app.domain.samples.schemas import Example, PilotTask
from app.exports.bundle import ArmFacts, BundleInputs, build_bundle
from tests.conftest import REPO

BANKING77 = REPO / "examples" / "banking77-sample.csv"
# Small but enough to learn 4 intents (18 steps): a pilot at 0% would make the vLLM check moot.
FAST = {"epochs": 3, "batch_size": 8, "grad_accum": 1, "eval_every_steps": 6}
PYTHON = sys.executable


def banking(labels: int = 4, per_label: int = 12, tested: int = 6) -> PilotData:
    by_label: dict[str, list[str]] = defaultdict(list)
    with BANKING77.open(newline="") as handle:
        for row in csv.DictReader(handle):
            by_label[row["label"]].append(row["text"])
    rng = random.Random(0)
    chosen = sorted(rng.sample(sorted(by_label), labels))
    train, validation, test = [], [], []
    for label in chosen:
        texts = rng.sample(by_label[label], per_label + 2 + tested)
        train += [Example(input=t, target=label) for t in texts[:per_label]]
        validation += [Example(input=t, target=label) for t in texts[per_label : per_label + 2]]
        test += [Example(input=t, target=label) for t in texts[per_label + 2 :]]
    return PilotData(PilotTask.classification, train, validation, test, labels=chosen)


def facts(outcome: PilotOutcome) -> dict[str, ArmFacts]:
    arms = {}
    for arm in outcome.arms:
        result = arm.result
        curve = result.loss_curve if result else []
        arms[arm.arm] = ArmFacts(
            name=arm.arm,
            status=arm.status.value,
            error=arm.error,
            recipe=dict(result.recipe) if result else {},
            metrics={m.name: (m.value, m.ci_low, m.ci_high) for m in arm.metrics},
            retrieval_recall_at_k=result.retrieval_recall_at_k if result else None,
            first_train_loss=next((p.train_loss for p in curve if p.train_loss is not None), None),
        )
    return arms


def export(outcome: PilotOutcome, data: PilotData, option: str, folder: Path, **extra: Any) -> Path:
    inputs = BundleInputs(
        pilot_id="e2e",
        title="Export end to end",
        option=option,
        option_label=option,
        data=data,
        data_check="In-process pilot.",
        seed=outcome.manifest.seed,
        primary_metric=outcome.primary_metric,
        arms=facts(outcome),
        manifest=outcome.manifest.as_json(),
        target_size_b=8.0,
        adapter_dir=extra.get("adapter_dir"),
    )
    return build_bundle(inputs).write_to(folder)


def run_script(*args: str, cwd: Path, timeout: float = 600) -> dict[str, Any]:
    """A bundle script in a clean environment: no PathPilot on the path, offline."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
    } | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [PYTHON, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "from app" not in done.stderr
    return last_json_object(done.stdout)


def last_json_object(text: str) -> dict[str, Any]:
    """The last JSON object that starts a line (trainers print Python dicts before it)."""
    found: dict[str, Any] | None = None
    decoder = json.JSONDecoder()
    for position, char in enumerate(text):
        if char == "{" and (position == 0 or text[position - 1] == "\n"):
            try:
                value, _ = decoder.raw_decode(text[position:])
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                found = value
    assert found is not None, text[-2000:]
    return found


@pytest.fixture(scope="session")
def qlora_pilot(resources: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from worker.pilots.runner import PilotConfig, run_pilot

    data = banking()
    adapters = tmp_path_factory.mktemp("adapters")
    config = PilotConfig(
        arms=["qlora"],
        seed=13,
        max_train=len(data.train),
        max_test=len(data.test),
        adapter_dir=adapters,
        configs={
            "qlora": QLoRAConfig(
                adapter_dir=adapters,
                seed=13,
                max_train_minutes=5.0,
                recipe_overrides=FAST,
                seconds_per_step=1.0,
            )
        },
    )
    outcome = run_pilot(config, data, resources)
    assert outcome.arms[0].error is None, outcome.arms[0].error
    bundle = export(
        outcome,
        data,
        "fine_tuning",
        tmp_path_factory.mktemp("bundle") / "b",
        adapter_dir=adapters,
    )
    return outcome, data, bundle
