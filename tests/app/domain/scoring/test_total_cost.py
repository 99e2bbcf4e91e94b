"""The 12-month total cost per path, against figures worked out by hand (docs/rubric.md)."""

from __future__ import annotations

import math

import pytest

from app.domain.intake import DataResidency
from app.domain.scoring.costs import estimate_costs, lora_run_cost_usd, scaled_training_usd
from app.domain.scoring.total_cost import (
    Assumptions,
    MeasuredArm,
    PathTotal,
    PilotMeasurements,
    break_even_month,
    total_cost,
)
from app.settings import DEFAULT_PRICE_TABLE
from tests.app.domain.scoring.intakes import make_intake

# Default prices: hosted-base $0.50/$1.50, hosted-fine-tuned $1.50/$4.50 per 1M tokens.
INTAKE = make_intake(queries_per_day=1_000, examples_available=1_000, target_model_size_b=7.0)
PILOT = PilotMeasurements(
    arms=(
        MeasuredArm("fewshot", "prompting", "Few-shot", 400, 5, fine_tuned=False),
        MeasuredArm("qlora", "fine_tuning", "QLoRA", 60, 5, fine_tuned=True, training_seconds=360),
    ),
    model_parameters=700_000_000,  # a 0.7B pilot model
    training_examples=100,
    device_usd_per_hour=2.0,
)


def costs_for(intake=INTAKE, measured=PILOT, assumptions=None):  # type: ignore[no-untyped-def]
    return total_cost(
        intake,
        rubric_costs=estimate_costs(intake).costs,
        price_table=DEFAULT_PRICE_TABLE,
        measured=measured,
        assumptions=assumptions,
    )


def test_measured_tokens_price_the_paths_the_pilot_ran() -> None:
    cost = costs_for()
    prompting, fine_tuning = cost.path("prompting"), cost.path("fine_tuning")
    assert prompting is not None and fine_tuning is not None
    # (400 × 0.50 + 5 × 1.50) ÷ 1M per query; × 1,000 a day × 30 days.
    assert math.isclose(prompting.per_query_usd, 0.0002075)
    assert math.isclose(prompting.monthly_usd, 6.225)
    assert prompting.one_off_usd == 0 and prompting.measured
    # (60 × 1.50 + 5 × 4.50) ÷ 1M, at the fine-tuned row.
    assert math.isclose(fine_tuning.monthly_usd, 3.375)
    assert "priced at 'hosted-fine-tuned'" in fine_tuning.notes[0]


def test_training_is_the_measured_run_scaled_to_the_target() -> None:
    # 360 s at $2/h = $0.20, × 10 (7B ÷ 0.7B) × 10 (1,000 × 3 epochs ÷ 100 × 3 epochs) = $20.
    fine_tuning = costs_for().path("fine_tuning")
    assert fine_tuning is not None and math.isclose(fine_tuning.one_off_usd, 20.0)
    assert math.isclose(
        scaled_training_usd(
            measured_seconds=360,
            usd_per_hour=2.0,
            pilot_parameters=700_000_000,
            pilot_examples=100,
            target_size_b=7.0,
            target_examples=5_000,
        ),
        0.2 * 10 * (5_000 * 2) / (100 * 3),  # 5,000 examples take 2 epochs, 100 take 3
    )
    three_runs = costs_for(assumptions=Assumptions(training_runs=3, compute_usd_per_hour=1.0))
    assert math.isclose(three_runs.path("fine_tuning").one_off_usd, 30.0)  # type: ignore[union-attr]


def test_paths_without_an_arm_use_the_rubric_and_say_so() -> None:
    cost = costs_for()
    rag = cost.path("rag")
    assert rag is not None and not rag.measured
    # The rubric's RAG query: 800 + 1,000 + 100 tokens in, 100 out at the base row.
    assert math.isclose(rag.per_query_usd, 0.0011)
    assert math.isclose(rag.one_off_usd, 1.0)  # 2,000,000 corpus tokens × $0.50 per 1M
    assert "rubric's per-query estimate" in rag.notes[0]
    assert cost.path("fine_tuning+rag") is None  # the rubric prices no combination
    bigger = costs_for(assumptions=Assumptions(rag_corpus_tokens=10_000_000))
    assert math.isclose(bigger.path("rag").one_off_usd, 5.0)  # type: ignore[union-attr]


def test_without_a_pilot_every_path_is_the_rubric_estimate() -> None:
    cost = costs_for(measured=None)
    assert {p.option for p in cost.paths} == {"prompting", "rag", "fine_tuning"}
    assert not any(p.measured for p in cost.paths)
    assert cost.path("fine_tuning").one_off_usd == lora_run_cost_usd(7.0, 1_000)  # type: ignore[union-attr]


def test_twelve_month_totals_break_even_and_the_cheapest_path() -> None:
    cost = costs_for()
    assert math.isclose(cost.path("prompting").total_usd, 74.7)  # type: ignore[union-attr]
    assert math.isclose(cost.path("fine_tuning").total_usd, 20 + 3.375 * 12)  # type: ignore[union-attr]
    assert cost.cheapest == "fine_tuning" and cost.baseline == "prompting"
    # $20 extra one-off repaid at $6.225 − $3.375 a month.
    assert math.isclose(cost.break_even_months["fine_tuning"], 20 / 2.85)  # type: ignore[arg-type]
    assert cost.break_even_months["rag"] is None  # dearer every month: never
    low = costs_for(make_intake(queries_per_day=10, examples_available=1_000))
    assert low.cheapest == "prompting"


def test_evaluation_is_added_to_every_query() -> None:
    cost = costs_for(assumptions=Assumptions(eval_usd_per_1k=1.0))
    assert math.isclose(cost.path("prompting").per_query_usd, 0.0002075 + 0.001)  # type: ignore[union-attr]
    assert any("Evaluation: $1.00 per 1,000 queries" in a for a in cost.assumptions)


def test_on_premises_prices_every_path_at_the_self_hosted_row() -> None:
    cost = costs_for(make_intake(data_residency=DataResidency.on_premises))
    fine_tuning = cost.path("fine_tuning")
    assert fine_tuning is not None and "'self-hosted-gpu'" in fine_tuning.notes[0]
    assert any("QLoRA on the 7B target needs about 6 GB" in a for a in cost.assumptions)


@pytest.mark.parametrize(
    ("one_off", "monthly", "expected"),
    [
        (20.0, 3.0, 20 / 7),  # repays $20 at $7 a month
        (0.0, 3.0, 0.0),  # cheaper from the start
        (20.0, 10.0, None),  # saves nothing a month: never
        (20.0, 12.0, None),  # dearer every month
    ],
)
def test_break_even_month(one_off: float, monthly: float, expected: float | None) -> None:
    baseline = PathTotal("prompting", "Prompting", 0.0, 0.0, 10.0, True, ())
    path = PathTotal("fine_tuning", "Fine-tuning", one_off, 0.0, monthly, True, ())
    found = break_even_month(path, baseline)
    assert found == expected if expected is None else math.isclose(found or 0, expected)


def test_an_option_measured_by_two_arms_is_priced_by_its_plain_form() -> None:
    # Without documents, the RAG arm is prompting with retrieved examples: the prompting path
    # is still priced by few-shot prompting, the first of its arms, not by the last one.
    retrieved = MeasuredArm("rag", "prompting", "Prompting with retrieved examples", 900, 5, False)
    pilot = PilotMeasurements(
        arms=(*PILOT.arms[:1], retrieved, *PILOT.arms[1:]),
        model_parameters=PILOT.model_parameters,
        training_examples=PILOT.training_examples,
        device_usd_per_hour=PILOT.device_usd_per_hour,
    )
    prompting = costs_for(measured=pilot).path("prompting")
    assert prompting is not None
    assert math.isclose(prompting.per_query_usd, 0.0002075)  # few-shot's 400 + 5 tokens
    assert "Few-shot's measured" in prompting.notes[0]
