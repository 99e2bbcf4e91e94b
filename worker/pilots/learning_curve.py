"""Training the fine-tuning arm again on nested subsets for the learning curve.

The full training split is the QLoRA arm itself (its adapter and test answers are reused, not
trained again); this module trains the smaller subsets (¼ and ½, `app.domain.learning_curve`)
with the arm's own config and seed and answers the same test prompts with each adapter.

The time cap is shared: a subset of k of the n training examples gets k/n of the arm's cap,
the same budget per example as the full run, so the recipe planner makes the same choices
(epochs, batch) for every point and the curve measures data, not a different recipe. The
curve therefore adds at most ¾ of the cap in training, plus two passes over the test split.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from app.domain.arms import QLoRAConfig
from app.domain.learning_curve import nested_order
from app.domain.records import ArmResult, PilotData, Progress, ProgressCallback
from app.domain.samples.schemas import PilotTask
from worker.pilots.arms.qlora.evaluation import evaluate
from worker.pilots.arms.qlora.training import train_and_release
from worker.pilots.prompts import render_prompt, short_messages
from worker.pilots.resources import Resources

CURVE_DIR = "learning-curve"


@dataclass
class SubsetRun:
    examples: int
    result: ArmResult  # predictions on data.test, training facts


def subset_config(config: QLoRAConfig, size: int, n_train: int) -> QLoRAConfig:
    """The arm's config for one subset: its own adapter dir and its share of the time cap."""
    return dataclasses.replace(
        config,
        adapter_dir=config.adapter_dir / CURVE_DIR / f"n{size}",
        max_train_minutes=config.max_train_minutes * size / n_train,
    )


def train_subsets(
    config: QLoRAConfig,
    resources: Resources,
    data: PilotData,
    sizes: Sequence[int],
    progress: ProgressCallback,
) -> list[SubsetRun]:
    """Train and evaluate one adapter per size in `sizes` (each smaller than data.train)."""
    classification = data.task == PilotTask.classification
    order = nested_order(
        [e.target if classification else None for e in data.train], seed=config.seed
    )
    prompts = [render_prompt(resources.tokenizer, short_messages(data.task, e)) for e in data.test]
    runs = []
    for size in sizes:
        if size >= len(data.train):
            raise ValueError(f"subset of {size} is not smaller than the training split")
        # Original order within the subset: the loop shuffles by its own seed anyway.
        subset = dataclasses.replace(data, train=[data.train[i] for i in sorted(order[:size])])
        sub_config = subset_config(config, size, len(data.train))

        def tagged(update: Progress, size: int = size) -> None:
            # The stage column is short; "curve 120: training" fits and says which point.
            progress(dataclasses.replace(update, stage=f"curve {size}: {update.stage}"[:32]))

        trained = train_and_release(sub_config, resources, subset, tagged)
        result = evaluate(sub_config, resources, subset, trained, prompts, tagged)
        # Only the points' scores are kept; the subset adapters are not served or reused.
        shutil.rmtree(sub_config.adapter_dir, ignore_errors=True)
        runs.append(SubsetRun(examples=size, result=result))
    shutil.rmtree(config.adapter_dir / CURVE_DIR, ignore_errors=True)
    return runs
