"""Dense retrieval for the RAG arms: token-aware chunks, MiniLM embeddings, FAISS.

Embeddings are L2-normalised, so inner product equals cosine similarity. Below
`ann_threshold` vectors the index is exact (`IndexFlatIP`): brute force over a pilot-sized
corpus is fast and has perfect recall. Above it, `IndexHNSWFlat` with the inner-product
metric trades a little recall for sub-linear search, which is what a production corpus
would use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from app.domain.samples.schemas import Document


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


def context_doc_id(context: str) -> str:
    """A stable id for a gold context passage that arrives without a document id."""
    return "ctx-" + hashlib.sha256(context.encode("utf-8")).hexdigest()[:16]


def embed(embedder: Any, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Normalised float32 embeddings, one row per text."""
    if not texts:
        dimension = int(embedder.get_sentence_embedding_dimension())
        return np.zeros((0, dimension), dtype=np.float32)
    vectors = embedder.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


@dataclass
class Retriever:
    index: Any  # faiss.Index
    ids: list[str]
    texts: list[str]
    embedder: Any
    kind: str  # "flat" (exact) or "hnsw" (approximate)

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        ids: Sequence[str],
        embedder: Any,
        *,
        ann_threshold: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        batch_size: int = 64,
    ) -> Retriever:
        """Embed `texts` and index them; `ids` may repeat (several chunks of one document)."""
        if len(texts) != len(ids):
            raise ValueError("texts and ids must have the same length")
        vectors = embed(embedder, texts, batch_size=batch_size)
        dimension = vectors.shape[1]
        index: Any
        if len(texts) > ann_threshold:
            index = faiss.IndexHNSWFlat(dimension, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            kind = "hnsw"
        else:
            index = faiss.IndexFlatIP(dimension)
            kind = "flat"
        if len(texts):
            index.add(vectors)
        return cls(index=index, ids=list(ids), texts=list(texts), embedder=embedder, kind=kind)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-`k` hits per query, best first."""
        if not queries:
            return []
        k = min(k, len(self.ids))
        if k <= 0:
            return [[] for _ in queries]
        if self.kind == "hnsw":
            # efSearch bounds the candidate list; it must be at least k to return k hits.
            self.index.hnsw.efSearch = max(64, 2 * k)
        vectors = embed(self.embedder, queries)
        scores, positions = self.index.search(vectors, k)
        results: list[list[Hit]] = []
        for row_scores, row_positions in zip(scores, positions, strict=True):
            hits = [
                Hit(id=self.ids[p], text=self.texts[p], score=float(s), position=int(p))
                for s, p in zip(row_scores, row_positions, strict=True)
                if p >= 0  # HNSW pads with -1 when it finds fewer than k
            ]
            results.append(hits)
        return results


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
