"""JSON Lines samples: chat (`messages`), instruction (`instruction`/`input`/`output`) and
question-answer (`question`/`answer`/`context`) records, one JSON object per line. Any record
may name a top-level `group` (records that are not independent, see `Example.group`).

Every record is checked on its own, so one upload reports all its broken lines at once
(up to the report cap) instead of one per attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.domain.samples.errors import ErrorCollector, SampleError
from app.domain.samples.grounding import context_doc_id
from app.domain.samples.schemas import Example, SampleFormat
from app.domain.samples.strict_json import JsonProblem, json_type, load_json, quote

JSONL_FORMATS = (SampleFormat.chat_jsonl, SampleFormat.instruction_jsonl, SampleFormat.qa_jsonl)

FORMAT_NAMES: dict[SampleFormat, str] = {
    SampleFormat.chat_jsonl: "a chat record ('messages')",
    SampleFormat.instruction_jsonl: "an instruction record ('instruction'/'input'/'output')",
    SampleFormat.qa_jsonl: "a question-answer record ('question'/'answer')",
}
EXPECTED_KEYS = "'messages', or 'instruction'/'input'/'output', or 'question'/'answer'/'context'"
CHAT_ROLES = ("system", "user", "assistant")


class RecordError(Exception):
    """What is wrong with one record; the caller adds the line number."""


def record_format(record: dict[str, Any]) -> SampleFormat | None:
    """Which JSONL format a record belongs to, judged by its keys; None if none fits."""
    if "messages" in record:
        return SampleFormat.chat_jsonl
    if "instruction" in record or "output" in record:
        return SampleFormat.instruction_jsonl
    if "question" in record or "answer" in record:
        return SampleFormat.qa_jsonl
    return None


def describe_keys(record: dict[str, Any], limit: int = 6) -> str:
    keys = [quote(key) for key in list(record)[:limit]]
    more = f" and {len(record) - limit} more" if len(record) > limit else ""
    return (", ".join(keys) + more) if keys else "no keys"


def parse_jsonl(
    text: str, *, fmt: SampleFormat | None, max_rows: int
) -> tuple[SampleFormat, list[Example]]:
    """Parse every line; the first recognised record fixes the format unless `fmt` is given.

    Raises SampleError with per-line problems, or when there are more than `max_rows` records.
    """
    errors = ErrorCollector("line")
    examples: list[Example] = []
    file_format = fmt
    format_source = "the chosen format is" if fmt else ""
    records = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        records += 1
        if records > max_rows:
            raise SampleError(
                f"the sample has more than {max_rows:,} rows (the limit is {max_rows:,}); "
                "upload a smaller sample"
            )
        try:
            record = load_json(line)
        except JsonProblem as problem:
            errors.add(number, problem.describe_in_line())
            continue
        if not isinstance(record, dict):
            errors.add(number, f"expected a JSON object, got {json_type(record)}")
            continue
        kind = record_format(record)
        if file_format is None:
            if kind is None:
                errors.add(
                    number,
                    f"unrecognised record with {describe_keys(record)}; expected {EXPECTED_KEYS}",
                )
                continue
            file_format = kind
            format_source = f"line {number} is"
        elif kind is not None and kind != file_format:
            errors.add(
                number,
                f"this is {FORMAT_NAMES[kind]}, but {format_source} {FORMAT_NAMES[file_format]}; "
                "use one format per file",
            )
            continue
        try:
            example = RECORD_PARSERS[file_format](record, number)
            group = _group(record)
        except RecordError as exc:
            errors.add(number, str(exc))
            continue
        if group is not None:  # a named group wins over the one a passage gives
            example.group = group
        examples.append(example)
    errors.raise_if_any()
    if file_format is None:
        raise SampleError("the file has no records")
    return file_format, examples


# --- field access -------------------------------------------------------------------------


def _missing(record: dict[str, Any], names: list[str]) -> None:
    absent = [quote(name) for name in names if name not in record]
    if len(absent) == 1:
        raise RecordError(f"missing field {absent[0]}")
    if absent:
        raise RecordError(f"missing fields {', '.join(absent)}")


def _text(record: dict[str, Any], name: str, *, required: bool = True) -> str:
    """A string field, stripped; surrounding whitespace is never part of an example."""
    value = record.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{quote(name)} must be a string, got {json_type(value)}")
    if required and not value.strip():
        raise RecordError(f"{quote(name)} is empty")
    return value.strip()


def _group(record: dict[str, Any]) -> str | None:
    """The optional top-level 'group', the same in every format; a number is read as text."""
    value = record.get("group")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RecordError(f"'group' must be a string or a number, got {json_type(value)}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0 and 3 name the same group
    return str(value).strip() or None


# --- the three record shapes --------------------------------------------------------------


def parse_instruction_record(record: dict[str, Any], line: int) -> Example:
    required = ["output"] if "input" in record else ["instruction", "output"]
    _missing(record, required)
    instruction = _text(record, "instruction", required=False)
    user_input = _text(record, "input", required=False)
    output = _text(record, "output")
    if not instruction and not user_input:
        raise RecordError("'instruction' and 'input' are both empty")
    if not user_input:
        # Alpaca-style records put the whole request in 'instruction'; the input is what
        # dedup, leakage checks and retrieval compare, so it must carry the request.
        user_input, instruction = instruction, ""
    return Example(input=user_input, target=output, instruction=instruction, line=line)


def parse_qa_record(record: dict[str, Any], line: int) -> Example:
    _missing(record, ["question", "answer"])
    question = _text(record, "question")
    answer = _text(record, "answer")
    context = _text(record, "context", required=False) or None
    return Example(
        input=question,
        target=answer,
        context=context,
        doc_id=context_doc_id(context) if context else None,
        line=line,
    )


def parse_chat_record(record: dict[str, Any], line: int) -> Example:
    _missing(record, ["messages"])
    messages = record["messages"]
    if not isinstance(messages, list):
        raise RecordError(f"'messages' must be an array, got {json_type(messages)}")
    if not messages:
        raise RecordError("'messages' is empty")
    turns = [_chat_turn(message, position) for position, message in enumerate(messages, 1)]
    assistant_positions = [i for i, (role, _) in enumerate(turns) if role == "assistant"]
    if not assistant_positions:
        raise RecordError("'messages' has no assistant message")
    last = assistant_positions[-1]
    if last != len(turns) - 1:
        raise RecordError(
            f"message {last + 2} ({turns[last + 1][0]}) comes after the last assistant message; "
            "the final assistant reply is the target, so it must come last"
        )
    target = turns[last][1]
    if not target:
        raise RecordError(f"the last assistant message (message {last + 1}) is empty")
    earlier = turns[:last]
    system = "\n\n".join(content for role, content in earlier if role == "system" and content)
    dialogue = [(role, content) for role, content in earlier if role != "system"]
    if not any(role == "user" and content for role, content in dialogue):
        raise RecordError("'messages' has no non-empty user message before the assistant reply")
    return Example(input=_dialogue_text(dialogue), target=target, instruction=system, line=line)


def _chat_turn(message: Any, position: int) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise RecordError(f"message {position} must be an object, got {json_type(message)}")
    if "role" not in message:
        raise RecordError(f"message {position} has no 'role'")
    role = message["role"]
    if not isinstance(role, str):
        raise RecordError(f"message {position}: 'role' must be a string, got {json_type(role)}")
    if role not in CHAT_ROLES:
        raise RecordError(
            f"message {position} has role {quote(role)}; expected 'system', 'user' or 'assistant'"
        )
    if "content" not in message:
        raise RecordError(f"message {position} has no 'content'")
    return role, _chat_content(message["content"], position)


def _chat_content(content: Any, position: int) -> str:
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        # OpenAI-style content parts; only text parts mean something to a text pilot.
        texts: list[str] = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise RecordError(f"message {position}: only text content parts are supported")
            if not isinstance(part.get("text"), str):
                raise RecordError(f"message {position}: a text part has no string 'text'")
            texts.append(part["text"])
        return "".join(texts).strip()
    raise RecordError(f"message {position}: 'content' must be a string, got {json_type(content)}")


def _dialogue_text(dialogue: list[tuple[str, str]]) -> str:
    """The input for a chat example: the user's text, or a transcript for multi-turn chats.

    Earlier assistant turns are context the reply depends on; dropping them would change
    the task, so multi-turn conversations keep them, labelled.
    """
    if all(role == "user" for role, _ in dialogue):
        return "\n\n".join(content for _, content in dialogue if content)
    labels = {"user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{labels[role]}: {content}" for role, content in dialogue if content)


RECORD_PARSERS: dict[SampleFormat, Callable[[dict[str, Any], int], Example]] = {
    SampleFormat.chat_jsonl: parse_chat_record,
    SampleFormat.instruction_jsonl: parse_instruction_record,
    SampleFormat.qa_jsonl: parse_qa_record,
}
