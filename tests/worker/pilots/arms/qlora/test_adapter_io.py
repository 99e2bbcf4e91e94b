"""The training summary round trip, adapter size, and restoring saved LoRA weights."""

from __future__ import annotations

from pathlib import Path

import torch

from app.domain.records import ArmResult, LossPoint
from worker.pilots.arms.qlora.adapter_io import (
    TRAINING_SUMMARY,
    adapter_bytes,
    load_lora_state,
    lora_state,
    read_summary,
    write_summary,
)


def test_summary_round_trip(tmp_path: Path) -> None:
    assert read_summary(tmp_path) is None
    result = ArmResult(
        arm="qlora",
        predictions=[],
        training_seconds=12.5,
        peak_memory_mb=900.0,
        trainable_parameters=4_000,
        adapter_bytes=16_000,
        loss_curve=[LossPoint(step=0, epoch=0.0, train_loss=None, validation_loss=2.5)],
        recipe={"rank": 16, "path": tmp_path},
        notes=["time cap"],
    )
    write_summary(tmp_path, result)
    summary = read_summary(tmp_path)
    assert summary == {
        "training_seconds": 12.5,
        "peak_memory_mb": 900.0,
        "trainable_parameters": 4_000,
        "adapter_bytes": 16_000,
        "loss_curve": [{"step": 0, "epoch": 0.0, "train_loss": None, "validation_loss": 2.5}],
        "recipe": {"rank": 16, "path": str(tmp_path)},
        "notes": ["time cap"],
    }
    (tmp_path / TRAINING_SUMMARY).write_text("[]")
    assert read_summary(tmp_path) is None


def test_adapter_bytes_count_only_what_a_deployment_needs(tmp_path: Path) -> None:
    (tmp_path / "adapter_model.safetensors").write_bytes(b"w" * 100)
    (tmp_path / "adapter_config.json").write_bytes(b"c" * 10)
    (tmp_path / "README.md").write_bytes(b"r" * 1000)
    (tmp_path / TRAINING_SUMMARY).write_bytes(b"s" * 1000)
    assert adapter_bytes(tmp_path) == 110


def test_lora_state_restores_only_trainable_weights() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    model[0].requires_grad_(False)
    saved = lora_state(model)
    assert set(saved) == {"1.weight", "1.bias"}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    load_lora_state(model, saved)
    assert torch.equal(model[1].weight, before["1.weight"])
    assert torch.equal(model[1].bias, before["1.bias"])
    assert torch.equal(model[0].weight, before["0.weight"] + 1.0)  # not part of the state
