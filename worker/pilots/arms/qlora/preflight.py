"""Memory pre-flight on a GPU: refuse a QLoRA run that will not fit, before loading anything."""

from __future__ import annotations

from app.domain.recipe import QLoRARecipe
from app.domain.scoring.costs import qlora_memory_need, qlora_preflight


class NotEnoughGpuMemory(RuntimeError):
    """The run would not fit the GPU's free memory; the message says what to change."""


def check_gpu_memory(device: str, parameters: int | None, recipe: QLoRARecipe) -> None:
    """On CUDA, compare the shared estimator's need with `torch.cuda.mem_get_info`; raise
    NotEnoughGpuMemory with the refusal. Nothing to check on a CPU (or without a size)."""
    if not device.startswith("cuda") or not parameters:
        return
    import torch

    free_bytes, _total = torch.cuda.mem_get_info()
    refusal = qlora_preflight(
        qlora_memory_need(parameters / 1e9, batch_tokens=recipe.batch_size * recipe.max_seq_len),
        free_gb=free_bytes / 1e9,
        batch_size=recipe.batch_size,
        max_seq_len=recipe.max_seq_len,
    )
    if refusal is not None:
        raise NotEnoughGpuMemory(refusal)
