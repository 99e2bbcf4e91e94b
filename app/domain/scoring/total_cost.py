"""Twelve months of cost per path: what it takes to build, then to run at the stated volume.

The rubric's estimate (`costs.estimate_costs`) prices assumed token counts; this model prices
what the pilot measured wherever the pilot has an arm for the path, and falls back to the
rubric's estimate where it has none, saying so in the path's notes.

- One-off. Prompting: nothing. RAG: embedding the corpus (`costs.rag_index_usd`). Fine-tuning:
  the training compute the pilot measured, scaled to the target model and its training set
  (`costs.scaled_training_usd`), times the runs budgeted; without a measured run, the rubric's
  per-run estimate (`costs.lora_run_cost_usd`). Fine-tuning + RAG: both.
- Monthly: (inference per query at the price-table row the path is served at, from the
  measured prompt and output tokens, + evaluation per query) × queries per day × 30.
- Break-even month: when a path's cumulative cost falls to the baseline's (prompting's, the
  cheapest to start), found in closed form because both grow linearly.

Every figure an assumption feeds is listed in `TotalCost.assumptions`; the editable ones
(`Assumptions`) come from the report's what-if form. Pure: no database, no web.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from app.domain.intake import GpuAccess, Intake
from app.domain.scoring.costs import (
    DAYS_PER_MONTH,
    LORA_COST_EXAMPLES_RANGE,
    PAYBACK_MONTHS,
    RAG_CORPUS_TOKENS,
    CostEstimate,
    PriceTable,
    QloraFit,
    first_run_examples,
    lora_run_cost_usd,
    qlora_fit,
    qlora_memory_gb,
    rag_index_usd,
    scaled_training_usd,
    serving_rows,
    usd_per_query,
)
from app.domain.scoring.paths import HYBRID_FT_RAG, HYBRID_LABELS, PATH_LABELS, PATHS

# The report's horizon: the rubric's payback period, so "pays back" means the same thing.
HORIZON_MONTHS: Final = PAYBACK_MONTHS
OPTIONS: Final[tuple[str, ...]] = (*PATHS, HYBRID_FT_RAG)
OPTION_LABELS: Final[dict[str, str]] = {**PATH_LABELS, **HYBRID_LABELS}
BASELINE: Final = "prompting"
# Parts of each option: a combination costs what its parts cost once.
TRAINS: Final = frozenset({"fine_tuning", HYBRID_FT_RAG})
RETRIEVES: Final = frozenset({"rag", HYBRID_FT_RAG})


class Assumptions(BaseModel):
    """The total-cost assumptions a reader may change on the report (the what-if form)."""

    model_config = ConfigDict(extra="forbid")

    training_runs: int = Field(
        1, ge=1, le=100, description="Fine-tuning runs to budget for (a first run rarely ships)"
    )
    compute_usd_per_hour: float | None = Field(
        None,
        gt=0,
        le=10_000,
        allow_inf_nan=False,
        description="Price of an hour of training compute; empty: the pilot's own device",
    )
    eval_usd_per_1k: float = Field(
        0.0,
        ge=0,
        le=10_000,
        allow_inf_nan=False,
        description="Evaluation (for example an LLM judge on sampled traffic) per 1,000 queries",
    )
    rag_corpus_tokens: int = Field(
        RAG_CORPUS_TOKENS, ge=0, le=10**12, description="Tokens in the corpus RAG embeds once"
    )


@dataclass(frozen=True)
class MeasuredArm:
    """What one pilot arm measured, reduced to what its path costs to run and build."""

    arm: str
    option: str  # the path (or combination) it is evidence for
    label: str
    prompt_tokens: float | None  # mean per query
    output_tokens: float | None
    fine_tuned: bool  # served as a fine-tuned model (priced at that row)
    training_seconds: float = 0.0


@dataclass(frozen=True)
class PilotMeasurements:
    """The pilot's measured figures the cost model scales."""

    arms: Sequence[MeasuredArm]
    model_parameters: int | None  # the model the pilot trained on
    training_examples: int | None  # examples it trained on
    device_usd_per_hour: float  # the price of an hour on the pilot's device
    device: str | None = None


@dataclass(frozen=True)
class PathTotal:
    option: str
    label: str
    one_off_usd: float
    per_query_usd: float  # inference + evaluation
    monthly_usd: float
    measured: bool  # True: priced from the pilot's tokens; False: the rubric's estimate
    notes: tuple[str, ...]

    def cumulative(self, months: float) -> float:
        return self.one_off_usd + self.monthly_usd * months

    @property
    def total_usd(self) -> float:
        return self.cumulative(HORIZON_MONTHS)


@dataclass(frozen=True)
class TotalCost:
    queries_per_day: int
    paths: tuple[PathTotal, ...]
    baseline: str | None  # the path break-even is measured against
    break_even_months: Mapping[str, float | None]  # option → month; None: never
    assumptions: tuple[str, ...]

    def path(self, option: str) -> PathTotal | None:
        return next((p for p in self.paths if p.option == option), None)

    @property
    def cheapest(self) -> str | None:
        """The option with the lowest 12-month total; ties go to the simpler one."""
        if not self.paths:
            return None
        best = min(self.paths, key=lambda p: (round(p.total_usd, 2), OPTIONS.index(p.option)))
        return best.option


def break_even_month(path: PathTotal, baseline: PathTotal) -> float | None:
    """The month at which `path`'s cumulative cost falls to `baseline`'s; None if it never does.

    0 when it is no dearer from the start. It may lie past the horizon: callers compare.
    """
    if path.one_off_usd <= baseline.one_off_usd and path.monthly_usd <= baseline.monthly_usd:
        return 0.0
    saving = baseline.monthly_usd - path.monthly_usd
    if saving <= 0:
        return None
    return max(0.0, (path.one_off_usd - baseline.one_off_usd) / saving)


def total_cost(
    intake: Intake,
    *,
    rubric_costs: Mapping[str, CostEstimate],
    price_table: PriceTable,
    measured: PilotMeasurements | None = None,
    assumptions: Assumptions | None = None,
) -> TotalCost:
    """The 12-month cost of every path the pilot or the rubric can price (module docstring)."""
    given = assumptions or Assumptions()
    base_row, fine_tuned_row, row_notes = serving_rows(intake, price_table)
    per_month = intake.queries_per_day * DAYS_PER_MONTH
    eval_per_query = given.eval_usd_per_1k / 1000
    # Several arms can be evidence for one option: without documents, the retrieval arms
    # measure prompting and fine-tuning with retrieved examples. The option is priced by its
    # first arm in the registry's order, its plain form (few-shot prompting, QLoRA), not by
    # whichever arm happens to come last.
    by_option: dict[str, MeasuredArm] = {}
    for measured_arm in measured.arms if measured else ():
        if measured_arm.option in OPTIONS:
            by_option.setdefault(measured_arm.option, measured_arm)
    training, training_note = _training_usd(intake, measured, by_option, given)
    index_usd = rag_index_usd(price_table, base_row, given.rag_corpus_tokens)

    paths: list[PathTotal] = []
    for option in OPTIONS:
        arm = by_option.get(option)
        priced = arm is not None and arm.prompt_tokens is not None
        if arm is not None and arm.prompt_tokens is not None:
            row = fine_tuned_row if arm.fine_tuned else base_row
            inference = usd_per_query(price_table[row], arm.prompt_tokens, arm.output_tokens or 0)
            notes = [
                f"{arm.label}'s measured {arm.prompt_tokens:,.0f} prompt + "
                f"{arm.output_tokens or 0:,.0f} output tokens per query, priced at '{row}'."
            ]
        elif option in rubric_costs:
            inference = rubric_costs[option].usd_per_query
            notes = ["No pilot arm measured this path: the rubric's per-query estimate."]
        else:
            continue
        one_off = 0.0
        if option in TRAINS:
            one_off += training.get(option, training.get("fine_tuning", 0.0))
            notes.append(training_note)
        if option in RETRIEVES:
            one_off += index_usd
            notes.append(f"Indexing {given.rag_corpus_tokens:,} corpus tokens once.")
        per_query = inference + eval_per_query
        paths.append(
            PathTotal(
                option=option,
                label=OPTION_LABELS[option],
                one_off_usd=one_off,
                per_query_usd=per_query,
                monthly_usd=per_query * per_month,
                measured=priced,
                notes=tuple(notes),
            )
        )
    baseline = next((p for p in paths if p.option == BASELINE), None)
    if baseline is None and paths:
        baseline = min(paths, key=lambda p: p.one_off_usd)
    break_even = {
        p.option: break_even_month(p, baseline)
        for p in paths
        if baseline is not None and p is not baseline
    }
    return TotalCost(
        queries_per_day=intake.queries_per_day,
        paths=tuple(paths),
        baseline=baseline.option if baseline is not None else None,
        break_even_months=break_even,
        assumptions=tuple(
            _assumptions(intake, given, training_note, base_row, fine_tuned_row, row_notes)
        ),
    )


def _training_usd(
    intake: Intake,
    measured: PilotMeasurements | None,
    by_option: Mapping[str, MeasuredArm],
    given: Assumptions,
) -> tuple[dict[str, float], str]:
    """One-off training cost per training option, and the sentence that says how it was got."""
    target_examples = first_run_examples(intake.examples_available)
    runs = given.training_runs
    times = f"for {runs} runs" if runs > 1 else "for one run"
    trained = {
        option: arm.training_seconds
        for option, arm in by_option.items()
        if option in TRAINS and arm.training_seconds > 0
    }
    if (
        measured is not None
        and trained
        and measured.model_parameters
        and measured.training_examples
    ):
        hourly = given.compute_usd_per_hour or measured.device_usd_per_hour
        costs = {
            option: runs
            * scaled_training_usd(
                measured_seconds=seconds,
                usd_per_hour=hourly,
                pilot_parameters=measured.model_parameters,
                pilot_examples=measured.training_examples,
                target_size_b=intake.target_model_size_b,
                target_examples=target_examples,
            )
            for option, seconds in trained.items()
        }
        note = (
            f"Training compute {times}: the pilot's measured training time on its model "
            f"({measured.model_parameters / 1e9:.3g}B parameters) and "
            f"{measured.training_examples:,} examples, scaled to {intake.target_model_size_b:g}B "
            f"and {target_examples:,} examples at ${hourly:,.2f} per hour."
        )
        return costs, note
    per_run = lora_run_cost_usd(intake.target_model_size_b, intake.examples_available)
    note = (
        f"Training compute {times}: the rubric's per-run estimate (${per_run:,.2f}); the "
        "pilot measured no training run it could scale."
    )
    return {"fine_tuning": runs * per_run}, note


def _assumptions(
    intake: Intake,
    given: Assumptions,
    training_note: str,
    base_row: str,
    fine_tuned_row: str,
    row_notes: list[str],
) -> list[str]:
    fit = qlora_fit(intake.gpu_access, intake.target_model_size_b)
    memory = qlora_memory_gb(intake.target_model_size_b)
    hardware = {
        QloraFit.fits: "which fits the GPU you have",
        QloraFit.may_fit: "which fits an 80 GB card but not a 40 GB one",
        QloraFit.does_not_fit: "more than the GPU you have holds: rent a larger one",
        QloraFit.no_gpu: "so a GPU must be rented for training",
        QloraFit.managed: "on a managed API, which charges per training token instead",
    }[fit]
    lines = [
        f"Volume: {intake.queries_per_day:,} queries a day, {DAYS_PER_MONTH} days a month, over "
        f"{HORIZON_MONTHS} months.",
        f"Serving prices: prompting and RAG at '{base_row}', fine-tuned paths at "
        f"'{fine_tuned_row}' (the price table).",
        *row_notes,
        training_note,
        f"QLoRA on the {intake.target_model_size_b:g}B target needs about {memory:g} GB, "
        f"{hardware}.",
        f"Training set: {first_run_examples(intake.examples_available):,} examples (a first run "
        f"uses at most {LORA_COST_EXAMPLES_RANGE[1]:,}).",
        f"RAG corpus: {given.rag_corpus_tokens:,} tokens, embedded once.",
        f"Evaluation: ${given.eval_usd_per_1k:,.2f} per 1,000 queries.",
        "Engineering time is not included.",
    ]
    if intake.gpu_access is GpuAccess.managed_api:
        lines.append("Managed fine-tuning APIs charge per training token; compare their quote.")
    return lines
