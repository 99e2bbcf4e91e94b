"""The tie-break among arms tied on quality (the tie itself: tests/app/domain/test_evidence.py)."""

from __future__ import annotations

import pytest

from app.domain.tiebreak import (
    SIMPLICITY,
    Contender,
    Verdict,
    break_tie,
    explain,
)


def contender(
    arm: str, option: str, cost: float | None = 0.5, latency: float | None = 100.0
) -> Contender:
    return Contender(arm, arm, option, cost, latency)


def test_cost_decides_first() -> None:
    result = break_tie(
        [
            contender("qlora", "fine_tuning", cost=0.88, latency=50),
            contender("rag", "rag", cost=0.31, latency=400),
        ]
    )
    assert result.winner.arm == "rag"
    assert [v.criterion for v in result.verdicts] == ["cost"]
    assert result.criteria == ("cost",)


def test_costs_equal_as_printed_leave_it_to_latency() -> None:
    result = break_tie(
        [
            contender("rag", "rag", cost=0.3104, latency=400),
            contender("qlora", "fine_tuning", cost=0.3096, latency=120),  # both "$0.310"
        ]
    )
    assert result.winner.arm == "qlora"
    assert result.verdicts[0].criterion == "latency"


def test_equal_cost_and_latency_leave_it_to_simplicity() -> None:
    result = break_tie(
        [
            contender("qlora_rag", "fine_tuning+rag"),
            contender("qlora", "fine_tuning"),
            contender("rag", "rag"),
        ]
    )
    assert result.winner.arm == "rag"
    assert {v.other.arm: v.criterion for v in result.verdicts} == {
        "qlora_rag": "simplicity",
        "qlora": "simplicity",
    }
    assert SIMPLICITY == ("prompting", "rag", "fine_tuning", "fine_tuning+rag")


def test_a_figure_missing_for_one_arm_is_skipped_for_all() -> None:
    # The cheaper arm stored no latency: latency cannot rank half the group, cost still does.
    result = break_tie(
        [
            contender("fewshot", "prompting", cost=0.9, latency=None),
            contender("qlora", "fine_tuning", cost=0.2, latency=80),
        ]
    )
    assert result.winner.arm == "qlora" and result.verdicts[0].criterion == "cost"
    # No cost for one of them: latency decides, not a missing value read as zero.
    result = break_tie(
        [
            contender("fewshot", "prompting", cost=None, latency=300),
            contender("qlora", "fine_tuning", cost=0.9, latency=80),
        ]
    )
    assert result.winner.arm == "qlora" and result.verdicts[0].criterion == "latency"
    # Equal cost, one latency missing: latency is skipped and simplicity decides.
    result = break_tie(
        [
            contender("qlora", "fine_tuning", cost=0.5, latency=None),
            contender("rag", "rag", cost=0.5, latency=300),
        ]
    )
    assert result.winner.arm == "rag" and result.verdicts[0].criterion == "simplicity"


def test_an_empty_tie_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        break_tie([])


def test_the_explanation_names_the_pair_the_gap_the_minimum_and_the_figures() -> None:
    winner = contender("QLoRA", "fine_tuning", cost=0.31, latency=120)
    other = contender("RAG", "rag", cost=0.88, latency=340)
    text = explain(winner, Verdict(other, "cost"), -0.012, 2.0)
    assert text == (
        "QLoRA and RAG differ by 1.2 points, under the 2-point minimum that matters to you, so "
        "cost decided: QLoRA costs $0.310 vs $0.880 per 1,000 queries."
    )
    text = explain(winner, Verdict(other, "latency"), 0.01, 2.5)
    assert "under the 2.5-point minimum" in text and "latency decided" in text
    assert "QLoRA answers in 120 ms vs 340 ms (median)" in text
    assert "simplicity decided" in explain(winner, Verdict(other, "simplicity"), 0.01, 2.0)
