"""Dense retrieval for the RAG arms: token-aware chunks, MiniLM embeddings, FAISS.

Embeddings are L2-normalised, so inner product equals cosine similarity. Below
`ann_threshold` vectors the index is exact (`IndexFlatIP`): brute force over a pilot-sized
corpus is fast and has perfect recall. Above it, `IndexHNSWFlat` with the inner-product
metric trades a little recall for sub-linear search, which is what a production corpus
would use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from app.domain.chunking import (
    Chunk,
    Hit,
    chunk_documents,
    chunk_text,
    context_doc_id,
    recall_at_k,
)

__all__ = [
    "Chunk",
    "Hit",
    "Retriever",
    "chunk_documents",
    "chunk_text",
    "context_doc_id",
    "embed",
    "recall_at_k",
]


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
