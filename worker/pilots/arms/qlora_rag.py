"""QLoRA + RAG arm: the fine-tuned adapter, with retrieved context in the prompt.

Does fine-tuning and retrieval stack (Balaguer et al. 2024: FT +6 points, RAG +5 more)?
This arm answers that on the user's data by reusing the QLoRA arm's adapter (same weights,
so the difference to the QLoRA arm is retrieval alone) and the RAG arm's retrieval
settings (same corpus, chunking and top-k, so the difference to the RAG arm is the
adapter alone).

Retrieval follows the RAG arm: uploaded documents (or the examples' gold contexts) are
chunked, embedded with MiniLM and searched with FAISS, and the top-k passages go into the
query's own user turn (prompts.build_messages says why); with no documents the nearest
training examples become shots. Unlike the
RAG arm, no label list and no fixed format shots are added: the adapter learned the label
vocabulary and the output format from the short prompt, and the prompt should differ from
the one it was trained on only by the retrieved material.
"""

from __future__ import annotations

from pathlib import Path

from app.domain.arms import QLoRARagConfig
from app.domain.prompts import max_new_tokens_for
from app.domain.records import (
    ArmResult,
    LossPoint,
    PilotData,
    Progress,
    ProgressCallback,
    no_progress,
)
from worker.pilots.arms.qlora.adapter_io import adapter_bytes, read_summary
from worker.pilots.arms.qlora.evaluation import evaluate
from worker.pilots.arms.qlora.training import train_and_release
from worker.pilots.arms.rag import build_retriever, fewer_items_reason, fit_prompts, gold_doc_id
from worker.pilots.context_fit import plan_prompts
from worker.pilots.resources import Resources
from worker.pilots.retrieval import recall_at_k
from worker.pilots.served_adapters import answer_as_served

ARM = "qlora_rag"


def _training_facts(adapter_dir: Path) -> ArmResult:
    """The training half of the result, from the summary the QLoRA arm saved."""
    summary = read_summary(adapter_dir)
    if summary is None:
        return ArmResult(
            arm=ARM,
            predictions=[],
            adapter_bytes=adapter_bytes(adapter_dir),
            adapter_path=str(adapter_dir),
            notes=[f"adapter {adapter_dir} has no training summary; training figures unknown"],
        )
    return ArmResult(
        arm=ARM,
        predictions=[],
        training_seconds=float(summary.get("training_seconds", 0.0)),
        peak_memory_mb=float(summary.get("peak_memory_mb", 0.0)),
        trainable_parameters=int(summary.get("trainable_parameters", 0)),
        adapter_bytes=int(summary.get("adapter_bytes", 0)),
        adapter_path=str(adapter_dir),
        loss_curve=[LossPoint(**point) for point in summary.get("loss_curve", [])],
        recipe=dict(summary.get("recipe", {})),
        notes=[*summary.get("notes", []), "adapter shared with the qlora arm (trained once)"],
    )


def _adapter(
    config: QLoRARagConfig, resources: Resources, data: PilotData, progress: ProgressCallback
) -> ArmResult:
    if config.adapter_path is not None:
        path = Path(config.adapter_path)
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"no LoRA adapter at {path}")
        return _training_facts(path)
    # No adapter from the QLoRA arm: train one with the same code qlora.run uses, minus its
    # evaluation pass on the test split, which this arm redoes with retrieval anyway.
    result = train_and_release(config.qlora, resources, data, progress)
    result.arm = ARM
    result.notes.append("adapter trained by this arm (no qlora adapter was given)")
    return result


def run(
    config: QLoRARagConfig,
    resources: Resources,
    data: PilotData,
    progress: ProgressCallback = no_progress,
) -> ArmResult:
    """Fine-tuned adapter + retrieved context, evaluated on data.test."""
    result = _adapter(config, resources, data, progress)
    result.arm = ARM
    tokenizer = resources.tokenizer
    rag = config.retrieval

    progress(Progress(stage="indexing", step=0, total=1))
    index = build_retriever(rag, resources, data)
    progress(Progress(stage="indexing", step=1, total=1))
    retriever, mode = index.retriever, index.mode
    if mode == "documents":
        notes = [f"indexed {index.chunks} chunks of {index.documents} documents"]
    else:
        notes = ["no documents: nearest training examples used as shots"]

    # No label list: the adapter learned the labels (see the module docstring).
    plan = plan_prompts(
        tokenizer,
        resources.model,
        data,
        max_new_tokens=config.qlora.max_new_tokens,
        max_prompt_tokens=rag.max_prompt_tokens,
        list_labels=False,
    )
    test = plan.test
    if plan.inputs_cut:
        notes.append(
            f"{plan.inputs_cut} test inputs were cut to {plan.input_tokens} tokens to fit the "
            "context"
        )

    hits = retriever.search([e.input for e in test], rag.top_k)
    prompts, used = fit_prompts(
        data.task, test, hits, mode=mode, train=data.train, tokenizer=tokenizer,
        budget=plan.budget, max_passage_tokens=rag.max_passage_tokens,
    )  # fmt: skip
    wanted = min(rag.top_k, len(retriever))
    short = sum(n < wanted for n in used)
    if short:
        notes.append(
            f"{short} queries used fewer than top_k retrieved items "
            f"({fewer_items_reason(mode, rag.max_passage_tokens)})"
        )

    if mode == "documents":
        result.retrieval_recall_at_k = recall_at_k(hits, [gold_doc_id(e) for e in test])
    result.recipe = result.recipe | {
        "retrieval_mode": mode,
        "retrieval_top_k": rag.top_k,
        "retrieval_index": retriever.kind,
        "retrieval_chunk_tokens": rag.chunk_tokens,
        "retrieval_overlap": rag.overlap,
        "retrieval_max_passage_tokens": rag.max_passage_tokens,
        "mean_items_used": sum(used) / len(used) if used else 0.0,
        "embedder": getattr(resources, "embedder_path", ""),
    }
    result.notes = [*result.notes, *notes]
    result = evaluate(config.qlora, resources, data, result, [p.text for p in prompts], progress)
    if resources.serving_endpoint is None:
        return result
    return answer_as_served(
        resources.serving_endpoint,
        result,
        prompts,
        task=data.task,
        max_new_tokens=max_new_tokens_for(data.task, config.qlora.max_new_tokens),
        progress=progress,
    )
