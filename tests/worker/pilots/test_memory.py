"""PeakMemory sees memory that a block held only while it ran; the levers that keep it down
compute the same thing (bench/memory_pilot.py measures what they save)."""

from __future__ import annotations

import time

import torch

from worker.pilots.memory import PeakMemory, contiguous_head_input


def test_peak_covers_a_transient_allocation() -> None:
    with PeakMemory("cpu", interval_s=0.02) as before:
        time.sleep(0.1)
    with PeakMemory("cpu", interval_s=0.02) as memory:
        block = b"\x01" * (64 * 2**20)  # written, so resident
        time.sleep(0.2)
        del block
    assert memory.peak_mb == memory.peak_rss_mb
    assert memory.peak_rss_mb > before.peak_rss_mb + 48
    assert memory.peak_cuda_mb == 0.0


class _Head(torch.nn.Linear):
    """A frozen bf16 LM head that records whether its input was contiguous."""

    def __init__(self) -> None:
        super().__init__(8, 32, bias=False, dtype=torch.bfloat16)
        self.weight.requires_grad_(False)
        self.seen: list[bool] = []

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        self.seen.append(hidden.is_contiguous())
        return super().forward(hidden)


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = _Head()

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden[:, -1:, :])  # what `logits_to_keep=1` hands the head


def test_the_head_gets_a_contiguous_input_inside_the_block_only() -> None:
    model = _Model()
    hidden = torch.randn(4, 6, 8, dtype=torch.bfloat16)
    with torch.inference_mode():
        plain = model(hidden)
        with contiguous_head_input(model):
            folded = model(hidden)
        after = model(hidden)
    assert model.head.seen == [False, True, False]
    assert torch.equal(plain, folded) and torch.equal(plain, after)


def test_a_model_without_a_head_is_left_alone() -> None:
    with contiguous_head_input(object()):
        pass
