"""Gold contexts as RAG documents: stable ids, and a corpus built from a sample's contexts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from app.domain.samples.schemas import Document, Example


def context_doc_id(context: str) -> str:
    """A stable id for a gold context passage that arrives without a document id.

    The one definition: the RAG arms (through `app.domain.chunking`) and the hand-off bundle
    use it too, so ids agree everywhere.
    """
    return "ctx-" + hashlib.sha256(context.encode("utf-8")).hexdigest()[:16]


def documents_from_contexts(examples: Iterable[Example]) -> list[Document]:
    """One document per distinct (doc_id, context) pair, in first-seen order.

    Used when a QA sample carries its own passages and no corpus was uploaded: retrieving
    the right passage is then exactly what the RAG arm must do, and recall@k can be scored
    against each example's doc_id.
    """
    documents: dict[str, Document] = {}
    for example in examples:
        if not example.context:
            continue
        doc_id = example.doc_id or context_doc_id(example.context)
        if doc_id not in documents:
            documents[doc_id] = Document(doc_id=doc_id, title="", text=example.context)
    return list(documents.values())
