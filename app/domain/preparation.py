"""From a parsed sample to the one split every pilot arm sees (docs/pilots.md, "Preparing
the split").

Order matters: exact duplicates are dropped before splitting (so no example can sit in both
train and test), the split is made once (each group of examples on one side), caps are
applied after stratified sampling, and leakage is measured on the final parts. Everything
found is returned as a warning in plain words; nothing is changed without saying so.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from app.domain.records import PilotData
from app.domain.samples.balance import label_balance_warnings
from app.domain.samples.dedup import duplicate_warnings, find_duplicates, find_leakage
from app.domain.samples.errors import SampleError
from app.domain.samples.formats import ParsedSample
from app.domain.samples.grounding import documents_from_contexts
from app.domain.samples.groups import group_index
from app.domain.samples.pii import pii_warning, scan_examples
from app.domain.samples.schemas import Document, Example, PilotTask
from app.domain.samples.split import Split, cap_positions, split_positions

MAX_LISTED_LEAKS = 3


def prepare_pilot_data(
    parsed: ParsedSample,
    documents: list[Document],
    *,
    seed: int,
    max_train: int,
    max_test: int,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
) -> tuple[PilotData, list[str]]:
    """Deduplicate, split (seeded, stratified by label), cap, and check the data.

    `validation_fraction` is a share of the training part. Raises SampleError when the
    sample is too small to hold out a test set.
    """
    _check_settings(max_train, max_test, test_fraction, validation_fraction)
    warnings = list(parsed.warnings)
    report = find_duplicates(parsed.examples)
    warnings += duplicate_warnings(report, parsed.examples, parsed.unit)
    dropped = set(report.exact)
    examples = [e for position, e in enumerate(parsed.examples) if position not in dropped]
    if dropped:
        warnings.append(
            f"{len(dropped):,} exact duplicate(s) were dropped before splitting; "
            f"{len(examples):,} examples remain"
        )
    if len(examples) < 2:
        raise SampleError(
            f"the sample has {len(examples)} distinct example(s); a pilot needs at least 2 "
            "(one to learn from, one to test on)"
        )

    classification = parsed.task is PilotTask.classification
    labels = [example.target for example in examples] if classification else None
    groups = group_index(examples).tolist()
    split = split_positions(
        labels,
        len(examples),
        seed=seed,
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        groups=groups,
    )
    if not split.test and len(set(groups)) == 1:
        raise SampleError(
            f"no example could be held out for testing: all {len(examples):,} examples are in "
            "one group, and a group is never split between training and testing; a pilot needs "
            "at least two groups"
        )
    if not split.test:
        raise SampleError("no example could be held out for testing: every label occurs once")
    split, cap_notes = _apply_caps(
        split,
        labels,
        seed=seed,
        max_train=max_train,
        max_test=max_test,
        validation_ratio=validation_fraction / (1 - validation_fraction),
    )
    warnings += cap_notes
    train = [examples[p] for p in split.train]
    validation = [examples[p] for p in split.validation]
    test = [examples[p] for p in split.test]

    warnings += _leakage_warnings(train + validation, test, parsed.unit)
    if labels is not None:
        warnings += label_balance_warnings(Counter(labels))
        warnings += _untested_label_warnings(labels, test)
    pii = pii_warning(scan_examples(examples))
    if pii:
        warnings.append(pii)

    corpus = list(documents)
    if not corpus:
        corpus = documents_from_contexts(examples)
        if corpus:
            warnings.append(
                f"no documents were uploaded: the RAG corpus is the {len(corpus):,} distinct "
                "passages in the sample, so retrieval is tested on finding the right one"
            )
    data = PilotData(
        task=parsed.task,
        train=train,
        validation=validation,
        test=test,
        documents=corpus,
        labels=sorted(set(parsed.labels)) if classification else [],
    )
    return data, warnings


def _check_settings(
    max_train: int, max_test: int, test_fraction: float, validation_fraction: float
) -> None:
    # Programming or configuration errors, not the user's data: a ValueError, not a 4xx.
    if max_train < 1 or max_test < 1:
        raise ValueError("max_train and max_test must be at least 1")
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be between 0 and 1")
    if not 0 <= validation_fraction < 1:
        raise ValueError("validation_fraction must be at least 0 and below 1")


def _apply_caps(
    split: Split,
    labels: Sequence[str] | None,
    *,
    seed: int,
    max_train: int,
    max_test: int,
    validation_ratio: float,
) -> tuple[Split, list[str]]:
    # Validation stays in proportion to the (capped) train part: it is there for early
    # stopping, and a validation pass should not cost more than the training it guards.
    max_validation = max(round(max_train * validation_ratio), 1 if split.validation else 0)
    parts = {"train": split.train, "validation": split.validation, "test": split.test}
    caps = {"train": max_train, "validation": max_validation, "test": max_test}
    notes: list[str] = []
    capped: dict[str, list[int]] = {}
    for name, positions in parts.items():
        capped[name] = cap_positions(positions, labels, caps[name], seed=seed, purpose=name)
        if len(capped[name]) < len(positions):
            notes.append(f"{name} capped at {len(capped[name]):,} of {len(positions):,} examples")
    return Split(capped["train"], capped["validation"], capped["test"]), notes


def _leakage_warnings(train: list[Example], test: list[Example], unit: str) -> list[str]:
    leakage = find_leakage(train, test)
    if not leakage.leaked:
        return []
    shown = ", ".join(
        f"{test[t].line} ~ {train[r].line}" for t, r in leakage.examples[:MAX_LISTED_LEAKS]
    )
    return [
        f"train/test leakage: {leakage.leaked:,} of {len(test):,} test inputs also appear in "
        f"train ({len(leakage.exact):,} exact, {len(leakage.near):,} near-duplicate; "
        f"test ~ train {unit}s: {shown}); scores on them may be inflated"
    ]


def _untested_label_warnings(labels: Sequence[str], test: list[Example]) -> list[str]:
    counts = Counter(labels)
    tested = {example.target for example in test}
    missing = [label for label, count in counts.items() if count >= 2 and label not in tested]
    if not missing:
        return []
    return [
        f"{len(missing):,} of {len(counts):,} labels have no test example: the test split is "
        "smaller than the number of labels; per-label results cover only the others"
    ]


def split_as_json(data: PilotData) -> dict[str, Any]:
    """The split as plain JSON data: what the preparation stores for every arm task to read
    back (`split_from_json`), and what the dataset hash is taken over."""
    return {
        "task": str(data.task),
        "labels": list(data.labels),
        "train": [example.model_dump(mode="json") for example in data.train],
        "validation": [example.model_dump(mode="json") for example in data.validation],
        "test": [example.model_dump(mode="json") for example in data.test],
        "documents": [document.model_dump(mode="json") for document in data.documents],
    }


def split_from_json(stored: dict[str, Any]) -> PilotData:
    """The split `split_as_json` stored, as the same PilotData (same hash).

    Named groups are stored; a passage's group is derived again from the context, so a split
    stored before groups existed reads back with its questions grouped by passage."""
    return PilotData(
        task=PilotTask(stored["task"]),
        labels=list(stored["labels"]),
        train=[Example.model_validate(item) for item in stored["train"]],
        validation=[Example.model_validate(item) for item in stored["validation"]],
        test=[Example.model_validate(item) for item in stored["test"]],
        documents=[Document.model_validate(item) for item in stored["documents"]],
    )


def dataset_hash(data: PilotData) -> str:
    """sha256 over the split as canonical JSON: the same data and split give the same hash.

    The manifest's `dataset_sha256`; the hand-off bundle checks the split it reproduces
    against it, and every arm task checks the stored split it reads back."""
    encoded = json.dumps(split_as_json(data), sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()
