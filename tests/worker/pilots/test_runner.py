"""The runner with stand-in arms: metrics, intervals, differences, failures, manifest."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.domain.metrics import PriceRow
from app.domain.records import ArmOutcome, ArmResult, PilotData, Prediction, Progress
from app.domain.samples.schemas import Example, PilotTask
from worker.pilots import runner
from worker.pilots.runner import PilotConfig, dataset_hash, price_row, run_pilot

LABELS = ["a", "b"]
RESOURCES = SimpleNamespace(
    embedder=None,
    device="cpu",
    model_id="tiny",
    model_sha256="f" * 64,
    llm_path="/m",
    embedder_path="/e",
)


def make_data(n_test: int = 40) -> PilotData:
    test = [Example(input=f"q{i}", target=LABELS[i % 2]) for i in range(n_test)]
    train = [Example(input=f"t{i}", target=LABELS[i % 2]) for i in range(10)]
    return PilotData(PilotTask.classification, train, [], test, labels=LABELS)


def answering(correct_share: float, arm: str) -> Any:
    """A stand-in arm that answers the first `correct_share` of test items correctly."""

    def run(config: Any, resources: Any, data: PilotData, progress: Any) -> ArmResult:
        progress(Progress("generating", 1, 1, 0.0))
        n_correct = round(correct_share * len(data.test))
        predictions = [
            Prediction(
                index=i,
                prediction=example.target if i < n_correct else "wrong",
                latency_ms=10.0 + i,
                prompt_tokens=200,
                output_tokens=4,
            )
            for i, example in enumerate(data.test)
        ]
        return ArmResult(arm=arm, predictions=predictions, recipe={"arm": arm})

    return run


@pytest.fixture
def fake_arms(monkeypatch: pytest.MonkeyPatch) -> None:
    shares = {"fewshot": 0.4, "rag": 0.9, "qlora": 0.45}

    def arm_call(
        arm: str, config: PilotConfig, adapter_dir: Any, qlora_adapter: Any = None
    ) -> tuple[Any, Any]:
        if arm == "qlora_rag":
            raise RuntimeError("out of memory")
        return answering(shares[arm], arm), None

    monkeypatch.setattr(runner, "_arm_call", arm_call)


@pytest.mark.usefixtures("fake_arms")
def test_outcome_has_intervals_differences_and_keeps_going_after_a_failure() -> None:
    progress: list[tuple[str, Progress]] = []
    done: list[ArmOutcome] = []
    config = PilotConfig(price=PriceRow("hosted-base", 0.5, 1.5), n_resamples=300)
    outcome = run_pilot(
        config,
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

    pairs = {(d.arm_a, d.arm_b): d for d in outcome.differences}
    assert set(pairs) == {("rag", "fewshot"), ("qlora", "fewshot"), ("qlora", "rag")}
    assert pairs[("rag", "fewshot")].delta == pytest.approx(0.5)
    assert pairs[("rag", "fewshot")].significant
    assert not pairs[("qlora", "fewshot")].significant
    # fewshot (0.40) and qlora (0.45) on 40 items: overlapping intervals, warned about
    assert any("qlora and fewshot" in w for w in outcome.warnings)
    assert not any("rag and fewshot" in w for w in outcome.warnings)

    manifest = outcome.manifest
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


@pytest.mark.usefixtures("fake_arms")
def test_caps_are_enforced_and_reported() -> None:
    config = PilotConfig(arms=["fewshot"], max_test=10, max_train=5, n_resamples=100)
    outcome = run_pilot(config, make_data(), RESOURCES)
    assert outcome.manifest["split_sizes"]["test"] == 10
    assert outcome.manifest["split_sizes"]["train"] == 5
    assert outcome.caps == ["train capped at 5 of 10 examples", "test capped at 10 of 40 examples"]


def test_a_missing_fine_tuning_module_fails_only_its_arm(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = importlib.import_module

    def import_module(name: str, package: str | None = None) -> Any:
        if name == "worker.pilots.arms.qlora":
            raise ModuleNotFoundError("No module named 'peft'")
        return real_import(name, package)

    monkeypatch.setattr(runner.importlib, "import_module", import_module)
    monkeypatch.setattr(runner.fewshot, "run", answering(0.5, "fewshot"))
    outcome = run_pilot(
        PilotConfig(arms=["qlora", "fewshot"], n_resamples=100), make_data(), RESOURCES
    )
    assert outcome.arms[0].status == "failed"
    assert "not available" in (outcome.arms[0].error or "")
    assert outcome.arms[1].status == "done"
    assert outcome.differences == []


@dataclass
class FakeConfig:
    adapter_dir: Path
    seed: int = 0
    max_train_minutes: float = 1.0


def fake_run(config: FakeConfig, resources: Any, data: Any, progress: Any) -> ArmResult:
    raise NotImplementedError


def test_lazy_arm_config_is_built_from_the_run_annotation(tmp_path: Path) -> None:
    module = SimpleNamespace(run=fake_run, FakeConfig=FakeConfig)
    config = runner._default_lazy_config(
        module, PilotConfig(seed=7, max_train_minutes=2.5), tmp_path
    )
    assert config == FakeConfig(adapter_dir=tmp_path, seed=7, max_train_minutes=2.5)


def test_price_row_from_the_settings_table() -> None:
    table = {"hosted-base": (0.5, 1.5)}
    assert price_row(table, "hosted-base") == PriceRow("hosted-base", 0.5, 1.5)
    assert price_row(table, "nope") is None


def test_unknown_arm_is_a_failed_arm_not_a_crash() -> None:
    outcome = run_pilot(PilotConfig(arms=["magic"], n_resamples=10), make_data(4), RESOURCES)
    assert outcome.arms[0].status == "failed" and "unknown arm" in (outcome.arms[0].error or "")


def test_fine_tuning_arm_configs_share_adapter_dir_and_reuse_the_qlora_adapter(
    tmp_path: Path,
) -> None:
    pytest.importorskip("worker.pilots.arms.qlora_rag")
    from worker.pilots.arms.rag import RagConfig

    pilot = PilotConfig(seed=3, max_train_minutes=2.0, rag=RagConfig(top_k=5))
    _, qlora_config = runner._arm_call("qlora", pilot, tmp_path)
    assert (qlora_config.adapter_dir, qlora_config.seed) == (tmp_path, 3)
    assert qlora_config.max_train_minutes == 2.0
    _, both = runner._arm_call("qlora_rag", pilot, tmp_path, str(tmp_path / "adapter"))
    assert both.qlora == qlora_config
    assert both.adapter_path == tmp_path / "adapter"
    assert both.retrieval.top_k == 5
    _, alone = runner._arm_call("qlora_rag", pilot, tmp_path)  # qlora did not run
    assert alone.adapter_path is None
