"""The pilot data pipeline: dedup, one seeded stratified split, caps, and data warnings."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from app.domain.preparation import (
    dataset_hash,
    prepare_pilot_data,
    split_as_json,
    split_from_json,
)
from app.domain.records import PilotData
from app.domain.samples.dedup import normalise
from app.domain.samples.errors import SampleError
from app.domain.samples.formats import ParsedSample, parse_sample
from app.domain.samples.schemas import Document, Example, PilotTask, SampleFormat, passage_group
from tests.app.domain.samples.helpers import LIMITS


def classification(rows: list[tuple[str, str]]) -> ParsedSample:
    examples = [Example(input=t, target=label, line=n) for n, (t, label) in enumerate(rows, 2)]
    labels = sorted({label for _, label in rows})
    return ParsedSample(
        SampleFormat.text_label_csv, PilotTask.classification, examples, labels, unit="row"
    )


def keys(examples: list[Example]) -> list[tuple[str, str]]:
    return [(e.input, e.target) for e in examples]


@pytest.fixture(scope="module")
def banking77(datasets: Path) -> ParsedSample:
    raw = (datasets / "banking77" / "train.csv").read_bytes()
    return parse_sample(raw, "train.csv", LIMITS)


def test_banking77_is_capped_after_stratified_sampling(banking77: ParsedSample) -> None:
    data, warnings = prepare_pilot_data(banking77, [], seed=13, max_train=480, max_test=120)
    assert isinstance(data, PilotData)
    assert (len(data.train), len(data.validation), len(data.test)) == (480, 53, 120)
    # 10,003 rows - 4 duplicates = 9,999; 2,000 test; 800 validation from the 7,999 left.
    assert warnings[-3:] == [
        "train capped at 480 of 7,199 examples",
        "validation capped at 53 of 800 examples",
        "test capped at 120 of 2,000 examples",
    ]
    assert "4 exact duplicate(s) were dropped before splitting; 9,999 examples remain" in warnings
    assert data.labels == banking77.labels and len(data.labels) == 77
    assert {e.target for e in data.test} == set(data.labels)  # every label is tested
    assert {e.target for e in data.train} == set(data.labels)
    largest = Counter(e.target for e in data.train).most_common(1)[0][1]
    assert largest <= 12  # ~480 / 77 per label, not one label's block of the file
    parts = [keys(data.train), keys(data.validation), keys(data.test)]
    assert sum(map(len, parts)) == len(set().union(*map(set, parts)))  # disjoint


def test_same_seed_same_data_other_seed_other_data(banking77: ParsedSample) -> None:
    first, _ = prepare_pilot_data(banking77, [], seed=1, max_train=100, max_test=50)
    again, _ = prepare_pilot_data(banking77, [], seed=1, max_train=100, max_test=50)
    other, _ = prepare_pilot_data(banking77, [], seed=2, max_train=100, max_test=50)
    assert keys(first.test) == keys(again.test) and keys(first.train) == keys(again.train)
    assert keys(first.test) != keys(other.test)


def test_exact_duplicates_are_dropped_with_a_warning_and_never_split_apart() -> None:
    rows = [(f"question number {i}", "ab"[i % 2]) for i in range(40)]
    rows += [("Question number 3", "b"), ("question  number 5", "b"), ("question number 7", "b")]
    data, warnings = prepare_pilot_data(classification(rows), [], seed=0, max_train=99, max_test=99)
    assert warnings[:2] == [
        "3 exact duplicate(s) (same input and target, ignoring case and spacing), e.g. rows 5 "
        "and 42, 7 and 43, 9 and 44",
        "3 exact duplicate(s) were dropped before splitting; 40 examples remain",
    ]
    everything = data.train + data.validation + data.test
    assert len(everything) == 40
    assert len({normalise(e.input) for e in everything}) == 40


def test_train_test_leakage_is_counted_not_fixed() -> None:
    body = "my transfer to the savings account has been pending for three days now number"
    rows = []
    for i in range(30):  # 30 pairs of near-identical inputs
        rows += [(f"{body} {i}", "a" if i % 2 else "b"), (f"{body} {i} ok", "a" if i % 2 else "b")]
    data, warnings = prepare_pilot_data(classification(rows), [], seed=4, max_train=99, max_test=99)
    seen = {e.input.removesuffix(" ok") for e in data.train + data.validation}
    leaked = sum(e.input.removesuffix(" ok") in seen for e in data.test)
    assert leaked > 0
    leakage = [w for w in warnings if w.startswith("train/test leakage")]
    assert len(leakage) == 1
    assert leakage[0].startswith(
        f"train/test leakage: {leaked} of {len(data.test)} test inputs also appear in train "
        f"(0 exact, {leaked} near-duplicate;"
    )
    assert len(data.train) + len(data.validation) + len(data.test) == 60  # nothing removed


def test_class_balance_and_single_example_labels() -> None:
    rows = [(f"common request {i}", "common") for i in range(60)]
    rows += [(f"rare request {i}", "rare") for i in range(4)] + [("one of a kind", "single")]
    data, warnings = prepare_pilot_data(classification(rows), [], seed=0, max_train=99, max_test=99)
    assert "one of a kind" in {e.input for e in data.train}
    assert (
        "1 label(s) have a single example ('single'): they can be trained on or tested, not both"
        in warnings
    )
    assert any(w.startswith("classes are imbalanced: 'common' has 60 examples") for w in warnings)


def test_labels_without_a_test_example_are_reported() -> None:
    rows = [(f"text {label} {i}", label) for label in "abcdefghij" for i in range(2)]
    data, warnings = prepare_pilot_data(classification(rows), [], seed=0, max_train=99, max_test=99)
    assert len(data.test) == 4
    assert (
        "6 of 10 labels have no test example: the test split is smaller than the number of "
        "labels; per-label results cover only the others"
    ) in warnings


def test_pii_is_counted_in_warnings_without_values() -> None:
    rows = [(f"request {i}", "ab"[i % 2]) for i in range(20)] + [("mail me: x@y.org", "a")]
    _, warnings = prepare_pilot_data(classification(rows), [], seed=0, max_train=99, max_test=99)
    assert "possible personal data: 1 email address (values not shown)" in " ".join(warnings)
    assert "x@y.org" not in " ".join(warnings)


def _qa_sample() -> ParsedSample:
    lines = [
        json.dumps({"question": f"q{i}?", "answer": f"a{i}", "context": f"passage {i % 3}"})
        for i in range(12)
    ]
    return parse_sample("\n".join(lines).encode(), None, LIMITS)


def test_qa_contexts_become_the_rag_corpus_when_no_documents_are_uploaded() -> None:
    data, warnings = prepare_pilot_data(_qa_sample(), [], seed=0, max_train=99, max_test=99)
    assert data.task is PilotTask.qa and data.labels == []
    assert sorted(d.text for d in data.documents) == ["passage 0", "passage 1", "passage 2"]
    assert {e.doc_id for e in data.test} <= {d.doc_id for d in data.documents}
    assert warnings[-1].startswith("no documents were uploaded: the RAG corpus is the 3 distinct")


def _stored_example(number: int) -> dict[str, object]:
    """An example as splits were stored before examples carried alternative answers."""
    return {
        "input": f"question {number}",
        "target": f"answer {number}",
        "instruction": "",
        "context": "passage",
        "doc_id": "d",
        "line": number,
    }


def test_a_split_stored_without_alternative_answers_loads_with_its_hash_unchanged() -> None:
    stored = {
        "task": "qa",
        "labels": [],
        "train": [_stored_example(1)],
        "validation": [],
        "test": [_stored_example(2)],
        "documents": [{"doc_id": "d", "title": "", "text": "passage"}],
    }
    data = split_from_json(stored)
    assert data.test[0].alternatives == ()
    # No alternatives, no key: the split serialises, and hashes, as it was stored.
    again = split_as_json(data)
    for part in ("train", "test"):
        (example,) = again[part]
        assert "alternatives" not in example
        assert example | stored[part][0] == example  # every stored field, unchanged


def test_alternative_answers_are_stored_with_the_split_and_hashed() -> None:
    data, _ = prepare_pilot_data(_qa_sample(), [], seed=0, max_train=99, max_test=99)
    without = dataset_hash(data)
    data.test[0] = data.test[0].model_copy(update={"alternatives": ("other answer",)})
    stored = json.loads(json.dumps(split_as_json(data)))  # as the database returns it
    assert split_from_json(stored).test[0].alternatives == ("other answer",)
    assert split_from_json(stored).test[1:] == data.test[1:]
    assert dataset_hash(split_from_json(stored)) == dataset_hash(data) != without


def test_uploaded_documents_are_used_as_given() -> None:
    docs = [Document(doc_id="handbook", title="Handbook", text="All about passages.")]
    data, _ = prepare_pilot_data(_qa_sample(), docs, seed=0, max_train=99, max_test=99)
    assert data.documents == docs


def test_generation_is_split_without_labels() -> None:
    examples = [Example(input=f"prompt {i}", target=f"answer {i}") for i in range(50)]
    parsed = ParsedSample(SampleFormat.instruction_jsonl, PilotTask.generation, examples)
    data, warnings = prepare_pilot_data(
        parsed, [], seed=0, max_train=99, max_test=99, validation_fraction=0.0
    )
    assert (len(data.train), len(data.validation), len(data.test)) == (40, 0, 10)
    assert warnings == []


def test_too_small_or_misconfigured() -> None:
    one = classification([("only", "a"), ("ONLY", "a")])  # a duplicate leaves one example
    with pytest.raises(SampleError, match="1 distinct example"):
        prepare_pilot_data(one, [], seed=0, max_train=9, max_test=9)
    two = classification([("x", "a"), ("y", "b")])
    with pytest.raises(ValueError, match="test_fraction"):
        prepare_pilot_data(two, [], seed=0, max_train=9, max_test=9, test_fraction=1.0)
    with pytest.raises(ValueError, match="max_train"):
        prepare_pilot_data(two, [], seed=0, max_train=0, max_test=9)


# --- groups ----------------------------------------------------------------------------------


def _passages_sample(questions: int = 60, passages: int = 12) -> ParsedSample:
    lines = [
        json.dumps({"question": f"q{i}?", "answer": f"a{i}", "context": f"passage {i % passages}"})
        for i in range(questions)
    ]
    return parse_sample("\n".join(lines).encode(), None, LIMITS)


def test_questions_on_one_passage_stay_on_one_side_of_the_split() -> None:
    data, warnings = prepare_pilot_data(_passages_sample(), [], seed=0, max_train=99, max_test=99)
    trained = {e.group for e in data.train + data.validation}
    tested = {e.group for e in data.test}
    assert tested and not tested & trained
    assert len(data.train) + len(data.validation) + len(data.test) == 60
    assert not [w for w in warnings if w.startswith("train/test leakage")]


def test_named_groups_are_kept_whole_and_stored_with_the_split() -> None:
    rows = [(f"message {i}", "ab"[i % 2]) for i in range(40)]
    parsed = classification(rows)
    for position, example in enumerate(parsed.examples):
        example.group = f"thread {position // 4}"
    data, _ = prepare_pilot_data(parsed, [], seed=3, max_train=99, max_test=99)
    assert not {e.group for e in data.test} & {e.group for e in data.train + data.validation}
    stored = split_as_json(data)
    assert [item["group"] for item in stored["test"]] == [e.group for e in data.test]
    again = split_from_json(stored)
    assert again.test == data.test and again.train == data.train
    assert dataset_hash(again) == dataset_hash(data)


def test_a_sample_in_one_group_cannot_be_split() -> None:
    parsed = _passages_sample(questions=5, passages=1)
    with pytest.raises(SampleError, match="all 5 examples are in one group"):
        prepare_pilot_data(parsed, [], seed=0, max_train=9, max_test=9)


def test_a_sample_without_shared_passages_splits_and_hashes_as_before() -> None:
    # Recorded before groups existed: every question has its own passage, so no grouping.
    data, _ = prepare_pilot_data(
        _passages_sample(questions=12, passages=12), [], seed=0, max_train=99, max_test=99
    )
    assert [e.line for e in data.test] == [4, 11] and [e.line for e in data.validation] == [5]
    assert dataset_hash(data) == "ab03bc42fc84aad4b5036bcde0015b0867f90a78a7098e22c1a4ba148c5a906b"
    # A passage's group is not written out: the reader derives it again from the context.
    assert all("group" not in item for item in split_as_json(data)["test"])


def test_a_split_stored_before_groups_existed_loads_with_passage_groups() -> None:
    old = {
        "task": "qa",
        "labels": [],
        "train": [{"input": "q1?", "target": "a1", "context": "passage 1", "doc_id": "d1"}],
        "validation": [],
        "test": [
            {"input": "q2?", "target": "a2", "instruction": "", "context": None, "line": 3},
            {"input": "q3?", "target": "a3", "context": "passage 1", "doc_id": "d1", "line": 4},
        ],
        "documents": [],
    }
    data = split_from_json(old)
    assert [e.group for e in data.test] == [None, passage_group("passage 1")]
    assert data.train[0].group == data.test[1].group
    assert split_from_json(split_as_json(data)) == data
