"""Answering the test prompts with the fine-tuned model rebuilt from the saved adapter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.domain.prompts import max_new_tokens_for, stops_at_newline
from app.domain.records import ArmResult, PilotData, Prediction, ProgressCallback, no_progress
from app.domain.samples.schemas import PilotTask
from worker.pilots.arm_results import predictions_from_outputs
from worker.pilots.arms.qlora.model import autocast, load_eval_model
from worker.pilots.generation import generate
from worker.pilots.memory import PeakMemory, drop_mapped_pages
from worker.pilots.resources import Resources

if TYPE_CHECKING:
    from app.domain.arms import QLoRAConfig


def predict(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    task: PilotTask,
    device: str,
    max_new_tokens: int,
    batch_size: int,
    progress: ProgressCallback,
) -> list[Prediction]:
    """Greedy, batched generation through the shared `generate`, under the same autocast."""
    with autocast(device):
        outputs = generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            progress=progress,
            stage="evaluating",
            # Same stopping rule as the other arms; the model learned to stop with EOS anyway.
            stop_at_newline=stops_at_newline(task),
        )
    return predictions_from_outputs(outputs)


def evaluate(
    config: QLoRAConfig,
    resources: Resources,
    data: PilotData,
    result: ArmResult,
    prompts: Sequence[str],
    progress: ProgressCallback = no_progress,
) -> ArmResult:
    """Fill `result.predictions` by answering `prompts` (one per test example)."""
    if result.adapter_path is None:
        raise ValueError("no adapter to evaluate")
    max_new = max_new_tokens_for(data.task, config.max_new_tokens)
    with PeakMemory(resources.device) as memory:
        # The bf16 model maps the same file and is idle while the fine-tuned copy answers.
        drop_mapped_pages(resources.llm_path)
        model = load_eval_model(
            resources.llm_path, Path(result.adapter_path), resources.device, config.eval_weights
        )
        result.predictions = predict(
            model,
            resources.tokenizer,
            prompts,
            task=data.task,
            device=resources.device,
            max_new_tokens=max_new,
            batch_size=config.batch_size,
            progress=progress,
        )
        del model
    result.peak_memory_mb = max(result.peak_memory_mb, memory.peak_mb)
    result.recipe["eval_weights"] = config.eval_weights
    return result
