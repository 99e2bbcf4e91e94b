"""Format and task detection, and overriding them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.domain.samples.errors import SampleError
from app.domain.samples.formats import detect_format, parse_sample
from app.domain.samples.schemas import PilotTask, SampleFormat

from .helpers import LIMITS, jsonl


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"messages": []}\n', SampleFormat.chat_jsonl),
        ('\n\n{"instruction": "a", "output": "b"}\n', SampleFormat.instruction_jsonl),
        ('{"input": "a", "output": "b"}\n', SampleFormat.instruction_jsonl),
        ('{"question": "q", "answer": "a", "context": "c"}\n', SampleFormat.qa_jsonl),
        ('{"data": []}', SampleFormat.squad_json),
        ('{\n  "version": "1.1",\n  "data": []\n}', SampleFormat.squad_json),
        ("text,label\na,b\n", SampleFormat.text_label_csv),
        ('{"instruction": "a" "output": "b"}\n', None),  # broken JSONL: the parser reports it
    ],
)
def test_detect_format(text: str, expected: SampleFormat | None) -> None:
    assert detect_format(text) is expected


def test_broken_first_line_is_reported_and_later_lines_set_the_format() -> None:
    data = jsonl('{"instruction": "a" "output": "b"}', {"instruction": "a", "output": "b"})
    with pytest.raises(SampleError) as exc:
        parse_sample(data, None, LIMITS)
    assert [str(e) for e in exc.value.errors] == [
        "line 1: not valid JSON (Expecting ',' delimiter at column 21)"
    ]


def test_a_json_array_is_refused_with_the_formats_that_work() -> None:
    with pytest.raises(SampleError, match="the file is a JSON array; upload JSON Lines"):
        parse_sample(b'[{"instruction": "a", "output": "b"}]', "data.json", LIMITS)


def _instruction_file(targets: list[str]) -> bytes:
    return jsonl(*({"instruction": f"item {i}", "output": t} for i, t in enumerate(targets)))


def test_repeated_short_targets_are_classification() -> None:
    parsed = parse_sample(_instruction_file(["spam", "ham", "ham", "spam"]), None, LIMITS)
    assert parsed.task is PilotTask.classification
    assert parsed.labels == ["ham", "spam"]


def test_free_text_targets_are_generation() -> None:
    targets = ["A haiku about rain.", "A limerick.", "A sonnet.", "An ode."]
    parsed = parse_sample(_instruction_file(targets), None, LIMITS)
    assert parsed.task is PilotTask.generation
    assert parsed.labels == []


def test_qa_formats_are_qa_whatever_the_targets() -> None:
    data = jsonl(*({"question": f"q{i}", "answer": "yes"} for i in range(6)))
    assert parse_sample(data, None, LIMITS).task is PilotTask.qa


def test_snips_slots_as_json_targets_are_extraction(datasets: Path) -> None:
    folder = datasets / "snips_nlu_benchmark" / "2017-06-custom-intent-engines" / "GetWeather"
    queries = json.loads((folder / "train_GetWeather.json").read_bytes())["GetWeather"][:60]
    records = []
    for query in queries:
        text = "".join(chunk["text"] for chunk in query["data"])
        slots = {c["entity"]: c["text"] for c in query["data"] if "entity" in c}
        records.append(
            {
                "instruction": "Extract the slots as JSON.",
                "input": text,
                "output": json.dumps(slots),
            }
        )
    parsed = parse_sample(jsonl(*records), "snips.jsonl", LIMITS)
    assert parsed.task is PilotTask.extraction
    assert len(parsed.examples) == 60
    assert parsed.warnings == []


def test_mostly_json_targets_explain_why_they_are_not_extraction() -> None:
    targets = ['{"a": 1}', '{"a": 2}', '{"a": 3}', "not json"]
    parsed = parse_sample(_instruction_file(targets), None, LIMITS)
    assert parsed.task is PilotTask.generation
    assert parsed.warnings == [
        "most targets are JSON objects but 1 are not (first at line 4), so the task was set "
        "to generation, not extraction"
    ]


def test_task_override_wins_and_warns_when_the_data_disagrees() -> None:
    targets = ["A haiku about rain.", "A limerick.", "A sonnet.", "An ode."]
    parsed = parse_sample(_instruction_file(targets), None, LIMITS, task=PilotTask.extraction)
    assert parsed.task is PilotTask.extraction
    assert parsed.warnings == [
        "4 of 4 targets are not JSON objects (first at line 1); JSON validity and field F1 "
        "will count them as wrong"
    ]
    forced = parse_sample(_instruction_file(targets), None, LIMITS, task=PilotTask.classification)
    assert forced.labels == sorted(targets)
    assert forced.warnings[0].startswith("the task is classification, but the 4 targets have 4")


def test_labels_differing_only_in_case_are_flagged() -> None:
    parsed = parse_sample(b"text,label\na,Pos\nb,pos\nc,neg\nd,neg\ne,pos\nf,neg\n", None, LIMITS)
    assert parsed.task is PilotTask.classification
    assert parsed.warnings == [
        "labels that differ only in case or spacing are counted as different classes: 'Pos', 'pos'"
    ]


def test_format_override_reads_as_the_chosen_format() -> None:
    data = b"text,label\na,x\nb,x\n"
    with pytest.raises(SampleError) as exc:
        parse_sample(data, None, LIMITS, fmt=SampleFormat.qa_jsonl)
    assert str(exc.value.errors[0]) == "line 1: not valid JSON (Expecting value at column 1)"
