"""Groups of examples that share a passage or a user-named group: numbering and summary."""

from __future__ import annotations

import numpy as np

from app.domain.samples.groups import GroupSummary, group_index, group_note, group_summary
from app.domain.samples.schemas import Example, PilotTask, passage_group


def example(group: str | None = None, context: str | None = None) -> Example:
    return Example(input="q", target="a", group=group, context=context)


def test_a_context_gives_a_passage_group_that_ignores_case_and_spacing() -> None:
    same = example(context="The Normans  gave their name\nto Normandy.")
    again = example(context="the normans gave their name to normandy.")
    other = example(context="Rollo was the first ruler.")
    assert same.group == again.group == passage_group("The Normans gave their name to Normandy.")
    assert other.group is not None and other.group != same.group
    assert example().group is None


def test_a_named_group_wins_over_the_passage() -> None:
    assert example(group="doc-7", context="Rollo was the first ruler.").group == "doc-7"


def test_group_index_numbers_groups_in_first_seen_order() -> None:
    examples = [example("b"), example(), example("a"), example("b"), example(), example("a")]
    index = group_index(examples)
    assert index.dtype == np.int64
    assert index.tolist() == [0, 1, 2, 0, 3, 2]  # each ungrouped example is its own group


def test_group_index_of_nothing_is_empty() -> None:
    index = group_index([])
    assert index.dtype == np.int64 and index.shape == (0,)


def test_group_summary_counts_sizes() -> None:
    examples = [example("x")] * 3 + [example("y")] + [example(), example()]
    assert group_summary(examples) == GroupSummary(
        n_items=6, n_groups=4, largest_group=3, mean_group_size=1.5, grouped=True
    )


def test_an_ungrouped_sample_is_one_group_per_example() -> None:
    summary = group_summary([example(), example()])
    assert summary == GroupSummary(
        n_items=2, n_groups=2, largest_group=1, mean_group_size=1.0, grouped=False
    )
    assert group_summary([]) == GroupSummary(
        n_items=0, n_groups=0, largest_group=0, mean_group_size=0.0, grouped=False
    )


def test_the_note_names_passage_groups_or_named_groups() -> None:
    passages = [example(context=f"passage {i % 80}") for i in range(312)]
    assert group_note(passages, PilotTask.qa) == (
        "312 questions in 80 passage groups: the split keeps each group on one side, and "
        "intervals resample whole groups"
    )
    named = [example(group=f"g{i % 2}") for i in range(5)]
    assert group_note(named, PilotTask.classification) == (
        "5 examples in 2 groups: the split keeps each group on one side, and intervals "
        "resample whole groups"
    )


def test_no_note_when_every_group_has_one_example() -> None:
    assert group_note([example(context=f"passage {i}") for i in range(5)], PilotTask.qa) is None
    assert group_note([example(), example()], PilotTask.generation) is None
