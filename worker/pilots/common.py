"""Small helpers every arm shares: shot selection, output budgets, memory, predictions."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from app.domain.records import Prediction
from app.domain.samples.schemas import Example, PilotTask
from worker.pilots.generation import GenerationOutput

# Output budget per task when a config leaves it unset: labels are a few tokens, answers a
# sentence, JSON objects and free text need room.
DEFAULT_MAX_NEW_TOKENS: dict[PilotTask, int] = {
    PilotTask.classification: 20,
    PilotTask.qa: 48,
    PilotTask.extraction: 160,
    PilotTask.generation: 160,
}


def max_new_tokens_for(task: PilotTask, configured: int | None) -> int:
    return configured if configured else DEFAULT_MAX_NEW_TOKENS[task]


def stops_at_newline(task: PilotTask) -> bool:
    """Classification answers are one line; anything after the first newline is noise."""
    return task is PilotTask.classification


def select_shots(train: Sequence[Example], k: int, *, seed: int, stratify: bool) -> list[Example]:
    """k training examples chosen reproducibly from `seed`.

    Stratified: labels are visited in a seeded random order, one example per label per
    round, so k shots cover min(k, #labels) distinct labels instead of repeating the most
    frequent ones. Otherwise a seeded random sample.
    """
    if k <= 0 or not train:
        return []
    rng = random.Random(seed)
    if not stratify:
        return rng.sample(list(train), min(k, len(train)))
    by_label: dict[str, list[Example]] = defaultdict(list)
    for example in train:
        by_label[example.target].append(example)
    labels = sorted(by_label)
    rng.shuffle(labels)
    for label in labels:
        rng.shuffle(by_label[label])
    shots: list[Example] = []
    round_number = 0
    while len(shots) < min(k, len(train)):
        for label in labels:
            pool = by_label[label]
            if round_number < len(pool):
                shots.append(pool[round_number])
                if len(shots) == k:
                    break
        round_number += 1
    # Shuffle so label order in the prompt carries no signal (and recency bias is random).
    rng.shuffle(shots)
    return shots


def predictions_from_outputs(
    outputs: Sequence[GenerationOutput], indices: Sequence[int] | None = None
) -> list[Prediction]:
    """Predictions for test items, in the same order as `outputs`."""
    positions = list(indices) if indices is not None else list(range(len(outputs)))
    return [
        Prediction(
            index=position,
            prediction=output.text,
            latency_ms=output.latency_ms,
            prompt_tokens=output.prompt_tokens,
            output_tokens=output.output_tokens,
        )
        for position, output in zip(positions, outputs, strict=True)
    ]


def config_recipe(config: Any) -> dict[str, Any]:
    """A config dataclass as a plain dict (for ArmResult.recipe and the manifest)."""
    from dataclasses import asdict, is_dataclass

    return asdict(config) if is_dataclass(config) and not isinstance(config, type) else {}
