"""The intake: what the wizard asks, what `POST /api/v1/assessments` takes, what scoring reads.

One pydantic model serves all three so the wizard, the API, the CLI and the rubric can never
disagree on a field's name, range or meaning.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The smallest quality gain, in percentage points, that the default intake treats as mattering.
DEFAULT_MIN_DIFFERENCE_POINTS: Final = 2.0


class TaskType(StrEnum):
    classification = "classification"
    extraction = "extraction"
    document_qa = "document_qa"
    generation = "generation"
    summarisation = "summarisation"


class FailureMode(StrEnum):
    missing_facts = "missing_facts"
    ignores_format = "ignores_format"
    wrong_tone = "wrong_tone"
    domain_errors = "domain_errors"
    needs_fresh_info = "needs_fresh_info"
    prompts_too_long = "prompts_too_long"


class Volatility(StrEnum):
    """How often the knowledge the model needs changes; declared in increasing order."""

    static = "static"
    yearly = "yearly"
    monthly = "monthly"
    weekly = "weekly"
    daily = "daily"

    @property
    def rank(self) -> int:
        return list(Volatility).index(self)


class GpuAccess(StrEnum):
    none = "none"
    gpu_24gb = "gpu_24gb"
    gpu_40_80gb = "gpu_40_80gb"
    managed_api = "managed_api"


class Timeline(StrEnum):
    days = "days"
    weeks = "weeks"
    months = "months"


class TeamSkill(StrEnum):
    prompt_engineering = "prompt_engineering"
    python = "python"
    ml_engineering = "ml_engineering"
    mlops = "mlops"


class DataResidency(StrEnum):
    none = "none"
    region = "region"
    on_premises = "on_premises"


TASK_TYPE_LABELS = {
    TaskType.classification: "Classification (route, tag, label)",
    TaskType.extraction: "Extraction / structured output",
    TaskType.document_qa: "Question answering over documents",
    TaskType.generation: "Generation in a style or tone",
    TaskType.summarisation: "Summarisation",
}
FAILURE_MODE_LABELS = {
    FailureMode.missing_facts: "It doesn't know our facts",
    FailureMode.ignores_format: "It ignores our output format",
    FailureMode.wrong_tone: "Wrong tone or style",
    FailureMode.domain_errors: "It makes domain errors",
    FailureMode.needs_fresh_info: "It needs fresh information",
    FailureMode.prompts_too_long: "Our prompts are too long or slow",
}
VOLATILITY_LABELS = {
    Volatility.static: "Practically never",
    Volatility.yearly: "Yearly",
    Volatility.monthly: "Monthly",
    Volatility.weekly: "Weekly",
    Volatility.daily: "Daily or faster",
}
GPU_ACCESS_LABELS = {
    GpuAccess.none: "No GPU",
    GpuAccess.gpu_24gb: "A 24 GB GPU",
    GpuAccess.gpu_40_80gb: "A 40–80 GB GPU",
    GpuAccess.managed_api: "A managed fine-tuning API only",
}
TIMELINE_LABELS = {
    Timeline.days: "Days",
    Timeline.weeks: "Weeks",
    Timeline.months: "Months",
}
TEAM_SKILL_LABELS = {
    TeamSkill.prompt_engineering: "Prompt engineering",
    TeamSkill.python: "Python back-end",
    TeamSkill.ml_engineering: "ML engineering (training, evaluation)",
    TeamSkill.mlops: "MLOps (serving, GPUs)",
}
DATA_RESIDENCY_LABELS = {
    DataResidency.none: "No constraint",
    DataResidency.region: "Must stay in a region",
    DataResidency.on_premises: "Must stay on our own machines",
}


class Intake(BaseModel):
    """A complete intake. Every field has a range a tech lead would recognise as sane."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    title: str = Field(min_length=1, max_length=200, description="A short name for the use case")
    use_case: str = Field(
        min_length=1, max_length=5000, description="What the model should do, in plain words"
    )
    task_type: TaskType
    failure_modes: list[FailureMode] = Field(
        default_factory=list, description="What goes wrong with a plain prompt today"
    )
    volatility: Volatility = Field(description="How often the needed knowledge changes")
    needs_citations: bool = Field(False, description="Answers must cite their sources")
    examples_available: int = Field(
        ge=0, le=10_000_000, description="Labelled input/output examples you could train on"
    )
    examples_reviewed: bool = Field(False, description="The examples were checked by a person")
    has_documents: bool = Field(False, description="A document corpus exists for retrieval")
    # allow_inf_nan=False: "nan" is not a number to compare with the bounds (it was reported
    # as "must be at most"), and NaN cannot be stored in JSON.
    budget_one_off_usd: float = Field(
        ge=0, le=1e9, allow_inf_nan=False, description="One-off budget in USD"
    )
    budget_monthly_usd: float = Field(
        ge=0, le=1e9, allow_inf_nan=False, description="Monthly running budget in USD"
    )
    gpu_access: GpuAccess
    timeline: Timeline
    team_skills: list[TeamSkill] = Field(default_factory=list)
    queries_per_day: int = Field(ge=0, le=1_000_000_000, description="Expected traffic")
    latency_target_ms: int = Field(ge=50, le=600_000, description="p95 latency target")
    data_residency: DataResidency = DataResidency.none
    target_model_size_b: float = Field(
        gt=0,
        le=1000,
        allow_inf_nan=False,
        description="Size of the model you intend to serve, billions of parameters",
    )
    prompt_tokens_today: int = Field(
        800,
        ge=0,
        le=1_000_000,
        description="Tokens in today's prompt per query (instructions + examples)",
    )
    # A default, not a required answer: intakes stored before this field existed stay valid.
    min_difference_points: float = Field(
        DEFAULT_MIN_DIFFERENCE_POINTS,
        ge=0,
        le=50,
        allow_inf_nan=False,
        description=(
            "Smallest quality gain that matters, in percentage points: a measured gain smaller "
            "than this is treated as a tie, and cost, latency and simplicity decide instead"
        ),
    )

    @field_validator("failure_modes", "team_skills")
    @classmethod
    def _unique(cls, value: list[StrEnum]) -> list[StrEnum]:
        return list(dict.fromkeys(value))

    @field_validator("title", "use_case")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if "\x00" in value:  # PostgreSQL cannot store NUL in text; no real text has one
            raise ValueError("must not contain NUL characters")
        return value.strip()
