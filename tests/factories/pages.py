"""Reading what pages and PDFs show: their charts, a PDF's words, where screenshots go."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

ARTIFACTS = REPO / "test-artifacts"
needs_pdftotext = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) is not installed"
)


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL)


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    source = tmp_path / "report.pdf"
    source.write_bytes(pdf)
    done = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(source), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    # Line breaks in the PDF fall wherever the layout wrapped; compare word sequences.
    return " ".join(done.stdout.split())
