"""Canonical shapes of a data sample, shared by the web app (upload, summary) and the worker."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

# Groups derived from a passage start with this, so they read as such in stored splits.
PASSAGE_GROUP_PREFIX = "passage-"


class SampleFormat(StrEnum):
    chat_jsonl = "chat_jsonl"  # {"messages": [{"role", "content"}, ...]}
    instruction_jsonl = "instruction_jsonl"  # {"instruction", "input", "output"}
    text_label_csv = "text_label_csv"  # CSV/TSV with text,label columns
    qa_jsonl = "qa_jsonl"  # {"question", "answer", "context"?}
    squad_json = "squad_json"  # SQuAD-style {"data": [{"paragraphs": [...]}]}


class PilotTask(StrEnum):
    """What the pilot measures; decides the metric family."""

    classification = "classification"
    qa = "qa"
    extraction = "extraction"  # structured output: JSON validity + field F1
    generation = "generation"


class Example(BaseModel):
    """One canonical example: what goes in, what should come out, optional grounding."""

    input: str
    target: str
    instruction: str = ""  # a system/instruction text that precedes the input, if any
    context: str | None = None  # gold context passage (QA), when the format carries one
    doc_id: str | None = None  # id of the gold document, for retrieval recall@k
    line: int = 0  # 1-based line (or record) number in the uploaded file, for messages
    # Other gold answers besides `target` (SQuAD keeps several per question); exact match and
    # token F1 take the best over all of them. Left out of the JSON when empty, so a split
    # stored before they existed serialises, and hashes, as it did.
    alternatives: tuple[str, ...] = ()
    # Examples that are not independent (questions on one passage, turns of one thread):
    # the split keeps a group on one side and intervals resample whole groups. A group the
    # user names wins; without one, a question with a passage takes the passage's group.
    # In the JSON only when named (see the serializer).
    group: str | None = None

    @model_serializer(mode="wrap")
    def _without_empty_alternatives(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not self.alternatives:
            data.pop("alternatives", None)
        # Likewise a group the record would derive again (none, or its passage's) is left
        # out: it reads back the same, and splits stored before groups hash as they did.
        if self.group == (passage_group(self.context) if self.context else None):
            data.pop("group", None)
        return data

    @model_validator(mode="after")
    def _passage_group(self) -> Example:
        if self.group is None and self.context:
            self.group = passage_group(self.context)
        return self


def passage_group(context: str) -> str:
    """The group of the questions asked about one passage: a short stable hash of it.

    Case and spacing are ignored (the same normalisation as the duplicate checks), so one
    passage pasted twice with other line breaks is still one group.
    """
    normalised = " ".join(context.casefold().split())
    digest = hashlib.sha256(normalised.encode("utf-8")).hexdigest()[:12]
    return PASSAGE_GROUP_PREFIX + digest


class LineError(BaseModel):
    line: int = Field(description="1-based line or record number; 0 when it is the whole file")
    message: str
    unit: str = Field(
        default="line",
        description="What `line` counts: 'line' (JSONL), 'row' (CSV, header = row 1), 'question'",
    )

    def __str__(self) -> str:
        return f"{self.unit} {self.line}: {self.message}" if self.line else self.message


class SampleSummary(BaseModel):
    """What the upload step shows and what scoring and the pilot read."""

    format: SampleFormat
    task: PilotTask
    rows: int
    label_distribution: dict[str, int] = Field(default_factory=dict)
    mean_tokens: float
    max_tokens: int
    exact_duplicates: int
    warnings: list[str] = Field(default_factory=list)
    # How the sample's groups are split, when some group holds two or more examples.
    group_note: str | None = None


class Document(BaseModel):
    """One document of a RAG corpus, already converted to plain text."""

    doc_id: str
    title: str
    text: str
