"""Stratified sampling: labels covered, seeds reproducible, and the picks each caller has always
got for a seed (few-shot shots and the QLoRA arm's subsets), pinned example by example."""

from __future__ import annotations

import pytest

from app.domain.samples.schemas import Example
from app.domain.samples.stratified import stratified_sample

# Labels first seen in a non-sorted order, pools of unequal size, interleaved.
POOL = [
    Example(input=f"{label}{i}", target=label)
    for i in range(5)
    for label in "cab"
    if not (label == "b" and i >= 2)
] + [Example(input="d0", target="d")]


def shots(n: int, *, stratify: bool, seed: int = 7) -> list[str]:
    chosen = stratified_sample(
        POOL, n, seed=seed, stratify=stratify, shuffle=True, labels_first=True
    )
    return [e.input for e in chosen]


def subset(n: int, *, stratify: bool, seed: int = 7) -> list[str]:
    chosen = stratified_sample(
        POOL, n, seed=seed, stratify=stratify, shuffle=False, labels_first=False
    )
    return [e.input for e in chosen]


# What the shot selection and the QLoRA subsampling each returned for seed 7 before they
# became one function: a seed must keep choosing the same examples, in the same order.
SHOTS_STRATIFIED = {
    3: ["d0", "a2", "b1"],
    5: ["b1", "a2", "d0", "b0", "c3"],
    9: ["a3", "a2", "b0", "c3", "a1", "b1", "d0", "c0", "c2"],
    12: ["a1", "a2", "a3", "c1", "d0", "c0", "b0", "a4", "c3", "b1", "a0", "c2"],
    20: ["a4", "a3", "a2", "c0", "a1", "b0", "d0", "a0", "c1", "c3", "b1", "c4", "c2"],
}
SUBSET_STRATIFIED = {
    3: ["c2", "b0", "d0"],
    5: ["c2", "b0", "d0", "a0", "c1"],
    9: ["c2", "b0", "d0", "a0", "c1", "b1", "a4", "c3", "a1"],
    12: ["c2", "b0", "d0", "a0", "c1", "b1", "a4", "c3", "a1", "c0", "a3", "c4"],
}
RANDOM_SAMPLE = {  # unstratified: both callers drew the same seeded random sample
    3: ["b1", "b0", "c2"],
    5: ["b1", "b0", "c2", "c0", "a0"],
    9: ["b1", "b0", "c2", "c0", "a0", "c3", "a4", "a1", "a3"],
    12: ["b1", "b0", "c2", "c0", "a0", "c3", "a4", "a1", "a3", "a2", "d0", "c4"],
}
ALL_SHUFFLED = ["b1", "b0", "c2", "c0", "a0", "c3", "a4", "a1", "a3", "a2", "d0", "c4", "c1"]


@pytest.mark.parametrize("n", sorted(SHOTS_STRATIFIED))
def test_shots_pick_what_they_always_picked(n: int) -> None:
    assert shots(n, stratify=True) == SHOTS_STRATIFIED[n]


@pytest.mark.parametrize("n", sorted(SUBSET_STRATIFIED))
def test_subsets_pick_what_they_always_picked(n: int) -> None:
    assert subset(n, stratify=True) == SUBSET_STRATIFIED[n]


@pytest.mark.parametrize("n", sorted(RANDOM_SAMPLE))
def test_unstratified_draws_are_a_seeded_random_sample(n: int) -> None:
    assert shots(n, stratify=False) == subset(n, stratify=False) == RANDOM_SAMPLE[n]


def test_asking_for_every_example() -> None:
    # Shots are still shuffled (prompt order carries no signal); a subset is the input as is.
    assert shots(20, stratify=False) == ALL_SHUFFLED
    everything = [e.input for e in POOL]
    for n in (len(POOL), 20):
        assert subset(n, stratify=True) == subset(n, stratify=False) == everything
    assert sorted(shots(len(POOL), stratify=True)) == sorted(everything)


@pytest.mark.parametrize("shuffle", [True, False])
def test_nothing_asked_or_nothing_there(shuffle: bool) -> None:
    for n in (0, -1):
        assert (
            stratified_sample(POOL, n, seed=0, stratify=True, shuffle=shuffle, labels_first=True)
            == []
        )
    assert (
        stratified_sample([], 3, seed=0, stratify=True, shuffle=shuffle, labels_first=False) == []
    )


@pytest.mark.parametrize("n", range(1, len(POOL)))
def test_every_label_is_covered_before_any_repeats(n: int) -> None:
    labels = {"a", "b", "c", "d"}
    for picked in (shots(n, stratify=True), subset(n, stratify=True)):
        assert len(picked) == n == len(set(picked))
        assert len({name[0] for name in picked}) == min(n, len(labels))


def test_shots_are_stratified_and_reproducible() -> None:
    def select(train: list[Example], k: int, *, seed: int, stratify: bool) -> list[Example]:
        return stratified_sample(
            train, k, seed=seed, stratify=stratify, shuffle=True, labels_first=True
        )

    train = [Example(input=f"{label} {i}", target=label) for label in "abcd" for i in range(10)]
    chosen = select(train, 4, seed=3, stratify=True)
    assert sorted(s.target for s in chosen) == ["a", "b", "c", "d"]
    assert chosen == select(train, 4, seed=3, stratify=True)
    assert chosen != select(train, 4, seed=4, stratify=True)
    six = select(train, 6, seed=0, stratify=True)
    assert len(six) == 6 and len({s.target for s in six}) == 4
    assert len(select(train, 5, seed=0, stratify=False)) == 5
    assert select(train[:2], 5, seed=0, stratify=True) == select(
        train[:2], 5, seed=0, stratify=True
    )
    assert len(select(train[:2], 5, seed=0, stratify=True)) == 2
