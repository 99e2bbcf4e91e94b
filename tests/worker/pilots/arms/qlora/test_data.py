"""Collation without a model: left padding, positions as in generation, logits kept, and
micro-batches of similar lengths."""

from __future__ import annotations

import random
from collections import Counter

import torch

from worker.pilots.arms.qlora import data
from worker.pilots.arms.qlora.data import (
    IGNORE_INDEX,
    EncodedExample,
    collate,
    length_grouped_batches,
    micro_batches,
    padded_tokens,
)

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


def _rows(batches: list[data.Batch]) -> Counter[tuple[int, ...]]:
    """Every example in `batches`, its padding stripped."""
    return Counter(
        tuple(row[mask.bool()].tolist())
        for batch in batches
        for row, mask in zip(batch.input_ids, batch.attention_mask, strict=True)
    )


def _mixed(n: int, seed: int = 3) -> list[EncodedExample]:
    """n examples of 30-80 tokens, each with its own first token so each is told apart."""
    rng = random.Random(seed)
    return [example([1000 + i] + [5] * rng.randint(28, 78), [7]) for i in range(n)]


def test_length_grouped_batches_keep_every_example_once_and_pad_far_less() -> None:
    items = _mixed(200)
    grouped = length_grouped_batches(items, 8, PAD, torch.Generator().manual_seed(0))
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(0)).tolist()
    plain = micro_batches([items[i] for i in order], 8, PAD)
    assert _rows(grouped) == _rows(plain) == Counter(tuple(e.input_ids) for e in items)
    assert sorted(b.input_ids.shape[0] for b in grouped) == [8] * 25
    computed, padding = padded_tokens(grouped)
    plain_computed, plain_padding = padded_tokens(plain)
    assert computed - padding == plain_computed - plain_padding  # the same real tokens
    assert padding < plain_padding / 3, (padding, plain_padding)


def test_length_grouped_batches_are_shuffled_and_reproducible() -> None:
    items = _mixed(200)

    def lengths(seed: int) -> list[int]:
        batches = length_grouped_batches(items, 8, PAD, torch.Generator().manual_seed(seed))
        return [b.input_ids.shape[1] for b in batches]

    assert lengths(0) == lengths(0)
    assert lengths(0) != lengths(1)
    # The steps do not go from short to long (or back): the micro-batches are shuffled.
    assert lengths(0) != sorted(lengths(0)) and lengths(0) != sorted(lengths(0), reverse=True)


def test_a_large_set_is_grouped_within_windows_not_sorted_whole(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(data, "LENGTH_WINDOW_BATCHES", 2)  # windows of 16 examples
    items = _mixed(64)
    batches = length_grouped_batches(items, 8, PAD, torch.Generator().manual_seed(0))
    windows = [
        sorted(len(items[i].input_ids) for i in chunk)
        for chunk in _chunks(torch.randperm(64, generator=torch.Generator().manual_seed(0)), 16)
    ]
    # Each micro-batch is one half of one window sorted by length.
    halves = Counter(tuple(w[:8]) for w in windows) + Counter(tuple(w[8:]) for w in windows)
    got = Counter(tuple(sorted(int(m.sum()) for m in b.attention_mask)) for b in batches)
    assert got == halves


def _chunks(order: torch.Tensor, size: int) -> list[list[int]]:
    values = order.tolist()
    return [values[i : i + size] for i in range(0, len(values), size)]


def test_a_batch_under_the_cap_or_without_one_stays_whole() -> None:
    batch = collate([example([1, 2], [3]), example([4], [5])], PAD)  # 2 x 3 = 6 tokens
    assert batch.split(None) == [batch]
    assert batch.split(6) == [batch]


def test_split_keeps_every_row_once_under_the_cap_and_drops_shared_padding() -> None:
    # Rows of 3, 4, 9, 10 and 11 tokens, as a length-grouped micro-batch holds them: sorted.
    items = [example([1000 + i] + [5] * (n - 2), [7]) for i, n in enumerate([3, 4, 9, 10, 11])]
    batch = collate(items, PAD)
    parts = batch.split(24)  # 11 columns: 2 rows a part, so 3 parts (2, 2, 1 rows)

    assert [p.input_ids.shape[0] for p in parts] == [2, 2, 1]
    assert _rows(parts) == _rows([batch])
    assert all(p.input_ids.numel() <= 24 for p in parts)
    # The short rows' part no longer computes the 7 columns that are padding in both rows.
    assert [p.input_ids.shape[1] for p in parts] == [4, 10, 11]
    assert sum(p.completion_tokens for p in parts) == batch.completion_tokens
    for part in parts:
        assert torch.all(part.attention_mask[:, -1] == 1)  # rows still end at the last slot
        assert part.keep <= part.input_ids.shape[1]
        real = part.attention_mask.bool()
        # Each row keeps its positions 0..n-1 on its real tokens.
        for row, mask in zip(part.position_ids, real, strict=True):
            assert row[mask].tolist() == list(range(int(mask.sum())))


def test_a_row_longer_than_the_cap_goes_alone() -> None:
    batch = collate([example([1] * 9, [2]), example([3] * 9, [4])], PAD)  # 2 x 10 tokens
    parts = batch.split(4)
    assert [tuple(p.input_ids.shape) for p in parts] == [(1, 10), (1, 10)]
