"""SQuAD-style JSON: `{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}`.

One example per answerable question: input = question, target = its first answer (its other
distinct answers kept as alternatives, scored as the SQuAD evaluation does), with the
paragraph as gold context. The file is one JSON document, often a single multi-megabyte
line with long passages, so the per-line length limit does not apply; the byte limit does.
Problems are reported by JSON path (e.g. `data[3].paragraphs[0].qas[2]`) and, for a
question, by its number in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.domain.samples.errors import ErrorCollector, SampleError
from app.domain.samples.schemas import Example, LineError
from app.domain.samples.strict_json import JsonProblem, json_type, load_json


@dataclass
class SquadSample:
    examples: list[Example]
    warnings: list[str] = field(default_factory=list)


class _Problem(Exception):
    pass


def parse_squad(text: str, *, max_rows: int) -> SquadSample:
    try:
        document = load_json(text)
    except JsonProblem as problem:
        error = LineError(line=problem.line, message=problem.describe_in_line())
        raise SampleError([error]) from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise SampleError("expected a SQuAD-style JSON object with a 'data' array of articles")
    errors = ErrorCollector("question")
    examples: list[Example] = []
    doc_ids: set[str] = set()
    question_number = 0
    unanswerable = 0
    for a, article in enumerate(document["data"]):
        try:
            paragraphs = _array(article, "paragraphs", f"data[{a}]")
        except _Problem as exc:
            errors.add(0, str(exc))
            continue
        title = article.get("title") if isinstance(article.get("title"), str) else ""
        for p, paragraph in enumerate(paragraphs):
            path = f"data[{a}].paragraphs[{p}]"
            try:
                context = _string(paragraph, "context", path)
                questions = _array(paragraph, "qas", path)
            except _Problem as exc:
                errors.add(0, str(exc))
                continue
            doc_id = _unique(_paragraph_id(title, paragraph, a, p, len(paragraphs)), doc_ids)
            for q, qa in enumerate(questions):
                question_number += 1
                if question_number > max_rows:
                    raise SampleError(
                        f"the sample has more than {max_rows:,} questions (the limit is "
                        f"{max_rows:,} rows); upload a smaller sample"
                    )
                try:
                    example = _example(qa, f"{path}.qas[{q}]", context, doc_id, question_number)
                except _Problem as exc:
                    errors.add(question_number, str(exc))
                    continue
                if example is None:
                    unanswerable += 1
                else:
                    examples.append(example)
    errors.raise_if_any()
    warnings = []
    if unanswerable:
        warnings.append(
            f"{unanswerable:,} unanswerable questions (is_impossible) were left out: the "
            "pilot scores answers, and these have none"
        )
    return SquadSample(examples=examples, warnings=warnings)


def _example(qa: Any, path: str, context: str, doc_id: str, number: int) -> Example | None:
    question = _string(qa, "question", path)
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        got = json_type(impossible)
        raise _Problem(f"{path}: 'is_impossible' must be true or false, got {got}")
    if impossible:
        return None
    answers = _array(qa, "answers", path)
    if not answers:
        raise _Problem(f'{path}: no answers (mark it "is_impossible": true if it has none)')
    # The first answer is the target; the official evaluation scores against all of them,
    # so the other distinct ones stay with the example.
    texts = [_string(a, "text", f"{path}.answers[{i}]") for i, a in enumerate(answers)]
    target, *others = dict.fromkeys(texts)
    return Example(
        input=question,
        target=target,
        alternatives=tuple(others),
        context=context,
        doc_id=doc_id,
        line=number,
    )


def _paragraph_id(title: str, paragraph: dict[str, Any], a: int, p: int, count: int) -> str:
    """The gold document id: the article title, else the paragraph's own id, else indices."""
    own_id = paragraph.get("document_id")
    if title.strip():
        base = title.strip()
    elif isinstance(own_id, str | int) and not isinstance(own_id, bool) and str(own_id).strip():
        return str(own_id).strip()
    else:
        base = f"article-{a + 1}"
    # Several paragraphs of one article are separate passages to retrieve.
    return f"{base}/paragraph-{p + 1}" if count > 1 else base


def _unique(doc_id: str, seen: set[str]) -> str:
    candidate, n = doc_id, 1
    while candidate in seen:
        n += 1
        candidate = f"{doc_id}-{n}"
    seen.add(candidate)
    return candidate


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Problem(f"{path} must be an object, got {json_type(value)}")
    return value


def _array(container: Any, name: str, path: str) -> list[Any]:
    value = _object(container, path).get(name)
    if name not in container:
        raise _Problem(f"{path}: missing field '{name}'")
    if not isinstance(value, list):
        raise _Problem(f"{path}: '{name}' must be an array, got {json_type(value)}")
    return value


def _string(container: Any, name: str, path: str) -> str:
    obj = _object(container, path)
    if name not in obj:
        raise _Problem(f"{path}: missing field '{name}'")
    value = obj[name]
    if not isinstance(value, str):
        raise _Problem(f"{path}: '{name}' must be a string, got {json_type(value)}")
    if not value.strip():
        raise _Problem(f"{path}: '{name}' is empty")
    return value.strip()
