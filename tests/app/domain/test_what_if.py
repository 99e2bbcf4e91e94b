"""What-if scenarios: validated like the intake, and flip points found by scan and bisection."""

from __future__ import annotations

import pytest

from app.domain.intake import GpuAccess, Intake, Volatility
from app.domain.what_if import (
    FIELDS,
    INTAKE_FIELDS,
    SCAN_HIGH,
    apply,
    find_flips,
    parse_scenario,
    round_volume,
    scan_points,
)
from tests.app.domain.scoring.intakes import make_intake


def test_every_intake_field_of_the_what_if_is_the_intakes_own() -> None:
    assert set(INTAKE_FIELDS) <= set(Intake.model_fields)
    assert FIELDS[: len(INTAKE_FIELDS)] == INTAKE_FIELDS


def test_valid_values_become_changes_and_assumptions() -> None:
    scenario = parse_scenario(
        {
            "queries_per_day": " 5000 ",
            "gpu_access": "none",
            "volatility": "daily",
            "budget_monthly_usd": "250.5",
            "training_runs": "3",
            "compute_usd_per_hour": "",  # blank: the pilot's device
            "pilot": "ignored",
        }
    )
    assert scenario.valid
    assert scenario.changes == {
        "queries_per_day": 5000,
        "gpu_access": GpuAccess.none,
        "volatility": Volatility.daily,
        "budget_monthly_usd": 250.5,
    }
    assert scenario.assumptions.training_runs == 3
    assert scenario.assumptions.compute_usd_per_hour is None
    assert "pilot" not in scenario.raw and "compute_usd_per_hour" not in scenario.raw
    changed = apply(make_intake(), scenario.changes)
    assert changed.queries_per_day == 5000 and changed.gpu_access is GpuAccess.none
    assert make_intake().queries_per_day == 1_000  # the original is untouched


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("queries_per_day", "-5", "greater_than_equal"),
        ("queries_per_day", "lots", "int_parsing"),
        ("queries_per_day", "12.5", "int_parsing"),
        ("queries_per_day", "2000000000", "less_than_equal"),
        ("queries_per_day", "9" * 41, "string_too_long"),
        ("prompt_tokens_today", "1e309", "int_parsing"),
        ("budget_monthly_usd", "nan", "finite_number"),
        ("budget_monthly_usd", "-inf", "finite_number"),
        ("gpu_access", "quantum", "enum"),
        ("volatility", "<script>", "enum"),
        ("training_runs", "0", "greater_than_equal"),
        ("compute_usd_per_hour", "0", "greater_than"),
        ("eval_usd_per_1k", "-1", "greater_than_equal"),
        ("rag_corpus_tokens", "many", "int_parsing"),
    ],
)
def test_bad_values_are_errors_of_their_own_field(name: str, value: str, kind: str) -> None:
    # A good value next to the bad one: only the bad one is reported.
    good = ("volatility", "static") if name != "volatility" else ("gpu_access", "none")
    scenario = parse_scenario({name: value, good[0]: good[1]})
    assert not scenario.valid
    assert list(scenario.errors) == [name]
    assert scenario.errors[name]["type"] == kind
    assert len(scenario.raw[name]) <= 40  # what is echoed back is clipped


def test_the_scan_covers_the_intakes_range_four_points_a_decade() -> None:
    points = scan_points()
    assert points[0] == 1 and points[-1] == SCAN_HIGH
    assert len(points) == 37 and points == sorted(set(points))


@pytest.mark.parametrize("threshold", [2, 37, 220, 12_345, 7_000_000, SCAN_HIGH])
def test_a_step_is_found_to_within_one_percent(threshold: int) -> None:
    [flip] = find_flips(lambda q: "fine_tuning" if q >= threshold else "prompting")
    assert (flip.before, flip.after) == ("prompting", "fine_tuning")
    assert threshold <= flip.at <= max(threshold + 1, threshold * 1.01)


def test_two_flips_are_both_found_and_none_when_nothing_changes() -> None:
    def answer(q: int) -> str:
        return "rag" if q < 300 else ("fine_tuning+rag" if q < 4_000 else "fine_tuning")

    flips = find_flips(answer)
    assert [(f.before, f.after) for f in flips] == [
        ("rag", "fine_tuning+rag"),
        ("fine_tuning+rag", "fine_tuning"),
    ]
    assert 300 <= flips[0].at <= 303 and 4_000 <= flips[1].at <= 4_040
    assert find_flips(lambda q: "prompting") == []


@pytest.mark.parametrize(
    ("value", "text"), [(7, "~7"), (220, "~220"), (12_345, "~12,000"), (4_040, "~4,000")]
)
def test_flip_points_are_quoted_to_two_figures(value: int, text: str) -> None:
    assert round_volume(value) == text
