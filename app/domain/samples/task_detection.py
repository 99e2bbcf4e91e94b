"""Which pilot task a sample is, judged from its targets; the user may override it."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from app.domain.samples.schemas import Example, PilotTask, SampleFormat
from app.domain.samples.strict_json import parses_as_object, quote

QA_FORMATS = (SampleFormat.qa_jsonl, SampleFormat.squad_json)
# Beyond this many distinct targets a "label" is really free text (Banking77 has 77).
MAX_LABELS = 200
# Labels are names, not sentences.
MAX_LABEL_CHARS = 100


def is_label_set(targets: Sequence[str]) -> bool:
    """Whether targets are a small set of short values that repeat (class labels).

    "Repeat" means at least two examples per distinct value on average, so a column of
    free-text answers that happen to be short is not mistaken for labels.
    """
    distinct = set(targets)
    return (
        len(targets) >= 2
        and len(distinct) <= MAX_LABELS
        and len(distinct) * 2 <= len(targets)
        and all(len(label) <= MAX_LABEL_CHARS for label in distinct)
    )


def detect_task(fmt: SampleFormat, examples: Sequence[Example]) -> PilotTask:
    if fmt in QA_FORMATS:
        return PilotTask.qa
    targets = [example.target for example in examples]
    if targets and all(parses_as_object(target) for target in targets):
        return PilotTask.extraction
    if is_label_set(targets):
        return PilotTask.classification
    return PilotTask.generation


def task_warnings(
    task: PilotTask, examples: Sequence[Example], *, chosen: bool, unit: str = "line"
) -> list[str]:
    """Doubts about the task: a chosen task the data does not fit, or near-miss detection."""
    targets = [example.target for example in examples]
    not_json = [example for example in examples if not parses_as_object(example.target)]
    warnings: list[str] = []
    if task is PilotTask.extraction and not_json:
        warnings.append(
            f"{len(not_json):,} of {len(examples):,} targets are not JSON objects (first at "
            f"{unit} {not_json[0].line}); JSON validity and field F1 will count them as wrong"
        )
    elif not chosen and task is PilotTask.generation and len(not_json) <= len(examples) / 2:
        warnings.append(
            f"most targets are JSON objects but {len(not_json):,} are not (first at "
            f"{unit} {not_json[0].line}), so the task was set to generation, not extraction"
        )
    if task is PilotTask.classification:
        if chosen and not is_label_set(targets):
            warnings.append(
                f"the task is classification, but the {len(examples):,} targets have "
                f"{len(set(targets)):,} distinct values; labels should be a small set that "
                "repeats"
            )
        warnings.extend(_case_variant_warnings(targets))
    return warnings


def _case_variant_warnings(labels: Sequence[str]) -> list[str]:
    variants: dict[str, set[str]] = defaultdict(set)
    for label in Counter(labels):
        variants[" ".join(label.casefold().split())].add(label)
    return [
        "labels that differ only in case or spacing are counted as different classes: "
        + ", ".join(quote(label) for label in sorted(group))
        for group in variants.values()
        if len(group) > 1
    ]
