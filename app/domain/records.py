"""The records a pilot produces, shared by the runner, SQL, the report, the PDF and the CLI.

Arms are pure: no database, no web. Progress goes out through a callback so the same arm
can feed SQL (worker), a progress bar (CLI) or nothing (tests). What an arm is (name, label,
config, needs) lives in `app.domain.arms`; what it measures is described by
`app.domain.metric_catalogue`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.domain.samples.schemas import Document, Example, PilotTask

# One seed for the split, shots, training and bootstrap unless the user picks another: a pilot
# from the web, the API or the command line on the same file gives the same split.
DEFAULT_SEED = 13


class PilotStatus(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class ArmStatus(StrEnum):
    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"


FINISHED_PILOT = frozenset({PilotStatus.done, PilotStatus.failed})


def excludes_zero(ci_low: float, ci_high: float) -> bool:
    """The one definition of a "significant" difference: its 95% interval excludes zero."""
    return ci_low > 0 or ci_high < 0


def to_json_data(value: Any) -> Any:
    """Plain JSON data (dicts, lists, str, numbers) from recipes and manifests that may hold
    tuples, paths, enums or numpy scalars; SQL JSON columns and `--out` files want this."""
    return json.loads(json.dumps(value, default=str))


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
    # A fine-tuned arm answered through its serving endpoint keeps the in-process answers
    # here: `predictions` are what production gets, these are the model as trained.
    reference_predictions: list[Prediction] | None = None


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
        return excludes_zero(self.ci_low, self.ci_high)


@dataclass
class ArmOutcome:
    arm: str
    status: ArmStatus  # done | failed
    error: str | None = None
    metrics: list[MetricValue] = field(default_factory=list)
    result: ArmResult | None = None


class SplitSizes(BaseModel):
    train: int = 0
    validation: int = 0
    test: int = 0
    documents: int = 0
    labels: int = 0


class BootstrapSettings(BaseModel):
    resamples: int
    confidence: float = 0.95
    paired: bool = True


class ArmModel(BaseModel):
    """Which model produced an arm's answers: the report's proxy rule reads this."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    parameters: int | None = None  # None: not known (a hosted model that does not say)
    via: str = "in-process"  # "in-process" or "endpoint"
    adapter: bool = False  # a LoRA adapter trained by the pilot, on `model_id`
    deployment: bool = False  # the user declared it the model they will deploy


class Manifest(BaseModel):
    """The reproducibility manifest: what a reader needs to re-run the pilot and trust it.

    Stored as JSON on the pilot row and read back with `Manifest.read`, so every reader (report,
    PDF, CLI JSON) sees the same typed fields. Unknown keys from newer writers are kept.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    seed: int
    base_model_id: str | None = None
    base_model_sha256: str | None = None
    base_model_path: str | None = None
    base_model_parameters: int | None = None
    arm_models: dict[str, ArmModel] = Field(default_factory=dict)  # arm -> who answered
    embedder: str | None = None
    dataset_sha256: str | None = None
    task: str | None = None
    split_sizes: SplitSizes = Field(default_factory=SplitSizes)
    arms: list[str] = Field(default_factory=list)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    bootstrap: BootstrapSettings | None = None
    price: dict[str, Any] | None = None
    fine_tuned_price: dict[str, Any] | None = None
    libraries: dict[str, str] = Field(default_factory=dict)
    device: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @classmethod
    def read(cls, stored: dict[str, Any] | None, *, seed: int) -> Manifest | None:
        """The stored manifest, or None for a pilot that has not finished (empty JSON)."""
        if not stored:
            return None
        return cls.model_validate({"seed": seed, **stored})

    def as_json(self) -> dict[str, Any]:
        return to_json_data(self.model_dump(mode="json"))


@dataclass
class PilotOutcome:
    task: PilotTask
    primary_metric: str
    arms: list[ArmOutcome]
    differences: list[Difference]
    warnings: list[str]  # data warnings (duplicates, leakage, imbalance, PII) + small-sample
    caps: list[str]  # what was capped, in words
    manifest: Manifest
