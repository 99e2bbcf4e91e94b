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
    cancelled = "cancelled"


class PilotStage(StrEnum):
    """Where a running pilot is: each stage is a task of its own."""

    preparing = "preparing"
    arms = "arms"
    concluding = "concluding"


class ArmStatus(StrEnum):
    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"


FINISHED_PILOT = frozenset({PilotStatus.done, PilotStatus.failed, PilotStatus.cancelled})


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
    """metric(arm_a) - metric(arm_b) on the same test items, with its 95% interval and the
    sample it rests on (`app.domain.comparison`). The sample fields are None on pilots stored
    before they were recorded."""

    metric: str
    arm_a: str
    arm_b: str
    delta: float
    ci_low: float
    ci_high: float
    n_items: int | None = None  # items both arms were scored on
    n_groups: int | None = None  # independent groups among them
    discordant: int | None = None  # binary metrics without groups: items the arms disagree on
    p_value: float | None = None  # two-sided test of "no difference"
    design_effect: float | None = None  # clustered variance over the independent-items one
    method: str | None = None  # app.domain.comparison.Method

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
    resamples: int  # for each arm's own interval (display)
    confidence: float = 0.95
    paired: bool = True
    # How the differences that decide were computed; None on pilots from before, whose
    # differences came from the same resamples.
    differences: str | None = None
    grouped: bool | None = None  # whether test items were resampled and compared in groups


class ArmModel(BaseModel):
    """Which model produced an arm's answers: the report's proxy rule reads this."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    parameters: int | None = None  # None: not known (a hosted model that does not say)
    via: str = "in-process"  # "in-process" or "endpoint"
    adapter: bool = False  # a LoRA adapter trained by the pilot, on `model_id`
    deployment: bool = False  # the user declared it the model they will deploy


class ArmHandover(BaseModel):
    """What an arm leaves for the pilot's conclusion, which may run in another process: the
    answers the differences and the judge read, and the facts the manifest records."""

    model_config = ConfigDict(protected_namespaces=())

    answers: list[str] | None = None  # one per test item, in order; None for a failed arm
    model: ArmModel | None = None  # who answered (None for an arm without a model)
    recipe: dict[str, Any] = Field(default_factory=dict)  # hyper-parameters used
    device: str | None = None  # where the arm ran ("cuda", "cpu")
    adapter_path: str | None = None  # the adapter it trained, for an arm that adopts it

    @classmethod
    def read(cls, stored: dict[str, Any] | None) -> ArmHandover:
        return cls.model_validate(stored or {})

    def as_json(self) -> dict[str, Any]:
        return to_json_data(self.model_dump(mode="json"))


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
    # The model that graded open-ended answers, when one did (its key is never recorded).
    judge_model: ArmModel | None = None

    @classmethod
    def read(cls, stored: dict[str, Any] | None, *, seed: int) -> Manifest | None:
        """The stored manifest, or None for a pilot that has not finished (empty JSON)."""
        if not stored:
            return None
        return cls.model_validate({"seed": seed, **stored})

    def as_json(self) -> dict[str, Any]:
        return to_json_data(self.model_dump(mode="json"))

    @property
    def had_documents(self) -> bool:
        """Whether the retrieval arms retrieved documents; without any they retrieved training
        examples as shots, and are labelled for that (`app.domain.arms`)."""
        return self.split_sizes.documents > 0


# --- what the LLM judge found (the prompts and how replies are read: app.domain.judging) ---


class PairResult(StrEnum):
    win = "win"  # for the first arm of the pair
    tie = "tie"
    loss = "loss"
    unreadable = "unreadable"


class ArmJudging(BaseModel):
    """How grading one arm went."""

    arm: str
    verdicts: int  # items graded (the test split)
    unreadable: int  # still malformed after the retry, or the request failed
    failed_requests: int = 0  # part of `unreadable`: no reply at all after the client's retries
    retried: int = 0  # first replies that were malformed and were asked again
    agreement: float | None = None  # Spearman rho with the reference metric
    cost_usd: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def unreadable_line(self) -> str:
        return unreadable_line(self.unreadable, self.verdicts)


class PairTally(BaseModel):
    """Pairwise results of `arm_a` against `arm_b` (the later arm against the earlier one)."""

    arm_a: str
    arm_b: str
    wins: int = 0  # arm_a better in both orders
    ties: int = 0  # a tie in either order, or the orders disagreed
    losses: int = 0  # arm_b better in both orders
    unreadable: int = 0  # an order's reply stayed malformed (or failed)
    identical: int = 0  # part of `ties`: the same answer text, not asked
    disagreements: int = 0  # part of `ties`: each order preferred whatever was shown first
    cost_usd: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, result: PairResult) -> None:
        if result is PairResult.win:
            self.wins += 1
        elif result is PairResult.loss:
            self.losses += 1
        elif result is PairResult.tie:
            self.ties += 1
        else:
            self.unreadable += 1

    @property
    def compared(self) -> int:
        return self.wins + self.ties + self.losses + self.unreadable


class JudgeResults(BaseModel):
    """The pilot-level judge record: stored as JSON on the pilot, read by the report and API."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    via: str = "endpoint"
    reference_metric: str
    arms: list[ArmJudging] = Field(default_factory=list)
    pairs: list[PairTally] = Field(default_factory=list)
    agreement: float | None = None  # all arms' items pooled
    agreement_n: int | None = None  # readable (score, reference) pairs behind `agreement`
    # Whether the judge's pass rate became the primary metric, and if not, why not.
    primary: bool | None = None
    not_primary_because: str | None = None
    # Grading and pairwise, each distinct request once; None when the model has no prices.
    cost_usd: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0  # asked of the endpoint in this run
    reused: int = 0  # answers kept from an earlier attempt of the same pilot, not paid again
    shared: int = 0  # requests two arms had in common (the same answer), asked once
    errors: list[str] = Field(default_factory=list)  # what stopped the judge, per arm

    @classmethod
    def read(cls, stored: dict[str, Any] | None) -> JudgeResults | None:
        return cls.model_validate(stored) if stored else None

    def as_json(self) -> dict[str, Any]:
        return to_json_data(self.model_dump(mode="json"))

    @property
    def unreadable(self) -> int:
        return sum(arm.unreadable for arm in self.arms)

    @property
    def verdicts(self) -> int:
        return sum(arm.verdicts for arm in self.arms)


def unreadable_line(unreadable: int, total: int) -> str:
    """'3 of 120 verdicts unreadable', the way the report and the command line say it."""
    noun = "verdict" if total == 1 else "verdicts"
    return f"{unreadable} of {total} {noun} unreadable"


# --- the fine-tuning arm's learning curve (the fit and its wording: app.domain.learning_curve) ---


class CurvePoint(BaseModel):
    """One size trained and what its adapter scored on the test split."""

    examples: int  # the subset's size
    # Examples the adapter actually trained on (fewer when validation is carved out of the
    # subset, or the time cap bites): the fit and the guard use this, what the model saw.
    trained_on: int
    value: float  # primary metric, 0-1
    ci_low: float
    ci_high: float
    training_seconds: float = 0.0
    reused: bool = False  # the fine-tuning arm's own result (the full split), not trained again


class CurveFit(StrEnum):
    """The trend fitted through the points (`app.domain.learning_curve` explains the choice)."""

    # logit(quality) = intercept + slope * ln(n): bounded by 0% and 100%.
    logit = "logit"
    # quality = intercept + slope * ln(n): curves stored before the bounded fit, which read
    # the same way they always did.
    linear = "linear"


class PointEvaluation(StrEnum):
    """How every point of a curve answered the test split: the same way for all of them."""

    in_process = "in_process"  # the model as trained, in the worker's own process


class LearningCurve(BaseModel):
    """The stored curve: its points, the fit and the fit's bootstrap draws."""

    metric: str
    points: list[CurvePoint] = Field(default_factory=list)
    fit: CurveFit = CurveFit.logit
    intercept: float | None = None  # on the fit's scale, against ln(n)
    slope: float | None = None
    # (intercept, slope) refitted on each bootstrap resample: the band and the gain's interval.
    draws: list[tuple[float, float]] = Field(default_factory=list)
    # None: stored before the curve recorded it (its largest point may be the served figure).
    evaluated: PointEvaluation | None = None
    # The band is test-item noise only: each size is trained once, with the arm's seed.
    training_runs_per_size: int = 1
    extra_seconds: float = 0.0  # wall time the curve added to the pilot (training + answers)
    notes: list[str] = Field(default_factory=list)

    @classmethod
    def read(cls, stored: dict[str, object] | None) -> LearningCurve | None:
        if not stored:
            return None
        # A curve stored without a fit is a straight line on ln(n): keep reading it as one.
        return cls.model_validate({"fit": CurveFit.linear, **stored})

    def as_json(self) -> dict[str, object]:
        return self.model_dump(mode="json")


@dataclass
class PilotOutcome:
    task: PilotTask
    primary_metric: str
    arms: list[ArmOutcome]
    differences: list[Difference]
    warnings: list[str]  # data warnings (duplicates, leakage, imbalance, PII) + small-sample
    caps: list[str]  # what was capped, in words
    manifest: Manifest
    # What the LLM judge found, when one graded the arms.
    judge: JudgeResults | None = None
    # The fine-tuning arm's learning curve, when the pilot asked for one.
    learning_curve: LearningCurve | None = None
