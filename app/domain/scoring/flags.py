"""Feasibility flags: problems a reader must see next to the scores, whatever they are."""

from __future__ import annotations

from app.domain.intake import GPU_ACCESS_LABELS, DataResidency
from app.domain.scoring.costs import QloraFit
from app.domain.scoring.paths import PATH_LABELS, PATHS
from app.domain.scoring.rubric import FEW_EXAMPLES_FLOOR, MIN_FINE_TUNING_EXAMPLES, ScoringContext
from app.domain.scoring.schemas import Flag


def feasibility_flags(ctx: ScoringContext, ranking: list[str]) -> list[Flag]:
    """All flags for this intake, blockers first, in a stable order."""
    flags = [
        *_gpu_flags(ctx),
        *_example_flags(ctx),
        *_document_flags(ctx, ranking),
        *_budget_flags(ctx),
        *_sample_flags(ctx),
    ]
    return sorted(flags, key=lambda flag: flag.severity != "blocker")


def _gpu_flags(ctx: ScoringContext) -> list[Flag]:
    intake, memory, fit = ctx.intake, ctx.costs.memory, ctx.costs.qlora_fit
    need = f"QLoRA on a {memory.target_model_size_b:g}B model needs ≈{memory.qlora_gb:g} GB"
    gpu = GPU_ACCESS_LABELS[intake.gpu_access]
    if fit is QloraFit.does_not_fit:
        return [
            Flag(
                id="gpu_memory",
                severity="blocker",
                message=f"{need}, more than {gpu.lower()} holds: choose a smaller target model, "
                "a larger GPU or a managed fine-tuning API.",
                path="fine_tuning",
            )
        ]
    if fit is QloraFit.may_fit:
        return [
            Flag(
                id="gpu_memory",
                severity="warning",
                message=f"{need}: it fits an 80 GB card but not a 40 GB one.",
                path="fine_tuning",
            )
        ]
    if fit is QloraFit.no_gpu:
        return [
            Flag(
                id="gpu_memory",
                severity="warning",
                message=f"{need} and the team has no GPU: rent one or use a managed API.",
                path="fine_tuning",
            )
        ]
    if fit is QloraFit.managed and intake.data_residency is DataResidency.on_premises:
        return [
            Flag(
                id="residency_vs_managed_api",
                severity="blocker",
                message="Data must stay on your machines, but the only way to fine-tune is a "
                "managed API, which would receive the training data.",
                path="fine_tuning",
            )
        ]
    return []


def _example_flags(ctx: ScoringContext) -> list[Flag]:
    count = ctx.intake.examples_available
    if count >= MIN_FINE_TUNING_EXAMPLES:
        return []
    return [
        Flag(
            id="too_few_examples",
            severity="blocker" if count < FEW_EXAMPLES_FLOOR else "warning",
            message=f"Only {count} examples: under ~{FEW_EXAMPLES_FLOOR}–"
            f"{MIN_FINE_TUNING_EXAMPLES}, few-shot prompting beats fine-tuning. Collect "
            "500–5,000 reviewed examples before fine-tuning.",
            path="fine_tuning",
        )
    ]


def _document_flags(ctx: ScoringContext, ranking: list[str]) -> list[Flag]:
    if ctx.intake.has_documents or ranking[0] != "rag":
        return []
    return [
        Flag(
            id="no_documents",
            severity="warning",
            message="RAG ranks first but there is no document corpus yet: gather the documents "
            "to retrieve from before building it.",
            path="rag",
        )
    ]


def _budget_flags(ctx: ScoringContext) -> list[Flag]:
    intake, flags = ctx.intake, []
    for path in PATHS:
        cost = ctx.costs.costs[path]
        label = PATH_LABELS[path]
        if cost.one_off_usd > intake.budget_one_off_usd:
            flags.append(
                Flag(
                    id="budget_below_one_off",
                    severity="warning",
                    message=f"{label} needs ≈${cost.one_off_usd:,.2f} up front; the one-off "
                    f"budget is ${intake.budget_one_off_usd:,.2f}.",
                    path=path,
                )
            )
        if cost.monthly_usd > intake.budget_monthly_usd:
            flags.append(
                Flag(
                    id="budget_below_monthly",
                    severity="warning",
                    message=f"{label} costs ≈${cost.monthly_usd:,.2f} a month at the stated "
                    f"traffic; the monthly budget is ${intake.budget_monthly_usd:,.2f}.",
                    path=path,
                )
            )
    return flags


def _sample_flags(ctx: ScoringContext) -> list[Flag]:
    summary = ctx.summary
    if summary is None or summary.exact_duplicates == 0:
        return []
    return [
        Flag(
            id="sample_duplicates",
            severity="warning",
            message=f"{summary.exact_duplicates} of {summary.rows} sample rows are exact "
            "duplicates: deduplicate before training or evaluating.",
            path=None,
        )
    ]
