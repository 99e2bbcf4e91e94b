"""CSV/TSV samples with a header naming a text column and a label column, and optionally
a `group` column for rows that are not independent.

Rows are numbered as in a spreadsheet (the header is row 1), because that is where a tech
lead will look; when a quoted field spans several lines the message also gives the line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from app.domain.samples.errors import ErrorCollector, SampleError
from app.domain.samples.schemas import Example, LineError
from app.domain.samples.strict_json import quote

# Accepted header names, in order of preference when a header has several of them.
TEXT_COLUMNS = ("text", "sentence", "input")
LABEL_COLUMNS = ("label", "category", "output")
# Optional: rows that are not independent (one thread, one source document) share a group.
GROUP_COLUMN = "group"
DELIMITERS = (",", "\t", ";", "|")
DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


@dataclass(frozen=True)
class Header:
    delimiter: str
    columns: list[str]
    text_index: int
    label_index: int
    group_index: int | None = None


@dataclass(frozen=True)
class Row:
    number: int  # spreadsheet row: the header is row 1
    first_line: int  # physical line where the record starts
    cells: list[str]


def parse_text_label_csv(text: str, *, max_rows: int) -> list[Example]:
    """Parse a delimited text/label file into examples (input = text, target = label)."""
    header = find_header(text.split("\n", 1)[0])
    reading = _read_rows(text, header)
    errors = ErrorCollector("row")
    examples: list[Example] = []
    data_rows = 0
    for row in reading.rows:
        if not any(cell.strip() for cell in row.cells):
            continue  # blank rows (often trailing) carry nothing
        data_rows += 1
        if data_rows > max_rows:
            raise SampleError(
                f"the sample has more than {max_rows:,} rows (the limit is {max_rows:,}); "
                "upload a smaller sample"
            )
        problem = _row_problem(row, header)
        if problem:
            errors.add(row.number, problem + _starts_at(row.number, row.first_line))
            continue
        examples.append(
            Example(
                input=row.cells[header.text_index].strip(),
                target=row.cells[header.label_index].strip(),
                line=row.number,
                group=_group(row, header),
            )
        )
    if reading.fatal:
        # Reading stopped here; rows after it were never seen.
        errors.add(reading.fatal.line, reading.fatal.message)
    errors.raise_if_any()
    if not data_rows:
        raise SampleError("the file has a header but no data rows")
    return examples


def _group(row: Row, header: Header) -> str | None:
    if header.group_index is None:
        return None
    return row.cells[header.group_index].strip() or None  # an empty cell: no group


def _starts_at(row_number: int, first_line: int) -> str:
    return f" (starts at line {first_line})" if first_line != row_number else ""


def find_header(first_line: str) -> Header:
    """Sniff the delimiter by finding the one that splits line 1 into known column names."""
    if not first_line.strip():
        raise SampleError(
            [
                LineError(
                    line=1,
                    unit="row",
                    message="is empty; the first row must be the header, e.g. text,label",
                )
            ]
        )
    for delimiter in DELIMITERS:
        cells = next(csv.reader([first_line], delimiter=delimiter))
        names = [cell.strip().lower() for cell in cells]
        text_index = _first_present(names, TEXT_COLUMNS)
        label_index = _first_present(names, LABEL_COLUMNS)
        if text_index is not None and label_index is not None and text_index != label_index:
            group_index = names.index(GROUP_COLUMN) if GROUP_COLUMN in names else None
            return Header(delimiter, names, text_index, label_index, group_index)
    found = max((next(csv.reader([first_line], delimiter=d)) for d in DELIMITERS), key=len)
    shown = ", ".join(quote(cell.strip()) for cell in found[:6])
    raise SampleError(
        [
            LineError(
                line=1,
                unit="row",
                message=(
                    "expected a header row naming a text column ('text', 'sentence' or 'input') "
                    "and a label column ('label', 'category' or 'output'), separated by commas "
                    f"or tabs; found {shown}"
                ),
            )
        ]
    )


def _first_present(names: list[str], wanted: tuple[str, ...]) -> int | None:
    for name in wanted:
        if name in names:
            return names.index(name)
    return None


@dataclass(frozen=True)
class Reading:
    rows: list[Row]
    fatal: LineError | None  # where the CSV reader gave up, if it did


def _read_rows(text: str, header: Header) -> Reading:
    if header.delimiter != "\t":
        return _read_with_quoting(text, header, quoted=True)
    # TSV files are usually written without quoting, and a verse that starts with '"' would
    # swallow the lines after it if read as quoted. Spreadsheet exports do quote fields
    # that hold tabs or newlines. Read quoted, and prefer the unquoted reading when it is
    # clean while the quoted one is broken or had to join lines.
    quoted = _read_with_quoting(text, header, quoted=True)
    if _clean(quoted, header) and not _spans_lines(quoted.rows):
        return quoted
    unquoted = _read_with_quoting(text, header, quoted=False)
    return unquoted if _clean(unquoted, header) else quoted


def _read_with_quoting(text: str, header: Header, *, quoted: bool) -> Reading:
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=header.delimiter,
        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
        strict=True,
    )
    rows: list[Row] = []
    number = 0
    previous_end = 0
    try:
        for cells in reader:
            number += 1
            if number > 1:
                rows.append(Row(number=number, first_line=previous_end + 1, cells=cells))
            previous_end = reader.line_num
    except csv.Error as exc:
        where = _starts_at(number + 1, previous_end + 1)
        message = _explain_csv_error(str(exc)) + where
        return Reading(rows, LineError(line=number + 1, unit="row", message=message))
    return Reading(rows, None)


def _explain_csv_error(reason: str) -> str:
    if "unexpected end of data" in reason:
        return "a double quote opens a field that is never closed"
    if "expected after" in reason:
        return (
            "a field starts with a double quote but goes on after the closing quote; wrap "
            'the whole field in double quotes and double any quote inside it ("")'
        )
    if "field larger than field limit" in reason:
        return "a field is extremely long; check for a double quote that is never closed"
    return f"the row cannot be read as CSV ({reason})"


def _clean(reading: Reading, header: Header) -> bool:
    return reading.fatal is None and all(
        _column_problem(row, header) is None for row in reading.rows
    )


def _spans_lines(rows: list[Row]) -> bool:
    return any(row.first_line != row.number for row in rows)


def _column_problem(row: Row, header: Header) -> str | None:
    expected = len(header.columns)
    found = len(row.cells)
    # Trailing empty cells (a stray delimiter at the end of the line) change nothing.
    if found > expected and not any(cell.strip() for cell in row.cells[expected:]):
        return None
    if found == expected or not any(cell.strip() for cell in row.cells):
        return None
    hint = ""
    if found > expected:
        name = DELIMITER_NAMES[header.delimiter]
        hint = f" (a {name} inside the text? put that field in double quotes)"
    return f"expected {expected} columns like the header, found {found}{hint}"


def _row_problem(row: Row, header: Header) -> str | None:
    problem = _column_problem(row, header)
    if problem:
        return problem
    if not row.cells[header.text_index].strip():
        return f"empty {header.columns[header.text_index]}"
    if not row.cells[header.label_index].strip():
        return f"empty {header.columns[header.label_index]}"
    return None
