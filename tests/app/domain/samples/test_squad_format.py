"""SQuAD-style JSON samples: the real covid_qa file and small inline documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.domain.samples.errors import SampleError
from app.domain.samples.formats import SampleLimits, parse_sample
from app.domain.samples.schemas import PilotTask, SampleFormat, passage_group

from .helpers import LIMITS


def squad(*articles: dict[str, Any], indent: int | None = None) -> bytes:
    return json.dumps({"version": "v2.0", "data": list(articles)}, indent=indent).encode()


def qa(question: str, *answers: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": question[:8],
        "question": question,
        "answers": [{"text": a} for a in answers],
    } | extra


ARTICLE = {
    "title": "Normans",
    "paragraphs": [
        {
            "context": "The Normans gave their name to Normandy.",
            "qas": [qa("Who gave their name to Normandy?", "The Normans", "Normans")],
        },
        {
            "context": "Rollo was the first ruler.",
            "qas": [
                qa("Who was the first ruler?", "Rollo"),
                qa("Who was the last ruler?", is_impossible=True),
            ],
        },
    ],
}


def errors_of(data: bytes) -> list[str]:
    with pytest.raises(SampleError) as exc:
        parse_sample(data, "squad.json", LIMITS)
    return [str(error) for error in exc.value.errors]


def test_covid_qa(datasets: Path) -> None:
    raw = (datasets / "covid_qa" / "200423_covidQA.json").read_bytes()
    source = json.loads(raw)
    paragraphs = [p for article in source["data"] for p in article["paragraphs"]]
    parsed = parse_sample(raw, "200423_covidQA.json", LIMITS)
    assert parsed.format is SampleFormat.squad_json
    assert parsed.task is PilotTask.qa
    assert len(parsed.examples) == sum(len(p["qas"]) for p in paragraphs) == 1380
    first, first_qa = parsed.examples[0], paragraphs[0]["qas"][0]
    assert first.input == first_qa["question"]
    assert first.target == first_qa["answers"][0]["text"].strip()
    assert first.context == paragraphs[0]["context"].strip()
    # No titles in this file: each paper's own document_id identifies the gold passage.
    assert first.doc_id == str(paragraphs[0]["document_id"])
    assert len({e.doc_id for e in parsed.examples}) == 98
    assert parsed.unit == "question"


def test_examples_targets_doc_ids_and_unanswerable_questions() -> None:
    parsed = parse_sample(squad(ARTICLE), None, LIMITS)
    assert [(e.input, e.target, e.doc_id, e.line) for e in parsed.examples] == [
        ("Who gave their name to Normandy?", "The Normans", "Normans/paragraph-1", 1),
        ("Who was the first ruler?", "Rollo", "Normans/paragraph-2", 2),
    ]
    assert parsed.examples[1].context == "Rollo was the first ruler."
    assert parsed.warnings == [
        "1 unanswerable questions (is_impossible) were left out: the pilot scores answers, "
        "and these have none"
    ]


def test_every_distinct_gold_answer_is_kept() -> None:
    # The official SQuAD evaluation scores against all gold answers; the first is the
    # target (what training and the report show), the other distinct ones are alternatives.
    article = {
        "title": "Normans",
        "paragraphs": [
            {
                "context": "Rollo, also Rollo the Walker, was the first ruler.",
                "qas": [qa("Who ruled first?", " Rollo ", "Rollo", "Rollo the Walker", "rollo")],
            }
        ],
    }
    (example,) = parse_sample(squad(article), None, LIMITS).examples
    assert example.target == "Rollo"
    assert example.alternatives == ("Rollo the Walker", "rollo")  # repeats are kept once
    first, second = parse_sample(squad(ARTICLE), None, LIMITS).examples
    assert first.alternatives == ("Normans",) and second.alternatives == ()


def test_a_broken_alternative_answer_is_reported_by_its_path() -> None:
    article = {
        "title": "T",
        "paragraphs": [
            {"context": "ctx", "qas": [qa("q?") | {"answers": [{"text": "a"}, {"text": 5}]}]}
        ],
    }
    assert errors_of(squad(article)) == [
        "question 1: data[0].paragraphs[0].qas[0].answers[1]: 'text' must be a string, got number"
    ]


def test_untitled_articles_fall_back_to_indices_and_stay_unique() -> None:
    untitled = {"paragraphs": [{"context": "c", "qas": [qa("q?", "a")]}]}
    same_title = {"title": "T", "paragraphs": [{"context": "c2", "qas": [qa("q2?", "a")]}]}
    parsed = parse_sample(squad(untitled, same_title, same_title), None, LIMITS)
    assert [e.doc_id for e in parsed.examples] == ["article-1", "T", "T-2"]


def test_pretty_printed_squad_is_detected() -> None:
    parsed = parse_sample(squad(ARTICLE, indent=2), None, LIMITS)
    assert parsed.format is SampleFormat.squad_json
    assert len(parsed.examples) == 2


def test_syntax_error_in_a_multi_line_document_names_its_line() -> None:
    data = b'{\n  "data": [\n    {"title": "T" "paragraphs": []}\n  ]\n}\n'
    assert errors_of(data) == ["line 3: not valid JSON (Expecting ',' delimiter at column 19)"]


def test_structural_problems_name_the_question_and_path() -> None:
    article = {
        "title": "T",
        "paragraphs": [
            {
                "context": "ctx",
                "qas": [
                    qa("fine?", "yes"),
                    qa("no answers?"),
                    {"answers": [{"text": "x"}]},
                    qa("bad answer?") | {"answers": [{"text": 5}]},
                ],
            },
            {"qas": []},
        ],
    }
    assert errors_of(squad(article)) == [
        'question 2: data[0].paragraphs[0].qas[1]: no answers (mark it "is_impossible": true '
        "if it has none)",
        "question 3: data[0].paragraphs[0].qas[2]: missing field 'question'",
        "question 4: data[0].paragraphs[0].qas[3].answers[0]: 'text' must be a string, got number",
        "data[0].paragraphs[1]: missing field 'context'",
    ]


def test_not_squad_shaped() -> None:
    assert errors_of(b'{"data": {"paragraphs": []}}') == [
        "expected a SQuAD-style JSON object with a 'data' array of articles"
    ]


def test_duplicate_keys_are_reported() -> None:
    data = b'{"data": [{"title": "a", "title": "b", "paragraphs": []}]}'
    assert errors_of(data) == ["duplicate key 'title'"]


def test_question_limit() -> None:
    limits = SampleLimits(max_bytes=1 << 20, max_rows=1, max_line_chars=10)
    with pytest.raises(SampleError, match=r"more than 1 questions \(the limit is 1 rows\)"):
        parse_sample(squad(ARTICLE), None, limits)


def test_long_single_line_documents_are_not_held_to_the_line_limit() -> None:
    limits = SampleLimits(max_bytes=1 << 20, max_rows=10, max_line_chars=50)
    assert len(parse_sample(squad(ARTICLE), None, limits).examples) == 2


def test_questions_are_grouped_by_their_paragraph() -> None:
    article = {
        "title": "Normans",
        "paragraphs": [
            {"context": "The Normans came.", "qas": [qa("Who came?", "Normans"), qa("Came?", "y")]},
            {"context": "Rollo ruled.", "qas": [qa("Who ruled?", "Rollo")]},
        ],
    }
    parsed = parse_sample(squad(article), None, LIMITS)
    first, second, third = (e.group for e in parsed.examples)
    assert first == second == passage_group("The Normans came.")
    assert third == passage_group("Rollo ruled.") != first


def test_covid_qa_questions_fall_into_passage_groups(datasets: Path) -> None:
    raw = (datasets / "covid_qa" / "200423_covidQA.json").read_bytes()
    source = json.loads(raw)
    contexts = {p["context"].strip() for a in source["data"] for p in a["paragraphs"]}
    parsed = parse_sample(raw, "200423_covidQA.json", LIMITS)
    assert len({e.group for e in parsed.examples}) == len(contexts)
    assert all(e.group == passage_group(e.context or "") for e in parsed.examples)
