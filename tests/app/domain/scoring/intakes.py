"""Intakes and hypothesis strategies shared by the scoring tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from app.domain.intake import (
    DataResidency,
    FailureMode,
    GpuAccess,
    Intake,
    TaskType,
    TeamSkill,
    Timeline,
    Volatility,
)
from app.domain.samples.schemas import PilotTask, SampleFormat, SampleSummary

# A middle-of-the-road intake with nothing wrong today: every decision-table test changes only
# the answers its row is about, so the row's factor is what moves the ranking.
NEUTRAL: dict[str, Any] = {
    "title": "Ticket routing",
    "use_case": "Route support tickets to the right team.",
    "task_type": TaskType.classification,
    "failure_modes": [],
    "volatility": Volatility.yearly,
    "needs_citations": False,
    "examples_available": 1_000,
    "examples_reviewed": True,
    "has_documents": True,
    "budget_one_off_usd": 1_000.0,
    "budget_monthly_usd": 1_000.0,
    "gpu_access": GpuAccess.gpu_24gb,
    "timeline": Timeline.weeks,
    "team_skills": [TeamSkill.python, TeamSkill.ml_engineering],
    "queries_per_day": 1_000,
    "latency_target_ms": 2_000,
    "data_residency": DataResidency.none,
    "target_model_size_b": 7.0,
    "prompt_tokens_today": 800,
}


def make_intake(**changes: Any) -> Intake:
    """The neutral intake with `changes` applied, validated like any user's answers."""
    return Intake(**{**NEUTRAL, **changes})


def make_summary(**changes: Any) -> SampleSummary:
    fields: dict[str, Any] = {
        "format": SampleFormat.text_label_csv,
        "task": PilotTask.classification,
        "rows": 1_000,
        "mean_tokens": 200.0,
        "max_tokens": 900,
        "exact_duplicates": 0,
    }
    return SampleSummary(**{**fields, **changes})


def _money() -> st.SearchStrategy[float]:
    # Mostly amounts near the estimates, where budget factors switch, sometimes anything valid.
    return st.one_of(
        st.floats(0, 500, allow_nan=False),
        st.floats(0, 1e9, allow_nan=False, allow_infinity=False),
    )


intakes: st.SearchStrategy[Intake] = st.builds(
    Intake,
    title=st.just("Any use case"),
    use_case=st.just("Anything a tech lead might describe."),
    task_type=st.sampled_from(TaskType),
    failure_modes=st.lists(st.sampled_from(FailureMode), unique=True),
    volatility=st.sampled_from(Volatility),
    needs_citations=st.booleans(),
    examples_available=st.one_of(st.integers(0, 10_000), st.integers(0, 10_000_000)),
    examples_reviewed=st.booleans(),
    has_documents=st.booleans(),
    budget_one_off_usd=_money(),
    budget_monthly_usd=_money(),
    gpu_access=st.sampled_from(GpuAccess),
    timeline=st.sampled_from(Timeline),
    team_skills=st.lists(st.sampled_from(TeamSkill), unique=True),
    queries_per_day=st.one_of(st.integers(0, 200_000), st.integers(0, 1_000_000_000)),
    latency_target_ms=st.integers(50, 600_000),
    data_residency=st.sampled_from(DataResidency),
    target_model_size_b=st.floats(0, 1000, exclude_min=True, allow_nan=False),
    prompt_tokens_today=st.one_of(st.integers(0, 10_000), st.integers(0, 1_000_000)),
)

summaries: st.SearchStrategy[SampleSummary | None] = st.one_of(
    st.none(),
    st.builds(
        SampleSummary,
        format=st.sampled_from(SampleFormat),
        task=st.sampled_from(PilotTask),
        rows=st.integers(0, 50_000),
        mean_tokens=st.floats(0, 5_000, allow_nan=False),
        max_tokens=st.integers(0, 20_000),
        exact_duplicates=st.integers(0, 50_000),
    ),
)

_prices = st.tuples(st.floats(0, 100, allow_nan=False), st.floats(0, 100, allow_nan=False))

price_tables: st.SearchStrategy[dict[str, tuple[float, float]] | None] = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"hosted-base": _prices},
        optional={"hosted-fine-tuned": _prices, "self-hosted-gpu": _prices},
    ),
)
