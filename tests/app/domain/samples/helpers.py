"""Shared helpers for sample tests: limits, inline JSONL files, the shared datasets folder."""

from __future__ import annotations

import json
from typing import Any

from app.domain.samples.formats import SampleLimits
from tests.conftest import DATASETS as DATASETS  # re-exported: real datasets beside the repo

LIMITS = SampleLimits(max_bytes=20 * 1024 * 1024, max_rows=50_000, max_line_chars=20_000)


def jsonl(*records: Any) -> bytes:
    """A JSON Lines file: dicts are dumped, strings are taken as raw lines."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return ("\n".join(lines) + "\n").encode()
