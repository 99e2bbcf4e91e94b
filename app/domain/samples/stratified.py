"""Seeded sampling of n examples that, for classification, keeps as many labels as it can.

Stratified draws go round-robin over the labels (one example per label per round), so n
examples cover min(n, #labels) distinct labels instead of repeating the most frequent ones.
Used for few-shot shots and for the training and validation subsets of the QLoRA arm.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from app.domain.samples.schemas import Example


def stratified_sample(
    examples: Sequence[Example],
    n: int,
    *,
    seed: int,
    stratify: bool,
    shuffle: bool,
    labels_first: bool,
) -> list[Example]:
    """min(n, len(examples)) examples chosen reproducibly from `seed`.

    `stratify`: round-robin over labels (`Example.target`); otherwise a seeded random sample.

    `shuffle`: the result comes in random order, which a prompt needs (the order of its shots
    must carry no label signal, and recency bias falls at random); asking for every example
    still returns a permutation.
    Without it the result is in draw order, and asking for every example returns them as
    given.

    `labels_first` only decides how the seeded RNG is spent on a stratified draw: the label
    order first, then each label's pool in that order, picking from the front of each pool;
    or each pool first (labels in order of first appearance), then the label order, picking
    from the back. Both are equally random. Each caller keeps its own so that a seed goes on
    choosing exactly the examples it chose before (a recorded pilot stays reproducible).
    """
    if n <= 0 or not examples:
        return []
    if not shuffle and n >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    want = min(n, len(examples))
    if not stratify:
        return rng.sample(list(examples), want)

    pools: dict[str, list[Example]] = {}
    for example in examples:
        pools.setdefault(example.target, []).append(example)
    labels = sorted(pools)
    if labels_first:
        rng.shuffle(labels)
        for label in labels:
            rng.shuffle(pools[label])
    else:
        for pool in pools.values():
            rng.shuffle(pool)
            pool.reverse()
        rng.shuffle(labels)

    chosen: list[Example] = []
    deepest = max(len(pool) for pool in pools.values())
    for depth in range(deepest):
        for label in labels:
            pool = pools[label]
            if depth < len(pool):
                chosen.append(pool[depth])
                if len(chosen) == want:
                    break
        if len(chosen) == want:
            break
    if shuffle:
        rng.shuffle(chosen)
    return chosen
