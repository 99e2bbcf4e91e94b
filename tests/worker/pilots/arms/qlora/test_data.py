"""Collation without a model: left padding, positions as in generation, logits kept."""

from __future__ import annotations

import torch

from worker.pilots.arms.qlora.data import IGNORE_INDEX, EncodedExample, collate, micro_batches

PAD = 0


def example(prompt: list[int], completion: list[int]) -> EncodedExample:
    return EncodedExample(
        input_ids=[*prompt, *completion], labels=[IGNORE_INDEX] * len(prompt) + completion
    )


def test_collate_left_pads_and_masks_the_padding() -> None:
    long = example([11, 12, 13, 14], [21, 22])
    short = example([15], [23, 24, 25])
    batch = collate([long, short], PAD)

    assert batch.input_ids.tolist() == [[11, 12, 13, 14, 21, 22], [PAD, PAD, 15, 23, 24, 25]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]]
    assert batch.labels.tolist() == [
        [IGNORE_INDEX] * 4 + [21, 22],
        [IGNORE_INDEX] * 3 + [23, 24, 25],
    ]
    # Positions start at 0 on the first real token, as `generate` numbers left-padded prompts.
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 5], [0, 0, 0, 1, 2, 3]]
    assert batch.completion_tokens == 5 == long.completion_tokens + short.completion_tokens
    assert batch.keep == 4  # the longest completion (3) + the position that predicts its first


def test_keep_never_exceeds_the_sequence() -> None:
    assert collate([example([], [7, 8])], PAD).keep == 2


def test_micro_batches_cover_every_example_in_order() -> None:
    items = [example([1] * i, [2]) for i in range(1, 6)]
    batches = micro_batches(items, 2, PAD)
    assert [b.input_ids.shape[0] for b in batches] == [2, 2, 1]
    assert [b.input_ids.shape[1] for b in batches] == [3, 5, 6]
    assert torch.equal(batches[2].input_ids[0], torch.tensor([1, 1, 1, 1, 1, 2]))
