"""The runner with stand-in arms: metrics, intervals, differences, failures, manifest."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

import worker.pilots.arms as arms_package
from app.domain.arm_registry import (
    ArmRegistry,
    ArmSpec,
    ConfigSet,
    ModelRole,
    Needs,
    PilotSettings,
)
from app.domain.arms import ARMS, QLORA, QLORA_RAG, RAG, FewShotConfig, RagConfig
from app.domain.comparison import Method, mcnemar_exact
from app.domain.metrics import PriceRow
from app.domain.preparation import dataset_hash
from app.domain.records import ArmOutcome, Progress
from tests.factories.engine import RESOURCES, config, make_data, stand_in
from tests.worker.pilots.memory_hog_arm import MemoryHogConfig
from worker.pilots.runner import PilotConfig, price_row, run_pilot


def test_outcome_has_intervals_differences_and_keeps_going_after_a_failure() -> None:
    progress: list[tuple[str, Progress]] = []
    done: list[ArmOutcome] = []
    outcome = run_pilot(
        config(price=PriceRow("hosted-base", 0.5, 1.5), n_resamples=300),
        make_data(),
        RESOURCES,
        on_progress=lambda arm, p: progress.append((arm, p)),
        on_arm_done=done.append,
    )
    assert [a.status for a in outcome.arms] == ["done", "done", "done", "failed"]
    assert outcome.arms[3].error == "RuntimeError: out of memory"
    assert [o.arm for o in done] == ["fewshot", "rag", "qlora", "qlora_rag"]
    assert [arm for arm, _ in progress] == ["fewshot", "rag", "qlora"]
    assert outcome.primary_metric == "accuracy"

    metrics = {m.name: m for m in outcome.arms[1].metrics}
    assert metrics["accuracy"].value == pytest.approx(0.9)
    assert metrics["accuracy"].ci_low < 0.9 < metrics["accuracy"].ci_high
    assert metrics["macro_f1"].ci_low is not None
    assert metrics["cost_per_1k_usd"].value == pytest.approx((200 * 0.5 + 4 * 1.5) / 1000)
    assert metrics["latency_p50_ms"].value == pytest.approx(29.5)
    assert "wall_seconds" in metrics
    # The stand-in answers "wrong" on the items it misses: no label, so 4 of 40 unmatched.
    assert metrics["label_unmatched"].value == pytest.approx(0.1)
    assert metrics["label_unmatched"].ci_low is None  # operational: no interval

    pairs = {(d.arm_a, d.arm_b): d for d in outcome.differences}
    assert set(pairs) == {("rag", "fewshot"), ("qlora", "fewshot"), ("qlora", "rag")}
    # Paired on the 40 test items: the stand-ins get the first 16, 36 and 18 right, so RAG and
    # few-shot disagree on 20 items, all RAG's way; QLoRA and few-shot on 2.
    clear, thin = pairs[("rag", "fewshot")], pairs[("qlora", "fewshot")]
    assert clear.delta == pytest.approx(0.5)
    assert (clear.n_items, clear.n_groups, clear.discordant) == (40, 40, 20)
    assert clear.method == Method.paired_binary
    assert clear.p_value is not None and clear.p_value < 0.05
    assert clear.p_value == pytest.approx(mcnemar_exact(20, 0))
    assert clear.significant
    assert (thin.n_items, thin.discordant) == (40, 2)
    assert thin.p_value == pytest.approx(0.5)  # 2 of 2 discordant items one way
    assert not thin.significant
    # QLoRA vs few-shot is too thin to decide, and the warning says why; RAG vs few-shot is not.
    assert any(
        w.startswith("Thin evidence: qlora vs fewshot on accuracy")
        and "the arms disagree on only 2 items (10 are needed)" in w
        for w in outcome.warnings
    )
    assert not any("rag vs fewshot" in w for w in outcome.warnings)

    manifest = outcome.manifest.as_json()
    assert manifest["seed"] == 0 and manifest["base_model_sha256"] == "f" * 64
    assert manifest["split_sizes"] == {
        "train": 10,
        "validation": 0,
        "test": 40,
        "documents": 0,
        "labels": 2,
    }
    assert manifest["dataset_sha256"] == dataset_hash(make_data())
    assert manifest["hyperparameters"]["rag"] == {"arm": "rag"}
    assert manifest["libraries"]["torch"] and manifest["device"].startswith("cpu")


def test_caps_are_enforced_and_reported() -> None:
    pilot = config(arms=["fewshot"], max_test=10, max_train=5, n_resamples=100)
    outcome = run_pilot(pilot, make_data(), RESOURCES)
    assert outcome.manifest.split_sizes.test == 10
    assert outcome.manifest.split_sizes.train == 5
    assert outcome.caps == ["train capped at 5 of 10 examples", "test capped at 10 of 40 examples"]


def test_a_missing_arm_module_fails_only_its_arm(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = importlib.import_module

    def import_module(name: str, package: str | None = None) -> Any:
        if name == "worker.pilots.arms.qlora":
            raise ModuleNotFoundError("No module named 'peft'")
        return real_import(name, package)

    monkeypatch.setattr(arms_package.importlib, "import_module", import_module)
    registry = ArmRegistry([stand_in("fewshot", 10, 0.5), ARMS.get("qlora")])
    outcome = run_pilot(
        PilotConfig(arms=["qlora", "fewshot"], n_resamples=100, registry=registry),
        make_data(),
        RESOURCES,
    )
    # The registry's order, whatever the order asked for.
    assert [a.arm for a in outcome.arms] == ["fewshot", "qlora"]
    assert outcome.arms[1].status == "failed"
    assert "not available" in (outcome.arms[1].error or "")
    assert outcome.arms[0].status == "done"
    assert outcome.differences == []


def test_price_row_from_the_settings_table() -> None:
    table = {"hosted-base": (0.5, 1.5)}
    assert price_row(table, "hosted-base") == PriceRow("hosted-base", 0.5, 1.5)
    assert price_row(table, "nope") is None


def test_unknown_arm_is_a_failed_arm_not_a_crash() -> None:
    outcome = run_pilot(config(arms=["magic"], n_resamples=10), make_data(4), RESOURCES)
    assert outcome.arms[0].status == "failed" and "unknown arm" in (outcome.arms[0].error or "")


def test_an_arm_gets_the_adapter_of_the_arm_it_builds_on(tmp_path: Path) -> None:
    registry = ArmRegistry(
        [stand_in("base", 10, 0.5), stand_in("tuned", 20, 0.6, adapter_from="base")]
    )
    pilot = PilotConfig(
        arms=["tuned", "base"], n_resamples=10, registry=registry, adapter_dir=tmp_path
    )
    outcome = run_pilot(pilot, make_data(4), RESOURCES)
    tuned = outcome.arms[1].result
    assert tuned is not None and tuned.recipe["adapter_path"] == str(tmp_path / "adapter")
    assert outcome.manifest.hyperparameters["tuned"]["adapter_path"] == str(tmp_path / "adapter")


def test_fine_tuning_arm_configs_share_adapter_dir_and_reuse_the_rag_settings(
    tmp_path: Path,
) -> None:
    settings = PilotSettings(seed=3, max_train_minutes=2.0, adapter_dir=tmp_path)
    configs = ConfigSet(settings, {"rag": RagConfig(top_k=5)})
    qlora_config = configs.get(QLORA)
    assert (qlora_config.adapter_dir, qlora_config.seed) == (tmp_path, 3)
    assert qlora_config.max_train_minutes == 2.0
    both = configs.get(QLORA_RAG)
    assert both.qlora == qlora_config
    assert both.adapter_path is None  # until the qlora arm has saved one
    assert both.retrieval.top_k == 5
    assert both.with_adapter(tmp_path / "adapter").adapter_path == tmp_path / "adapter"
    with pytest.raises(TypeError, match="config for arm 'rag' must be RagConfig"):
        ConfigSet(settings, {"rag": FewShotConfig()}).get(RAG)


def test_peak_memory_is_measured_per_arm_not_per_process() -> None:
    """A long-lived worker's process peak must not leak into a later, lighter arm."""
    hog = ArmSpec(
        name="hog",
        label="Hog",
        order=10,
        evidence_for=None,
        config_type=MemoryHogConfig,
        default_config=lambda settings, _: MemoryHogConfig(megabytes=600),
        needs=Needs(model=ModelRole.none),
        implementation="tests.worker.pilots.memory_hog_arm",
    )
    registry = ArmRegistry([hog, stand_in("light", 20, 0.5)])
    outcome = run_pilot(
        PilotConfig(arms=["hog", "light"], n_resamples=10, registry=registry),
        make_data(4),
        RESOURCES,
    )
    peaks = {
        a.arm: next(m.value for m in a.metrics if m.name == "peak_memory_mb") for a in outcome.arms
    }
    assert peaks["hog"] > peaks["light"] + 400, peaks
