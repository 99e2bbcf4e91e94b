"""JSONL chat, instruction and question-answer samples: good records and per-line errors."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.samples.errors import MAX_REPORTED_ERRORS, SampleError
from app.domain.samples.formats import SampleLimits, parse_sample
from app.domain.samples.grounding import context_doc_id
from app.domain.samples.schemas import Example, SampleFormat, passage_group

from .helpers import LIMITS, jsonl

GOOD_INSTRUCTION = {"instruction": "Translate to French", "input": "cat", "output": "chat"}
GOOD_CHAT = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"},
    ]
}


def errors_of(data: bytes, **kwargs: Any) -> list[str]:
    with pytest.raises(SampleError) as exc:
        parse_sample(data, "sample.jsonl", LIMITS, **kwargs)
    return [str(error) for error in exc.value.errors]


# --- instruction ----------------------------------------------------------------------------


def test_instruction_records() -> None:
    parsed = parse_sample(
        jsonl(GOOD_INSTRUCTION, {"instruction": "Say hi", "input": "", "output": "hi"}),
        "x.jsonl",
        LIMITS,
    )
    assert parsed.format is SampleFormat.instruction_jsonl
    assert parsed.examples == [
        Example(input="cat", target="chat", instruction="Translate to French", line=1),
        # Alpaca style: with no input, the instruction is the request itself.
        Example(input="Say hi", target="hi", instruction="", line=2),
    ]


def test_missing_output_names_line_and_field() -> None:
    records: list[Any] = [GOOD_INSTRUCTION] * 16 + [{"instruction": "a", "input": "b"}]
    assert errors_of(jsonl(*records)) == ["line 17: missing field 'output'"]


def test_invalid_json_names_line_and_column() -> None:
    data = jsonl(GOOD_INSTRUCTION, GOOD_INSTRUCTION, '{"instruction": "a" "output": "b"}')
    assert errors_of(data) == ["line 3: not valid JSON (Expecting ',' delimiter at column 21)"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"instruction": "a", "output": 3}', "'output' must be a string, got number"),
        ('{"instruction": "a", "output": null}', "'output' must be a string, got null"),
        ('{"instruction": ["a"], "output": "b"}', "'instruction' must be a string, got array"),
        ('{"instruction": "a", "output": "  "}', "'output' is empty"),
        (
            '{"instruction": "", "input": "", "output": "b"}',
            "'instruction' and 'input' are both empty",
        ),
        ('{"instruction": "a", "output": "b", "output": "c"}', "duplicate key 'output'"),
        ('{"instruction": "a", "output": NaN}', "not valid JSON (NaN is not a JSON value)"),
        ("[1, 2]", "expected a JSON object, got array"),
        ('{"input": "x"}', "missing field 'output'"),
    ],
)
def test_bad_instruction_record(line: str, message: str) -> None:
    assert errors_of(jsonl(GOOD_INSTRUCTION, line)) == [f"line 2: {message}"]


def test_blank_lines_are_skipped_but_counted() -> None:
    data = jsonl(GOOD_INSTRUCTION, "", "   ", '{"instruction": "x"}')
    assert errors_of(data) == ["line 4: missing field 'output'"]


def test_errors_are_capped_with_a_count_of_the_rest() -> None:
    data = jsonl(*([{"instruction": "a", "output": 1}] * 30))
    with pytest.raises(SampleError) as exc:
        parse_sample(data, None, LIMITS)
    assert exc.value.total == 30
    assert len(exc.value.errors) == MAX_REPORTED_ERRORS + 1
    assert str(exc.value.errors[19]) == "line 20: 'output' must be a string, got number"
    assert str(exc.value.errors[-1]) == "… and 10 more problems"


def test_row_limit_names_the_limit() -> None:
    limits = SampleLimits(max_bytes=1 << 20, max_rows=3, max_line_chars=1000)
    with pytest.raises(SampleError) as exc:
        parse_sample(jsonl(*[GOOD_INSTRUCTION] * 4), None, limits)
    assert (
        str(exc.value)
        == "the sample has more than 3 rows (the limit is 3); upload a smaller sample"
    )


def test_exactly_the_row_limit_is_accepted() -> None:
    limits = SampleLimits(max_bytes=1 << 20, max_rows=3, max_line_chars=1000)
    assert len(parse_sample(jsonl(*[GOOD_INSTRUCTION] * 3), None, limits).examples) == 3


# --- chat ------------------------------------------------------------------------------------


def test_chat_record_maps_system_user_and_final_assistant() -> None:
    parsed = parse_sample(jsonl(GOOD_CHAT), None, LIMITS)
    assert parsed.format is SampleFormat.chat_jsonl
    assert parsed.examples == [
        Example(input="Capital of France?", target="Paris", instruction="You are terse.", line=1)
    ]


def test_multi_turn_chat_keeps_earlier_turns_as_a_transcript() -> None:
    record = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "Capital of Peru?"}]},
            {"role": "assistant", "content": "Lima"},
        ]
    }
    example = parse_sample(jsonl(record), None, LIMITS).examples[0]
    assert example.input == "User: Hi\n\nAssistant: Hello!\n\nUser: Capital of Peru?"
    assert example.target == "Lima"


def _chat(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"messages": list(messages)}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_chat({"role": "user", "content": "hi"}), "'messages' has no assistant message"),
        ({"messages": "hi"}, "'messages' must be an array, got string"),
        ({"messages": []}, "'messages' is empty"),
        (
            _chat({"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}),
            "message 2 has role 'bot'; expected 'system', 'user' or 'assistant'",
        ),
        (
            _chat({"role": "user", "content": "hi"}, {"role": "assistant", "content": 4}),
            "message 2: 'content' must be a string, got number",
        ),
        (
            _chat({"role": "user"}, {"role": "assistant", "content": "x"}),
            "message 1 has no 'content'",
        ),
        (
            _chat(
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"},
                {"role": "user", "content": "and?"},
            ),
            "message 3 (user) comes after the last assistant message; the final assistant "
            "reply is the target, so it must come last",
        ),
        (
            _chat({"role": "system", "content": "s"}, {"role": "assistant", "content": "x"}),
            "'messages' has no non-empty user message before the assistant reply",
        ),
        (
            _chat({"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}),
            "the last assistant message (message 2) is empty",
        ),
    ],
)
def test_bad_chat_record(record: dict[str, Any], message: str) -> None:
    records: list[Any] = [GOOD_CHAT] * 8 + [record]
    assert errors_of(jsonl(*records)) == [f"line 9: {message}"]


# --- question-answer -----------------------------------------------------------------------


def test_qa_records_keep_context_with_a_stable_doc_id() -> None:
    parsed = parse_sample(
        jsonl(
            {"question": "Who?", "answer": "Ada", "context": "Ada wrote it."},
            {"question": "When?", "answer": "1843"},
        ),
        None,
        LIMITS,
    )
    assert parsed.format is SampleFormat.qa_jsonl
    first, second = parsed.examples
    assert (first.input, first.target, first.context) == ("Who?", "Ada", "Ada wrote it.")
    assert first.doc_id == context_doc_id("Ada wrote it.")
    assert (second.context, second.doc_id) == (None, None)


def test_context_doc_id_matches_the_worker_scheme() -> None:
    retrieval = pytest.importorskip("worker.pilots.retrieval")
    assert context_doc_id("Ada wrote it.") == retrieval.context_doc_id("Ada wrote it.")


def test_qa_missing_answer_and_wrong_context_type() -> None:
    data = jsonl(
        {"question": "Who?", "answer": "Ada"},
        {"question": "Who?"},
        {"question": "Who?", "answer": "Ada", "context": 7},
    )
    assert errors_of(data) == [
        "line 2: missing field 'answer'",
        "line 3: 'context' must be a string, got number",
    ]


# --- one format per file -------------------------------------------------------------------


def test_mixed_formats_name_the_line_and_both_formats() -> None:
    data = jsonl(GOOD_CHAT, GOOD_CHAT, GOOD_CHAT, {"question": "q", "answer": "a"})
    assert errors_of(data) == [
        "line 4: this is a question-answer record ('question'/'answer'), but line 1 is a chat "
        "record ('messages'); use one format per file"
    ]


def test_a_chosen_format_is_enforced_from_line_1() -> None:
    data = jsonl(GOOD_INSTRUCTION)
    assert errors_of(data, fmt=SampleFormat.qa_jsonl) == [
        "line 1: this is an instruction record ('instruction'/'input'/'output'), but the chosen "
        "format is a question-answer record ('question'/'answer'); use one format per file"
    ]


def test_unrecognised_record_lists_its_keys() -> None:
    data = jsonl({"prompt": "a", "completion": "b"}, GOOD_INSTRUCTION)
    assert errors_of(data) == [
        "line 1: unrecognised record with 'prompt', 'completion'; expected 'messages', or "
        "'instruction'/'input'/'output', or 'question'/'answer'/'context'"
    ]


# --- groups ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        GOOD_INSTRUCTION,
        GOOD_CHAT,
        {"question": "Who?", "answer": "Ada", "context": "Ada wrote it."},
    ],
)
def test_every_jsonl_format_reads_a_top_level_group(record: dict[str, Any]) -> None:
    parsed = parse_sample(
        jsonl(record | {"group": " doc-3 "}, record | {"group": 12}, record | {"group": ""}),
        None,
        LIMITS,
    )
    groups = [e.group for e in parsed.examples]
    assert groups[:2] == ["doc-3", "12"]
    # An empty group is none: a question falls back to its passage, anything else to itself.
    assert groups[2] == (parsed.examples[2].context and passage_group("Ada wrote it."))


def test_questions_on_the_same_passage_share_a_group() -> None:
    parsed = parse_sample(
        jsonl(
            {"question": "Who?", "answer": "Ada", "context": "Ada wrote it."},
            {"question": "What?", "answer": "it", "context": "Ada  wrote it."},
            {"question": "Why?", "answer": "fun", "context": "Bob read it."},
            {"question": "When?", "answer": "1843"},
        ),
        None,
        LIMITS,
    )
    first, second, third, fourth = parsed.examples
    assert first.group == second.group == passage_group("Ada wrote it.")
    assert third.group == passage_group("Bob read it.") != first.group
    assert fourth.group is None


@pytest.mark.parametrize(
    ("group", "got"),
    [("[1]", "array"), ('{"a": 1}', "object"), ("true", "boolean")],
)
def test_a_bad_group_names_the_line_and_field(group: str, got: str) -> None:
    data = jsonl(
        GOOD_INSTRUCTION,
        '{"instruction": "Translate", "input": "dog", "output": "chien", "group": ' + group + "}",
    )
    assert errors_of(data) == [f"line 2: 'group' must be a string or a number, got {got}"]
