"""The contract every pilot arm follows: `run(config, resources) -> ArmResult`.

Arms are pure: no database, no web. Progress goes out through a callback so the same arm
can feed SQL (worker), a progress bar (CLI) or nothing (tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.domain.samples.schemas import Document, Example, PilotTask

ARM_NAMES = ("fewshot", "rag", "qlora", "qlora_rag")
# One seed for the split, shots, training and bootstrap unless the user picks another: a pilot
# from the web, the API or the command line on the same file gives the same split.
DEFAULT_SEED = 13


@dataclass(frozen=True)
class Progress:
    stage: str  # e.g. "generating", "training", "indexing"
    step: int
    total: int
    eta_seconds: float | None = None


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    return None


@dataclass
class PilotData:
    """The split every arm sees: identical train/validation/test for a fair comparison."""

    task: PilotTask
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    documents: list[Document] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # classification label set, sorted


@dataclass
class Prediction:
    index: int  # position in PilotData.test
    prediction: str
    latency_ms: float
    prompt_tokens: int
    output_tokens: int


@dataclass
class LossPoint:
    step: int
    epoch: float
    train_loss: float | None
    validation_loss: float | None


@dataclass
class ArmResult:
    arm: str
    predictions: list[Prediction]
    training_seconds: float = 0.0
    peak_memory_mb: float = 0.0  # RSS, or GPU memory on CUDA
    trainable_parameters: int = 0
    adapter_bytes: int = 0
    adapter_path: str | None = None
    loss_curve: list[LossPoint] = field(default_factory=list)
    retrieval_recall_at_k: float | None = None
    recipe: dict[str, Any] = field(default_factory=dict)  # hyper-parameters actually used
    notes: list[str] = field(default_factory=list)  # caps hit, early stopping, etc.


@dataclass
class MetricValue:
    """One figure for one arm; quality metrics carry a paired-bootstrap 95% interval."""

    name: str  # e.g. accuracy, macro_f1, exact_match, token_f1, latency_p50_ms, cost_per_1k_usd
    value: float
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass
class Difference:
    """metric(arm_a) - metric(arm_b) on the same test items, with its bootstrap interval."""

    metric: str
    arm_a: str
    arm_b: str
    delta: float
    ci_low: float
    ci_high: float

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


@dataclass
class ArmOutcome:
    arm: str
    status: str  # "done" | "failed"
    error: str | None = None
    metrics: list[MetricValue] = field(default_factory=list)
    result: ArmResult | None = None


@dataclass
class PilotOutcome:
    task: PilotTask
    primary_metric: str
    arms: list[ArmOutcome]
    differences: list[Difference]
    warnings: list[str]  # data warnings (duplicates, leakage, imbalance, PII) + small-sample
    caps: list[str]  # what was capped, in words
    manifest: dict[str, Any]
