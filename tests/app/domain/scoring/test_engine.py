"""Flags, hybrids, the headline, and that the result is a faithful, storable record."""

from __future__ import annotations

import pytest

from app.domain.intake import FailureMode, GpuAccess, TaskType
from app.domain.scoring.engine import apply_factor, rank, recommend_hybrid, score
from app.domain.scoring.paths import PATH_LABELS
from app.domain.scoring.rubric import BASE_SCORES
from app.domain.scoring.schemas import ScoreResult
from tests.app.domain.scoring.intakes import make_intake, make_summary


def _flag_ids(result: ScoreResult) -> set[str]:
    return {flag.id for flag in result.flags}


@pytest.mark.parametrize(
    ("gpu", "size_b", "severity"),
    [
        (GpuAccess.gpu_24gb, 70.0, "blocker"),  # needs ≈48 GB
        (GpuAccess.gpu_24gb, 31.0, "blocker"),  # just past 24 GB
        (GpuAccess.gpu_40_80gb, 70.0, "warning"),  # 48 GB: an 80 GB card yes, a 40 GB one no
        (GpuAccess.gpu_40_80gb, 200.0, "blocker"),
        (GpuAccess.none, 7.0, "warning"),  # has to rent
    ],
)
def test_gpu_memory_flag_follows_the_qlora_table(
    gpu: GpuAccess, size_b: float, severity: str
) -> None:
    result = score(make_intake(gpu_access=gpu, target_model_size_b=size_b))

    flag = next(flag for flag in result.flags if flag.id == "gpu_memory")
    assert flag.severity == severity
    assert flag.path == "fine_tuning"


@pytest.mark.parametrize(
    ("gpu", "size_b"),
    [(GpuAccess.gpu_24gb, 30.0), (GpuAccess.gpu_40_80gb, 50.0), (GpuAccess.managed_api, 400.0)],
)
def test_no_gpu_flag_when_qlora_fits(gpu: GpuAccess, size_b: float) -> None:
    assert "gpu_memory" not in _flag_ids(
        score(make_intake(gpu_access=gpu, target_model_size_b=size_b))
    )


def test_gpu_shortfall_lowers_fine_tuning() -> None:
    fits = score(make_intake(target_model_size_b=7.0))
    too_big = score(make_intake(target_model_size_b=70.0))

    assert too_big.scores["fine_tuning"] < fits.scores["fine_tuning"]
    assert too_big.scores["prompting"] == fits.scores["prompting"]


def test_managed_api_with_on_premises_data_is_a_blocker() -> None:
    result = score(make_intake(gpu_access=GpuAccess.managed_api, data_residency="on_premises"))

    assert "residency_vs_managed_api" in _flag_ids(result)


def test_budget_below_one_off_cost_is_flagged_for_that_path() -> None:
    # A 70B run on 5,000 examples is estimated at $100; the budget is $50.
    result = score(
        make_intake(
            budget_one_off_usd=50.0,
            target_model_size_b=70.0,
            examples_available=5_000,
            gpu_access=GpuAccess.gpu_40_80gb,
        )
    )

    flagged = [flag for flag in result.flags if flag.id == "budget_below_one_off"]
    assert [flag.path for flag in flagged] == ["fine_tuning"]
    assert "$100.00" in flagged[0].message


def test_budget_below_monthly_cost_is_flagged_and_lowers_the_score() -> None:
    # RAG costs $33/month at 1,000 queries/day (see test_costs); prompting $18.
    within = score(make_intake(budget_monthly_usd=40.0))
    below = score(make_intake(budget_monthly_usd=20.0))

    assert "budget_below_monthly" not in _flag_ids(within)
    assert [f.path for f in below.flags if f.id == "budget_below_monthly"] == [
        "rag",
        "fine_tuning",
    ]
    assert below.scores["rag"] < within.scores["rag"]
    assert below.scores["prompting"] == within.scores["prompting"]


def test_no_documents_flag_only_when_rag_ranks_first() -> None:
    assert "no_documents" not in _flag_ids(score(make_intake(has_documents=False)))
    rag_first = score(make_intake(failure_modes=[FailureMode.missing_facts], has_documents=False))
    assert "no_documents" in _flag_ids(rag_first)
    with_docs = score(make_intake(failure_modes=[FailureMode.missing_facts], has_documents=True))
    assert "no_documents" not in _flag_ids(with_docs)


def test_duplicates_in_the_sample_are_flagged_and_lower_fine_tuning() -> None:
    clean = score(make_intake(), make_summary(exact_duplicates=0))
    duplicated = score(make_intake(), make_summary(rows=1_000, exact_duplicates=200))

    assert "sample_duplicates" in _flag_ids(duplicated)
    assert "sample_duplicates" not in _flag_ids(clean)
    assert duplicated.scores["fine_tuning"] == pytest.approx(
        clean.scores["fine_tuning"] - 10, abs=0.11
    )


def test_blockers_come_before_warnings() -> None:
    result = score(
        make_intake(examples_available=10, gpu_access=GpuAccess.none, budget_one_off_usd=0.0)
    )

    severities = [flag.severity for flag in result.flags]
    assert severities == sorted(severities, key=lambda severity: severity != "blocker")
    assert severities[0] == "blocker"
    assert "warning" in severities


def test_hybrid_when_rag_and_fine_tuning_both_score_high_and_close() -> None:
    scores = {"prompting": 40.0, "rag": 72.0, "fine_tuning": 68.0}
    hybrid = recommend_hybrid(make_intake(), scores, rank(scores), [])

    assert hybrid is not None
    assert hybrid.paths == ["fine_tuning", "rag"]


@pytest.mark.parametrize(
    "scores",
    [
        {"prompting": 40.0, "rag": 72.0, "fine_tuning": 55.0},  # too far apart
        {"prompting": 40.0, "rag": 58.0, "fine_tuning": 56.0},  # close but not high
        {"prompting": 80.0, "rag": 72.0, "fine_tuning": 70.0},  # prompting wins anyway
    ],
)
def test_no_hybrid_unless_both_high_and_close(scores: dict[str, float]) -> None:
    assert recommend_hybrid(make_intake(), scores, rank(scores), []) is None


def test_hybrid_waits_for_fine_tuning_blockers() -> None:
    result = score(
        make_intake(
            failure_modes=[FailureMode.domain_errors, FailureMode.missing_facts],
            examples_available=20,
        )
    )

    assert result.hybrid is not None
    assert "too_few_examples" in result.hybrid.reason
    assert result.ranking[0] == "rag"


def test_rank_breaks_ties_towards_the_simpler_path() -> None:
    assert rank({"prompting": 50.0, "rag": 50.0, "fine_tuning": 50.0}) == [
        "prompting",
        "rag",
        "fine_tuning",
    ]
    assert rank({"prompting": 10.0, "rag": 30.0, "fine_tuning": 20.0}) == [
        "rag",
        "fine_tuning",
        "prompting",
    ]


def test_headline_names_the_winner_and_its_score() -> None:
    result = score(make_intake(failure_modes=[FailureMode.missing_facts]))

    rag = result.scores["rag"]
    assert result.headline.startswith(f"{PATH_LABELS['rag']} fits best ({rag:.0f}/100)")
    assert result.headline.endswith(".")
    assert result.headline.count(".") == 1


def test_headline_mentions_blockers_on_the_winning_path() -> None:
    result = score(
        make_intake(failure_modes=[FailureMode.ignores_format], target_model_size_b=70.0)
    )

    assert result.ranking[0] == "fine_tuning"
    assert "resolve 1 blocker first" in result.headline


def _assert_table_adds_up(result: ScoreResult) -> None:
    """Base + the factor rows, then each recorded adjustment in turn, gives every score."""
    for path, value in result.scores.items():
        running = round(
            BASE_SCORES[path] + sum(row.contribution[path] for row in result.factors), 1
        )
        for adjustment in (a for a in result.adjustments if a.path == path):
            assert adjustment.before == pytest.approx(running)
            running = adjustment.after
        assert value == pytest.approx(running)
        assert 0.0 <= value <= 100.0
    for row in result.factors:
        for path in result.scores:
            expected = round(row.weight * row.activation * row.effect[path], 2)
            assert row.contribution[path] == pytest.approx(expected)


def test_the_factor_table_adds_up_to_the_scores() -> None:
    result = score(
        make_intake(
            task_type=TaskType.document_qa,
            failure_modes=[FailureMode.missing_facts, FailureMode.prompts_too_long],
            needs_citations=True,
        ),
        make_summary(exact_duplicates=30),
    )
    assert result.adjustments == []
    _assert_table_adds_up(result)


@pytest.mark.parametrize("example", ["intake-banking-intents.json", "intake-policy-qa.json"])
def test_sums_beyond_the_scale_are_capped_and_recorded(example: str) -> None:
    from app.domain.intake import Intake
    from tests.conftest import REPO

    result = score(Intake.model_validate_json((REPO / "examples" / example).read_text()))
    capped = [a for a in result.adjustments if "beyond the 0–100 scale" in a.reason]
    assert capped, "the shipped examples point strongly enough to reach the cap"
    assert all(a.after in (0.0, 100.0) and a.before != a.after for a in capped)
    _assert_table_adds_up(result)


def test_capped_ties_go_to_the_stronger_uncapped_sum() -> None:
    capped = {"prompting": 40.0, "rag": 100.0, "fine_tuning": 100.0}
    assert rank(capped, tiebreak={"prompting": 40.0, "rag": 104.0, "fine_tuning": 131.0}) == [
        "fine_tuning",
        "rag",
        "prompting",
    ]
    assert rank(capped)[:2] == ["rag", "fine_tuning"]  # without sums: the simpler path


def test_every_cited_source_is_listed_once() -> None:
    result = score(
        make_intake(failure_modes=[FailureMode.domain_errors, FailureMode.missing_facts])
    )

    listed = [source.id for source in result.sources]
    assert len(listed) == len(set(listed))
    cited = {cid for row in result.factors for cid in row.citations}
    assert result.hybrid is not None
    assert cited | set(result.hybrid.citations) == set(listed)


def test_result_survives_a_json_round_trip() -> None:
    result = score(make_intake(failure_modes=[FailureMode.domain_errors]), make_summary())

    assert ScoreResult.model_validate_json(result.model_dump_json()) == result


def test_scoring_is_deterministic_and_uses_the_given_price_table() -> None:
    intake = make_intake(prompt_tokens_today=4_000)
    assert score(intake) == score(intake)

    pricier = {"hosted-base": (5.0, 15.0), "hosted-fine-tuned": (15.0, 45.0)}
    assert score(intake, price_table=pricier).costs["prompting"].monthly_usd == pytest.approx(
        10 * score(intake).costs["prompting"].monthly_usd
    )


def test_apply_factor_clamps_activation_and_shows_the_input() -> None:
    from dataclasses import replace

    from app.domain.scoring.costs import estimate_costs
    from app.domain.scoring.rubric import FACTORS_BY_ID, ScoringContext

    intake = make_intake(volatility="weekly")
    ctx = ScoringContext(intake=intake, summary=None, costs=estimate_costs(intake))
    row = apply_factor(FACTORS_BY_ID["volatility"], ctx)
    assert row.activation == 0.75
    assert "weekly" in row.input_value

    wild = replace(FACTORS_BY_ID["volatility"], activation=lambda _ctx: 7.0)
    assert apply_factor(wild, ctx).activation == 1.0
