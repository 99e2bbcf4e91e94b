"""RAG corpus uploads: .txt, .md, .html and .pdf files → plain-text Documents.

Every file is checked before any is accepted, and every problem names its file. PDFs are
converted with poppler's `pdftotext` (Debian package poppler-utils) when it is installed;
without it a PDF gets a clear error rather than a silent empty document.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from app.domain.samples.decoding import decode_text, describe_size
from app.domain.samples.errors import SampleError
from app.domain.samples.html_text import html_to_text
from app.domain.samples.schemas import Document, LineError

TEXT_SUFFIXES = {".txt": "text", ".md": "markdown", ".markdown": "markdown"}
HTML_SUFFIXES = (".html", ".htm")
PDF_SUFFIX = ".pdf"
SUPPORTED = ".txt, .md, .html or .pdf"
PDFTOTEXT_TIMEOUT_S = 60
# PDF readers accept the header anywhere in the first kilobyte.
_PDF_HEADER_WINDOW = 1024
_MARKDOWN_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class DocumentError(SampleError):
    """One or more uploaded documents cannot be used; each message starts with the file name."""


def parse_documents(
    files: list[tuple[str, bytes]], max_documents: int, max_bytes: int
) -> list[Document]:
    """One Document per file, in order; `max_bytes` applies to each file.

    Raises DocumentError listing every bad file (none is accepted then).
    """
    check_document_count(len(files), max_documents)
    problems: list[LineError] = []
    documents: list[Document] = []
    used_ids: set[str] = set()
    for filename, data in files:
        name = display_name(filename)
        try:
            title, text = _extract(name, data, max_bytes)
        except SampleError as exc:
            problems += [LineError(line=0, message=f"{name}: {error}") for error in exc.errors]
            continue
        documents.append(
            Document(doc_id=_unique_id(name, used_ids), title=title or Path(name).stem, text=text)
        )
    if problems:
        raise DocumentError(problems)
    return documents


def check_document_count(count: int, max_documents: int) -> None:
    """DocumentError when `count` documents do not fit in the `max_documents` left. Callers
    check this before reading any file, so a batch that cannot fit costs no reading."""
    if count > max_documents:
        if max_documents <= 0:
            raise DocumentError("the corpus already holds the maximum number of documents")
        raise DocumentError(
            f"{count:,} documents were uploaded; at most {max_documents:,} more fit in the corpus"
        )


def display_name(filename: str | None) -> str:
    """The bare file name a client sent, for messages and ids; never used as a path."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:120] or "document"


def _extract(name: str, data: bytes, max_bytes: int) -> tuple[str, str]:
    """(title, text) of one file; raises SampleError with a message about this file."""
    if len(data) > max_bytes:
        size, limit = describe_size(len(data)), describe_size(max_bytes)
        raise SampleError(f"too large ({size}; the limit is {limit} per file)")
    suffix = Path(name).suffix.lower()
    if suffix == PDF_SUFFIX:
        title, text = "", _pdf_text(data)
    elif suffix in HTML_SUFFIXES:
        title, text = html_to_text(decode_text(data, max_bytes=max_bytes))
    elif suffix in TEXT_SUFFIXES:
        text = decode_text(data, max_bytes=max_bytes).strip()
        heading = _MARKDOWN_HEADING.search(text) if TEXT_SUFFIXES[suffix] == "markdown" else None
        title = heading.group(1) if heading else ""
    else:
        shown = f"'{suffix}'" if suffix else "without an extension"
        raise SampleError(f"unsupported file type {shown}; upload {SUPPORTED} files")
    if not text.strip():
        raise SampleError("contains no text")
    return title, text


def _pdf_text(data: bytes) -> str:
    if b"%PDF-" not in data[:_PDF_HEADER_WINDOW]:
        raise SampleError("is named .pdf but is not a PDF file")
    executable = shutil.which("pdftotext")
    if executable is None:
        raise SampleError(
            "PDF support is not installed on this server (pdftotext from poppler-utils); "
            "upload the document as .txt, .md or .html instead"
        )
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "document.pdf"
        source.write_bytes(data)
        try:
            result = subprocess.run(
                [executable, "-enc", "UTF-8", str(source), "-"],
                capture_output=True,
                timeout=PDFTOTEXT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SampleError(
                f"reading the PDF took longer than {PDFTOTEXT_TIMEOUT_S} s; split it into "
                "smaller files"
            ) from None
    if result.returncode != 0:
        reason = result.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = f" ({reason[-1][:200]})" if reason else ""
        raise SampleError(f"the PDF could not be read{detail}")
    # pdftotext separates pages with form feeds.
    text = result.stdout.decode("utf-8", "replace").replace("\f", "\n\n").strip()
    if not text:
        raise SampleError("no text could be extracted (a scanned PDF needs OCR first)")
    return text


def _unique_id(name: str, used: set[str]) -> str:
    base = _UNSAFE_ID_CHARS.sub("-", name).strip("-.")[:80] or "document"
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = f"{base}-{n}"
    used.add(candidate)
    return candidate
