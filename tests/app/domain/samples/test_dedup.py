"""Exact and near duplicates, and train/test leakage."""

from __future__ import annotations

import random
from itertools import combinations

from app.domain.samples.dedup import (
    duplicate_warnings,
    find_duplicates,
    find_leakage,
    jaccard,
    normalise,
    shingles,
    similar_pairs,
)
from app.domain.samples.schemas import Example

WORDS = [f"w{i}" for i in range(15)]  # a small vocabulary, so random texts overlap a lot


def ex(text: str, target: str = "t", line: int = 0, context: str | None = None) -> Example:
    return Example(input=text, target=target, line=line, context=context)


def test_normalise_and_shingles() -> None:
    assert normalise("  Hello\tWORLD \n") == "hello world"
    assert shingles("The cat sat, on the mat") == {
        ("the", "cat", "sat"),
        ("cat", "sat", "on"),
        ("sat", "on", "the"),
        ("on", "the", "mat"),
    }
    assert shingles("Hi there") == {("hi", "there")}
    assert shingles("...") == frozenset()


def test_jaccard() -> None:
    assert jaccard(frozenset({("a",), ("b",)}), frozenset({("b",), ("c",)})) == 1 / 3


def test_prefix_filtered_join_finds_exactly_the_brute_force_pairs() -> None:
    rng = random.Random(0)
    base = [[rng.choice(WORDS) for _ in range(rng.randint(3, 90))] for _ in range(60)]
    texts = [" ".join(words) for words in base]
    for words in base[:40]:  # near copies: one word changed, added or dropped
        edited = list(words)
        position = rng.randrange(len(edited))
        if rng.random() < 0.5:
            edited.insert(position, "zz")
        else:
            edited.pop(position)
        texts.append(" ".join(edited))
    sets = [shingles(t) for t in texts]
    for threshold in (0.5, 0.8, 0.9):
        expected = sorted(
            (j, i)
            for i, j in combinations(range(len(sets)), 2)
            if jaccard(sets[i], sets[j]) >= threshold
        )
        assert similar_pairs(sets, threshold=threshold) == expected
        assert expected  # not vacuous
    left, right = sets[:50], sets[50:]
    expected_cross = sorted(
        (i, j)
        for i in range(len(left))
        for j in range(len(right))
        if jaccard(left[i], right[j]) >= 0.9
    )
    assert similar_pairs(left, right) == expected_cross
    assert expected_cross  # the check above is not vacuous


def test_find_duplicates() -> None:
    long = "please tell me why my new card has not arrived yet after two whole weeks"
    examples = [
        ex("Where is my card?", "card", 1),
        ex("where is  my CARD?", "card", 2),  # exact duplicate of 1
        ex("Where is my card?", "refund", 3),  # same input, other target
        ex(long, "card", 4),
        ex(long + " now", "card", 5),  # near duplicate of 4
        ex("Something else entirely", "other", 6),
    ]
    report = find_duplicates(examples)
    assert report.exact == [1]
    assert report.conflicting == [(0, 2)]
    assert report.near == [(3, 4)]
    assert duplicate_warnings(report, examples, "row") == [
        "1 exact duplicate(s) (same input and target, ignoring case and spacing), e.g. rows 1 "
        "and 2",
        "1 input(s) appear again with a different target, e.g. rows 1 and 3; check which "
        "target is right",
        "1 near-duplicate pair(s) (inputs ≥ 90% similar by word 3-shingles), e.g. rows 4 and 5",
    ]


def test_the_same_question_about_different_passages_is_not_a_duplicate() -> None:
    examples = [
        ex("What is discussed here?", "bats", context="Paper on bats."),
        ex("What is discussed here?", "masks", context="Paper on masks."),
        ex("What is discussed here?", "bat flu", context="Paper on bats."),
    ]
    report = find_duplicates(examples)
    assert report.exact == []
    assert report.conflicting == [(0, 2)]


def test_leakage_counts_exact_and_near_test_inputs_in_train() -> None:
    long = "how do i change the pin on my debit card using the mobile app today"
    train = [ex("Top up failed"), ex(long), ex("Card blocked")]
    test = [
        ex("top up   FAILED", "other target"),  # exact input match
        ex(long + " please"),  # near
        ex("Totally new question"),
    ]
    report = find_leakage(train, test)
    assert report.exact == [0]
    assert report.near == [1]
    assert report.leaked == 2
    assert report.examples == [(0, 0), (1, 1)]
