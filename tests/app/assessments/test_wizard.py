from __future__ import annotations

from app.assessments.wizard import STEPS, WIDGETS, get_step, validate_step
from app.domain.intake import Intake


def test_every_intake_field_is_asked_exactly_once() -> None:
    asked = [name for step in STEPS for name in step.fields]
    assert sorted(asked) == sorted(Intake.model_fields)
    assert len(asked) == len(set(asked))
    assert set(WIDGETS) == set(Intake.model_fields)


def test_step_errors_are_in_plain_words() -> None:
    step = get_step("traffic")
    assert step is not None
    _, errors = validate_step(
        step,
        {
            "queries_per_day": "-5",
            "latency_target_ms": "fast",
            "data_residency": "mars",
            "target_model_size_b": "0",
        },
    )
    assert errors == {
        "queries_per_day": "Must be at least 0.",
        "latency_target_ms": "Enter a whole number, e.g. 1200.",
        "data_residency": "Choose one of the options.",
        "target_model_size_b": "Must be more than 0.",
    }


def test_blank_required_text_is_required() -> None:
    step = get_step("use_case")
    assert step is not None
    _, errors = validate_step(step, {"title": "   ", "use_case": "x", "task_type": "qa"})
    assert errors["title"] == "This is required."
    assert errors["task_type"] == "Choose one of the options."


def test_valid_step_returns_json_ready_values() -> None:
    step = get_step("knowledge")
    assert step is not None
    values, errors = validate_step(
        step, {"volatility": "weekly", "needs_citations": "true", "has_documents": "false"}
    )
    assert errors == {}
    assert values == {"volatility": "weekly", "needs_citations": True, "has_documents": False}
