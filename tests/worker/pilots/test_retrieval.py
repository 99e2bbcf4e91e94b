"""Chunking with the embedder's tokenizer; FAISS retrieval with the real MiniLM."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.samples.schemas import Document
from worker.pilots.retrieval import (
    Hit,
    Retriever,
    chunk_documents,
    chunk_text,
    context_doc_id,
    recall_at_k,
)

CORPUS = [
    Document(
        doc_id="refunds",
        title="Refund policy",
        text="Customers can return any item within 30 days of delivery for a full refund. "
        "Refunds are paid to the original payment method within five working days.",
    ),
    Document(
        doc_id="shipping",
        title="Shipping",
        text="Orders ship from our Rotterdam warehouse. Standard delivery takes three to "
        "five days; express delivery arrives the next working day.",
    ),
    Document(
        doc_id="security",
        title="Account security",
        text="Enable two-factor authentication in your profile settings. We never ask for "
        "your password by phone or email.",
    ),
]


def test_chunks_respect_the_token_budget_and_overlap(embedder: Any) -> None:
    tokenizer = embedder.tokenizer
    text = " ".join(f"sentence{i} about topic{i % 7}." for i in range(120))
    chunks = chunk_text(text, tokenizer, chunk_tokens=50, overlap=10)
    assert len(chunks) > 2
    lengths = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert max(lengths) <= 50
    # neighbours share text (the overlap), and the chunks cover the whole text
    assert chunks[0].split()[-1] in chunks[1]
    assert chunks[0].startswith("sentence0") and chunks[-1].endswith("sentence119 about topic0.")
    assert chunk_text("short text", tokenizer, chunk_tokens=50, overlap=10) == ["short text"]
    assert chunk_text("   ", tokenizer, chunk_tokens=50, overlap=10) == []
    with pytest.raises(ValueError):
        chunk_text(text, tokenizer, chunk_tokens=10, overlap=10)


def test_chunks_of_documents_keep_their_document_id(embedder: Any) -> None:
    chunks = chunk_documents(CORPUS, embedder.tokenizer, chunk_tokens=16, overlap=4)
    assert {c.doc_id for c in chunks} == {"refunds", "shipping", "security"}
    assert all(c.chunk_id.startswith(f"{c.doc_id}#") for c in chunks)


@pytest.mark.parametrize("ann_threshold", [10_000, 0])  # exact, then HNSW
def test_gold_document_is_retrieved(embedder: Any, ann_threshold: int) -> None:
    chunks = chunk_documents(CORPUS, embedder.tokenizer, chunk_tokens=64, overlap=8)
    retriever = Retriever.build(
        [c.text for c in chunks], [c.doc_id for c in chunks], embedder, ann_threshold=ann_threshold
    )
    assert retriever.kind == ("hnsw" if ann_threshold == 0 else "flat")
    queries = [
        "How long do I have to send something back and get my money?",
        "When will my parcel arrive?",
        "Will you phone me to ask for my password?",
    ]
    hits = retriever.search(queries, k=1)
    assert [h[0].id for h in hits] == ["refunds", "shipping", "security"]
    assert all(-1.0 <= h[0].score <= 1.0 for h in hits)
    assert recall_at_k(hits, ["refunds", "shipping", "security"]) == 1.0
    top3 = retriever.search(queries[:1], k=3)[0]
    assert [h.score for h in top3] == sorted((h.score for h in top3), reverse=True)


def test_recall_at_k_skips_queries_without_gold() -> None:
    hits = [[Hit("a", "", 0.9)], [Hit("b", "", 0.8)], [Hit("c", "", 0.1)]]
    assert recall_at_k(hits, ["a", "x", None]) == 0.5
    assert recall_at_k(hits, [None, None, None]) is None


def test_context_ids_are_stable() -> None:
    assert context_doc_id("passage") == context_doc_id("passage") != context_doc_id("other")
