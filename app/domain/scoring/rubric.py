"""The scoring rubric as data: every factor's input, weight, per-path effect and evidence.

A factor's contribution to a path's score is ``weight × activation × effect[path]``:
``activation`` (0..1) says how strongly the intake triggers the factor, ``weight`` is how many
points a full activation is worth, and ``effect`` (−1..1 per path) says which way, and how
much, it pushes each path. The report prints these numbers next to each other, so a reader can
recompute any score by hand.

Weights are judgement, calibrated so the decision table comes out right
(tests/app/domain/scoring/test_decision_table.py); the direction of each effect is what the cited
evidence supports. Factors with no citation say so in their rationale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from app.domain.intake import (
    DataResidency,
    FailureMode,
    Intake,
    TaskType,
    TeamSkill,
    Timeline,
    Volatility,
)
from app.domain.samples.schemas import SampleSummary
from app.domain.scoring import citations as c
from app.domain.scoring.costs import CostBreakdown, CostEstimate, QloraFit
from app.domain.scoring.paths import PathId
from app.domain.scoring.scales import clamp, log_scale

# Every path starts here before any factor applies. Prompting starts highest because every
# guide says to start from a prompt baseline; the others must earn their extra cost.
BASE_SCORES: Final[dict[str, float]] = {"prompting": 50.0, "rag": 35.0, "fine_tuning": 35.0}

# Data-size evidence: under ~100–200 good examples, few-shot beats fine-tuning; 500–5,000 is
# the usual fine-tuning range.
FEW_EXAMPLES_FLOOR: Final = 100
MIN_FINE_TUNING_EXAMPLES: Final = 200
USUAL_FINE_TUNING_EXAMPLES: Final = (500, 5_000)
EXAMPLES_SCALE: Final = (100, 5_000)

TRAFFIC_SCALE_QUERIES_PER_DAY: Final = (100, 100_000)
LATENCY_SCALE_MS: Final = (300, 3_000)  # tight at 300 ms, relaxed from 3 s
DUPLICATE_SHARE_AT_FULL_PENALTY: Final = 0.2
BUDGET_SHORTFALL_AT_FULL_PENALTY: Final = 10.0  # cost ten times the budget → full penalty


@dataclass(frozen=True)
class ScoringContext:
    """Everything a factor may read: the answers, the uploaded sample, the cost estimate."""

    intake: Intake
    summary: SampleSummary | None
    costs: CostBreakdown


@dataclass(frozen=True)
class PathEffect:
    """Signed push on each path at full activation, between −1 and 1."""

    prompting: float = 0.0
    rag: float = 0.0
    fine_tuning: float = 0.0

    def of(self, path: PathId) -> float:
        return float(getattr(self, path))

    def as_dict(self) -> dict[str, float]:
        return {"prompting": self.prompting, "rag": self.rag, "fine_tuning": self.fine_tuning}


@dataclass(frozen=True)
class Factor:
    """One rubric row."""

    id: str
    name: str
    reads: tuple[str, ...]  # intake field names, or "sample.<field>" for the uploaded sample
    weight: float
    effect: PathEffect
    rationale: str
    citations: tuple[str, ...]
    activation: Callable[[ScoringContext], float]  # pure, returns 0..1
    describe: Callable[[ScoringContext], str]  # the input as the report shows it


# --- activations -----------------------------------------------------------------------------


def _has_failure(*modes: FailureMode) -> Callable[[ScoringContext], float]:
    def activation(ctx: ScoringContext) -> float:
        return 1.0 if any(mode in ctx.intake.failure_modes for mode in modes) else 0.0

    return activation


def _no_failure_modes(ctx: ScoringContext) -> float:
    return 0.0 if ctx.intake.failure_modes else 1.0


def _volatility(ctx: ScoringContext) -> float:
    return ctx.intake.volatility.rank / Volatility.daily.rank


def _needs_citations(ctx: ScoringContext) -> float:
    return 1.0 if ctx.intake.needs_citations else 0.0


def _has_documents(ctx: ScoringContext) -> float:
    return 1.0 if ctx.intake.has_documents else 0.0


def _long_prompts_at_volume(ctx: ScoringContext) -> float:
    # Long prompts only cost real money (and latency) when multiplied by traffic.
    if FailureMode.prompts_too_long not in ctx.intake.failure_modes:
        return 0.0
    return log_scale(ctx.intake.queries_per_day, *TRAFFIC_SCALE_QUERIES_PER_DAY)


def _examples(ctx: ScoringContext) -> float:
    return log_scale(ctx.intake.examples_available, *EXAMPLES_SCALE)


def _reviewed_examples(ctx: ScoringContext) -> float:
    # Quality over quantity: reviewed examples count fully once they reach the usual range.
    if not ctx.intake.examples_reviewed:
        return 0.0
    return log_scale(
        ctx.intake.examples_available, FEW_EXAMPLES_FLOOR, USUAL_FINE_TUNING_EXAMPLES[0]
    )


def _too_few_examples(ctx: ScoringContext) -> float:
    # Full penalty below ~100 examples, fading out linearly by ~200.
    shortfall = MIN_FINE_TUNING_EXAMPLES - ctx.intake.examples_available
    return clamp(shortfall / (MIN_FINE_TUNING_EXAMPLES - FEW_EXAMPLES_FLOOR))


def _duplicate_share(ctx: ScoringContext) -> float:
    summary = ctx.summary
    if summary is None or summary.rows <= 0:
        return 0.0
    return clamp(summary.exact_duplicates / summary.rows / DUPLICATE_SHARE_AT_FULL_PENALTY)


_QLORA_FIT_ACTIVATION: Final[dict[QloraFit, float]] = {
    QloraFit.fits: 0.0,
    QloraFit.managed: 0.0,
    QloraFit.may_fit: 0.5,  # depends on whether the card is the 40 GB or the 80 GB one
    QloraFit.no_gpu: 0.5,  # feasible, but a GPU has to be rented first
    QloraFit.does_not_fit: 1.0,
}


def _gpu_shortfall(ctx: ScoringContext) -> float:
    # A managed fine-tuning API would receive the training data, which on-premises rules forbid.
    if (
        ctx.costs.qlora_fit is QloraFit.managed
        and ctx.intake.data_residency is DataResidency.on_premises
    ):
        return 1.0
    return _QLORA_FIT_ACTIVATION[ctx.costs.qlora_fit]


_TIMELINE_PRESSURE: Final[dict[Timeline, float]] = {
    Timeline.days: 1.0,
    Timeline.weeks: 0.3,
    Timeline.months: 0.0,
}


def _timeline_pressure(ctx: ScoringContext) -> float:
    return _TIMELINE_PRESSURE[ctx.intake.timeline]


def _ml_skills_gap(ctx: ScoringContext) -> float:
    skills = ctx.intake.team_skills
    return 1.0 - 0.5 * (TeamSkill.ml_engineering in skills) - 0.5 * (TeamSkill.mlops in skills)


_RESIDENCY_STRICTNESS: Final[dict[DataResidency, float]] = {
    DataResidency.none: 0.0,
    DataResidency.region: 0.3,
    DataResidency.on_premises: 1.0,
}


def _residency(ctx: ScoringContext) -> float:
    return _RESIDENCY_STRICTNESS[ctx.intake.data_residency]


def _tight_latency(ctx: ScoringContext) -> float:
    return 1.0 - log_scale(ctx.intake.latency_target_ms, *LATENCY_SCALE_MS)


def _task_is(*tasks: TaskType) -> Callable[[ScoringContext], float]:
    def activation(ctx: ScoringContext) -> float:
        return 1.0 if ctx.intake.task_type in tasks else 0.0

    return activation


def budget_shortfall(cost_usd: float, budget_usd: float) -> float:
    """0 within budget, rising on a log scale to 1 when the cost is ten times the budget."""
    if cost_usd <= budget_usd:
        return 0.0
    if budget_usd <= 0:
        return 1.0
    return log_scale(cost_usd / budget_usd, 1.0, BUDGET_SHORTFALL_AT_FULL_PENALTY)


def _over_budget(path: PathId) -> Callable[[ScoringContext], float]:
    def activation(ctx: ScoringContext) -> float:
        cost = ctx.costs.costs[path]
        return max(
            budget_shortfall(cost.one_off_usd, ctx.intake.budget_one_off_usd),
            budget_shortfall(cost.monthly_usd, ctx.intake.budget_monthly_usd),
        )

    return activation


# --- input descriptions ----------------------------------------------------------------------


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)


def _fields(*names: str) -> Callable[[ScoringContext], str]:
    def describe(ctx: ScoringContext) -> str:
        return "; ".join(f"{name} = {_show(getattr(ctx.intake, name))}" for name in names)

    return describe


def _describe_volatility(ctx: ScoringContext) -> str:
    volatility = ctx.intake.volatility
    return f"volatility = {volatility} (rank {volatility.rank} of {Volatility.daily.rank})"


def _describe_duplicates(ctx: ScoringContext) -> str:
    if ctx.summary is None:
        return "no sample uploaded"
    return f"{ctx.summary.exact_duplicates} exact duplicates in {ctx.summary.rows} rows"


def _describe_gpu(ctx: ScoringContext) -> str:
    memory = ctx.costs.memory
    return (
        f"gpu_access = {ctx.intake.gpu_access}; QLoRA on {memory.target_model_size_b:g}B needs "
        f"≈{memory.qlora_gb:g} GB ({ctx.costs.qlora_fit}); "
        f"data_residency = {ctx.intake.data_residency}"
    )


def _describe_budget(path: PathId) -> Callable[[ScoringContext], str]:
    def describe(ctx: ScoringContext) -> str:
        cost: CostEstimate = ctx.costs.costs[path]
        return (
            f"estimated ${cost.one_off_usd:,.2f} one-off vs budget "
            f"${ctx.intake.budget_one_off_usd:,.2f}; ${cost.monthly_usd:,.2f}/month vs budget "
            f"${ctx.intake.budget_monthly_usd:,.2f}"
        )

    return describe


_BUDGET_FIELDS: Final = ("budget_one_off_usd", "budget_monthly_usd")

# --- the rubric ------------------------------------------------------------------------------

RUBRIC: Final[tuple[Factor, ...]] = (
    Factor(
        id="prompt_baseline_works",
        name="Nothing goes wrong with a plain prompt",
        reads=("failure_modes",),
        weight=15,
        effect=PathEffect(prompting=1.0),
        rationale="Always start from a prompt baseline; with no failure to fix, keep it.",
        citations=(c.OPENAI_ACCURACY,),
        activation=_no_failure_modes,
        describe=_fields("failure_modes"),
    ),
    Factor(
        id="knowledge_gaps",
        name="Doesn't know our facts",
        reads=("failure_modes",),
        weight=25,
        effect=PathEffect(prompting=-0.2, rag=1.0, fine_tuning=-0.4),
        rationale=(
            "Knowledge gaps call for retrieval; RAG beat unsupervised fine-tuning at injecting "
            "knowledge, and wins on rare entities."
        ),
        citations=(c.OPENAI_ACCURACY, c.OVADIA_2023, c.SOUDANI_2024),
        activation=_has_failure(FailureMode.missing_facts),
        describe=_fields("failure_modes"),
    ),
    Factor(
        id="fresh_information",
        name="Needs fresh information",
        reads=("failure_modes",),
        weight=20,
        effect=PathEffect(prompting=-0.2, rag=1.0, fine_tuning=-0.5),
        rationale="Fresh facts belong in a retrievable index, not in weights frozen at training.",
        citations=(c.OPENAI_ACCURACY, c.OVADIA_2023),
        activation=_has_failure(FailureMode.needs_fresh_info),
        describe=_fields("failure_modes"),
    ),
    Factor(
        id="volatility",
        name="How often the knowledge changes",
        reads=("volatility",),
        weight=30,
        effect=PathEffect(prompting=-0.5, rag=1.0, fine_tuning=-0.5),
        rationale=(
            "Knowledge that changes weekly or faster favours RAG (re-index, don't retrain; a "
            "fixed prompt goes stale too); stable patterns suit fine-tuning."
        ),
        citations=(c.OPENAI_ACCURACY,),
        activation=_volatility,
        describe=_describe_volatility,
    ),
    Factor(
        id="citations_required",
        name="Answers must cite sources",
        reads=("needs_citations",),
        weight=15,
        effect=PathEffect(prompting=-0.3, rag=1.0, fine_tuning=-0.3),
        rationale="Citable answers need the source passage at answer time, which RAG supplies.",
        citations=(c.OPENAI_ACCURACY,),
        activation=_needs_citations,
        describe=_fields("needs_citations"),
    ),
    Factor(
        id="document_corpus",
        name="A document corpus exists",
        reads=("has_documents",),
        weight=8,
        effect=PathEffect(rag=1.0),
        rationale="RAG is only as good as the corpus it retrieves from; having one is a head "
        "start. "
        "(Engineering judgement; no published number.)",
        citations=(),
        activation=_has_documents,
        describe=_fields("has_documents"),
    ),
    Factor(
        id="format_and_tone",
        name="Ignores our format or gets the tone wrong",
        reads=("failure_modes",),
        weight=30,
        effect=PathEffect(prompting=-0.2, rag=-0.2, fine_tuning=1.0),
        rationale="Behaviour, format and tone are what fine-tuning teaches; retrieval adds facts, "
        "not behaviour.",
        citations=(c.OPENAI_ACCURACY,),
        activation=_has_failure(FailureMode.ignores_format, FailureMode.wrong_tone),
        describe=_fields("failure_modes"),
    ),
    Factor(
        id="domain_errors",
        name="Makes domain errors",
        reads=("failure_modes",),
        weight=20,
        effect=PathEffect(prompting=-0.4, rag=0.6, fine_tuning=0.8),
        rationale="Domain errors call for fine-tuning plus RAG; their gains stack (+6, then +5).",
        citations=(c.OPENAI_ACCURACY, c.BALAGUER_2024),
        activation=_has_failure(FailureMode.domain_errors),
        describe=_fields("failure_modes"),
    ),
    Factor(
        id="long_prompts_at_volume",
        name="Long prompts at high traffic",
        reads=("failure_modes", "queries_per_day"),
        weight=25,
        effect=PathEffect(prompting=-0.6, rag=-0.6, fine_tuning=1.0),
        rationale=(
            "Long prompts cost on every call; a fine-tune that shortens them pays for itself "
            "as traffic grows (log scale, 100 to 100,000 queries/day). RAG makes prompts longer."
        ),
        citations=(c.OPENAI_ACCURACY, c.COST_GUIDANCE),
        activation=_long_prompts_at_volume,
        describe=_fields("failure_modes", "queries_per_day"),
    ),
    Factor(
        id="training_examples",
        name="Examples available",
        reads=("examples_available",),
        weight=20,
        effect=PathEffect(fine_tuning=1.0),
        rationale="More examples support fine-tuning (log scale from 100 to 5,000, the usual "
        "range's top).",
        citations=(c.DATA_SIZE_GUIDANCE,),
        activation=_examples,
        describe=_fields("examples_available"),
    ),
    Factor(
        id="reviewed_examples",
        name="Examples reviewed by a person",
        reads=("examples_reviewed", "examples_available"),
        weight=15,
        effect=PathEffect(fine_tuning=1.0),
        rationale="Quality over quantity: reviewed examples count fully from 500, where the usual "
        "fine-tuning range starts.",
        citations=(c.DATA_SIZE_GUIDANCE,),
        activation=_reviewed_examples,
        describe=_fields("examples_reviewed", "examples_available"),
    ),
    Factor(
        id="too_few_examples",
        name="Too few examples to fine-tune",
        reads=("examples_available",),
        weight=25,
        effect=PathEffect(fine_tuning=-1.0),
        rationale="Under ~100–200 good examples, few-shot prompting beats fine-tuning.",
        citations=(c.DATA_SIZE_GUIDANCE,),
        activation=_too_few_examples,
        describe=_fields("examples_available"),
    ),
    Factor(
        id="sample_duplicates",
        name="Duplicates in the sample",
        reads=("sample.exact_duplicates", "sample.rows"),
        weight=10,
        effect=PathEffect(fine_tuning=-1.0),
        rationale="Quality over quantity: duplicated rows inflate the count without teaching "
        "more (full penalty at 20% duplicates).",
        citations=(c.DATA_SIZE_GUIDANCE,),
        activation=_duplicate_share,
        describe=_describe_duplicates,
    ),
    Factor(
        id="gpu_fit",
        name="GPU memory for QLoRA on the target model",
        reads=("gpu_access", "target_model_size_b", "data_residency"),
        weight=25,
        effect=PathEffect(fine_tuning=-1.0),
        rationale="QLoRA needs ≈6/12/24/48 GB for 7/14/30/70B; a GPU too small (or none, or a "
        "managed API that on-premises data may not reach) blocks or delays fine-tuning.",
        citations=(c.LLAMA_FACTORY_MEMORY, c.QLORA_2023),
        activation=_gpu_shortfall,
        describe=_describe_gpu,
    ),
    Factor(
        id="timeline_pressure",
        name="Short timeline",
        reads=("timeline",),
        weight=15,
        effect=PathEffect(prompting=0.5, rag=-0.3, fine_tuning=-1.0),
        rationale="Days favour what ships today; a fine-tune needs data work, training and "
        "evaluation. (Engineering judgement; no published number.)",
        citations=(),
        activation=_timeline_pressure,
        describe=_fields("timeline"),
    ),
    Factor(
        id="ml_skills_gap",
        name="No ML engineering or MLOps skills",
        reads=("team_skills",),
        weight=12,
        effect=PathEffect(prompting=0.3, rag=-0.2, fine_tuning=-1.0),
        rationale="Training, evaluating and serving a fine-tune needs ML engineering and MLOps; "
        "RAG needs less. (Engineering judgement; no published number.)",
        citations=(),
        activation=_ml_skills_gap,
        describe=_fields("team_skills"),
    ),
    Factor(
        id="data_residency",
        name="Data must stay on our machines",
        reads=("data_residency",),
        weight=10,
        effect=PathEffect(prompting=-0.3, fine_tuning=0.6),
        rationale="Self-hosting an open model avoids the 3–4× price of hosted fine-tuned "
        "inference, and a small self-hosted model gains most from fine-tuning.",
        citations=(c.COST_GUIDANCE,),
        activation=_residency,
        describe=_fields("data_residency"),
    ),
    Factor(
        id="tight_latency",
        name="Tight latency target",
        reads=("latency_target_ms",),
        weight=8,
        effect=PathEffect(rag=-0.5, fine_tuning=0.3),
        rationale="Retrieval adds a lookup and context tokens to every call; a fine-tune's "
        "shorter prompt answers faster. (Engineering judgement; no published number.)",
        citations=(),
        activation=_tight_latency,
        describe=_fields("latency_target_ms"),
    ),
    Factor(
        id="task_document_qa",
        name="Task is question answering over documents",
        reads=("task_type",),
        weight=12,
        effect=PathEffect(rag=1.0),
        rationale="Answers that live in documents are a knowledge problem, which RAG addresses.",
        citations=(c.OPENAI_ACCURACY,),
        activation=_task_is(TaskType.document_qa),
        describe=_fields("task_type"),
    ),
    Factor(
        id="task_behavioural",
        name="Task is classification, extraction or styled generation",
        reads=("task_type",),
        weight=8,
        effect=PathEffect(fine_tuning=1.0),
        rationale="Fixed labels, output schemas and a house style are behaviour, which "
        "fine-tuning teaches.",
        citations=(c.OPENAI_ACCURACY,),
        activation=_task_is(TaskType.classification, TaskType.extraction, TaskType.generation),
        describe=_fields("task_type"),
    ),
    Factor(
        id="budget_prompting",
        name="Prompting over budget",
        reads=_BUDGET_FIELDS,
        weight=20,
        effect=PathEffect(prompting=-1.0),
        rationale="A path that costs more than the budget is a harder sell (full penalty at 10× "
        "the budget).",
        citations=(c.COST_GUIDANCE,),
        activation=_over_budget("prompting"),
        describe=_describe_budget("prompting"),
    ),
    Factor(
        id="budget_rag",
        name="RAG over budget",
        reads=_BUDGET_FIELDS,
        weight=20,
        effect=PathEffect(rag=-1.0),
        rationale="A path that costs more than the budget is a harder sell (full penalty at 10× "
        "the budget).",
        citations=(c.COST_GUIDANCE,),
        activation=_over_budget("rag"),
        describe=_describe_budget("rag"),
    ),
    Factor(
        id="budget_fine_tuning",
        name="Fine-tuning over budget",
        reads=_BUDGET_FIELDS,
        weight=20,
        effect=PathEffect(fine_tuning=-1.0),
        rationale="LoRA compute is $10–100 per run and fine-tuned inference may cost 3–4× base; "
        "full penalty at 10× the budget.",
        citations=(c.COST_GUIDANCE,),
        activation=_over_budget("fine_tuning"),
        describe=_describe_budget("fine_tuning"),
    ),
)

FACTORS_BY_ID: Final[dict[str, Factor]] = {factor.id: factor for factor in RUBRIC}
