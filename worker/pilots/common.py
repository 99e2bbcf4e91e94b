"""Small helpers every arm shares: output budgets, memory, predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.domain.prompts import DEFAULT_MAX_NEW_TOKENS, max_new_tokens_for, stops_at_newline
from app.domain.records import Prediction
from worker.pilots.generation import GenerationOutput

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "config_recipe",
    "max_new_tokens_for",
    "predictions_from_outputs",
    "stops_at_newline",
]


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
