"""Bytes → text: encodings, binaries and archives in disguise, size and line limits."""

from __future__ import annotations

import gzip
import io
import zipfile

import pytest

from app.domain.samples.decoding import check_line_lengths, decode_text, describe_size
from app.domain.samples.errors import SampleError
from app.domain.samples.formats import SampleLimits, parse_sample

from .helpers import LIMITS, jsonl

MB = 1024 * 1024


def messages(exc: pytest.ExceptionInfo[SampleError]) -> list[str]:
    return [str(error) for error in exc.value.errors]


def test_utf8_with_bom_is_read_and_the_bom_dropped() -> None:
    parsed = parse_sample(b"\xef\xbb\xbftext,label\ncaf\xc3\xa9,drink\n", "s.csv", LIMITS)
    assert parsed.examples[0].input == "café"
    assert parsed.examples[0].target == "drink"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_bom(codec: str) -> None:
    body = "text,label\ncafé ☕,drink\n"
    data = body.encode(codec)
    if codec == "utf-16-be":
        data = b"\xfe\xff" + data  # Python adds no BOM for an explicit byte order
    assert decode_text(data, max_bytes=MB) == body


def test_latin1_is_accepted_when_it_reads_as_clean_text() -> None:
    parsed = parse_sample("text,label\nJosé,name\n".encode("latin-1"), None, LIMITS)
    assert parsed.examples[0].input == "José"


def test_windows_1252_quotes_are_refused_naming_the_line_and_byte() -> None:
    with pytest.raises(SampleError) as exc:
        decode_text(b"text,label\nok,x\n\x93quoted\x94,y\n", max_bytes=MB)
    assert messages(exc) == [
        "line 3: byte 0x93 is not valid UTF-8, and the file is not plain Latin-1 text either; "
        "save it as UTF-8 text and upload it again"
    ]


def test_damaged_utf8_is_not_reread_as_latin1() -> None:
    data = "text,label\ncafé,x\n".encode() + b"bad \xff byte,y\n"
    with pytest.raises(SampleError) as exc:
        decode_text(data, max_bytes=MB)
    assert messages(exc)[0].startswith("line 3: byte 0xff is not valid UTF-8, although the rest")


def test_nul_bytes_are_refused_with_their_line() -> None:
    with pytest.raises(SampleError) as exc:
        decode_text(b"text,label\nfine,x\nbro\x00ken,y\n", max_bytes=MB)
    assert messages(exc)[0].startswith("line 3: contains a NUL byte (byte 21)")


def test_utf16_without_bom_is_explained() -> None:
    with pytest.raises(SampleError) as exc:
        decode_text("text,label\n".encode("utf-16-le"), max_bytes=MB)
    assert "UTF-16 text without a byte-order mark" in messages(exc)[0]


def test_zip_renamed_as_jsonl_is_refused_as_an_archive() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.jsonl", jsonl({"instruction": "a", "output": "b"}))
    with pytest.raises(SampleError) as exc:
        parse_sample(buffer.getvalue(), "data.jsonl", LIMITS)
    assert messages(exc) == [
        "this file looks like a ZIP archive (Excel .xlsx and Word .docx files are ZIP archives "
        "too), not a text file"
    ]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        # mtime=0: the same bytes, so the same test id, in every pytest-xdist process.
        (gzip.compress(b'{"a": 1}\n', mtime=0), "a gzip-compressed file"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "a PNG image"),
    ],
)
def test_other_binaries_are_named(data: bytes, kind: str) -> None:
    with pytest.raises(SampleError) as exc:
        decode_text(data, max_bytes=MB)
    assert messages(exc) == [f"this file looks like {kind}, not a text file"]


def test_control_character_soup_is_not_text() -> None:
    with pytest.raises(SampleError) as exc:
        decode_text(bytes(range(1, 32)) * 20, max_bytes=MB)
    assert "does not look like text" in messages(exc)[0]


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "the file is empty"), (b" \n\t\n", "the file contains only whitespace")],
)
def test_empty_files(data: bytes, message: str) -> None:
    with pytest.raises(SampleError) as exc:
        decode_text(data, max_bytes=MB)
    assert messages(exc) == [message]


def test_byte_limit_names_both_sizes() -> None:
    with pytest.raises(SampleError) as exc:
        decode_text(b"x" * (3 * MB + MB // 2), max_bytes=2 * MB)
    assert messages(exc) == ["the file is 3.5 MB; the limit is 2 MB"]


def test_crlf_and_cr_newlines_are_normalised() -> None:
    assert decode_text(b"a\r\nb\rc\n", max_bytes=MB) == "a\nb\nc\n"


def test_line_length_limit_names_the_line() -> None:
    with pytest.raises(SampleError) as exc:
        check_line_lengths("short\nshort\n" + "x" * 101 + "\nshort", max_line_chars=100)
    assert messages(exc) == ["line 3: 101 characters long; the limit is 100 per line"]


def test_a_10_mb_single_line_is_refused_quickly_by_line_length() -> None:
    line = b'{"instruction": "' + b"a" * (10 * MB) + b'", "output": "x"}'
    limits = SampleLimits(max_bytes=20 * MB, max_rows=10, max_line_chars=20_000)
    with pytest.raises(SampleError) as exc:
        parse_sample(line, "big.jsonl", limits)
    assert messages(exc) == [f"line 1: {len(line):,} characters long; the limit is 20,000 per line"]


def test_describe_size() -> None:
    assert [describe_size(n) for n in (12, 2048, 1536, 20 * MB)] == [
        "12 bytes",
        "2 KB",
        "1.5 KB",
        "20 MB",
    ]
