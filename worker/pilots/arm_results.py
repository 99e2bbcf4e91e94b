"""Parts of an arm's result that every arm builds the same way: its predictions from the
generation outputs, and its config as the recipe it reports. (Output budgets and stops are
the prompts' business: `app.domain.prompts`.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.domain.records import Prediction
from worker.pilots.generation import GenerationOutput


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
