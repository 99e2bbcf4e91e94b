"""Training examples as token ids with completion-only labels, and left-padded batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from app.domain.chat_encoding import IGNORE_INDEX, encode_chat
from app.domain.prompts import short_messages
from app.domain.samples.schemas import Example, PilotTask


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]  # prompt + completion (+ EOS)
    labels: list[int]  # IGNORE_INDEX on prompt tokens, the token id on completion tokens
    truncated: bool = False

    @property
    def completion_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def encode_example(
    tokenizer: Any, task: PilotTask, example: Example, *, max_seq_len: int
) -> EncodedExample:
    """Short prompt (instruction + input, as at inference) + target + end-of-turn; loss on
    the target. Encoded by `app.domain.chat_encoding.encode_chat`, the rule the hand-off
    bundle's train_trl.py runs too, so a deployment trains on the ids this arm trained on."""
    input_ids, labels, truncated = encode_chat(
        tokenizer, short_messages(task, example), example.target, max_seq_len=max_seq_len
    )
    return EncodedExample(input_ids=input_ids, labels=labels, truncated=truncated)


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    keep: int  # last positions whose logits are needed (longest completion + 1)

    @property
    def completion_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def to(self, device: str) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.labels.to(device),
            self.keep,
        )

    def split(self, max_tokens: int | None) -> list[Batch]:
        """This batch as row slices of at most `max_tokens` computed tokens each.

        Activation memory for the backward grows with rows x length, so the longest
        micro-batches set a training step's peak. Their rows go through in near-equal parts
        (one row at least, whatever its length); each part drops the left-padding columns
        that are padding in all of its rows. Rows do not interact, so the summed loss and its
        gradient are those of the whole batch, up to floating-point rounding (and dropout,
        whose random masks are drawn per forward).
        """
        rows, length = self.input_ids.shape
        if max_tokens is None or rows * length <= max_tokens:
            return [self]
        rows_per_part = max(1, max_tokens // length)
        parts = -(-rows // rows_per_part)
        return [self._rows(indices) for indices in torch.arange(rows).tensor_split(parts)]

    def _rows(self, indices: torch.Tensor) -> Batch:
        mask = self.attention_mask[indices]
        first = int(mask.any(0).int().argmax())  # the first column some row uses
        length = mask.shape[1] - first
        return Batch(
            self.input_ids[indices, first:],
            mask[:, first:],
            self.position_ids[indices, first:],
            self.labels[indices, first:],
            min(self.keep, length),
        )


def collate(examples: Sequence[EncodedExample], pad_id: int) -> Batch:
    """Left-padded batch: every sequence ends at the last position, as in generation.

    Position ids come from the attention mask (cumsum - 1), which is what transformers'
    `generate` uses for left-padded prompts, so training and inference see the same
    positions.
    """
    length = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, length - n :] = torch.tensor(example.input_ids)
        labels[row, length - n :] = torch.tensor(example.labels)
        mask[row, length - n :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # Completion tokens sit at the end; a prediction for token t comes from position t-1.
    keep = min(length, max(e.completion_tokens for e in examples) + 1)
    return Batch(input_ids, mask, positions, labels, keep)


def micro_batches(items: Sequence[EncodedExample], size: int, pad_id: int) -> list[Batch]:
    return [collate(items[i : i + size], pad_id) for i in range(0, len(items), size)]


# Examples sorted by length together: 8 micro-batches' worth. Large enough that most padding
# goes (on the banking sample: 24-30% of a random batch, ~8% grouped, against 2-5% with
# transformers' 50), small enough that on a pilot-sized training set the micro-batches are
# made anew every epoch instead of the same sorted slices each time.
LENGTH_WINDOW_BATCHES = 8


def length_grouped_batches(
    items: Sequence[EncodedExample], size: int, pad_id: int, generator: torch.Generator
) -> list[Batch]:
    """Micro-batches of examples of similar length, in a random order.

    A micro-batch is as long as its longest example; the rest of its rows are padding that the
    forward and backward compute and throw away (up to a third of a batch when lengths range
    from 40 to 75 tokens). The examples are shuffled, cut into windows of
    LENGTH_WINDOW_BATCHES micro-batches, sorted by length within each window (the shuffle
    breaks ties, so equal lengths still mix), cut into micro-batches, and the micro-batches
    shuffled, so the optimizer steps do not go from long to short. `generator` makes it
    reproducible.
    """
    order = torch.randperm(len(items), generator=generator).tolist()
    window = size * LENGTH_WINDOW_BATCHES
    grouped: list[int] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        grouped.extend(sorted(chunk, key=lambda i: len(items[i].input_ids)))
    batches = micro_batches([items[i] for i in grouped], size, pad_id)
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def padded_tokens(batches: Sequence[Batch]) -> tuple[int, int]:
    """(tokens computed, of which padding) over `batches`."""
    computed = sum(int(b.attention_mask.numel()) for b in batches)
    return computed, computed - sum(int(b.attention_mask.sum()) for b in batches)
