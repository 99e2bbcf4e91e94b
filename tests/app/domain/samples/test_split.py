"""Seeded, stratified splitting and capping."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- groups: examples that share a passage (or a named group) stay on one side --------------


def grouped(
    labels: list[str] | None,
    count: int,
    groups: list[int],
    seed: int = 7,
    validation: float = 0.1,
    test: float = 0.2,
) -> Split:
    return split_positions(
        labels, count, seed=seed, test_fraction=test, validation_fraction=validation, groups=groups
    )


def sides(parts: Split, groups: list[int]) -> dict[str, set[int]]:
    return {
        "train": {groups[p] for p in parts.train},
        "validation": {groups[p] for p in parts.validation},
        "test": {groups[p] for p in parts.test},
    }


def test_ungrouped_samples_split_exactly_as_before_groups_existed() -> None:
    # Positions recorded from the split before groups were added: stored pilots rely on them.
    labelled = Split(train=[0, 1, 3, 4, 6, 7, 8, 9, 10], validation=[2], test=[5, 11])
    unlabelled = Split(train=[0, 1, 2, 4, 6, 7, 8, 9, 10, 11, 13], validation=[3], test=[5, 12, 14])
    labels = labels_of({"a": 7, "b": 5})
    assert split(labels, 12) == labelled
    assert split(None, 15, seed=3) == unlabelled
    # One example per group is no grouping at all: the same split.
    assert grouped(labels, 12, list(range(12))) == labelled
    assert grouped(None, 15, list(range(100, 115)), seed=3) == unlabelled


def test_a_group_never_lands_on_two_sides() -> None:
    groups = [i // 4 for i in range(120)]  # 30 passages, 4 questions each
    parts = grouped(None, 120, groups)
    found = sides(parts, groups)
    assert not found["test"] & (found["train"] | found["validation"])
    assert not found["train"] & found["validation"]
    assert sorted(parts.train + parts.validation + parts.test) == list(range(120))
    assert len(parts.test) == 24 and len(found["test"]) == 6  # 20% of the passages
    assert parts == grouped(None, 120, groups)  # seeded
    assert parts.test != grouped(None, 120, groups, seed=8).test


def test_grouped_split_stratifies_by_label_as_far_as_groups_allow() -> None:
    groups = [i // 2 for i in range(100)]  # 50 pairs
    labels = ["a" if i < 60 else "b" for i in range(100)]  # 30 pairs of a, 20 pairs of b
    parts = grouped(labels, 100, groups)
    assert Counter(labels[p] for p in parts.test) == {"a": 12, "b": 8}
    assert not sides(parts, groups)["test"] & sides(parts, groups)["train"]


def test_groups_that_follow_the_labels_still_leave_a_test_set() -> None:
    labels = labels_of({"a": 6, "b": 4})
    groups = [0] * 6 + [1] * 4  # every label is one group: stratifying is impossible
    parts = grouped(labels, 10, groups)
    assert parts.test and parts.train
    assert not sides(parts, groups)["test"] & sides(parts, groups)["train"]


def test_a_grouped_split_is_reproducible_from_version_to_version() -> None:
    # Recorded positions: a stored pilot's split must come out the same when made again.
    labels = list("ababaabbccababccaaccbbcc")  # pairs, some with a tied label
    parts = grouped(labels, 24, [i // 2 for i in range(24)], seed=5)
    assert parts == Split(
        train=[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 18, 19],
        validation=[14, 15],
        test=[0, 1, 20, 21, 22, 23],
    )


@pytest.mark.parametrize("seed", range(10))
def test_a_group_stays_back_for_training_whatever_the_test_fraction(seed: int) -> None:
    parts = grouped(None, 5, [0, 1, 1, 1, 1], seed=seed, test=0.8)
    assert parts.train and parts.test


def test_one_group_cannot_be_split() -> None:
    assert grouped(None, 5, [0] * 5).test == []


@settings(max_examples=150, deadline=None)
@given(
    groups=st.lists(st.integers(0, 12), min_size=2, max_size=60),
    labels=st.none() | st.lists(st.sampled_from("abc"), min_size=60, max_size=60),
    seed=st.integers(0, 1000),
    validation=st.sampled_from([0.0, 0.1, 0.3]),
    test=st.sampled_from([0.2, 0.5, 0.8]),
)
def test_property_no_group_is_on_two_sides(
    groups: list[int], labels: list[str] | None, seed: int, validation: float, test: float
) -> None:
    count = len(groups)
    own = labels[:count] if labels is not None else None
    parts = grouped(own, count, groups, seed=seed, validation=validation, test=test)
    assert sorted(parts.train + parts.validation + parts.test) == list(range(count))
    found = sides(parts, groups)
    assert not found["test"] & (found["train"] | found["validation"])
    assert not found["train"] & found["validation"]
    if 2 <= len(set(groups)) < count:  # grouped (ungrouped samples keep the old rules)
        assert parts.test and parts.train  # something to test on, something to learn from
    assert parts == grouped(own, count, groups, seed=seed, validation=validation, test=test)
