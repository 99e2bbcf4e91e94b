"""Groups of examples that are not independent: questions on one passage, rows the user
grouped (docs/pilots.md, "The data sample").

Where a group comes from is decided when the sample is read (`Example.group`); this module
numbers the groups for the split and the intervals, and sums them up for the user. An
example without a group is a group of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.domain.samples.schemas import Example, PilotTask, passage_group


@dataclass(frozen=True)
class GroupSummary:
    n_items: int
    n_groups: int  # ungrouped examples count one each
    largest_group: int
    mean_group_size: float
    grouped: bool  # some example had a group, named or from its passage

    @property
    def clustered(self) -> bool:
        """Some group holds two or more examples: only then does grouping change anything."""
        return self.n_groups < self.n_items


def group_index(examples: Sequence[Example]) -> npt.NDArray[np.int64]:
    """One group number per example, 0..G-1 in order of first appearance."""
    numbers: dict[str, int] = {}
    index = np.empty(len(examples), dtype=np.int64)
    next_number = 0
    for position, example in enumerate(examples):
        if example.group is None:
            index[position] = next_number
            next_number += 1
            continue
        if example.group not in numbers:
            numbers[example.group] = next_number
            next_number += 1
        index[position] = numbers[example.group]
    return index


def group_summary(examples: Sequence[Example]) -> GroupSummary:
    index = group_index(examples)
    sizes = np.bincount(index) if len(index) else np.zeros(0, dtype=np.int64)
    return GroupSummary(
        n_items=len(examples),
        n_groups=len(sizes),
        largest_group=int(sizes.max()) if len(sizes) else 0,
        mean_group_size=float(len(examples) / len(sizes)) if len(sizes) else 0.0,
        grouped=any(example.group is not None for example in examples),
    )


def group_note(examples: Sequence[Example], task: PilotTask) -> str | None:
    """What the upload step says about groups; None when no group holds two examples."""
    summary = group_summary(examples)
    if not summary.clustered:
        return None
    from_passages = all(
        example.group is None
        or (example.context and example.group == passage_group(example.context))
        for example in examples
    )
    noun = "questions" if task is PilotTask.qa else "examples"
    kind = "passage groups" if from_passages else "groups"
    return (
        f"{summary.n_items:,} {noun} in {summary.n_groups:,} {kind}: the split keeps each "
        "group on one side, and intervals resample whole groups"
    )
