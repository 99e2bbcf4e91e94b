"""Seeded, stratified train/validation/test splitting and capping, by example position.

Stratified means every label keeps (as nearly as rounding allows) its share in each part;
quotas are apportioned by largest remainder. Each label draws from its own random stream
(seeded by seed and label), so the split of one label does not change when another label
gains or loses examples. Results are positions in the input list, in ascending order.

Examples in one group (questions on one passage, see `app.domain.samples.groups`) are drawn
together, so no group is on two sides: a model tested on a passage it trained on would look
better than it is. Groups are stratified by their most common label, and a part's size is
met as closely as whole groups allow. A sample whose groups all hold one example is split
exactly as an ungrouped one.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

UNLABELLED = ""  # the single stratum used when examples have no labels


@dataclass(frozen=True)
class Split:
    train: list[int]
    validation: list[int]
    test: list[int]


def split_positions(
    labels: Sequence[str] | None,
    count: int,
    *,
    seed: int,
    test_fraction: float,
    validation_fraction: float,
    groups: Sequence[int] | None = None,
) -> Split:
    """Split `count` examples once: test first, then validation out of what remains.

    `validation_fraction` is a share of the training part (default 0.1 of the 80%).
    Labels with at least two examples get at least one test example when the test size
    allows, and always keep at least one for training; a label with a single example stays
    in train. Deterministic for a given seed.

    `groups` holds one group number per example; each group then lands on one side whole.
    """
    test_size = min(max(_round_half_up(count * test_fraction), 1), count - 1) if count > 1 else 0
    if groups is not None:
        if len(groups) != count:
            raise ValueError("groups must have one entry per example")
        if len(set(groups)) < count:
            return _split_groups(
                labels, groups, test_size, seed=seed, validation_fraction=validation_fraction
            )
    strata = _strata(labels, count)
    test = _draw(
        strata,
        test_size,
        seed=seed,
        purpose="test",
        at_least_one={label for label, members in strata.items() if len(members) >= 2},
        keep_one_back=True,
    )
    rest = _without(strata, test)
    validation_size = _round_half_up(sum(map(len, rest.values())) * validation_fraction)
    validation = _draw(
        rest,
        validation_size,
        seed=seed,
        purpose="validation",
        at_least_one=set(),
        keep_one_back=True,
    )
    train = _without(rest, validation)
    return Split(train=_flatten(train), validation=_flatten(validation), test=_flatten(test))


def _split_groups(
    labels: Sequence[str] | None,
    groups: Sequence[int],
    test_size: int,
    *,
    seed: int,
    validation_fraction: float,
) -> Split:
    if labels is not None and len(labels) != len(groups):
        raise ValueError("labels must have one entry per example")
    members: dict[int, list[int]] = defaultdict(list)
    for position, group in enumerate(groups):
        members[group].append(position)
    units = list(members.values())
    test = _draw_groups(_group_strata(units, labels), test_size, seed=seed, purpose="test")
    if not test and labels is not None:
        # Every label sits in a single group: stratified, nothing could be held out.
        test = _draw_groups(_group_strata(units, None), test_size, seed=seed, purpose="test")
    tested = {unit[0] for unit in test}  # a group is known by its first position
    rest = [unit for unit in units if unit[0] not in tested]
    validation_size = _round_half_up(sum(map(len, rest)) * validation_fraction)
    validation = _draw_groups(
        _group_strata(rest, labels),
        validation_size,
        seed=seed,
        purpose="validation",
        at_least_one=False,
    )
    validated = {unit[0] for unit in validation}
    train = [unit for unit in rest if unit[0] not in validated]
    return Split(
        train=sorted(p for unit in train for p in unit),
        validation=sorted(p for unit in validation for p in unit),
        test=sorted(p for unit in test for p in unit),
    )


def _group_strata(
    units: list[list[int]], labels: Sequence[str] | None
) -> dict[str, list[list[int]]]:
    """Groups by their most common label (ties: the first label in sorted order)."""
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for unit in units:
        if labels is None:
            strata[UNLABELLED].append(unit)
            continue
        counts = Counter(labels[position] for position in unit)
        top = max(counts.values())
        strata[min(label for label, n in counts.items() if n == top)].append(unit)
    return dict(strata)


def _draw_groups(
    strata: Mapping[str, list[list[int]]],
    size: int,
    *,
    seed: int,
    purpose: str,
    at_least_one: bool = True,
) -> list[list[int]]:
    """Whole groups adding up to about `size` examples, apportioned across strata like
    `_draw`; every stratum keeps at least one group back (for training)."""
    sizes = {label: sum(map(len, units)) for label, units in strata.items()}
    tie_break = {
        label: random.Random(f"{seed}:{purpose}:groups:order:{label}").random() for label in strata
    }
    quotas = apportion(
        sizes,
        size,
        capacity={label: sizes[label] - min(map(len, units)) for label, units in strata.items()},
        at_least_one={label for label, units in strata.items() if len(units) >= 2}
        if at_least_one
        else set(),
        tie_break=tie_break,
    )
    drawn: list[list[int]] = []
    # Whole groups rarely meet a quota exactly; what one stratum takes too few or too many
    # passes on to the next, so the part's size stays close to `size`.
    carry = 0
    for label in sorted(strata, key=lambda label: (-quotas[label], tie_break[label])):
        shuffled = sorted(strata[label])
        random.Random(f"{seed}:{purpose}:groups:{label}").shuffle(shuffled)
        candidates = shuffled[:-1]  # the last group stays back, whatever the quota
        quota, taken, chosen = quotas[label] + carry, 0, []
        for unit in candidates:
            # Take groups in their random order while that brings the count closer to the
            # quota (overshooting by less than half a group). Stopping at the first group
            # that does not fit, rather than looking on for smaller ones, keeps the drawn
            # groups a fair sample: small groups are not favoured.
            if 2 * taken + len(unit) >= 2 * quota:
                break
            chosen.append(unit)
            taken += len(unit)
        if not chosen and quotas[label] and candidates and at_least_one:
            # Every group is bigger than twice the quota; holding one out beats none.
            chosen.append(min(candidates, key=len))
            taken = len(chosen[0])
        carry = quota - taken
        drawn += chosen
    return drawn


def cap_positions(
    positions: Sequence[int],
    labels: Sequence[str] | None,
    cap: int,
    *,
    seed: int,
    purpose: str,
) -> list[int]:
    """A stratified subset of at most `cap` positions, keeping every label while the cap allows."""
    if len(positions) <= cap:
        return sorted(positions)
    strata: dict[str, list[int]] = defaultdict(list)
    for position in positions:
        strata[labels[position] if labels is not None else UNLABELLED].append(position)
    kept = _draw(
        strata, cap, seed=seed, purpose=purpose, at_least_one=set(strata), keep_one_back=False
    )
    return _flatten(kept)


def _strata(labels: Sequence[str] | None, count: int) -> dict[str, list[int]]:
    if labels is None:
        return {UNLABELLED: list(range(count))}
    if len(labels) != count:
        raise ValueError("labels must have one entry per example")
    strata: dict[str, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        strata[label].append(position)
    return dict(strata)


def _draw(
    strata: Mapping[str, list[int]],
    size: int,
    *,
    seed: int,
    purpose: str,
    at_least_one: set[str],
    keep_one_back: bool,
) -> dict[str, list[int]]:
    """Draw `size` positions across strata in proportion to their sizes, at random per label."""
    capacity = {
        label: max(len(members) - 1, 0) if keep_one_back else len(members)
        for label, members in strata.items()
    }
    quotas = apportion(
        {label: len(members) for label, members in strata.items()},
        size,
        capacity=capacity,
        at_least_one=at_least_one,
        tie_break={
            label: random.Random(f"{seed}:{purpose}:order:{label}").random() for label in strata
        },
    )
    drawn: dict[str, list[int]] = {}
    for label, members in strata.items():
        shuffled = sorted(members)
        random.Random(f"{seed}:{purpose}:{label}").shuffle(shuffled)
        drawn[label] = shuffled[: quotas[label]]
    return drawn


def apportion(
    sizes: Mapping[str, int],
    total: int,
    *,
    capacity: Mapping[str, int],
    at_least_one: set[str],
    tie_break: Mapping[str, float],
) -> dict[str, int]:
    """Split `total` across strata proportionally to `sizes` (largest remainder method).

    Each stratum in `at_least_one` gets one first, largest strata first, while `total`
    lasts; no stratum gets more than its capacity.
    """
    population = sum(sizes.values())
    total = min(total, sum(capacity.values()))
    if total <= 0 or population == 0:
        return dict.fromkeys(sizes, 0)
    ideal = {label: total * size / population for label, size in sizes.items()}
    minimum = dict.fromkeys(sizes, 0)
    guaranteed = sorted(
        (label for label in at_least_one if capacity[label] >= 1),
        key=lambda label: (-sizes[label], tie_break[label]),
    )
    for label in guaranteed[:total]:
        minimum[label] = 1
    quota = {
        label: min(capacity[label], max(minimum[label], math.floor(ideal[label])))
        for label in sizes
    }
    # Rounding and the minimums leave the sum off by a little: move single units, each time
    # to (or from) the stratum furthest below (above) its ideal share.
    while (assigned := sum(quota.values())) != total:
        if assigned < total:
            open_ = [label for label in sizes if quota[label] < capacity[label]]
            pick = max(open_, key=lambda label: (ideal[label] - quota[label], tie_break[label]))
            quota[pick] += 1
        else:
            reducible = [label for label in sizes if quota[label] > minimum[label]]
            pick = max(reducible, key=lambda label: (quota[label] - ideal[label], tie_break[label]))
            quota[pick] -= 1
    return quota


def _without(
    strata: Mapping[str, list[int]], taken: Mapping[str, list[int]]
) -> dict[str, list[int]]:
    remaining: dict[str, list[int]] = {}
    for label, members in strata.items():
        gone = set(taken.get(label, ()))
        remaining[label] = [position for position in members if position not in gone]
    return remaining


def _round_half_up(value: float) -> int:
    # round() rounds halves to even (2.5 → 2); sizes should not depend on that subtlety.
    return math.floor(value + 0.5)


def _flatten(strata: Mapping[str, list[int]]) -> list[int]:
    return sorted(position for members in strata.values() for position in members)
