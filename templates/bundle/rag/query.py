"""Retrieve the top-k passages for each query and, given an endpoint, answer with them.

The prompt is the pilot's RAG prompt (rag_config.json "prompt"): passages numbered right
above the input in the query's own turn; for the RAG arm also the label list and the fixed
format shots, each with its own best passage; for QLoRA + RAG (an adapter) passages only.
In "examples" mode the nearest training examples are shown as shots, nearest last.

    python rag/query.py                                  # retrieval only: recall@k
    python rag/query.py --endpoint http://127.0.0.1:8000/v1 --model pilot-adapter

Rows of --input that carry a "doc_id" are scored for recall@k (the share of queries whose
gold document is among the top-k hits), the pilot's retrieval metric. The pilot also dropped
passages that did not fit its 2,048-token window; pass --max-passages to do the same by count.
Progress (stage, step/total, ETA) goes to stderr; stdout gets the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import faiss
from pilot_chunking import Hit, recall_at_k
from sentence_transformers import SentenceTransformer

HERE = Path(__file__).resolve().parent
BATCH = 64
sys.path.insert(0, str(HERE.parent / "serve"))

import client  # noqa: E402  (serve/client.py: the endpoint call and the pilot's scoring)
from pilot_prompts import Example, PilotTask, build_messages  # noqa: E402


class Index:
    def __init__(self, folder: Path, model: SentenceTransformer) -> None:
        self.index = faiss.read_index(str(folder / "index.faiss"))
        lines = (folder / "items.jsonl").read_text(encoding="utf-8").splitlines()
        self.items = [json.loads(line) for line in lines if line]
        self.model = model

    def search(self, queries: list[str], k: int, *, stage: bool = True) -> list[list[Hit]]:
        k = min(k, len(self.items))
        if not queries or k <= 0:
            return [[] for _ in queries]
        if isinstance(self.index, faiss.IndexHNSWFlat):
            self.index.hnsw.efSearch = max(64, 2 * k)
        progress = client.Progress(f"retrieving top-{k}", len(queries)) if stage else None
        found: list[list[Hit]] = []
        for start in range(0, len(queries), BATCH):
            batch = queries[start : start + BATCH]
            vectors = self.model.encode(
                batch,
                batch_size=BATCH,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype("float32")
            scores, positions = self.index.search(vectors, k)
            found += [
                [
                    Hit(
                        id=self.items[p]["id"], text=self.items[p]["text"], score=float(s),
                        position=p,
                    )
                    for s, p in zip(row_scores, row_positions, strict=True)
                    if p >= 0
                ]
                for row_scores, row_positions in zip(scores, positions, strict=True)
            ]  # fmt: skip
            if progress:
                progress.step(len(batch))
        return found


def example_of(row: dict[str, Any]) -> Example:
    return client.example_of(row)


def messages_for(
    config: dict[str, Any],
    row: dict[str, Any],
    hits: list[Hit],
    *,
    train: list[dict[str, Any]],
    shots: list[Example],
    shot_passages: list[list[str]],
) -> list[dict[str, str]]:
    prompt = config["prompt"]
    task = PilotTask(prompt["task"])
    labels = prompt.get("labels", [])
    if config["mode"] == "examples":
        ranked = [example_of(train[int(hit.id)]) for hit in hits]
        return build_messages(task, example_of(row), shots=list(reversed(ranked)), labels=labels)
    return build_messages(
        task,
        example_of(row),
        shots=shots,
        contexts=[hit.text for hit in hits],
        labels=labels,
        shot_contexts=shot_passages,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=HERE / "index")
    parser.add_argument("--config", type=Path, default=HERE / "rag_config.json")
    parser.add_argument("--input", type=Path, default=HERE.parent / "data" / "test" / "test.jsonl")
    parser.add_argument("--train", type=Path, default=HERE.parent / "data" / "train.jsonl")
    parser.add_argument("--embedder", help="a sentence-transformers name or local directory")
    parser.add_argument("--top-k", type=int, help="default: rag_config.json's top_k")
    parser.add_argument("--max-passages", type=int, help="use at most this many hits per query")
    parser.add_argument("--endpoint", help="OpenAI-compatible API root; omit to only retrieve")
    parser.add_argument("--model", help="the served model (or adapter) name")
    parser.add_argument("--api-key-env", help="environment variable holding the API key")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, help="write one JSON line per query here")
    args = parser.parse_args(argv)

    config = json.loads(args.config.read_text(encoding="utf-8"))
    model = SentenceTransformer(args.embedder or config["embedder"], device="cpu")
    index = Index(args.index, model)
    rows = client.read_rows(args.input)
    top_k = args.top_k or config["top_k"]
    hits = index.search([row["input"] for row in rows], top_k)
    summary: dict[str, Any] = {"queries": len(rows), "top_k": top_k}
    gold = [row.get("doc_id") for row in rows]
    if any(gold):
        summary["retrieval_recall_at_k"] = recall_at_k(hits, gold)

    answers: list[str] = []
    if args.endpoint:
        if not args.model:
            parser.error("--model is needed with --endpoint")
        api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
        train = client.read_rows(args.train) if config["mode"] == "examples" else []
        shots = [example_of(shot) for shot in config["prompt"].get("format_shots", [])]
        shot_passages = [
            [h.text for h in found]
            for found in index.search([s.input for s in shots], 1, stage=False)
        ]
        used = [found[: args.max_passages] if args.max_passages else found for found in hits]
        conversations = [
            messages_for(config, row, found, train=train, shots=shots, shot_passages=shot_passages)
            for row, found in zip(rows, used, strict=True)
        ]
        prompt = config["prompt"]
        answers = client.answer_all(
            args.endpoint,
            args.model,
            conversations,
            max_tokens=prompt["max_tokens"],
            stop=prompt["stop"],
            api_key=api_key,
            concurrency=args.concurrency,
        )
        if rows and all("output" in row for row in rows):
            summary["metrics"] = client.score(
                prompt["task"],
                answers,
                [row["output"] for row in rows],
                labels=prompt.get("all_labels", []),
                seed=prompt.get("seed", 0),
            )
    if args.out:
        with args.out.open("w", encoding="utf-8") as handle:
            for position, row in enumerate(rows):
                record = {**row, "hits": [hit.id for hit in hits[position]]}
                if answers:
                    record["prediction"] = answers[position]
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
