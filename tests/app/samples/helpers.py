"""Shared helpers for sample tests: limits, inline JSONL files, the shared datasets folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.samples.formats import SampleLimits

# Real public datasets live beside the repository (see ../shared/datasets/README.md).
DATASETS = Path(__file__).resolve().parents[3] / ".." / "shared" / "datasets"

LIMITS = SampleLimits(max_bytes=20 * 1024 * 1024, max_rows=50_000, max_line_chars=20_000)


def jsonl(*records: Any) -> bytes:
    """A JSON Lines file: dicts are dumped, strings are taken as raw lines."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return ("\n".join(lines) + "\n").encode()
