"""Exact and near-duplicate detection, within a sample and between train and test.

Exact: same input and target after case and whitespace normalisation. Near: inputs whose
word 3-shingle sets have Jaccard similarity ≥ 0.9. Near pairs are found with prefix
filtering (Chaudhuri et al. 2006; Bayardo et al. 2007): with shingles ordered rarest
first, two sets with Jaccard ≥ t must share a shingle within their first
|s| − ⌈t·|s|⌉ + 1 shingles. Only pairs sharing such a prefix shingle are compared, so the
result is exact (no missed pairs) without comparing all n² pairs.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from app.domain.samples.schemas import Example

NEAR_DUPLICATE_JACCARD = 0.9
SHINGLE_WORDS = 3
MAX_LISTED_PAIRS = 3  # examples quoted in a warning, so the user can look them up

Shingle = tuple[str, ...]
_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Case- and whitespace-insensitive form used for exact comparisons."""
    return " ".join(text.casefold().split())


def shingles(text: str, size: int = SHINGLE_WORDS) -> frozenset[Shingle]:
    """Word n-grams of the normalised text; a shorter text is one shingle of all its words."""
    words = _WORD.findall(text.casefold())
    if len(words) < size:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(zip(*(words[i:] for i in range(size)), strict=False))


def jaccard(a: frozenset[Shingle], b: frozenset[Shingle]) -> float:
    if not a and not b:
        return 1.0
    overlap = len(a & b)
    return overlap / (len(a) + len(b) - overlap)


def similar_pairs(
    left: Sequence[frozenset[Shingle]],
    right: Sequence[frozenset[Shingle]] | None = None,
    *,
    threshold: float = NEAR_DUPLICATE_JACCARD,
) -> list[tuple[int, int]]:
    """Index pairs (i, j) with Jaccard(left[i], right[j]) ≥ threshold, sorted.

    Without `right`, pairs within `left` with i > j (each unordered pair once).
    """
    self_join = right is None
    targets = left if right is None else right
    rank = _rarest_first(list(left) + ([] if self_join else list(targets)))
    index: dict[int, list[int]] = defaultdict(list)

    def prefix(tokens: frozenset[Shingle]) -> list[int]:
        ordered = sorted(rank[token] for token in tokens)
        # The small epsilon keeps float rounding from shortening the prefix (losing pairs).
        return ordered[: len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1]

    if not self_join:
        for j, tokens in enumerate(targets):
            for token in prefix(tokens):
                index[token].append(j)
    pairs: list[tuple[int, int]] = []
    for i, tokens in enumerate(left):
        if not tokens:
            continue
        own_prefix = prefix(tokens)
        candidates = {j for token in own_prefix for j in index.get(token, ())}
        for j in candidates:
            other = targets[j]
            sizes_close = min(len(tokens), len(other)) >= threshold * max(len(tokens), len(other))
            if sizes_close and jaccard(tokens, other) >= threshold:
                pairs.append((i, j))
        if self_join:
            for token in own_prefix:
                index[token].append(i)
    return sorted(pairs)


def _rarest_first(sets: Sequence[frozenset[Shingle]]) -> dict[Shingle, int]:
    counts = Counter(token for tokens in sets for token in tokens)
    ordered = sorted(counts, key=lambda token: (counts[token], token))
    return {token: position for position, token in enumerate(ordered)}


def scope(example: Example) -> str:
    """Examples are compared only within a scope: the passage a question is about.

    "What is discussed in this publication?" asked of two different papers is two
    different examples, not a duplicate, and not leakage between train and test.
    """
    if example.context is None:
        return ""
    return example.doc_id or example.context


def _key(example: Example) -> tuple[str, str]:
    return scope(example), normalise(example.input)


@dataclass
class DuplicateReport:
    """Positions refer to the examples passed in."""

    exact: list[int] = field(default_factory=list)  # repeats an earlier example's input+target
    conflicting: list[tuple[int, int]] = field(default_factory=list)  # same input, other target
    near: list[tuple[int, int]] = field(default_factory=list)  # (earlier, later) similar inputs


def exact_duplicates(examples: Sequence[Example]) -> list[int]:
    """Positions of examples whose normalised input+target already occurred earlier."""
    seen: set[tuple[tuple[str, str], str]] = set()
    repeats: list[int] = []
    for position, example in enumerate(examples):
        key = (_key(example), normalise(example.target))
        if key in seen:
            repeats.append(position)
        seen.add(key)
    return repeats


def find_duplicates(examples: Sequence[Example]) -> DuplicateReport:
    report = DuplicateReport(exact=exact_duplicates(examples))
    first_with_input: dict[tuple[str, str], int] = {}
    for position, example in enumerate(examples):
        first = first_with_input.setdefault(_key(example), position)
        if first != position and normalise(examples[first].target) != normalise(example.target):
            report.conflicting.append((first, position))
    # Near duplicates among distinct inputs; identical inputs are reported above.
    by_scope = _group_by_scope(examples, first_with_input.values())
    for positions in by_scope.values():
        shingle_sets = [shingles(examples[position].input) for position in positions]
        for later, earlier in similar_pairs(shingle_sets):
            report.near.append((positions[earlier], positions[later]))
    report.near.sort()
    return report


@dataclass
class LeakageReport:
    """Test positions whose input also occurs in train, exactly or nearly."""

    exact: list[int] = field(default_factory=list)
    near: list[int] = field(default_factory=list)
    examples: list[tuple[int, int]] = field(default_factory=list)  # (test, train) positions

    @property
    def leaked(self) -> int:
        return len(self.exact) + len(self.near)


def find_leakage(train: Sequence[Example], test: Sequence[Example]) -> LeakageReport:
    report = LeakageReport()
    train_inputs: dict[tuple[str, str], int] = {}
    for position, example in enumerate(train):
        train_inputs.setdefault(_key(example), position)
    remaining: list[int] = []
    for position, example in enumerate(test):
        match = train_inputs.get(_key(example))
        if match is None:
            remaining.append(position)
        else:
            report.exact.append(position)
            report.examples.append((position, match))
    train_by_scope = _group_by_scope(train, range(len(train)))
    first_match: dict[int, int] = {}
    for key, test_positions in _group_by_scope(test, remaining).items():
        train_positions = train_by_scope.get(key, [])
        pairs = similar_pairs(
            [shingles(test[position].input) for position in test_positions],
            [shingles(train[position].input) for position in train_positions],
        )
        for test_index, train_index in pairs:
            first_match.setdefault(test_positions[test_index], train_positions[train_index])
    report.near = sorted(first_match)
    report.examples += sorted(first_match.items())
    return report


def _group_by_scope(examples: Sequence[Example], positions: Iterable[int]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for position in positions:
        groups[scope(examples[position])].append(position)
    return groups


def duplicate_warnings(
    report: DuplicateReport, examples: Sequence[Example], unit: str
) -> list[str]:
    def where(pairs: Sequence[tuple[int, int]]) -> str:
        shown = ", ".join(
            f"{examples[a].line} and {examples[b].line}" for a, b in pairs[:MAX_LISTED_PAIRS]
        )
        return f"e.g. {unit}s {shown}"

    warnings: list[str] = []
    if report.exact:
        first = [(_earlier_copy(examples, p), p) for p in report.exact[:MAX_LISTED_PAIRS]]
        warnings.append(
            f"{len(report.exact):,} exact duplicate(s) (same input and target, ignoring case "
            f"and spacing), {where(first)}"
        )
    if report.conflicting:
        warnings.append(
            f"{len(report.conflicting):,} input(s) appear again with a different target, "
            f"{where(report.conflicting)}; check which target is right"
        )
    if report.near:
        warnings.append(
            f"{len(report.near):,} near-duplicate pair(s) (inputs ≥ "
            f"{NEAR_DUPLICATE_JACCARD:.0%} similar by word 3-shingles), {where(report.near)}"
        )
    return warnings


def _earlier_copy(examples: Sequence[Example], position: int) -> int:
    def key(example: Example) -> tuple[tuple[str, str], str]:
        return _key(example), normalise(example.target)

    wanted = key(examples[position])
    return next(i for i in range(position) if key(examples[i]) == wanted)
