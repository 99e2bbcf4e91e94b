"""Whatever is uploaded, parsing either succeeds or raises SampleError (a 4xx), never a 500."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.samples.errors import SampleError
from app.domain.samples.formats import SampleLimits, parse_sample
from app.domain.samples.summary import summarise

LIMITS = SampleLimits(max_bytes=64 * 1024, max_rows=200, max_line_chars=2000)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    [
        "messages",
        "role",
        "content",
        "instruction",
        "input",
        "output",
        "question",
        "answer",
        "context",
        "data",
        "paragraphs",
        "qas",
        "answers",
        "text",
        "is_impossible",
        "title",
    ]
)
records = st.dictionaries(field_names, json_values, min_size=1, max_size=4)


def parse_or_refuse(data: bytes) -> None:
    try:
        parsed = parse_sample(data, "upload", LIMITS)
    except SampleError as exc:
        assert exc.errors and all(str(error) for error in exc.errors)
        return
    assert parsed.examples
    summarise(parsed)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    parse_or_refuse(data)


@FUZZ
@given(st.text(alphabet=st.sampled_from('ab,;\t"\n\r {}[]:\\é'), max_size=200))
def test_csv_and_json_punctuation_soup(text: str) -> None:
    parse_or_refuse(("text,label\n" + text).encode())
    parse_or_refuse(text.encode())


@FUZZ
@given(st.lists(records, min_size=1, max_size=5))
def test_json_lines_of_known_field_names(lines: list[dict[str, Any]]) -> None:
    parse_or_refuse("\n".join(json.dumps(line) for line in lines).encode())
    parse_or_refuse(json.dumps({"data": lines}).encode())
