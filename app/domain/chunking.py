"""Chunking and retrieval recall, pure text: the RAG arms' rules in one place.

The worker's retriever (`worker.pilots.retrieval`) chunks and scores with these; the hand-off
bundle generates its `rag/` scripts' chunking from this source, so an index rebuilt from the
exported documents holds the same chunks the pilot searched. The tokenizer is any object
with the Hugging Face call signature (`return_offsets_mapping`); nothing here loads one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.domain.samples.grounding import context_doc_id
from app.domain.samples.schemas import Document

__all__ = ["Chunk", "Hit", "chunk_documents", "chunk_text", "context_doc_id", "recall_at_k"]


@dataclass(frozen=True)
class Chunk:
    chunk_id: str  # "<doc_id>#<n>"
    doc_id: str
    text: str


@dataclass(frozen=True)
class Hit:
    id: str  # the id given at build time (a doc id for chunks, an example id for shots)
    text: str
    score: float  # cosine similarity
    position: int = -1  # row in the index, to map back to the item that was indexed


def chunk_text(text: str, tokenizer: Any, *, chunk_tokens: int, overlap: int) -> list[str]:
    """Windows of `chunk_tokens` tokens, `overlap` tokens shared between neighbours.

    Token counts come from the embedder's tokenizer, so every chunk fits its input limit;
    chunk text is sliced from the original string by character offsets, so no text is
    altered by a decode round trip.
    """
    if chunk_tokens < 1:
        raise ValueError("chunk_tokens must be at least 1")
    if not 0 <= overlap < chunk_tokens:
        raise ValueError("overlap must be at least 0 and smaller than chunk_tokens")
    if not text.strip():
        return []
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets: list[tuple[int, int]] = encoded["offset_mapping"]
    if len(offsets) <= chunk_tokens:
        return [text.strip()]
    step = chunk_tokens - overlap
    chunks: list[str] = []
    for start in range(0, len(offsets), step):
        window = offsets[start : start + chunk_tokens]
        chunks.append(text[window[0][0] : window[-1][1]].strip())
        if start + chunk_tokens >= len(offsets):
            break
    return chunks


def chunk_documents(
    documents: Sequence[Document], tokenizer: Any, *, chunk_tokens: int, overlap: int
) -> list[Chunk]:
    chunks: list[Chunk] = []
    for document in documents:
        body = f"{document.title}\n{document.text}" if document.title else document.text
        for n, text in enumerate(
            chunk_text(body, tokenizer, chunk_tokens=chunk_tokens, overlap=overlap)
        ):
            chunks.append(
                Chunk(chunk_id=f"{document.doc_id}#{n}", doc_id=document.doc_id, text=text)
            )
    return chunks


def recall_at_k(hits: Sequence[Sequence[Hit]], gold_ids: Sequence[str | None]) -> float | None:
    """Share of queries whose gold id is among their hits; queries without gold are skipped.

    None when no query has a gold id (recall is then unknown, not zero).
    """
    found = 0
    counted = 0
    for query_hits, gold in zip(hits, gold_ids, strict=True):
        if gold is None:
            continue
        counted += 1
        if any(hit.id == gold for hit in query_hits):
            found += 1
    return found / counted if counted else None
