"""Parse an uploaded data sample into canonical examples: the one entry point is `parse_sample`.

Formats (see docs/pilots.md, "Formats"): JSONL chat, JSONL instruction, CSV/TSV text/label,
JSONL question/answer and SQuAD-style JSON. The format is detected from the content; the
file name is used only to phrase a better error, never to decide how to read or store data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from app.domain.samples.csv_format import parse_text_label_csv
from app.domain.samples.decoding import check_line_lengths, decode_text
from app.domain.samples.errors import SampleError
from app.domain.samples.jsonl_formats import parse_jsonl, record_format
from app.domain.samples.schemas import Example, LineError, PilotTask, SampleFormat
from app.domain.samples.squad_format import parse_squad
from app.domain.samples.task_detection import detect_task, task_warnings

__all__ = ["ParsedSample", "SampleError", "SampleLimits", "detect_format", "parse_sample"]

RECORD_UNITS = {SampleFormat.text_label_csv: "row", SampleFormat.squad_json: "question"}


@dataclass(frozen=True)
class SampleLimits:
    """Upload limits, from configuration; a violation is a SampleError (a 4xx), never a 500."""

    max_bytes: int
    max_rows: int
    max_line_chars: int


@dataclass
class ParsedSample:
    """A valid sample: canonical examples plus what was detected about them."""

    format: SampleFormat
    task: PilotTask
    examples: list[Example]
    labels: list[str] = field(default_factory=list)  # sorted, classification only
    warnings: list[str] = field(default_factory=list)  # parsing notes the user should see
    unit: str = "line"  # what Example.line counts: "line", "row" (CSV) or "question" (SQuAD)


def parse_sample(
    data: bytes,
    filename: str | None,
    limits: SampleLimits,
    fmt: SampleFormat | None = None,
    task: PilotTask | None = None,
) -> ParsedSample:
    """Decode, detect (or take) the format, parse every record and detect (or take) the task.

    Raises SampleError with per-line problems for anything the user must fix.
    """
    text = decode_text(data, max_bytes=limits.max_bytes)
    detected = fmt or detect_format(text)
    if detected is not SampleFormat.squad_json:
        check_line_lengths(text, max_line_chars=limits.max_line_chars)
    sample_format, examples, warnings = _parse_records(text, detected, fmt, limits, filename)
    if not examples:
        raise SampleError("the file has no usable examples")
    unit = RECORD_UNITS.get(sample_format, "line")
    chosen_task = task or detect_task(sample_format, examples)
    warnings += task_warnings(chosen_task, examples, chosen=task is not None, unit=unit)
    labels = (
        sorted({example.target for example in examples})
        if chosen_task is PilotTask.classification
        else []
    )
    return ParsedSample(
        format=sample_format,
        task=chosen_task,
        examples=examples,
        labels=labels,
        warnings=warnings,
        unit=unit,
    )


def detect_format(text: str) -> SampleFormat | None:
    """The format the content is in, judged from its first non-blank line.

    None means JSON Lines whose first line is broken: the JSONL parser then takes the kind
    from the first readable record and reports the broken lines by number.
    """
    first = next((line.strip() for line in text.split("\n") if line.strip()), "")
    if first.startswith("["):
        raise SampleError(
            "the file is a JSON array; upload JSON Lines (one JSON object per line) or "
            "SQuAD-style JSON (an object with a 'data' array)"
        )
    if not first.startswith("{"):
        return SampleFormat.text_label_csv
    try:
        # Lenient on purpose: duplicate keys or NaN are reported by the parser, with the
        # line; here only the shape matters.
        record = json.loads(first)
    except json.JSONDecodeError as problem:
        # A record that stops mid-object is the start of a JSON document spread over many
        # lines (pretty-printed SQuAD); an error inside the line is a broken JSONL record.
        ends_early = problem.colno > len(first)
        return SampleFormat.squad_json if ends_early else None
    except (RecursionError, ValueError):  # too deep, or an integer over 4,300 digits
        return None
    if not isinstance(record, dict):
        return None
    kind = record_format(record)
    if kind is None and "data" in record:
        return SampleFormat.squad_json
    return kind


def _parse_records(
    text: str,
    detected: SampleFormat | None,
    chosen: SampleFormat | None,
    limits: SampleLimits,
    filename: str | None,
) -> tuple[SampleFormat, list[Example], list[str]]:
    if detected is SampleFormat.squad_json:
        squad = parse_squad(text, max_rows=limits.max_rows)
        return detected, squad.examples, squad.warnings
    if detected is SampleFormat.text_label_csv:
        try:
            examples = parse_text_label_csv(text, max_rows=limits.max_rows)
        except SampleError as exc:
            raise _with_name_hint(exc, filename) from None
        return detected, examples, []
    # A format the user chose is enforced on every line; otherwise the first readable
    # record sets it and later lines must agree.
    found, examples = parse_jsonl(text, fmt=chosen, max_rows=limits.max_rows)
    return found, examples, []


def _with_name_hint(error: SampleError, filename: str | None) -> SampleError:
    """Say so when a file named as JSON was not JSON; the name never decides the format."""
    suffix = (filename or "").rsplit(".", 1)[-1].lower() if "." in (filename or "") else ""
    if suffix not in ("json", "jsonl"):
        return error
    note = LineError(
        line=0,
        message=(
            f"the file is named .{suffix} but does not start with a JSON object, "
            "so it was read as CSV/TSV:"
        ),
    )
    return SampleError([note, *error.errors], total=error.total + 1)
