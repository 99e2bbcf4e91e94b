"""The one exception every sample/document parser raises for bad input.

Callers (web routes, the worker) turn it into a 4xx with the listed problems; any other
exception escaping a parser is a bug, never the user's fault.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.samples.schemas import LineError

# A file with thousands of broken lines is usually broken in one way; twenty examples are
# enough to see the pattern, and a longer list would bury it.
MAX_REPORTED_ERRORS = 20


class SampleError(Exception):
    """Bad input, with per-line problems in words a tech lead understands.

    `errors` holds at most MAX_REPORTED_ERRORS problems, followed by one "and N more" entry
    when there were more; `total` is the full count.
    """

    def __init__(self, errors: Sequence[LineError] | str, *, total: int | None = None) -> None:
        found = [LineError(line=0, message=errors)] if isinstance(errors, str) else list(errors)
        self.total = max(total or 0, len(found))
        self.errors = found[:MAX_REPORTED_ERRORS]
        hidden = self.total - len(self.errors)
        if hidden > 0:
            noun = "problem" if hidden == 1 else "problems"
            self.errors.append(LineError(line=0, message=f"… and {hidden:,} more {noun}"))
        super().__init__("\n".join(str(error) for error in self.errors))


class ErrorCollector:
    """Collects per-record problems, keeping the first few and counting the rest."""

    def __init__(self, unit: str = "line") -> None:
        self.unit = unit
        self.kept: list[LineError] = []
        self.count = 0

    def add(self, line: int, message: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_REPORTED_ERRORS:
            self.kept.append(LineError(line=line, message=message, unit=self.unit))

    def raise_if_any(self) -> None:
        if self.count:
            raise SampleError(self.kept, total=self.count)
