"""The upload summary: counts, lengths, duplicates and warnings."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from app.domain.samples.formats import ParsedSample, parse_sample
from app.domain.samples.schemas import Example, PilotTask, SampleFormat
from app.domain.samples.summary import summarise
from app.domain.samples.tokens import approx_tokens

from .helpers import LIMITS


def test_approx_tokens_counts_words_and_punctuation() -> None:
    assert approx_tokens("Hello, world!") == 4
    assert approx_tokens("don't stop") == 4  # don ' t stop
    assert approx_tokens("  ") == 0


def _sample(rows: list[tuple[str, str]], task: PilotTask) -> ParsedSample:
    examples = [Example(input=i, target=t, line=n) for n, (i, t) in enumerate(rows, start=2)]
    labels = sorted({t for _, t in rows}) if task is PilotTask.classification else []
    return ParsedSample(SampleFormat.text_label_csv, task, examples, labels, unit="row")


def test_counts_lengths_distribution_and_duplicates() -> None:
    rows = [
        ("Good film!", "pos"),
        ("good   FILM!", "pos"),
        ("Bad.", "neg"),
        ("Awful, truly", "neg"),
    ]
    rows += [("Fine", "pos")]
    summary = summarise(_sample(rows, PilotTask.classification))
    assert summary.rows == 5
    assert summary.label_distribution == {"pos": 3, "neg": 2}
    assert list(summary.label_distribution) == ["pos", "neg"]  # most frequent first
    lengths = [3 + 1, 3 + 1, 2 + 1, 3 + 1, 1 + 1]  # input + target approximate tokens
    assert summary.mean_tokens == round(sum(lengths) / 5, 1)
    assert summary.max_tokens == 4
    assert summary.exact_duplicates == 1  # case and spacing are ignored
    assert any(w.startswith("1 exact duplicate row(s)") for w in summary.warnings)
    assert summary.warnings[0].startswith("only 5 rows: the test split will hold about 1")


def test_imbalance_single_examples_and_pii_are_warned() -> None:
    rows = [(f"request {i}", "common") for i in range(120)]
    rows += [(f"rare {i}", "rare") for i in range(5)]
    rows += [("write to ada@example.com or call +44 20 7946 0958", "single")]
    summary = summarise(_sample(rows, PilotTask.classification))
    assert summary.warnings == [
        "1 label(s) have a single example ('single'): they can be trained on or tested, not both",
        "classes are imbalanced: 'common' has 120 examples, 'single' only 1 (120×); read "
        "macro-F1 rather than accuracy",
        "possible personal data: 1 email address, 1 phone number (values not shown); remove or "
        "mask it before sharing the data with a model provider",
    ]
    assert not any("ada@example.com" in w for w in summary.warnings)


def test_generation_has_no_label_distribution() -> None:
    rows = [(f"prompt {i}", f"answer number {i}") for i in range(150)]
    summary = summarise(_sample(rows, PilotTask.generation))
    assert summary.label_distribution == {}
    assert summary.warnings == []


def test_banking77_summary(datasets: Path) -> None:
    parsed = parse_sample((datasets / "banking77" / "train.csv").read_bytes(), None, LIMITS)
    summary = summarise(parsed)
    assert summary.rows == 10_003
    assert len(summary.label_distribution) == 77
    assert sum(summary.label_distribution.values()) == 10_003
    seen: set[tuple[str, str]] = set()
    repeats = 0
    for line in csv.DictReader(io.StringIO((datasets / "banking77" / "train.csv").read_text())):
        key = (" ".join(line["text"].lower().split()), line["category"])
        repeats += key in seen
        seen.add(key)
    assert summary.exact_duplicates == repeats == 4
    assert summary.task is PilotTask.classification
    assert 5 < summary.mean_tokens < 40


def test_passage_groups_are_mentioned() -> None:
    lines = [
        f'{{"question": "q{i}?", "answer": "a{i}", "context": "passage {i % 80}"}}'
        for i in range(312)
    ]
    summary = summarise(parse_sample("\n".join(lines).encode(), None, LIMITS))
    assert summary.group_note == (
        "312 questions in 80 passage groups: the split keeps each group on one side, and "
        "intervals resample whole groups"
    )
    assert summarise(_sample([("a", "x"), ("b", "y")], PilotTask.classification)).group_note is None
