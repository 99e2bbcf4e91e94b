"""Seeded, stratified splitting and capping."""

from __future__ import annotations

from collections import Counter

import pytest

from app.domain.samples.split import Split, apportion, cap_positions, split_positions


def labels_of(counts: dict[str, int]) -> list[str]:
    return [label for label, count in counts.items() for _ in range(count)]


def split(labels: list[str] | None, count: int, seed: int = 7, validation: float = 0.1) -> Split:
    return split_positions(
        labels, count, seed=seed, test_fraction=0.2, validation_fraction=validation
    )


def test_parts_are_disjoint_and_cover_everything() -> None:
    labels = labels_of({"a": 50, "b": 30, "c": 20})
    parts = split(labels, 100)
    assert sorted(parts.train + parts.validation + parts.test) == list(range(100))
    assert len(parts.test) == 20
    assert len(parts.validation) == 8  # 10% of the 80 left for training
    assert len(parts.train) == 72


def test_test_split_keeps_label_proportions() -> None:
    labels = labels_of({"a": 50, "b": 30, "c": 20})
    parts = split(labels, 100)
    assert Counter(labels[p] for p in parts.test) == {"a": 10, "b": 6, "c": 4}
    assert Counter(labels[p] for p in parts.validation) == {"a": 4, "b": 2, "c": 2}


def test_every_label_with_two_examples_is_tested_and_trained() -> None:
    labels = labels_of({"big": 40} | {f"small{i}": 2 for i in range(10)})  # 60 examples
    parts = split(labels, 60)
    tested = Counter(labels[p] for p in parts.test)
    trained = Counter(labels[p] for p in parts.train + parts.validation)
    assert len(parts.test) == 12
    assert all(tested[f"small{i}"] == 1 and trained[f"small{i}"] == 1 for i in range(10))
    assert tested["big"] == 2


def test_a_single_example_label_stays_in_train() -> None:
    labels = labels_of({"a": 9, "b": 9, "lonely": 1})
    parts = split(labels, 19, validation=0.0)
    lonely = labels.index("lonely")
    assert lonely in parts.train
    assert parts.validation == []


def test_when_the_test_set_is_smaller_than_the_label_set_the_largest_labels_come_first() -> None:
    labels = labels_of({"a": 4, "b": 3} | {f"x{i}": 2 for i in range(8)})  # 23 examples
    parts = split(labels, 23)
    assert len(parts.test) == 5
    tested = {labels[p] for p in parts.test}
    assert {"a", "b"} <= tested


def test_same_seed_same_split_other_seed_other_split() -> None:
    labels = labels_of({"a": 60, "b": 40})
    assert split(labels, 100, seed=1) == split(labels, 100, seed=1)
    assert split(labels, 100, seed=1).test != split(labels, 100, seed=2).test


def test_unlabelled_split() -> None:
    parts = split(None, 11)
    assert (len(parts.train), len(parts.validation), len(parts.test)) == (8, 1, 2)


def test_tiny_samples_keep_one_for_training() -> None:
    parts = split(None, 2)
    assert (len(parts.train), len(parts.test)) == (1, 1)


def test_cap_is_stratified_and_keeps_every_label() -> None:
    labels = labels_of({"a": 700, "b": 290, "c": 11})
    kept = cap_positions(range(len(labels)), labels, 100, seed=3, purpose="train")
    assert len(kept) == 100
    assert Counter(labels[p] for p in kept) == {"a": 70, "b": 29, "c": 1}
    assert kept == sorted(kept)
    assert kept == cap_positions(range(len(labels)), labels, 100, seed=3, purpose="train")


def test_cap_below_size_changes_nothing() -> None:
    assert cap_positions([5, 1, 3], None, 10, seed=0, purpose="test") == [1, 3, 5]


@pytest.mark.parametrize(
    ("sizes", "total", "expected"),
    [
        ({"a": 1, "b": 1, "c": 1}, 2, 2),
        ({"a": 5, "b": 5}, 3, 3),
        ({"a": 97, "b": 2, "c": 1}, 10, 10),
    ],
)
def test_apportion_hits_the_total_within_capacity(
    sizes: dict[str, int], total: int, expected: int
) -> None:
    quota = apportion(
        sizes,
        total,
        capacity=sizes,
        at_least_one=set(sizes),
        tie_break={label: 0.0 for label in sizes},
    )
    assert sum(quota.values()) == expected
    assert all(0 <= quota[label] <= sizes[label] for label in sizes)


def test_apportion_gives_minimums_first() -> None:
    quota = apportion(
        {"a": 97, "b": 2, "c": 1},
        10,
        capacity={"a": 96, "b": 1, "c": 0},
        at_least_one={"a", "b", "c"},
        tie_break={"a": 0.0, "b": 0.0, "c": 0.0},
    )
    assert quota == {"a": 9, "b": 1, "c": 0}
