"""QLoRA arm: a 4-bit NF4 base, LoRA adapters, loss on completions only, then evaluation.

`model` quantises and loads the base, `data` encodes and batches examples, `training` plans
the recipe and trains (the loop itself in `loop`), `adapter_io` saves and reads the adapter,
and `evaluation` answers the test split with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.domain.recipe import QLoRARecipe
from app.domain.records import ArmResult, PilotData, ProgressCallback, no_progress
from worker.pilots.arms.qlora.evaluation import evaluate
from worker.pilots.arms.qlora.training import train_and_release
from worker.pilots.prompts import render_prompt, short_messages


@dataclass
class QLoRAConfig:
    """Settings of the QLoRA arm; the hyper-parameters themselves come from the recipe."""

    adapter_dir: Path = field(metadata={"help": "Directory the trained adapter is saved to"})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, shuffling, LoRA init"})
    max_train_minutes: float = field(
        default=6.0, metadata={"help": "Wall-clock cap on the training loop (incl. validation)"}
    )
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Output budget; unset = the per-task default of all arms"}
    )
    batch_size: int = field(default=16, metadata={"help": "Prompts per generation batch"})
    recipe: QLoRARecipe | None = field(
        default=None, metadata={"help": "Use exactly this recipe (no time planning)"}
    )
    recipe_overrides: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "QLoRARecipe fields to override after choosing"}
    )
    seconds_per_step: float | None = field(
        default=None, metadata={"help": "Step-time estimate; None: measure with a probe"}
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "None: only on CUDA for models above 1B parameters"}
    )
    max_validation_examples: int = field(
        default=64, metadata={"help": "Cap on validation examples (each pass costs time)"}
    )
    eval_weights: str = field(
        default="merged",
        metadata={
            "help": '"merged": LoRA merged into the dequantised NF4 base (bf16), as a fine-tune '
            'is served; "nf4": the 4-bit base + adapter exactly as trained'
        },
    )


def run(
    config: QLoRAConfig,
    resources: Any,
    data: PilotData,
    progress: ProgressCallback = no_progress,
) -> ArmResult:
    """Train a QLoRA adapter on data.train, then answer data.test with the short prompt."""
    result = train_and_release(config, resources, data, progress)
    prompts = [render_prompt(resources.tokenizer, short_messages(data.task, e)) for e in data.test]
    return evaluate(config, resources, data, result, prompts, progress)
