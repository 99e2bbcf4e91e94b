"""JSON parsing that is stricter than `json.loads` and explains itself in plain words.

`json.loads` silently keeps the last of two duplicate keys and accepts NaN/Infinity; both
hide data problems, so both are errors here.
"""

from __future__ import annotations

import json
from typing import Any


class JsonProblem(Exception):
    """Why a JSON text was refused.

    `line`/`column` (1-based) are set for syntax errors and are 0 otherwise; the two
    `describe_*` methods phrase the position for a one-line record or a whole document.
    """

    def __init__(self, reason: str, *, line: int = 0, column: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.column = column

    def describe_in_line(self) -> str:
        if not self.column:
            return self.reason
        return f"not valid JSON ({self.reason} at column {self.column})"

    def describe_in_document(self) -> str:
        if not self.column:
            return self.reason
        return f"not valid JSON ({self.reason} at line {self.line}, column {self.column})"


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise JsonProblem(f"not valid JSON ({name} is not a JSON value)")


def load_json(text: str) -> Any:
    """Parse `text`, raising JsonProblem for syntax errors, duplicate keys and NaN."""
    try:
        return json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_refuse_constant,
        )
    except _DuplicateKey as exc:
        raise JsonProblem(f"duplicate key {quote(exc.key)}") from None
    except json.JSONDecodeError as exc:
        raise JsonProblem(exc.msg, line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise JsonProblem("not valid JSON (nested too deeply)") from None
    except ValueError:
        # Python refuses to convert integers over 4,300 digits (a denial-of-service guard).
        raise JsonProblem("not valid JSON (a number has more than 4,300 digits)") from None


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, as a user would say it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def quote(name: str, limit: int = 40) -> str:
    """A field name or value for a message: quoted, and cut short if it is long."""
    return f"'{name[:limit]}…'" if len(name) > limit else f"'{name}'"


def parses_as_object(text: str) -> bool:
    """Whether `text` is a JSON object (an extraction target)."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return False
    try:
        return isinstance(load_json(stripped), dict)
    except JsonProblem:
        return False
