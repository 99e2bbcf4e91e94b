"""Cost and memory model per path: one-off and monthly USD, fine-tuning break-even, GPU fit.

Evidence (docs/rubric.md, "Citations"): LoRA compute costs $10–100 per run; fine-tuned inference
costs 3–4× base on some managed providers (modelled from the price table's ``hosted-fine-tuned``
vs ``hosted-base`` rows, never a hard-coded multiplier); long prompts cost on every call, so a
fine-tune that shortens them can pay for itself. Memory: QLoRA ≈ 6/12/24/48 GB for 7/14/30/70B,
LoRA fp16 7B ≈ 16–20 GB, full fine-tuning 7B ≈ 112–120 GB.

Everything else below is a stated modelling assumption (a named constant), shown in the
estimate's notes so a reader can see what the numbers rest on.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, Field

from app.domain.intake import DataResidency, GpuAccess, Intake
from app.domain.recipe import epochs_for
from app.domain.samples.schemas import SampleSummary
from app.domain.scoring.paths import PATHS
from app.domain.scoring.scales import interpolate, log_scale
from app.settings import DEFAULT_PRICE_TABLE

PriceTable = dict[str, tuple[float, float]]  # row name -> (USD per 1M input, per 1M output)

HOSTED_BASE: Final = "hosted-base"
HOSTED_FINE_TUNED: Final = "hosted-fine-tuned"
SELF_HOSTED_GPU: Final = "self-hosted-gpu"

DAYS_PER_MONTH: Final = 30
PAYBACK_MONTHS: Final = 12
TOKENS_PER_MILLION: Final = 1_000_000

# Assumptions (not evidence): sizes of the pieces of one query, in tokens.
DEFAULT_EXAMPLE_TOKENS: Final = 200  # one user input plus its answer, when no sample was uploaded
RETRIEVED_CONTEXT_TOKENS: Final = 1_000  # RAG's top-k passages added to every prompt
FINE_TUNED_PROMPT_TOKENS: Final = 50  # what is left of the prompt once the model learnt the rest
RAG_CORPUS_TOKENS: Final = 2_000_000  # a mid-sized corpus, embedded once to build the index

# Evidence: LoRA compute is $10–100 per run. Model size (7→70B) and example count (100→5,000,
# the usual fine-tuning range) each span half of that range on a log scale, so a 7B run on 100
# examples costs $10 and a 70B run on 5,000 examples $100. A first run is assumed to use at
# most 5,000 examples (quality over quantity), which also keeps the cost bounded.
LORA_RUN_MIN_USD: Final = 10.0
LORA_RUN_MAX_USD: Final = 100.0
LORA_COST_SIZE_RANGE_B: Final = (7.0, 70.0)
LORA_COST_EXAMPLES_RANGE: Final = (100, 5_000)

# Evidence: LLaMA-Factory README, QLoRA 4-bit row; (0, 0) anchors the interpolation for small
# models, and sizes past 70B extend the 30→70B slope.
QLORA_MEMORY_GB: Final = ((0.0, 0.0), (7.0, 6.0), (14.0, 12.0), (30.0, 24.0), (70.0, 48.0))
LORA_FP16_7B_GB: Final = (16.0, 20.0)
FULL_FINETUNE_7B_GB: Final = (112.0, 120.0)

# What each GPU answer can hold, in GB: (smallest card, largest card).
GPU_MEMORY_GB: Final[dict[GpuAccess, tuple[float, float]]] = {
    GpuAccess.none: (0.0, 0.0),
    GpuAccess.gpu_24gb: (24.0, 24.0),
    GpuAccess.gpu_40_80gb: (40.0, 80.0),
}


class CostEstimate(BaseModel):
    """What one path costs: once to build, then every month to run."""

    one_off_usd: float
    monthly_usd: float
    usd_per_query: float
    notes: list[str] = Field(default_factory=list)


class MemoryEstimate(BaseModel):
    """GPU memory needed to fine-tune the target model, by method (GB)."""

    target_model_size_b: float
    qlora_gb: float
    lora_fp16_gb: tuple[float, float]
    full_finetune_gb: tuple[float, float]


class QloraFit(StrEnum):
    """Whether a QLoRA run of the target model fits the GPU the team has."""

    fits = "fits"
    may_fit = "may_fit"  # fits the largest card of the answered range, not the smallest
    does_not_fit = "does_not_fit"
    no_gpu = "no_gpu"  # would have to rent one
    managed = "managed"  # the provider trains; memory is not the team's concern


class CostBreakdown(BaseModel):
    """All cost figures for one intake; the rubric's budget factors read this."""

    costs: dict[str, CostEstimate]
    break_even_queries_per_month: float | None
    memory: MemoryEstimate
    qlora_fit: QloraFit


# The one QLoRA memory estimator, shared by the rubric's memory table and the GPU workers'
# pre-flight. The table's figures are read as a run at this reference batch (examples x tokens);
# the estimate splits them into 4-bit weights (with their quantisation constants), LoRA
# weights with their gradients and Adam state, and activations, which scale with the batch.
REFERENCE_BATCH_TOKENS: Final = 1 * 512
GB_PER_B_PARAMS_4BIT: Final = 0.55
LORA_PARAMETER_FRACTION: Final = 0.005  # rank 8-16 adapters on the attention and MLP matrices
LORA_BYTES_PER_PARAMETER: Final = 16  # bf16 weight, fp32 gradient, two fp32 Adam moments


class QloraMemoryNeed(BaseModel):
    """GPU memory a QLoRA run needs, by part (GB)."""

    weights_gb: float
    lora_and_optimiser_gb: float
    activations_gb: float

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.lora_and_optimiser_gb + self.activations_gb


def qlora_memory_need(
    size_b: float, *, batch_tokens: int = REFERENCE_BATCH_TOKENS
) -> QloraMemoryNeed:
    """QLoRA's memory need for a `size_b`-billion-parameter model at a batch of `batch_tokens`
    (examples x sequence length). At the reference batch the total is the table's figure."""
    weights = size_b * GB_PER_B_PARAMS_4BIT
    lora = size_b * 1e9 * LORA_PARAMETER_FRACTION * LORA_BYTES_PER_PARAMETER / 1e9
    reference_activations = max(0.0, interpolate(size_b, QLORA_MEMORY_GB) - weights - lora)
    return QloraMemoryNeed(
        weights_gb=weights,
        lora_and_optimiser_gb=lora,
        activations_gb=reference_activations * batch_tokens / REFERENCE_BATCH_TOKENS,
    )


def qlora_memory_gb(size_b: float) -> float:
    """GPU memory for QLoRA on a `size_b`-billion-parameter model at the reference batch (the
    rubric's memory table)."""
    return round(qlora_memory_need(size_b).total_gb, 1)


# Room left free on the card: the CUDA context, allocator fragmentation, evaluation batches.
PREFLIGHT_HEADROOM: Final = 0.9


def qlora_preflight(
    need: QloraMemoryNeed, *, free_gb: float, batch_size: int, max_seq_len: int
) -> str | None:
    """None when the run fits the free GPU memory (with headroom); else the refusal, naming
    the need, the free memory and what to change."""
    if need.total_gb <= free_gb * PREFLIGHT_HEADROOM:
        return None
    return (
        f"Not enough GPU memory to fine-tune: QLoRA needs about {need.total_gb:.1f} GB "
        f"({need.weights_gb:.1f} GB of 4-bit weights, {need.lora_and_optimiser_gb:.1f} GB of "
        f"LoRA weights and optimiser state, {need.activations_gb:.1f} GB of activations at "
        f"batch {batch_size} x {max_seq_len} tokens), and this GPU has {free_gb:.1f} GB free. "
        "Lower the batch size or the sequence length (recipe overrides), choose a smaller base "
        "model, or route the pilot to a GPU worker with more free memory."
    )


def memory_estimate(size_b: float) -> MemoryEstimate:
    """Memory per method; LoRA fp16 and full fine-tuning scale linearly from their 7B figures."""
    scale = size_b / 7.0
    return MemoryEstimate(
        target_model_size_b=size_b,
        qlora_gb=qlora_memory_gb(size_b),
        lora_fp16_gb=(round(LORA_FP16_7B_GB[0] * scale, 1), round(LORA_FP16_7B_GB[1] * scale, 1)),
        full_finetune_gb=(
            round(FULL_FINETUNE_7B_GB[0] * scale, 1),
            round(FULL_FINETUNE_7B_GB[1] * scale, 1),
        ),
    )


def qlora_fit(gpu_access: GpuAccess, size_b: float) -> QloraFit:
    """Compare the QLoRA memory need with the GPU memory the answer implies."""
    if gpu_access is GpuAccess.managed_api:
        return QloraFit.managed
    if gpu_access is GpuAccess.none:
        return QloraFit.no_gpu
    smallest, largest = GPU_MEMORY_GB[gpu_access]
    need = qlora_memory_gb(size_b)
    if need <= smallest:
        return QloraFit.fits
    if need <= largest:
        return QloraFit.may_fit
    return QloraFit.does_not_fit


def lora_run_cost_usd(size_b: float, examples: int) -> float:
    """Compute cost of one LoRA/QLoRA run: $10–100, log-scaled by model size and examples."""
    size_part = log_scale(size_b, *LORA_COST_SIZE_RANGE_B)
    examples_part = log_scale(examples, *LORA_COST_EXAMPLES_RANGE)
    span = math.log(LORA_RUN_MAX_USD / LORA_RUN_MIN_USD)
    return round(LORA_RUN_MIN_USD * math.exp(span * (size_part + examples_part) / 2), 2)


def first_run_examples(examples_available: int) -> int:
    """Examples a first fine-tuning run uses: all of them, up to the usual range's top."""
    return min(examples_available, LORA_COST_EXAMPLES_RANGE[1])


def scaled_training_usd(
    *,
    measured_seconds: float,
    usd_per_hour: float,
    pilot_parameters: int,
    pilot_examples: int,
    target_size_b: float,
    target_examples: int,
) -> float:
    """Training compute measured on a pilot, scaled to the target model and data.

    Training compute is about 6 × parameters × tokens seen (Kaplan et al. 2020, arXiv
    2001.08361), so on the same hardware the time scales with parameters × examples × epochs;
    the epochs are the ones the recipe (`app.domain.recipe.epochs_for`) gives each size of
    training set. The measured seconds include fixed overheads (loading, a probe step), so on
    a tiny pilot the scaled figure errs high.
    """
    if measured_seconds <= 0 or pilot_parameters <= 0 or pilot_examples <= 0:
        return 0.0
    parameters = target_size_b * 1e9 / pilot_parameters
    seen = (target_examples * epochs_for(target_examples)) / (
        pilot_examples * epochs_for(pilot_examples)
    )
    return measured_seconds / 3600 * usd_per_hour * parameters * seen


def rag_index_usd(
    table: PriceTable, base_row: str, corpus_tokens: float = RAG_CORPUS_TOKENS
) -> float:
    """One-off cost of embedding the corpus, priced as input tokens at `base_row` (an upper
    bound for embeddings)."""
    return corpus_tokens * table[base_row][0] / TOKENS_PER_MILLION


def usd_per_query(prices: tuple[float, float], input_tokens: float, output_tokens: float) -> float:
    """Price of one call at `prices` (USD per 1M input and output tokens)."""
    usd_in, usd_out = prices
    return (input_tokens * usd_in + output_tokens * usd_out) / TOKENS_PER_MILLION


def break_even_queries_per_month(
    extra_one_off_usd: float, saving_per_query_usd: float
) -> float | None:
    """Monthly volume at which a per-query saving repays an extra one-off cost within a year.

    None when there is no saving per query: then no volume ever pays the one-off back.
    """
    if saving_per_query_usd <= 0:
        return None
    if extra_one_off_usd <= 0:
        return 0.0
    return round(extra_one_off_usd / (PAYBACK_MONTHS * saving_per_query_usd), 1)


def estimate_costs(
    intake: Intake,
    summary: SampleSummary | None = None,
    price_table: PriceTable | None = None,
) -> CostBreakdown:
    """One-off and monthly cost per path, the fine-tuning break-even volume, and GPU fit."""
    table = price_table if price_table is not None else DEFAULT_PRICE_TABLE
    example_tokens = summary.mean_tokens if summary is not None else DEFAULT_EXAMPLE_TOKENS
    # A sample row holds one input and its answer; assume half of its tokens are each.
    user_tokens = output_tokens = example_tokens / 2
    prompt_tokens = intake.prompt_tokens_today
    queries_per_month = intake.queries_per_day * DAYS_PER_MONTH
    row_notes: list[str] = []
    base_row, fine_tuned_row = _serving_rows(intake, table, row_notes)
    common_notes = [
        *row_notes,
        f"Assumes {example_tokens:.0f} tokens per query (input + answer, "
        + ("mean of the sample" if summary is not None else "default; upload a sample")
        + "); engineering time is not included.",
    ]

    prompting_per_query = usd_per_query(table[base_row], prompt_tokens + user_tokens, output_tokens)
    rag_per_query = usd_per_query(
        table[base_row], prompt_tokens + RETRIEVED_CONTEXT_TOKENS + user_tokens, output_tokens
    )
    fine_tuned_prompt = min(prompt_tokens, FINE_TUNED_PROMPT_TOKENS)
    fine_tuning_per_query = usd_per_query(
        table[fine_tuned_row], fine_tuned_prompt + user_tokens, output_tokens
    )
    index_usd = rag_index_usd(table, base_row)
    run_usd = lora_run_cost_usd(intake.target_model_size_b, intake.examples_available)

    costs = {
        "prompting": _estimate(
            0.0,
            prompting_per_query,
            queries_per_month,
            [f"{prompt_tokens} prompt tokens per query, priced at '{base_row}'.", *common_notes],
        ),
        "rag": _estimate(
            index_usd,
            rag_per_query,
            queries_per_month,
            [
                f"One-off: embedding ~{RAG_CORPUS_TOKENS:,} corpus tokens, priced as input "
                f"tokens at '{base_row}' (an upper bound for embeddings).",
                f"Adds ~{RETRIEVED_CONTEXT_TOKENS:,} retrieved-context tokens to every prompt.",
                *common_notes,
            ],
        ),
        "fine_tuning": _estimate(
            run_usd,
            fine_tuning_per_query,
            queries_per_month,
            [
                f"One-off: one LoRA/QLoRA run (${LORA_RUN_MIN_USD:.0f}–{LORA_RUN_MAX_USD:.0f} "
                "per run, scaled by model size and examples, up to 5,000 used); budget for "
                "several runs. Managed fine-tuning APIs charge per training token instead.",
                f"Prompt shrinks to {fine_tuned_prompt} tokens; served at '{fine_tuned_row}'.",
                *common_notes,
            ],
        ),
    }
    assert set(costs) == set(PATHS)
    break_even = break_even_queries_per_month(
        costs["fine_tuning"].one_off_usd - costs["prompting"].one_off_usd,
        prompting_per_query - fine_tuning_per_query,
    )
    return CostBreakdown(
        costs=costs,
        break_even_queries_per_month=break_even,
        memory=memory_estimate(intake.target_model_size_b),
        qlora_fit=qlora_fit(intake.gpu_access, intake.target_model_size_b),
    )


def _estimate(
    one_off_usd: float, per_query_usd: float, queries_per_month: int, notes: list[str]
) -> CostEstimate:
    return CostEstimate(
        one_off_usd=round(one_off_usd, 2),
        monthly_usd=round(per_query_usd * queries_per_month, 2),
        usd_per_query=per_query_usd,
        notes=notes,
    )


def serving_rows(intake: Intake, table: PriceTable) -> tuple[str, str, list[str]]:
    """Price-table rows for (base model, fine-tuned model), and a note for each fallback."""
    notes: list[str] = []
    base_row, fine_tuned_row = _serving_rows(intake, table, notes)
    return base_row, fine_tuned_row, notes


def _serving_rows(intake: Intake, table: PriceTable, notes: list[str]) -> tuple[str, str]:
    """Price-table rows for (base model, fine-tuned model), noting any fallback taken.

    Data that must stay on premises means every path runs on the team's own GPUs, where a
    fine-tuned adapter costs the same to serve as the base model.
    """
    if HOSTED_BASE not in table:
        raise ValueError(f"the price table needs a '{HOSTED_BASE}' row; it has {sorted(table)}")
    if intake.data_residency is DataResidency.on_premises:
        if SELF_HOSTED_GPU in table:
            return SELF_HOSTED_GPU, SELF_HOSTED_GPU
        notes.append(f"No '{SELF_HOSTED_GPU}' price row: on-premises serving priced as hosted.")
    if HOSTED_FINE_TUNED in table:
        return HOSTED_BASE, HOSTED_FINE_TUNED
    notes.append(
        f"No '{HOSTED_FINE_TUNED}' price row: fine-tuned inference priced as base, although "
        "some providers charge 3–4× base for it."
    )
    return HOSTED_BASE, HOSTED_BASE
