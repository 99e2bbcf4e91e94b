"""Canonical shapes of a data sample, shared by the web app (upload, summary) and the worker."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


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


class Document(BaseModel):
    """One document of a RAG corpus, already converted to plain text."""

    doc_id: str
    title: str
    text: str
