"""Uploaded bytes → text, defensively.

Refuses what is not text (archives, PDFs, images, NUL bytes) with a message that says what
the file looks like, so a renamed .zip or an Excel file gets an actionable answer instead of
a page of JSON errors. Encodings: UTF-8 (with or without BOM), UTF-16/UTF-32 with a BOM, and
Latin-1 only when the bytes are clearly not UTF-8 and read as clean text.
"""

from __future__ import annotations

import codecs
import re

from app.domain.samples.errors import ErrorCollector, SampleError
from app.domain.samples.schemas import LineError

# Signatures of common non-text files, checked before decoding. Formats that always carry
# NUL bytes early (tar, SQLite, executables) are caught by the NUL check instead; only
# signatures that cannot plausibly start a real text file are listed.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (Excel .xlsx and Word .docx files are ZIP archives too)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"%PDF-", "a PDF document"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", "a Zstandard-compressed file"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office file (.xls or .doc)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x7fELF", "an executable program"),
)
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")

# Checked longest first: the UTF-32-LE BOM begins with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)

# Control characters that never occur in real text (tab, newlines and form feed excluded).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
# A few stray escape codes (copied terminal output) are tolerated; more means binary.
_MAX_CONTROL_SHARE = 0.01
# A well-formed UTF-8 multi-byte sequence: if a file that fails UTF-8 contains these, it is
# UTF-8 with some damaged bytes, and reading it as Latin-1 would garble every accent.
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}")

_SAVE_AS_UTF8 = "save it as UTF-8 text and upload it again"


def describe_size(size: int) -> str:
    """Human-readable byte count: '512 bytes', '3.5 KB', '20 MB'."""
    for unit, scale in (("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def decode_text(data: bytes, *, max_bytes: int) -> str:
    """Decode an uploaded text file; newlines come back normalised to '\\n'.

    Raises SampleError when the file is too large, empty, binary or undecodable.
    """
    if len(data) > max_bytes:
        raise SampleError(
            f"the file is {describe_size(len(data))}; the limit is {describe_size(max_bytes)}"
        )
    if not data:
        raise SampleError("the file is empty")
    _refuse_known_binary(data)
    text = _decode(data)
    if not text.strip():
        raise SampleError("the file contains only whitespace")
    # One newline convention, so line numbers match what any editor shows.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_line_lengths(text: str, *, max_line_chars: int) -> None:
    """Raise SampleError naming every line (up to the report cap) longer than the limit."""
    errors = ErrorCollector()
    for number, line in enumerate(text.split("\n"), start=1):
        if len(line) > max_line_chars:
            errors.add(
                number,
                f"{len(line):,} characters long; the limit is {max_line_chars:,} per line",
            )
    errors.raise_if_any()


def _refuse_known_binary(data: bytes) -> None:
    for signature, description in _SIGNATURES:
        if data.startswith(signature):
            raise SampleError(f"this file looks like {description}, not a text file")
    if _BZIP2.match(data):
        raise SampleError("this file looks like a bzip2-compressed file, not a text file")


def _decode(data: bytes) -> str:
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                raise SampleError(
                    f"the file starts with a {name} byte-order mark but is not valid {name} "
                    f"(at byte {exc.start:,}); {_SAVE_AS_UTF8}"
                ) from None
            _require_text(text)
            return text
    nul = data.find(b"\x00")
    if nul >= 0:
        message = (
            f"contains a NUL byte (byte {nul:,}). This looks like a binary file, or UTF-16 "
            f"text without a byte-order mark; {_SAVE_AS_UTF8}"
        )
        raise SampleError([LineError(line=_line_of(data, nul), message=message)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _decode_latin1_or_refuse(data, exc)
    _require_text(text)
    return text


def _decode_latin1_or_refuse(data: bytes, utf8_error: UnicodeDecodeError) -> str:
    line = _line_of(data, utf8_error.start)
    where = f"byte 0x{data[utf8_error.start]:02x} is not valid UTF-8"
    if _UTF8_MULTIBYTE.search(data):
        message = f"{where}, although the rest looks like UTF-8 (mixed encodings?); "
        raise SampleError([LineError(line=line, message=message + _SAVE_AS_UTF8)])
    text = data.decode("latin-1")
    if _CONTROL.search(text):
        # Latin-1 decodes any byte, so only perfectly clean text is accepted as Latin-1;
        # bytes 0x80–0x9f are Windows-1252 punctuation or binary, never Latin-1 text.
        message = f"{where}, and the file is not plain Latin-1 text either; {_SAVE_AS_UTF8}"
        raise SampleError([LineError(line=line, message=message)])
    return text


def _require_text(text: str) -> None:
    controls = len(_CONTROL.findall(text))
    if controls > _MAX_CONTROL_SHARE * len(text):
        raise SampleError(
            f"this file does not look like text ({controls:,} control characters); "
            "upload a plain-text file"
        )


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1
