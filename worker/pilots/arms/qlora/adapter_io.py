"""The adapter on disk, the training summary next to it, and LoRA weights kept in memory."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from app.domain.records import ArmResult

TRAINING_SUMMARY = "pathpilot-training.json"  # written next to the adapter, read by qlora_rag


def save_adapter(model: Any, adapter_dir: Path) -> int:
    """Save the LoRA adapter (weights and config); returns `adapter_bytes` of what was saved."""
    adapter_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(adapter_dir))
    return adapter_bytes(adapter_dir)


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def adapter_bytes(adapter_dir: Path) -> int:
    """Size of what a deployment needs: the adapter weights and config (no README/summary)."""
    files = [*adapter_dir.glob("adapter_model.*"), adapter_dir / "adapter_config.json"]
    return sum(p.stat().st_size for p in files if p.is_file())


def write_summary(adapter_dir: Path, result: ArmResult) -> None:
    """The training facts a later arm reuses with the adapter (`read_summary`)."""
    summary = {
        "training_seconds": result.training_seconds,
        "peak_memory_mb": result.peak_memory_mb,
        "trainable_parameters": result.trainable_parameters,
        "adapter_bytes": result.adapter_bytes,
        "loss_curve": [dataclasses.asdict(p) for p in result.loss_curve],
        "recipe": result.recipe,
        "notes": result.notes,
    }
    path = adapter_dir / TRAINING_SUMMARY
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")


def read_summary(adapter_dir: Path) -> dict[str, Any] | None:
    path = Path(adapter_dir) / TRAINING_SUMMARY
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else None


def lora_state(model: Any) -> dict[str, torch.Tensor]:
    """A CPU copy of the trainable (LoRA) weights, to restore the best adapter later."""
    return {
        n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad
    }


def load_lora_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in state:
                parameter.copy_(state[name])
