"""CSV/TSV text/label samples: real datasets, header variants, quoting and row errors."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import pytest

from app.domain.samples.errors import SampleError
from app.domain.samples.formats import SampleLimits, parse_sample
from app.domain.samples.schemas import PilotTask, SampleFormat

from .helpers import LIMITS


def errors_of(data: bytes, filename: str = "sample.csv") -> list[str]:
    with pytest.raises(SampleError) as exc:
        parse_sample(data, filename, LIMITS)
    return [str(error) for error in exc.value.errors]


def test_banking77_csv(datasets: Path) -> None:
    raw = (datasets / "banking77" / "train.csv").read_bytes()
    parsed = parse_sample(raw, "train.csv", LIMITS)
    expected = list(csv.DictReader(io.StringIO(raw.decode())))
    assert parsed.format is SampleFormat.text_label_csv
    assert parsed.task is PilotTask.classification
    assert len(parsed.examples) == len(expected) == 10_003
    assert len(parsed.labels) == 77
    assert parsed.labels == sorted({row["category"] for row in expected})
    assert parsed.examples[0].input == "I am still waiting on my card?"
    assert parsed.examples[0].target == "card_arrival"
    assert parsed.examples[0].line == 2  # the header is row 1


def test_poem_sentiment_tsv_keeps_verses_that_open_with_a_quote(datasets: Path) -> None:
    # The TSV has no header and an id column; verses like `"sorry?  of course ...` open a
    # double quote that never closes, so a quoting reader would swallow the lines after it.
    raw = (datasets / "poem_sentiment" / "data" / "train.tsv").read_text()
    lines = [line.split("\t") for line in raw.splitlines()]
    parsed = parse_sample(("id\ttext\tlabel\n" + raw).encode(), "train.tsv", LIMITS)
    assert [(e.input, e.target) for e in parsed.examples] == [
        (verse.strip(), label) for _, verse, label in lines
    ]
    assert parsed.task is PilotTask.classification
    assert parsed.labels == ["-1", "0", "1", "2"]
    opening_quote = next(e for e in parsed.examples if e.input.startswith('"sorry?'))
    assert opening_quote.line == 1 + 1 + next(
        i for i, (_, verse, _) in enumerate(lines) if verse.startswith('"sorry?')
    )


def test_quoted_newlines_and_commas() -> None:
    data = b'text,label\n"first line\nsecond line",a\n"x, y and ""z""",b\nplain,a\nmore,b\n'
    parsed = parse_sample(data, None, LIMITS)
    assert [(e.input, e.target, e.line) for e in parsed.examples] == [
        ("first line\nsecond line", "a", 2),
        ('x, y and "z"', "b", 3),
        ("plain", "a", 4),
        ("more", "b", 5),
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"text,label\ngood film,pos\nbad film,neg\n",
        b"text,category\ngood film,pos\nbad film,neg\n",
        b"sentence,label\ngood film,pos\nbad film,neg\n",
        b"Text , Label\ngood film,pos\nbad film,neg\n",
        b"id,label,text,notes\n1,pos,good film,\n2,neg,bad film,seen twice\n",
    ],
)
def test_accepted_headers(data: bytes) -> None:
    parsed = parse_sample(data, None, LIMITS)
    assert [(e.input, e.target) for e in parsed.examples] == [
        ("good film", "pos"),
        ("bad film", "neg"),
    ]


def test_input_output_csv_with_free_text_targets_is_generation() -> None:
    data = b"input,output\nhello,bonjour\ncat,chat\ndog,chien\nthanks,merci\n"
    parsed = parse_sample(data, None, LIMITS)
    assert parsed.task is PilotTask.generation
    assert parsed.labels == []


@pytest.mark.parametrize("delimiter", ["\t", ";", "|"])
def test_delimiter_is_sniffed_from_the_header(delimiter: str) -> None:
    data = f"text{delimiter}label\nnice, really{delimiter}pos\nawful{delimiter}neg\n".encode()
    parsed = parse_sample(data, None, LIMITS)
    assert [(e.input, e.target) for e in parsed.examples] == [
        ("nice, really", "pos"),
        ("awful", "neg"),
    ]


def test_empty_label_and_text_name_the_row() -> None:
    data = b"text,label\na,x\nb,y\nc,x\nd,\n,y\n"
    assert errors_of(data) == ["row 5: empty label", "row 6: empty text"]


def test_row_after_a_multiline_field_also_gives_its_line() -> None:
    data = b'text,label\n"two\nlines",a\nlost,\n'
    assert errors_of(data) == ["row 3: empty label (starts at line 4)"]


def test_extra_columns_hint_at_an_unquoted_delimiter() -> None:
    data = b"text,label\nfine,x\nhello, world,y\nalso fine,z,\n"
    assert errors_of(data) == [
        "row 3: expected 2 columns like the header, found 3 (a comma inside the text? put that "
        "field in double quotes)"
    ]


def test_unclosed_quote() -> None:
    data = b'text,label\nfine,x\n"never closed,y\nz,w\n'
    assert errors_of(data) == ["row 3: a double quote opens a field that is never closed"]


def test_missing_header_lists_what_was_found() -> None:
    assert errors_of(b"utterance,intent\nhello,greet\n") == [
        "row 1: expected a header row naming a text column ('text', 'sentence' or 'input') and "
        "a label column ('label', 'category' or 'output'), separated by commas or tabs; found "
        "'utterance', 'intent'"
    ]


def test_a_blank_first_row_is_not_a_header() -> None:
    assert errors_of(b"\ntext,label\na,b\n") == [
        "row 1: is empty; the first row must be the header, e.g. text,label"
    ]


def test_header_without_rows() -> None:
    assert errors_of(b"text,label\n\n") == ["the file has a header but no data rows"]


def test_row_limit_counts_data_rows_only() -> None:
    limits = SampleLimits(max_bytes=1 << 20, max_rows=2, max_line_chars=1000)
    parse_sample(b"text,label\na,x\nb,y\n\n", None, limits)
    with pytest.raises(SampleError, match=r"more than 2 rows \(the limit is 2\)"):
        parse_sample(b"text,label\na,x\nb,y\nc,z\n", None, limits)


def test_content_decides_the_format_not_the_file_name() -> None:
    parsed = parse_sample(b"text,label\na,x\nb,x\n", "looks-like.jsonl", LIMITS)
    assert parsed.format is SampleFormat.text_label_csv


def test_a_json_name_on_unreadable_text_is_mentioned() -> None:
    assert errors_of(b"hello there\n", "data.jsonl")[0] == (
        "the file is named .jsonl but does not start with a JSON object, so it was read as CSV/TSV:"
    )


def test_labels_are_counted_exactly() -> None:
    rows = [(f"t{i}", label) for i, label in enumerate("aabbbc" * 3)]
    data = ("text,label\n" + "\n".join(f"{t},{lab}" for t, lab in rows)).encode()
    parsed = parse_sample(data, None, LIMITS)
    assert Counter(e.target for e in parsed.examples) == {"a": 6, "b": 9, "c": 3}


def test_a_group_column_groups_rows_and_an_empty_cell_means_none() -> None:
    data = b"text,label,Group\na,x, doc-1 \nb,y,doc-1\nc,x,\nd,y,7\n"
    parsed = parse_sample(data, None, LIMITS)
    assert [e.group for e in parsed.examples] == ["doc-1", "doc-1", None, "7"]


def test_a_tsv_group_column() -> None:
    parsed = parse_sample(b"group\ttext\tlabel\ng1\ta\tx\ng2\tb\ty\n", None, LIMITS)
    assert [(e.input, e.group) for e in parsed.examples] == [("a", "g1"), ("b", "g2")]


def test_without_a_group_column_rows_have_no_group() -> None:
    parsed = parse_sample(b"text,label\na,x\nb,y\n", None, LIMITS)
    assert [e.group for e in parsed.examples] == [None, None]
