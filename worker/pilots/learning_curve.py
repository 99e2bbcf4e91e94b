"""The fine-tuning arm's learning curve, measured: train the arm again on nested subsets,
score every point the same way, and fit the trend (`measure_learning_curve`). The curve's pure
parts (subset sizes, the fit, its reading) live in `app.domain.learning_curve`; this module is
the only worker code that makes a curve.

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
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from app.domain.arms import QLoRAConfig
from app.domain.bootstrap import bootstrap_metric
from app.domain.learning_curve import (
    crowded_note,
    fit_curve,
    fit_draws,
    nested_order,
    point_statistic,
    subset_sizes,
)
from app.domain.metric_catalogue import metric_label, primary_metric
from app.domain.prompts import short_messages
from app.domain.records import (
    ArmResult,
    CurvePoint,
    LearningCurve,
    PilotData,
    PointEvaluation,
    Progress,
    ProgressCallback,
)
from app.domain.samples.schemas import PilotTask
from worker.pilots.arms.qlora.evaluation import evaluate
from worker.pilots.arms.qlora.training import train_and_release
from worker.pilots.prompt_rendering import render_prompt
from worker.pilots.resources import Resources

CURVE_DIR = "learning-curve"

logger = logging.getLogger(__name__)


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


def measure_learning_curve(
    qlora: QLoRAConfig,
    data: PilotData,
    resources: Resources,
    full: ArmResult,
    indices: np.ndarray,
    progress: Callable[[Progress], None],
) -> LearningCurve:
    """The fine-tuning arm's learning curve: its own result is the largest point; the
    smaller subsets are trained here. A failure leaves a curve with a note, never a failed
    arm: the arm's result stands on its own."""
    started = time.perf_counter()
    # The reference metric, as the judge (if any) grades only the arms, not the curve's points.
    metric = primary_metric(data.task, [e.target for e in data.test], judged=False)
    curve = LearningCurve(metric=metric)
    sizes = subset_sizes(len(data.train))
    if len(sizes) < 2:
        curve.notes.append(f"learning curve: {len(data.train)} training examples are too few")
        return curve
    try:
        _measure_curve(curve, qlora, data, resources, sizes, full, indices, progress)
    except Exception as error:  # the arm's own result must survive a curve that fails
        logger.exception("learning curve failed")
        curve.points, curve.intercept, curve.slope, curve.draws = [], None, None, []
        curve.notes.append(f"learning curve failed: {type(error).__name__}: {error}")
    curve.extra_seconds = time.perf_counter() - started
    return curve


def _measure_curve(
    curve: LearningCurve,
    qlora: QLoRAConfig,
    data: PilotData,
    resources: Resources,
    sizes: Sequence[int],
    full: ArmResult,
    indices: np.ndarray,
    progress: Callable[[Progress], None],
) -> None:
    """Train the smaller subsets, score every point on the shared resamples, fit the trend.

    Every point, the arm's own included, is scored on its in-process answers
    (`point_statistic`): the subsets are never served, so a served figure for the largest
    point alone would put the serving shift into the slope."""
    runs = train_subsets(qlora, resources, data, sizes[:-1], progress)
    n_test = len(data.test)
    labels, metric = data.labels, curve.metric
    results = [*((run.examples, run.result) for run in runs), (len(data.train), full)]
    statistics = [
        (
            examples,
            result,
            point_statistic(data.task, result, data.test, labels=labels, metric=metric),
        )
        for examples, result in results
    ]
    curve.evaluated = PointEvaluation.in_process
    if full.reference_predictions is not None:
        curve.notes.append(
            "The QLoRA arm was answered through its serving endpoint; the curve's largest "
            f"point is its in-process {metric_label(curve.metric)}, so every size is "
            "evaluated the same way."
        )
    for examples, result, statistic in statistics:
        interval = bootstrap_metric(statistic, n_test, indices=indices)
        curve.points.append(
            CurvePoint(
                examples=examples,
                trained_on=_trained_on(result, examples),
                value=interval.value,
                ci_low=interval.low,
                ci_high=interval.high,
                training_seconds=result.training_seconds,
                reused=result is full,
            )
        )
    crowded = crowded_note(curve.points)
    if crowded is not None:
        curve.notes.append(crowded)
    x = [p.trained_on for p in curve.points]
    if len(set(x)) < 2:
        # The time cap cut every subset to the same size: there is no trend to fit.
        curve.notes.append("learning curve: the time cap left every point the same size")
        return
    curve.intercept, curve.slope = fit_curve(x, [p.value for p in curve.points], items=n_test)
    resampled = np.stack([statistic(indices) for _, _, statistic in statistics], axis=1)
    curve.draws = fit_draws(x, resampled, items=n_test)


def _trained_on(result: ArmResult, examples: int) -> int:
    used = result.recipe.get("train_examples_used")
    return int(used) if isinstance(used, int) and used > 0 else examples
