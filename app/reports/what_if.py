"""The report's what-if panel and its 12-month total cost, as the page and the PDF show them.

Re-scores the rubric on a copy of the intake with the reader's changes
(`app.domain.what_if`), reconciles it with the pilot's unchanged evidence, prices twelve months
of every path from the pilot's measured tokens (`app.domain.scoring.total_cost`), and finds the
daily volumes at which the recommendation, or the cheapest path, changes. No pilot is re-run
and nothing is stored. No SQL here: the service passes in what it read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from app.domain.arm_registry import ModelRole
from app.domain.arms import ARMS
from app.domain.formatting import format_count, format_score, format_usd
from app.domain.intake import GPU_ACCESS_LABELS, VOLATILITY_LABELS, Intake
from app.domain.memo import LruCache, memoized
from app.domain.reconcile import reconcile
from app.domain.records import PilotStatus
from app.domain.samples.schemas import SampleSummary
from app.domain.scoring.costs import DAYS_PER_MONTH, PriceTable
from app.domain.scoring.engine import score
from app.domain.scoring.paths import PATH_LABELS
from app.domain.scoring.total_cost import (
    HORIZON_MONTHS,
    MeasuredArm,
    PilotMeasurements,
    TotalCost,
    total_cost,
)
from app.domain.verdict_inputs import PilotEvidence, option_label, rubric_pick
from app.domain.verdicts import Recommendation
from app.domain.what_if import (
    FIELDS,
    SCAN_HIGH,
    SCAN_LOW,
    Scenario,
    apply,
    find_flips,
    round_volume,
)
from app.reports.charts import BreakEvenMark, CostLine, cumulative_cost_chart_svg
from app.reports.pilot_evidence import OUTPUT_TOKENS, PROMPT_TOKENS
from app.reports.pilot_rows import PilotRows
from app.reports.pricing import training_usd_per_hour
from app.validation import friendly_message

# The form's labels and help, in FIELDS order; choices come from the intake's own enums.
LABELS: Final[dict[str, str]] = {
    "queries_per_day": "Queries per day",
    "prompt_tokens_today": "Prompt tokens today (per query)",
    "budget_monthly_usd": "Monthly budget (USD)",
    "gpu_access": "GPU access",
    "volatility": "How often the knowledge changes",
    "training_runs": "Fine-tuning runs to budget",
    "compute_usd_per_hour": "Training compute (USD per hour)",
    "eval_usd_per_1k": "Evaluation (USD per 1,000 queries)",
    "rag_corpus_tokens": "RAG corpus (tokens, embedded once)",
}
HELP: Final[dict[str, str]] = {
    "prompt_tokens_today": "Feeds the rubric's estimate; the pilot's measured tokens price "
    "the 12-month table.",
    "compute_usd_per_hour": "Empty: the price of the pilot's own device.",
    "eval_usd_per_1k": "For example an LLM judge scoring sampled traffic; 0 if none.",
}
CHOICES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "gpu_access": tuple((k.value, v) for k, v in GPU_ACCESS_LABELS.items()),
    "volatility": tuple((k.value, v) for k, v in VOLATILITY_LABELS.items()),
}
STEP: Final[dict[str, str]] = {"budget_monthly_usd": "any", "compute_usd_per_hour": "any"}
STEP_DEFAULT: Final = "1"


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    help: str
    value: str  # as typed, else the current value
    choices: tuple[tuple[str, str], ...]  # empty: a number input
    step: str
    error: str | None


@dataclass(frozen=True)
class TotalRow:
    option: str
    label: str
    one_off: str
    monthly: str
    per_1k: str
    total: str
    break_even: str
    source: str  # "pilot" or "rubric estimate"
    cheapest: bool


@dataclass(frozen=True)
class TotalCostView:
    queries_per_day: str
    rows: tuple[TotalRow, ...]
    summary: str  # the cheapest path and the break-even in one sentence
    chart: str
    assumptions: tuple[str, ...]
    months: int


@dataclass(frozen=True)
class WhatIfView:
    assessment_id: str
    pilot_id: str | None
    fields: tuple[FormField, ...]
    errors: tuple[str, ...]  # "Queries per day (queries_per_day): Must be at least 0."
    query: str  # the scenario as a query string, for the shareable URL
    changed: tuple[str, ...]  # "Queries per day: 40,000 → 1,000"
    recommendation: Recommendation | None
    scores: str  # the re-scored rubric in one line
    flips: tuple[str, ...]  # where the recommendation changes with the daily volume
    cost_flips: tuple[str, ...]  # where the cheapest path over 12 months changes
    total: TotalCostView | None

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def report_url(self) -> str:
        """The whole report with this scenario: the address to bookmark or share."""
        pilot = urlencode({"pilot": self.pilot_id}) if self.pilot_id else ""
        query = "&".join(q for q in (pilot, self.query) if q)
        base = f"/assessments/{self.assessment_id}/report"
        return f"{base}?{query}" if query else base


def pilot_measurements(rows: PilotRows | None) -> PilotMeasurements | None:
    """What the finished pilot measured, reduced to what the total-cost model scales."""
    # As for the quality evidence: an unfinished pilot's figures are not evidence yet.
    if rows is None or rows.pilot.status != PilotStatus.done or not rows.done_arms:
        return None
    manifest = rows.manifest
    models = rows.arm_models()
    arms: list[MeasuredArm] = []
    parameters: int | None = None
    examples: int | None = None
    for arm in rows.done_arms:
        option = rows.evidence_for(arm.arm)
        if option is None or arm.arm not in ARMS:
            continue
        needs = ARMS.get(arm.arm).needs
        measured = rows.metrics.get(arm.arm, {})
        prompt, output = measured.get(PROMPT_TOKENS), measured.get(OUTPUT_TOKENS)
        arms.append(
            MeasuredArm(
                arm=arm.arm,
                option=option,
                label=rows.arm_label(arm.arm),
                prompt_tokens=prompt.value if prompt is not None else None,
                output_tokens=output.value if output is not None else None,
                fine_tuned=needs.model is ModelRole.fine_tuned,
                training_seconds=arm.training_seconds if needs.trains else 0.0,
            )
        )
        if needs.trains and arm.training_seconds > 0 and parameters is None:
            model = models.get(arm.arm)
            parameters = (model.parameters if model is not None else None) or (
                manifest.base_model_parameters if manifest is not None else None
            )
            examples = _examples_trained(rows, arm.recipe or {})
    return PilotMeasurements(
        arms=tuple(arms),
        model_parameters=parameters,
        training_examples=examples,
        device_usd_per_hour=training_usd_per_hour(manifest.device if manifest else None),
        device=manifest.device if manifest else None,
    )


def _examples_trained(rows: PilotRows, recipe: dict[str, Any]) -> int | None:
    """The examples the adapter was trained on: as the arm recorded it, else the pilot's cap
    applied to its training split."""
    used = recipe.get("train_examples_used")
    if isinstance(used, int) and used > 0:
        return used
    manifest = rows.manifest
    split = manifest.split_sizes.train if manifest is not None else 0
    cap = rows.pilot.max_train
    return min(split, cap) if split else cap or None


@dataclass(frozen=True)
class WhatIfInputs:
    """Everything the panel is computed from; the service reads it from SQL."""

    assessment_id: str
    pilot_id: str | None
    intake: Intake
    summary: SampleSummary | None
    price_table: PriceTable
    evidence: PilotEvidence | None
    measurements: PilotMeasurements | None


# Panels kept per process: scanning the rubric for flip points scores it ~80 times, the
# report's dearest step once its charts are kept. Keyed by every input, so never stale.
VIEW_CACHE: Final[LruCache[WhatIfView]] = LruCache(2048)


@memoized(VIEW_CACHE)
def what_if_view(inputs: WhatIfInputs, scenario: Scenario) -> WhatIfView:
    """The panel for `scenario`; with errors, only the form and the errors."""
    base = inputs.intake
    fields = tuple(_form_field(name, base, scenario) for name in FIELDS)
    query = urlencode(scenario.raw)
    if not scenario.valid:
        errors = tuple(
            f"{LABELS[name]} ({name}): {friendly_message(error)}"
            for name, error in scenario.errors.items()
        )
        return WhatIfView(
            inputs.assessment_id, inputs.pilot_id, fields, errors, query, (), None, "", (), (), None
        )
    intake = apply(base, scenario.changes)

    def recommend(candidate: Intake) -> Recommendation:
        result = score(candidate, inputs.summary, price_table=inputs.price_table)
        return reconcile(
            rubric_pick(result),
            inputs.evidence,
            min_difference_points=candidate.min_difference_points,
        )

    def costs(candidate: Intake) -> TotalCost:
        result = score(candidate, inputs.summary, price_table=inputs.price_table)
        return total_cost(
            candidate,
            rubric_costs=result.costs,
            price_table=inputs.price_table,
            measured=inputs.measurements,
            assumptions=scenario.assumptions,
        )

    result = score(intake, inputs.summary, price_table=inputs.price_table)
    recommendation = reconcile(
        rubric_pick(result), inputs.evidence, min_difference_points=intake.min_difference_points
    )

    def at_volume(queries_per_day: int) -> Intake:
        return intake.model_copy(update={"queries_per_day": queries_per_day})

    flips = find_flips(lambda q: recommend(at_volume(q)).option)
    cost_flips = find_flips(lambda q: costs(at_volume(q)).cheapest)
    return WhatIfView(
        assessment_id=inputs.assessment_id,
        pilot_id=inputs.pilot_id,
        fields=fields,
        errors=(),
        query=query,
        changed=tuple(_changes(base, intake)),
        recommendation=recommendation,
        scores=", ".join(
            f"{PATH_LABELS[p]} {format_score(result.scores[p])}" for p in result.ranking
        ),
        flips=tuple(
            f"Above {round_volume(f.at)} queries a day, the recommendation changes from "
            f"{option_label(f.before)} to {option_label(f.after)}."
            for f in flips
        )
        or (
            f"From {SCAN_LOW:,} to {SCAN_HIGH:,} queries a day the recommendation stays "
            f"{recommendation.label}, all else as above.",
        ),
        cost_flips=tuple(
            f"Above {round_volume(f.at)} queries a day, {option_label(f.after or '')} becomes "
            f"cheaper than {option_label(f.before or '')} over {HORIZON_MONTHS} months."
            for f in cost_flips
        ),
        total=total_cost_view(costs(intake)),
    )


def total_cost_view(cost: TotalCost) -> TotalCostView:
    cheapest = cost.cheapest
    baseline = cost.path(cost.baseline) if cost.baseline else None
    rows = tuple(
        TotalRow(
            option=p.option,
            label=p.label,
            one_off=format_usd(p.one_off_usd),
            monthly=format_usd(p.monthly_usd),
            per_1k=format_usd(p.per_query_usd * 1000),
            total=format_usd(p.total_usd),
            break_even=_break_even_text(cost.break_even_months.get(p.option), p is baseline),
            source="pilot" if p.measured else "rubric estimate",
            cheapest=p.option == cheapest,
        )
        for p in cost.paths
    )
    marks = [
        BreakEvenMark(option, f"{option_label(option)} pays back: {format_month(month)}", month)
        for option, month in cost.break_even_months.items()
        if month is not None and 0 < month <= HORIZON_MONTHS
    ]
    lines = [CostLine(p.option, p.label, p.one_off_usd, p.monthly_usd) for p in cost.paths]
    return TotalCostView(
        queries_per_day=format_count(cost.queries_per_day),
        rows=rows,
        summary=_summary(cost),
        chart=cumulative_cost_chart_svg(lines, months=HORIZON_MONTHS, marks=marks),
        assumptions=cost.assumptions,
        months=HORIZON_MONTHS,
    )


def _summary(cost: TotalCost) -> str:
    cheapest = cost.path(cost.cheapest) if cost.cheapest else None
    if cheapest is None:
        return "No path could be priced."
    text = (
        f"At {format_count(cost.queries_per_day)} queries a day, {cheapest.label} costs the "
        f"least over {HORIZON_MONTHS} months: {format_usd(cheapest.total_usd)}."
    )
    month = cost.break_even_months.get(cheapest.option)
    if cost.baseline and month is not None and month > 0:
        text += (
            f" It pays back its one-off cost against {option_label(cost.baseline)} in "
            f"{format_month(month)}."
        )
    return text


def _break_even_text(month: float | None, is_baseline: bool) -> str:
    if is_baseline:
        return "baseline"
    if month is None:
        return "never"
    if month == 0:
        return "from the start"
    if month > HORIZON_MONTHS:
        return f"{format_month(month)} (after {HORIZON_MONTHS})"
    return format_month(month)


def format_month(month: float) -> str:
    """A break-even time: 'month 4.2'; within the first month, the day ('day 3')."""
    if month < 1:
        return f"day {max(1, math.ceil(month * DAYS_PER_MONTH))}"
    return f"month {month:,.1f}"


def _form_field(name: str, intake: Intake, scenario: Scenario) -> FormField:
    typed = scenario.raw.get(name)
    if typed is not None:
        value = typed
    elif name in Intake.model_fields:
        value = _plain(getattr(intake, name))
    else:
        value = _plain(getattr(scenario.assumptions, name))
    error = scenario.errors.get(name)
    return FormField(
        name=name,
        label=LABELS[name],
        help=HELP.get(name, ""),
        value=value,
        choices=CHOICES.get(name, ()),
        step=STEP.get(name, STEP_DEFAULT),
        error=friendly_message(error) if error is not None else None,
    )


def _plain(value: Any) -> str:
    """A current value as a form input holds it: '1500', not '1500.0'; an enum's value."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:f}".rstrip("0").rstrip(".")
    return str(getattr(value, "value", value))


def _changes(before: Intake, after: Intake) -> list[str]:
    lines = []
    for name in FIELDS:
        if name not in Intake.model_fields:
            continue
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            lines.append(f"{LABELS[name]}: {_show(name, old)} → {_show(name, new)}")
    return lines


def _show(name: str, value: Any) -> str:
    if name in CHOICES:
        return dict(CHOICES[name]).get(str(getattr(value, "value", value)), str(value))
    if name == "budget_monthly_usd":
        return format_usd(value)
    return format_count(value)
