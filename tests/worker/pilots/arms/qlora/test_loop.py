"""The learning-rate schedule, and the completion loss with and without `logits_to_keep`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from worker.pilots.arms.qlora.data import IGNORE_INDEX, EncodedExample, collate
from worker.pilots.arms.qlora.loop import completion_loss_sum, linear_schedule

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
