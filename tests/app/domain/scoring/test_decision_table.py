"""One test per row of the rubric's decision table (docs/rubric.md), each against the neutral
intake.

Each test also checks the neutral intake does *not* give the same answer, so a test can only
pass because the row's answer moved the result.
"""

from __future__ import annotations

from app.domain.intake import FailureMode, Volatility
from app.domain.scoring.engine import score
from app.domain.scoring.paths import HYBRID_FT_RAG
from tests.app.domain.scoring.intakes import make_intake


def test_neutral_intake_keeps_the_prompt_baseline() -> None:
    result = score(make_intake())

    assert result.ranking[0] == "prompting"
    assert result.hybrid is None
    assert result.flags == []


def test_missing_facts_ranks_rag_first() -> None:
    result = score(make_intake(failure_modes=[FailureMode.missing_facts]))

    assert result.ranking[0] == "rag"
    assert result.scores["rag"] > score(make_intake()).scores["rag"]


def test_missing_facts_ranks_rag_first_even_without_a_corpus_and_says_so() -> None:
    result = score(make_intake(failure_modes=[FailureMode.missing_facts], has_documents=False))

    assert result.ranking[0] == "rag"
    assert "no_documents" in {flag.id for flag in result.flags}


def test_format_problems_with_enough_reviewed_examples_rank_fine_tuning_first() -> None:
    result = score(
        make_intake(
            failure_modes=[FailureMode.ignores_format],
            examples_available=1_000,
            examples_reviewed=True,
        )
    )

    assert result.ranking[0] == "fine_tuning"


def test_wrong_tone_with_enough_reviewed_examples_ranks_fine_tuning_first() -> None:
    result = score(make_intake(failure_modes=[FailureMode.wrong_tone], examples_available=800))

    assert result.ranking[0] == "fine_tuning"


def test_domain_errors_with_missing_facts_recommend_fine_tuning_plus_rag() -> None:
    result = score(
        make_intake(failure_modes=[FailureMode.domain_errors, FailureMode.missing_facts])
    )

    assert result.hybrid is not None
    assert result.hybrid.id == HYBRID_FT_RAG
    assert set(result.hybrid.paths) == {"fine_tuning", "rag"}
    assert "balaguer-2024" in result.hybrid.citations
    assert set(result.ranking[:2]) == {"rag", "fine_tuning"}
    assert "Fine-tuning + RAG" in result.headline


def test_domain_errors_with_fresh_information_recommend_fine_tuning_plus_rag() -> None:
    result = score(
        make_intake(failure_modes=[FailureMode.domain_errors, FailureMode.needs_fresh_info])
    )

    assert result.hybrid is not None
    assert result.hybrid.id == HYBRID_FT_RAG


def test_domain_errors_alone_favour_fine_tuning_without_forcing_a_hybrid() -> None:
    result = score(make_intake(failure_modes=[FailureMode.domain_errors]))

    assert result.ranking[0] == "fine_tuning"
    assert result.hybrid is None


def test_fresh_information_ranks_rag_first() -> None:
    result = score(make_intake(failure_modes=[FailureMode.needs_fresh_info]))

    assert result.ranking[0] == "rag"


def test_daily_volatility_alone_ranks_rag_first() -> None:
    assert score(make_intake(volatility=Volatility.static)).ranking[0] == "prompting"
    assert score(make_intake(volatility=Volatility.daily)).ranking[0] == "rag"


def test_weekly_volatility_already_ranks_rag_first() -> None:
    # Evidence: data that changes weekly or faster → RAG.
    assert score(make_intake(volatility=Volatility.weekly)).ranking[0] == "rag"


def test_long_prompts_at_high_volume_raise_fine_tuning_and_pay_back() -> None:
    def long_prompts(queries_per_day: int) -> dict[str, object]:
        return {
            "failure_modes": [FailureMode.prompts_too_long],
            "prompt_tokens_today": 4_000,
            "queries_per_day": queries_per_day,
            "budget_monthly_usd": 100_000.0,
        }

    low = score(make_intake(**long_prompts(100)))
    high = score(make_intake(**long_prompts(100_000)))
    short_prompts = score(make_intake(prompt_tokens_today=4_000, queries_per_day=100_000))

    assert high.scores["fine_tuning"] > low.scores["fine_tuning"]
    assert high.scores["fine_tuning"] > short_prompts.scores["fine_tuning"]
    assert high.ranking[0] == "fine_tuning"
    assert high.break_even_queries_per_month is not None
    assert high.break_even_queries_per_month < 100_000 * 30


def test_short_prompts_never_pay_back_a_fine_tune_at_the_default_prices() -> None:
    # 800 prompt tokens at base price cost less per call than 50 at the fine-tuned price.
    assert score(make_intake(prompt_tokens_today=800)).break_even_queries_per_month is None


def test_too_few_examples_flag_fine_tuning_and_keep_it_off_the_top() -> None:
    # Format + tone problems would rank fine-tuning first with enough examples...
    formats = [FailureMode.ignores_format, FailureMode.wrong_tone]
    assert score(make_intake(failure_modes=formats)).ranking[0] == "fine_tuning"

    # ...but not with 50.
    result = score(make_intake(failure_modes=formats, examples_available=50))

    assert result.ranking[0] != "fine_tuning"
    flag = next(flag for flag in result.flags if flag.id == "too_few_examples")
    assert flag.path == "fine_tuning"
    assert flag.severity == "blocker"


def test_between_100_and_200_examples_is_a_warning_and_still_not_first() -> None:
    result = score(
        make_intake(
            failure_modes=[FailureMode.ignores_format, FailureMode.domain_errors],
            examples_available=150,
            timeline="months",
            team_skills=["ml_engineering", "mlops"],
        )
    )

    assert result.ranking[0] != "fine_tuning"
    flag = next(flag for flag in result.flags if flag.id == "too_few_examples")
    assert flag.severity == "warning"


def test_an_intake_that_would_rank_fine_tuning_first_is_held_below_with_too_few_examples() -> None:
    # Everything favours fine-tuning except the example count; the hold rule must step in
    # and be recorded, so the factor table still explains the printed score.
    favourable = {
        "failure_modes": [FailureMode.ignores_format, FailureMode.prompts_too_long],
        "queries_per_day": 1_000_000,
        "prompt_tokens_today": 4_000,
        "budget_monthly_usd": 1e9,
        "timeline": "months",
        "team_skills": ["ml_engineering", "mlops"],
        "data_residency": "on_premises",
        "latency_target_ms": 100,
        "volatility": Volatility.static,
    }
    result = score(make_intake(**favourable, examples_available=199))

    assert result.ranking[0] != "fine_tuning"
    held = [a for a in result.adjustments if "Fewer than" in a.reason]
    assert [adjustment.path for adjustment in held] == ["fine_tuning"]
    adjustment = held[0]
    assert adjustment.after < adjustment.before
    assert result.scores["fine_tuning"] == adjustment.after
    assert score(make_intake(**favourable, examples_available=200)).ranking[0] == "fine_tuning"
