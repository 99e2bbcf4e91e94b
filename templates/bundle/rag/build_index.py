"""Rebuild the pilot's FAISS index from a folder of documents (or from the training examples).

Chunking is the pilot's own (pilot_chunking.py, generated from PathPilot's source): windows
of `chunk_tokens` embedder tokens with `overlap` shared, sliced from the original text.
Embeddings are L2-normalised, so inner product is cosine similarity; up to `ann_threshold`
vectors the index is exact (IndexFlatIP), above it HNSW. Settings come from rag_config.json.

    python rag/build_index.py                         # rag/documents -> rag/index
    python rag/build_index.py --docs ~/our-docs --out ~/our-index

A document's id is its entry in the folder's .doc_ids.json (the pilot's ids, which may not be
file names), else its file name without the last suffix; .txt, .md and .markdown files are
read as they are, .html/.htm files as their visible text, .pdf files through `pdftotext`.
With "mode": "examples" in rag_config.json the index holds the training inputs instead.
Progress (stage, step/total, ETA) goes to stderr; stdout gets one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import faiss
import numpy as np
from pilot_chunking import Document, chunk_documents
from sentence_transformers import SentenceTransformer

HERE = Path(__file__).resolve().parent
TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
EMBED_BATCH = 64
sys.path.insert(0, str(HERE.parent / "serve"))

from client import Progress  # noqa: E402  (serve/client.py: one progress format for all)


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def read_document(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return path.read_text(encoding="utf-8", errors="replace")
    if suffix in (".html", ".htm"):
        parser = _VisibleText()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parser.parts)
    if suffix == ".pdf":
        done = subprocess.run(
            ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, timeout=60
        )
        return done.stdout if done.returncode == 0 else None
    return None


def read_folder(folder: Path) -> list[Document]:
    """Every readable file; its id from the folder's .doc_ids.json, else its name's stem."""
    ids_file = folder / ".doc_ids.json"
    ids = json.loads(ids_file.read_text(encoding="utf-8")) if ids_file.is_file() else {}
    documents = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        text = read_document(path)
        if text and text.strip():
            name = path.relative_to(folder).as_posix()
            documents.append(Document(doc_id=ids.get(name, path.stem), title="", text=text))
    return documents


def embed(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    progress = Progress("embedding", len(texts))
    batches = []
    for start in range(0, len(texts), EMBED_BATCH):
        batch = texts[start : start + EMBED_BATCH]
        batches.append(
            model.encode(
                batch,
                batch_size=EMBED_BATCH,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        )
        progress.step(len(batch))
    if not batches:
        return np.zeros((0, model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(batches), dtype=np.float32)


def build(vectors: np.ndarray, config: dict) -> faiss.Index:
    dimension = vectors.shape[1]
    if len(vectors) > config["ann_threshold"]:
        index = faiss.IndexHNSWFlat(dimension, config["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config["ef_construction"]
    else:
        index = faiss.IndexFlatIP(dimension)
    if len(vectors):
        index.add(vectors)
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=HERE / "documents")
    parser.add_argument("--examples", type=Path, default=HERE.parent / "data" / "train.jsonl")
    parser.add_argument("--out", type=Path, default=HERE / "index")
    parser.add_argument("--config", type=Path, default=HERE / "rag_config.json")
    parser.add_argument("--embedder", help="a sentence-transformers name or local directory")
    args = parser.parse_args(argv)

    config = json.loads(args.config.read_text(encoding="utf-8"))
    model = SentenceTransformer(args.embedder or config["embedder"], device="cpu")
    if config["mode"] == "documents":
        print(f"[reading] documents under {args.docs}", file=sys.stderr, flush=True)
        documents = read_folder(args.docs)
        if not documents:
            parser.error(f"no readable documents under {args.docs}")
        print(f"[chunking] {len(documents)} documents", file=sys.stderr, flush=True)
        chunks = chunk_documents(
            documents,
            model.tokenizer,
            chunk_tokens=config["chunk_tokens"],
            overlap=config["overlap"],
        )
        items = [{"id": chunk.doc_id, "text": chunk.text} for chunk in chunks]
    else:
        rows = [json.loads(line) for line in args.examples.read_text().splitlines() if line]
        items = [{"id": str(n), "text": row["input"]} for n, row in enumerate(rows)]
    vectors = embed(model, [item["text"] for item in items])
    print(f"[indexing] {len(items)} vectors", file=sys.stderr, flush=True)
    index = build(vectors, config)
    args.out.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(args.out / "index.faiss"))
    with (args.out / "items.jsonl").open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    kind = "hnsw" if len(items) > config["ann_threshold"] else "flat"
    print(json.dumps({"mode": config["mode"], "items": len(items), "index": kind}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
