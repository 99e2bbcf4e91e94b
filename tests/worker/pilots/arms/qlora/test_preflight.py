"""The GPU memory pre-flight against the card's real free memory."""

from __future__ import annotations

import pytest
import torch

from app.domain.recipe import QLoRARecipe
from worker.pilots.arms.qlora.preflight import NotEnoughGpuMemory, check_gpu_memory


def test_nothing_to_check_on_a_cpu() -> None:
    check_gpu_memory("cpu", 10**12, QLoRARecipe())  # a trillion parameters: never refused


@pytest.mark.gpu
def test_a_model_too_large_for_the_card_is_refused_and_a_small_one_passes() -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    free_gb = torch.cuda.mem_get_info()[0] / 1e9
    check_gpu_memory("cuda", 135_000_000, QLoRARecipe())
    with pytest.raises(NotEnoughGpuMemory) as refused:
        check_gpu_memory("cuda", 1_000_000_000_000, QLoRARecipe())
    message = str(refused.value)
    assert "Not enough GPU memory to fine-tune" in message
    assert f"{free_gb:.0f}" in message or f"{free_gb:.1f} GB free" in message
    assert "Lower the batch size or the sequence length" in message
