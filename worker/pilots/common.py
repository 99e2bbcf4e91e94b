"""Small helpers every arm shares: output budgets, memory, predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.domain.records import Prediction
from app.domain.samples.schemas import PilotTask
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
