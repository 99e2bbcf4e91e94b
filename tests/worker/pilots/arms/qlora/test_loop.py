"""The learning-rate schedule, the completion loss with and without `logits_to_keep`, and
micro-batches split under a token cap."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from app.domain.arms import QLoRAConfig
from worker.pilots.arms.qlora.data import IGNORE_INDEX, EncodedExample, collate
from worker.pilots.arms.qlora.loop import (
    CPU_TOKENS_PER_FORWARD,
    accumulate_gradients,
    completion_loss_sum,
    linear_schedule,
    tokens_per_forward,
)

VOCAB = 32


def test_linear_schedule_warms_up_then_decays_to_zero() -> None:
    factor = linear_schedule(total_steps=10, warmup_steps=2)
    assert [factor(s) for s in range(3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert factor(6) == pytest.approx(0.5)
    assert factor(10) == 0.0 and factor(12) == 0.0
    assert linear_schedule(total_steps=4, warmup_steps=0)(0) == 1.0


class TinyLM(torch.nn.Module):
    """Logits straight from an embedding (no matmul, so autocast leaves them in fp32)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(VOCAB, VOCAB)

    def forward(self, input_ids: torch.Tensor, **_: Any) -> Any:
        return SimpleNamespace(logits=self.embed(input_ids))


class TinyLMKeepingLogits(TinyLM):
    def forward(self, input_ids: torch.Tensor, logits_to_keep: int = 0, **_: Any) -> Any:
        logits = self.embed(input_ids)
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


def test_loss_covers_completion_tokens_only_with_or_without_logits_to_keep() -> None:
    batch = collate(
        [
            EncodedExample([3, 4, 5, 6, 7], [IGNORE_INDEX] * 3 + [6, 7]),
            EncodedExample([8, 9, 10], [IGNORE_INDEX, 9, 10]),
        ],
        pad_id=0,
    )
    full = TinyLM()
    logits = full(batch.input_ids).logits
    expected = F.cross_entropy(
        logits[:, :-1].reshape(-1, VOCAB),
        batch.labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    keeping = TinyLMKeepingLogits()
    keeping.load_state_dict(full.state_dict())
    for model in (full, keeping):
        loss = completion_loss_sum(model, batch, "cpu")
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_micro_batch_in_parts_accumulates_the_gradient_of_the_whole() -> None:
    examples = [
        EncodedExample(ids, [IGNORE_INDEX] * (len(ids) - 2) + ids[-2:])
        for ids in ([3, 4, 5], [6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19, 20])
    ]
    batch = collate(examples, pad_id=0)
    divisor = batch.completion_tokens + 5  # the rest of the optimizer step's tokens

    def gradient(max_tokens: int | None) -> tuple[float, torch.Tensor]:
        model = TinyLMKeepingLogits()
        share = accumulate_gradients(model, batch, "cpu", divisor, max_tokens)
        assert model.embed.weight.grad is not None
        return share, model.embed.weight.grad

    whole_share, whole = gradient(None)
    assert len(batch.split(12)) == 2
    split_share, split = gradient(12)
    assert split_share == pytest.approx(whole_share, rel=1e-6)
    assert torch.allclose(split, whole, atol=1e-7)
    assert whole.abs().sum() > 0


def test_tokens_per_forward_caps_cpu_training_and_leaves_cuda_to_its_recipe(
    tmp_path: Path,
) -> None:
    default = QLoRAConfig(adapter_dir=tmp_path)
    assert tokens_per_forward(default, "cpu") == CPU_TOKENS_PER_FORWARD
    assert tokens_per_forward(default, "cuda") is None
    chosen = QLoRAConfig(adapter_dir=tmp_path, max_tokens_per_forward=256)
    assert tokens_per_forward(chosen, "cuda") == tokens_per_forward(chosen, "cpu") == 256
