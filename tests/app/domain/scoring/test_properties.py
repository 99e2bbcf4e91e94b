"""Properties that must hold for every valid intake, not just the hand-picked ones."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.intake import Intake, Volatility
from app.domain.samples.schemas import SampleSummary
from app.domain.scoring.costs import estimate_costs
from app.domain.scoring.engine import score
from app.domain.scoring.paths import PATHS
from app.domain.scoring.rubric import MIN_FINE_TUNING_EXAMPLES, RUBRIC, ScoringContext
from tests.app.domain.scoring.intakes import intakes, price_tables, summaries

# The machine is shared and small: enough examples to find edge cases, few enough to be quick.
FEW = settings(max_examples=200, deadline=None)

PriceTable = dict[str, tuple[float, float]] | None


@FEW
@given(intake=intakes, summary=summaries, prices=price_tables)
def test_scores_stay_within_0_and_100_and_ranking_follows_them(
    intake: Intake, summary: SampleSummary | None, prices: PriceTable
) -> None:
    result = score(intake, summary, prices)

    assert set(result.scores) == set(PATHS)
    assert all(0.0 <= value <= 100.0 for value in result.scores.values())
    assert sorted(result.ranking) == sorted(PATHS)
    ordered = [result.scores[path] for path in result.ranking]
    assert ordered == sorted(ordered, reverse=True)
    assert result.headline.endswith(".")


@FEW
@given(intake=intakes, summary=summaries, prices=price_tables)
def test_every_activation_is_between_0_and_1(
    intake: Intake, summary: SampleSummary | None, prices: PriceTable
) -> None:
    ctx = ScoringContext(intake, summary, estimate_costs(intake, summary, prices))
    for factor in RUBRIC:
        assert 0.0 <= factor.activation(ctx) <= 1.0, factor.id


@FEW
@given(
    intake=intakes,
    summary=summaries,
    prices=price_tables,
    fewer=st.one_of(st.integers(0, 6_000), st.integers(0, 10_000_000)),
    # Mostly small steps: a local dip is what a mis-weighted factor would cause.
    extra=st.one_of(st.integers(0, 300), st.integers(0, 10_000)),
    # A one-off budget inside the $10–100 LoRA range, where more examples (a dearer run) push
    # fine-tuning over budget: the budget penalty must never outweigh the data gain.
    one_off_budget=st.one_of(st.none(), st.floats(5.0, 150.0)),
)
def test_more_reviewed_examples_never_lower_fine_tuning(
    intake: Intake,
    summary: SampleSummary | None,
    prices: PriceTable,
    fewer: int,
    extra: int,
    one_off_budget: float | None,
) -> None:
    more = min(fewer + extra, 10_000_000)
    if one_off_budget is not None:
        intake = intake.model_copy(update={"budget_one_off_usd": one_off_budget})

    def fine_tuning(examples: int, reviewed: bool) -> float:
        changed = intake.model_copy(
            update={"examples_available": examples, "examples_reviewed": reviewed}
        )
        return score(changed, summary, prices).scores["fine_tuning"]

    assert fine_tuning(fewer, reviewed=True) <= fine_tuning(more, reviewed=True)
    # Reviewing the same examples never hurts either.
    assert fine_tuning(more, reviewed=False) <= fine_tuning(more, reviewed=True)


@FEW
@given(intake=intakes, summary=summaries, prices=price_tables)
def test_higher_volatility_never_lowers_rag(
    intake: Intake, summary: SampleSummary | None, prices: PriceTable
) -> None:
    rag = [
        score(intake.model_copy(update={"volatility": volatility}), summary, prices).scores["rag"]
        for volatility in Volatility  # declared in increasing order
    ]
    assert rag == sorted(rag)


@FEW
@given(intake=intakes, summary=summaries, prices=price_tables)
def test_fine_tuning_never_ranks_first_with_too_few_examples(
    intake: Intake, summary: SampleSummary | None, prices: PriceTable
) -> None:
    few = intake.model_copy(
        update={"examples_available": intake.examples_available % MIN_FINE_TUNING_EXAMPLES}
    )
    result = score(few, summary, prices)

    assert result.ranking[0] != "fine_tuning"
    assert "too_few_examples" in {flag.id for flag in result.flags}
