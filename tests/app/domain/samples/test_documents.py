"""RAG corpus uploads: text, markdown, HTML and PDF; every error names its file."""

from __future__ import annotations

import io
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from app.domain.samples.documents import DocumentError, parse_documents
from app.domain.samples.errors import SampleError
from app.domain.samples.html_text import html_to_text

MB = 1024 * 1024

PAGE = b"""<!doctype html>
<html><head><title>Refund &amp; returns</title>
<style>body { color: red }</style>
<script>var secret = "<p>not content</p>"; alert(1);</script></head>
<body><h1>Refunds</h1><p>Refunds take&nbsp;5 days.</p><noscript>Enable JS</noscript>
<ul><li>Card</li><li>Bank</li></ul><script src="x.js"></script></body></html>"""


def errors_of(files: list[tuple[str, bytes]], max_documents: int = 10) -> list[str]:
    with pytest.raises(DocumentError) as exc:
        parse_documents(files, max_documents=max_documents, max_bytes=MB)
    return [str(error) for error in exc.value.errors]


def test_html_scripts_and_styles_are_stripped() -> None:
    (document,) = parse_documents([("help/refunds.html", PAGE)], max_documents=5, max_bytes=MB)
    assert document.title == "Refund & returns"
    assert document.text == "Refunds\n\nRefunds take 5 days.\n\nCard\n\nBank"
    assert document.doc_id == "refunds.html"
    assert "secret" not in document.text and "color" not in document.text


def test_html_to_text_keeps_paragraphs_apart() -> None:
    assert html_to_text("<p>a</p><p>b <i>c</i></p>") == ("", "a\n\nb c")


def test_text_and_markdown() -> None:
    docs = parse_documents(
        [("notes.txt", b"Plain notes.\n"), ("guide.md", b"Intro\n\n# Setup guide\n\nStep 1.")],
        max_documents=5,
        max_bytes=MB,
    )
    assert [(d.doc_id, d.title, d.text) for d in docs] == [
        ("notes.txt", "notes", "Plain notes."),
        ("guide.md", "Setup guide", "Intro\n\n# Setup guide\n\nStep 1."),
    ]


def test_ids_are_unique_and_never_paths() -> None:
    docs = parse_documents(
        [("../../etc/a b.txt", b"one"), ("C:\\docs\\a b.txt", b"two")],
        max_documents=5,
        max_bytes=MB,
    )
    assert [d.doc_id for d in docs] == ["a-b.txt", "a-b.txt-2"]


def test_every_bad_file_is_named() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x.txt", "x")
    assert errors_of(
        [
            ("good.txt", b"fine"),
            ("report.docx", b"PK..."),
            ("empty.md", b""),
            ("packed.txt", archive.getvalue()),
            ("blank.html", b"<html><script>only()</script></html>"),
            ("huge.txt", b"x" * (MB + 1)),
        ]
    ) == [
        "report.docx: unsupported file type '.docx'; upload .txt, .md, .html or .pdf files",
        "empty.md: the file is empty",
        "packed.txt: this file looks like a ZIP archive (Excel .xlsx and Word .docx files are "
        "ZIP archives too), not a text file",
        "blank.html: contains no text",
        "huge.txt: too large (1 MB; the limit is 1 MB per file)",
    ]


def test_error_is_a_sample_error_so_callers_return_a_4xx() -> None:
    assert issubclass(DocumentError, SampleError)


def test_too_many_documents() -> None:
    files = [(f"{i}.txt", b"x") for i in range(4)]
    assert errors_of(files, max_documents=3) == [
        "4 documents were uploaded; at most 3 more fit in the corpus"
    ]
    assert errors_of(files, max_documents=0) == [
        "the corpus already holds the maximum number of documents"
    ]


def test_pdf_without_pdftotext_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert errors_of([("manual.pdf", b"%PDF-1.4\n...")]) == [
        "manual.pdf: PDF support is not installed on this server (pdftotext from "
        "poppler-utils); upload the document as .txt, .md or .html instead"
    ]


def test_a_pdf_name_on_something_else() -> None:
    assert errors_of([("manual.pdf", b"just text")]) == [
        "manual.pdf: is named .pdf but is not a PDF file"
    ]


def _fake_pdftotext(folder: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    program = folder / "pdftotext"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script as a stand-in")
def test_pdf_text_comes_from_pdftotext(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Checks the call ("-enc UTF-8 <file> -") and that page breaks become blank lines.
    _fake_pdftotext(
        tmp_path,
        '[ "$1 $2 $4" = "-enc UTF-8 -" ] || exit 9\n'
        'head -c 5 "$3" | grep -q "%PDF-" || exit 8\n'
        "printf 'Page one\\fPage two\\n'\n",
        monkeypatch,
    )
    (document,) = parse_documents([("manual.pdf", b"%PDF-1.4\n...")], max_documents=1, max_bytes=MB)
    assert (document.title, document.text) == ("manual", "Page one\n\nPage two")


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script as a stand-in")
def test_pdftotext_failures_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pdftotext(
        tmp_path, "echo 'Syntax Error: Couldn'\"'\"'t read xref table' >&2\nexit 1\n", monkeypatch
    )
    assert errors_of([("broken.pdf", b"%PDF-1.4\n")]) == [
        "broken.pdf: the PDF could not be read (Syntax Error: Couldn't read xref table)"
    ]
    _fake_pdftotext(tmp_path, "printf '\\f\\n'\n", monkeypatch)
    assert errors_of([("scan.pdf", b"%PDF-1.4\n")]) == [
        "scan.pdf: no text could be extracted (a scanned PDF needs OCR first)"
    ]


# A minimal one-page PDF with "Hello PDF" in Helvetica; poppler rebuilds the missing xref.
MINIMAL_PDF = b"""%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R
  /Resources << /Font << /F1 5 0 R >> >> >> endobj
4 0 obj << /Length 44 >> stream
BT /F1 18 Tf 20 60 Td (Hello PDF) Tj ET
endstream endobj
5 0 obj << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> endobj
trailer << /Root 1 0 R >>
%%EOF
"""


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_real_pdftotext() -> None:
    (document,) = parse_documents([("hello.pdf", MINIMAL_PDF)], max_documents=1, max_bytes=MB)
    assert document.text == "Hello PDF"
