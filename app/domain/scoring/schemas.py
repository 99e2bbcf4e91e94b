"""What scoring returns: one JSON-serialisable result, stored in the DB and shown everywhere."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.domain.scoring.citations import Citation
from app.domain.scoring.costs import CostEstimate, MemoryEstimate


class FactorContribution(BaseModel):
    """One rubric row as applied to one intake: enough to recompute the score by hand."""

    factor_id: str
    name: str
    reads: list[str]
    input_value: str
    activation: float
    weight: float
    effect: dict[str, float]
    contribution: dict[str, float]  # weight × activation × effect, per path
    rationale: str
    citations: list[str]  # ids into ScoreResult.sources


class Flag(BaseModel):
    """A feasibility problem the reader must see next to the scores."""

    id: str
    severity: Literal["warning", "blocker"]
    message: str
    path: str | None = None  # the path it concerns; None when it concerns the whole intake


class HybridRecommendation(BaseModel):
    """A combination of paths that beats either alone for this intake."""

    id: str  # e.g. "fine_tuning+rag"
    label: str
    paths: list[str]
    reason: str
    citations: list[str] = Field(default_factory=list)


class ScoreAdjustment(BaseModel):
    """A rule applied after the factor sum, recorded so the table still adds up."""

    path: str
    before: float
    after: float
    reason: str


class ScoreResult(BaseModel):
    """Three scores (0–100), their ranking, and everything needed to audit them."""

    scores: dict[str, float]
    ranking: list[str]
    hybrid: HybridRecommendation | None
    flags: list[Flag]
    costs: dict[str, CostEstimate]
    break_even_queries_per_month: float | None
    memory: MemoryEstimate
    base_scores: dict[str, float]
    factors: list[FactorContribution]
    adjustments: list[ScoreAdjustment] = Field(default_factory=list)
    sources: list[Citation]
    headline: str
