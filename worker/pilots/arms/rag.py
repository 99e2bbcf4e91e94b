"""RAG arm: MiniLM embeddings + FAISS, top-k retrieved text in the prompt.

Two corpora, decided by the data:

* documents: the uploaded documents (or, when none were uploaded but examples carry gold
  context passages, those passages, deduplicated) are chunked by tokens and indexed; each
  query gets its top-k chunks as numbered passages above its input, plus a few fixed
  shots (chosen as in the few-shot arm, each with its own best passage) so the model sees
  the answer format. Recall@k is
  reported when gold document ids are known.
* examples: with no documents at all, the nearest *training* examples are retrieved and
  shown as shots (nearest last, right before the query). On Banking77 this takes
  SmolLM2-135M from ~1% (random shots) to ~67% (docs/pilots.md, "Calibration").

Passages or shots that do not fit the context window are dropped from the least similar up.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.domain.arms import RagConfig
from app.domain.prompts import Message, build_messages
from app.domain.records import (
    ArmResult,
    PilotData,
    Progress,
    ProgressCallback,
    no_progress,
)
from app.domain.samples.schemas import Document, Example, PilotTask
from app.domain.samples.stratified import stratified_sample
from worker.pilots.arm_results import config_recipe
from worker.pilots.context_fit import count_tokens, max_items_that_fit
from worker.pilots.prompt_rendering import Prompt, make_prompt, render_prompt
from worker.pilots.prompting_arms import answer, plan_for
from worker.pilots.resources import Resources
from worker.pilots.retrieval import (
    Hit,
    Retriever,
    chunk_documents,
    context_doc_id,
    recall_at_k,
)

ARM = "rag"


def corpus_documents(data: PilotData) -> list[Document]:
    """Uploaded documents, else the distinct gold contexts carried by the examples."""
    if data.documents:
        return list(data.documents)
    seen: dict[str, Document] = {}
    for example in [*data.train, *data.validation, *data.test]:
        if example.context:
            doc_id = example.doc_id or context_doc_id(example.context)
            seen.setdefault(doc_id, Document(doc_id=doc_id, title="", text=example.context))
    return list(seen.values())


def gold_doc_id(example: Example) -> str | None:
    if example.doc_id:
        return example.doc_id
    return context_doc_id(example.context) if example.context else None


def _indexing_progress(progress: ProgressCallback, step: int, total: int) -> None:
    progress(Progress(stage="indexing", step=step, total=total, eta_seconds=None))


@dataclass(frozen=True)
class CorpusIndex:
    """The retrieval index of an arm and what it was built over."""

    retriever: Retriever
    mode: str  # "documents" (chunks of documents) or "examples" (training inputs)
    documents: int  # documents chunked (0 in "examples" mode)
    chunks: int  # chunks indexed (0 in "examples" mode)


def build_retriever(config: RagConfig, resources: Resources, data: PilotData) -> CorpusIndex:
    """The FAISS index over document chunks, else over the training inputs.

    Shared with the QLoRA + RAG arm, so both arms retrieve from the same corpus with the
    same chunking: the difference between them is then the adapter alone.
    """
    documents = corpus_documents(data)
    if documents:
        chunks = chunk_documents(
            documents,
            resources.embedder.tokenizer,
            chunk_tokens=config.chunk_tokens,
            overlap=config.overlap,
        )
        retriever = Retriever.build(
            [chunk.text for chunk in chunks],
            [chunk.doc_id for chunk in chunks],
            resources.embedder,
            ann_threshold=config.ann_threshold,
        )
        return CorpusIndex(retriever, "documents", len(documents), len(chunks))
    retriever = Retriever.build(
        [example.input for example in data.train],
        [str(i) for i in range(len(data.train))],
        resources.embedder,
        ann_threshold=config.ann_threshold,
    )
    return CorpusIndex(retriever, "examples", 0, 0)


def run(
    config: RagConfig,
    resources: Resources,
    data: PilotData,
    progress: ProgressCallback = no_progress,
) -> ArmResult:
    started = time.perf_counter()
    tokenizer = resources.tokenizer
    task = data.task
    plan = plan_for(config, resources, data)
    test = plan.test
    notes = plan.notes

    _indexing_progress(progress, 0, 1)
    index_started = time.perf_counter()
    index = build_retriever(config, resources, data)
    retriever, mode = index.retriever, index.mode
    fixed_shots: list[Example] = []
    shot_contexts: list[list[str]] = []
    if mode == "documents":
        fixed_shots = stratified_sample(
            data.train,
            config.format_shots,
            seed=config.seed,
            stratify=task is PilotTask.classification,
            shuffle=True,
            labels_first=True,
        )
        # Each format shot carries its own best passage, so it looks exactly like a query.
        shot_contexts = [
            [hit.text for hit in shot_hits]
            for shot_hits in retriever.search([shot.input for shot in fixed_shots], 1)
        ]
    index_seconds = time.perf_counter() - index_started
    _indexing_progress(progress, 1, 1)

    hits = retriever.search([example.input for example in test], config.top_k)
    prompts, used_counts = fit_prompts(
        task, test, hits, mode=mode, train=data.train, tokenizer=tokenizer, budget=plan.budget,
        fixed_shots=fixed_shots, shot_contexts=shot_contexts, labels=plan.listed,
        max_passage_tokens=config.max_passage_tokens,
    )  # fmt: skip
    if used_counts and min(used_counts) < min(config.top_k, len(retriever)):
        dropped = sum(1 for used in used_counts if used < min(config.top_k, len(retriever)))
        notes.append(
            f"{dropped} queries used fewer than top_k retrieved items "
            f"({fewer_items_reason(mode, config.max_passage_tokens)})."
        )

    recall: float | None = None
    if mode == "documents":
        recall = recall_at_k(hits, [gold_doc_id(example) for example in test])
    recipe = config_recipe(config) | {
        "mode": mode,
        "index": retriever.kind,
        "indexed_items": len(retriever),
        "documents": index.documents,
        "index_seconds": round(index_seconds, 2),
        "mean_items_used": sum(used_counts) / len(used_counts) if used_counts else 0.0,
        "max_new_tokens_used": plan.max_new,
        "context_window": plan.window,
        "labels_listed": bool(plan.listed),
        "embedder": resources.embedder_path,
    }
    if mode == "examples" and task is PilotTask.classification:
        label_hits = [
            any(data.train[int(hit.id)].target == example.target for hit in query_hits)
            for example, query_hits in zip(test, hits, strict=True)
        ]
        if label_hits:
            share = sum(label_hits) / len(label_hits)
            recipe["label_hit_at_k"] = share
            notes.append(f"A shot with the gold label was retrieved for {share:.0%} of queries.")

    answers = answer(prompts, plan, config, resources, data, progress)
    return ArmResult(
        arm=ARM,
        predictions=answers.predictions,
        retrieval_recall_at_k=recall,
        recipe=recipe,
        notes=[*notes, *answers.notes, f"Arm wall time {time.perf_counter() - started:.1f} s."],
    )


def fewer_items_reason(mode: str, max_passage_tokens: int | None) -> str:
    """What may have cut a query's retrieved items, for the arms' notes."""
    if mode == "documents" and max_passage_tokens is not None:
        return f"passage budget of {max_passage_tokens} tokens or context limit"
    return "context limit"


def passages_within(tokenizer: Any, passages: Sequence[str], max_tokens: int | None) -> int:
    """How many of `passages` (best first) fit in `max_tokens` tokens together; the best one
    always counts (a RAG prompt without its best passage would not be RAG), None = all."""
    if max_tokens is None:
        return len(passages)
    total = 0
    for n, passage in enumerate(passages):
        total += count_tokens(tokenizer, passage)
        if total > max_tokens:
            return max(n, 1)
    return len(passages)


def fit_prompts(
    task: PilotTask,
    queries: Sequence[Example],
    hits: Sequence[list[Hit]],
    *,
    mode: str,
    train: Sequence[Example],
    tokenizer: Any,
    budget: int,
    fixed_shots: Sequence[Example] = (),
    shot_contexts: Sequence[Sequence[str]] = (),
    labels: Sequence[str] = (),
    max_passage_tokens: int | None = None,
) -> tuple[list[Prompt], list[int]]:
    """One prompt per query with as many of its hits as fit; returns (prompts, hits used).

    In documents mode, `max_passage_tokens` also bounds the passages' own tokens
    (`passages_within`); the window bounds the whole prompt in both modes.

    `hits[i]` are query i's retrieved items, best first. The format shots, their passages
    and the label list are the RAG arm's additions; without them (the QLoRA + RAG arm) a
    prompt differs from the bare fine-tuned prompt only by the retrieved material.
    """
    prompts: list[Prompt] = []
    used_counts: list[int] = []
    for example, query_hits in zip(queries, hits, strict=True):
        prompt, used = _fit_prompt(
            task, example, query_hits, mode=mode, train=train, fixed_shots=fixed_shots,
            shot_contexts=shot_contexts, labels=labels, tokenizer=tokenizer, budget=budget,
            max_passage_tokens=max_passage_tokens,
        )  # fmt: skip
        prompts.append(prompt)
        used_counts.append(used)
    return prompts, used_counts


def _fit_prompt(
    task: PilotTask,
    example: Example,
    hits: list[Hit],
    *,
    mode: str,
    train: Sequence[Example],
    fixed_shots: Sequence[Example],
    shot_contexts: Sequence[Sequence[str]],
    labels: Sequence[str],
    tokenizer: Any,
    budget: int,
    max_passage_tokens: int | None,
) -> tuple[Prompt, int]:
    """The prompt with as many of the best hits as fit; returns (prompt, hits used)."""
    offered = len(hits)
    if mode == "examples":
        # Best hit last: closest to the query, where a small model attends most.
        ranked = [train[int(hit.id)] for hit in hits]

        def messages_with(n: int) -> list[Message]:
            shots = list(reversed(ranked[:n]))
            return build_messages(task, example, shots=shots, labels=labels)

    else:
        passages = [hit.text for hit in hits]
        offered = passages_within(tokenizer, passages, max_passage_tokens)

        def messages_with(n: int) -> list[Message]:
            return build_messages(
                task,
                example,
                shots=fixed_shots,
                contexts=passages[:n],
                labels=labels,
                shot_contexts=shot_contexts,
            )

    def render(n: int) -> str:
        return render_prompt(tokenizer, messages_with(n))

    used = max_items_that_fit(render, tokenizer, max_items=offered, budget=budget)
    return make_prompt(tokenizer, messages_with(used)), used
