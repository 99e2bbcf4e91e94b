"""A stand-in arm module for runner tests: answers a set share of the test items correctly.

It is a real arm as far as the runner knows: a module named by an `ArmSpec.implementation`
with a `run(config, resources, data, progress)` function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.domain.records import ArmResult, PilotData, Prediction, Progress, ProgressCallback


@dataclass
class StandInConfig:
    name: str
    correct_share: float
    seed: int = 0
    fail_with: str | None = None  # raise RuntimeError(fail_with) instead of answering
    adapter_dir: Path | None = None  # save a fake adapter here (an arm others build on)
    adapter_path: Path | None = None  # set by the runner from `needs.adapter_from`
    seen: list[str] = field(default_factory=list)

    def with_adapter(self, path: Path) -> StandInConfig:
        return StandInConfig(
            self.name, self.correct_share, self.seed, self.fail_with, self.adapter_dir, path
        )


def run(
    config: StandInConfig, resources: object, data: PilotData, progress: ProgressCallback
) -> ArmResult:
    if config.fail_with:
        raise RuntimeError(config.fail_with)
    progress(Progress("generating", 1, 1, 0.0))
    n_correct = round(config.correct_share * len(data.test))
    predictions = [
        Prediction(
            index=i,
            prediction=example.target if i < n_correct else "wrong",
            latency_ms=10.0 + i,
            prompt_tokens=200,
            output_tokens=4,
        )
        for i, example in enumerate(data.test)
    ]
    adapter = str(config.adapter_dir / "adapter") if config.adapter_dir else None
    recipe: dict[str, object] = {"arm": config.name}
    if config.adapter_path is not None:
        recipe["adapter_path"] = str(config.adapter_path)
    return ArmResult(arm=config.name, predictions=predictions, recipe=recipe, adapter_path=adapter)
