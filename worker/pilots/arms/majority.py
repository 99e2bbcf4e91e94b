"""Majority-label arm: always answer the most frequent training label.

No model at all. It is the floor every other arm must clear: on a skewed label set a few-shot
arm at 30% may be worse than saying the commonest label every time, and the report should show
that rather than leave the reader to guess the base rate.
"""

from __future__ import annotations

from collections import Counter

from app.domain.arms import MajorityConfig
from app.domain.records import ArmResult, PilotData, Prediction, Progress, ProgressCallback
from worker.pilots.resources import Resources


def majority_label(data: PilotData) -> str:
    """The commonest training target; ties go to the label that sorts first (reproducible)."""
    counts = Counter(example.target for example in data.train)
    if not counts:
        raise ValueError("the majority-label floor needs at least one training example")
    best = max(counts.values())
    return min(label for label, count in counts.items() if count == best)


def run(
    config: MajorityConfig,
    resources: Resources,
    data: PilotData,
    progress: ProgressCallback,
) -> ArmResult:
    label = majority_label(data)
    share = sum(example.target == label for example in data.train) / len(data.train)
    progress(Progress(stage="predicting", step=len(data.test), total=len(data.test)))
    return ArmResult(
        arm="majority",
        predictions=[
            Prediction(index=i, prediction=label, latency_ms=0.0, prompt_tokens=0, output_tokens=0)
            for i in range(len(data.test))
        ],
        recipe={"label": label, "train_share": round(share, 4)},
        notes=[f"Always answers {label!r}, {share:.0%} of the training examples."],
    )
