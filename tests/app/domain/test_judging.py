"""The judge's pure parts: reading verdicts, the both-orders rule, Spearman, the statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.domain.judging import (
    GRADING_SYSTEM,
    JUDGE_PASS,
    JUDGE_SCORE,
    MAX_FIELD_CHARS,
    PAIRWISE_SYSTEM,
    Verdict,
    agreement,
    combine_orders,
    grading_messages,
    judge_statistics,
    pairwise_messages,
    parse_preference,
    parse_verdict,
    readable_mean_statistic,
    reference_scores,
    spearman,
    with_reminder,
)
from app.domain.metric_catalogue import format_metric_value, metric_label, primary_metric
from app.domain.records import JudgeResults, PairResult, PairTally, unreadable_line
from app.domain.samples.schemas import PilotTask


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"score": 4, "pass": true}', Verdict(4, True)),
        ('{"pass": false, "score": 2}', Verdict(2, False)),
        ('  {"score": 5, "pass": true}\n', Verdict(5, True)),
        # JSON in prose, or in a code fence: the object counts, the words around it do not.
        (
            'The answer misses a step. {"score": 3, "pass": false} That is my verdict.',
            Verdict(3, False),
        ),
        ('```json\n{"score": 1, "pass": false}\n```', Verdict(1, False)),
        # Lenient on spelling the same facts: "4", 4.0, "pass"/"fail", "passed".
        ('{"score": "4", "pass": "pass"}', Verdict(4, True)),
        ('{"score": 2.0, "pass": "fail"}', Verdict(2, False)),
        ('{"score": 5, "passed": true}', Verdict(5, True)),
        # The first object with both facts wins; one without them is skipped.
        ('{"note": "thinking"} then {"score": 4, "pass": true}', Verdict(4, True)),
    ],
)
def test_a_readable_verdict(text: str, expected: Verdict) -> None:
    assert parse_verdict(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I would give it four out of five, a pass.",
        '{"score": 6, "pass": true}',  # out of range
        '{"score": 0, "pass": false}',
        '{"score": 3.5, "pass": true}',  # not a whole score
        '{"score": true, "pass": true}',  # a bool is not a score
        '{"score": 4}',  # no pass/fail: not guessed from the score
        '{"pass": true}',
        '{"score": 4, "pass": "maybe"}',
        "{'score': 4, 'pass': True}",  # Python, not JSON
        '{"score": 4, "pass": tr',  # cut off by the token limit
        '{"score": 4 "pass": true}',  # a missing comma
        '["score", 4, "pass", true]',
    ],
)
def test_a_malformed_verdict_reads_as_none(text: str) -> None:
    assert parse_verdict(text) is None


def test_preferences() -> None:
    assert parse_preference('{"better": "A"}') == "A"
    assert parse_preference('I think {"better": "b"} because it is complete.') == "B"
    assert parse_preference('{"better": "tie"}') == "tie"
    assert parse_preference('{"better": "Neither"}') == "tie"
    for malformed in ("A", '{"better": "C"}', '{"winner": "A"}', '{"better": 1}', "{better: A}"):
        assert parse_preference(malformed) is None, malformed


@pytest.mark.parametrize(
    ("shown_first", "shown_second", "expected"),
    [
        # The first arm's answer was A, then B: a win needs the judge to follow it.
        ("A", "B", PairResult.win),
        ("B", "A", PairResult.loss),
        # The judge preferred a position, not an answer: a tie.
        ("A", "A", PairResult.tie),
        ("B", "B", PairResult.tie),
        # A tie in either order is a tie.
        ("tie", "B", PairResult.tie),
        ("A", "tie", PairResult.tie),
        ("tie", "tie", PairResult.tie),
        # An unreadable order is counted as such, not guessed.
        (None, "B", PairResult.unreadable),
        ("A", None, PairResult.unreadable),
        (None, None, PairResult.unreadable),
    ],
)
def test_a_win_counts_only_when_both_orders_agree(
    shown_first: str | None, shown_second: str | None, expected: PairResult
) -> None:
    assert combine_orders(shown_first, shown_second) is expected  # type: ignore[arg-type]


def test_a_tally_counts_every_item() -> None:
    tally = PairTally(arm_a="rag", arm_b="fewshot")
    for result in (
        [PairResult.win] * 3 + [PairResult.tie] * 2 + [PairResult.loss, PairResult.unreadable]
    ):
        tally.add(result)
    assert (tally.wins, tally.ties, tally.losses, tally.unreadable) == (3, 2, 1, 1)
    assert tally.compared == 7


def test_spearman_on_known_values() -> None:
    assert spearman([1, 2, 3, 4, 5], [10, 20, 30, 40, 50]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 4 / 120
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # Tied scores share their average rank: ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4).
    assert spearman([1, 1, 2, 3], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(math.sqrt(0.9))
    # Monotone, not linear: still 1.
    assert spearman([1, 2, 3, 4], [0.01, 0.02, 0.5, 0.99]) == pytest.approx(1.0)


def test_spearman_matches_scipy_with_many_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    judge = rng.integers(1, 6, size=200)
    rouge = np.round(rng.random(200) * 0.6 + judge * 0.08, 2)
    assert spearman(judge, rouge) == pytest.approx(stats.spearmanr(judge, rouge).statistic)


def test_spearman_is_undefined_without_variation_or_pairs() -> None:
    assert spearman([4, 4, 4], [0.1, 0.5, 0.9]) is None  # a judge that says the same always
    assert spearman([1, 2, 3], [0.3, 0.3, 0.3]) is None
    assert spearman([3], [0.5]) is None
    assert spearman([], []) is None
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1, 2, 3])


def test_agreement_leaves_unreadable_verdicts_out() -> None:
    verdicts = [Verdict(5, True), None, Verdict(1, False), Verdict(3, False)]
    # Item 2 (unreadable) would break the order if it counted with any score.
    assert agreement(verdicts, [0.9, 0.0, 0.1, 0.5]) == pytest.approx(1.0)
    assert agreement([None, None], [0.1, 0.2]) is None


def test_unreadable_verdicts_are_excluded_from_the_means_and_resampled_fairly() -> None:
    verdicts = [Verdict(5, True), Verdict(1, False), None, Verdict(4, True)]
    stats = judge_statistics(verdicts)
    everything = np.arange(4)[None, :]
    assert stats[JUDGE_PASS](everything)[0] == pytest.approx(2 / 3)
    assert stats[JUDGE_SCORE](everything)[0] == pytest.approx((1.0 + 0.0 + 0.75) / 3)
    # A resample of only the unreadable item says nothing: it gets the full-sample mean.
    assert stats[JUDGE_PASS](np.array([[2, 2, 2, 2], [0, 0, 2, 2]]))[0] == pytest.approx(2 / 3)
    assert stats[JUDGE_PASS](np.array([[0, 0, 2, 2]]))[0] == pytest.approx(1.0)
    assert judge_statistics([None, None]) == {}
    statistic = readable_mean_statistic(np.array([np.nan, 1.0, 0.0]))
    assert not np.isnan(statistic(np.array([[0, 0, 0], [1, 2, 0]]))).any()


def test_the_prompts_carry_the_case_and_clip_long_fields() -> None:
    messages = grading_messages(
        PilotTask.qa, source="Who wrote it?", instruction="", reference="Ada", answer="Ada L."
    )
    assert messages[0] == {"role": "system", "content": GRADING_SYSTEM}
    assert "Who wrote it?" in messages[1]["content"] and "Ada L." in messages[1]["content"]
    assert '{"score": <1-5>, "pass": <true or false>}' in GRADING_SYSTEM
    long = "word " * 2000
    pair = pairwise_messages(
        PilotTask.generation, source=long, instruction="Sum up.", reference="r", answer_a="x",
        answer_b="y",
    )  # fmt: skip
    assert pair[0]["content"] == PAIRWISE_SYSTEM
    assert "[... clipped]" in pair[1]["content"]
    assert len(pair[1]["content"]) < 2 * MAX_FIELD_CHARS
    retry = with_reminder(messages, "four out of five", "JSON please")
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]


def test_reference_scores_are_rouge_l_for_generation_and_token_f1_for_qa() -> None:
    assert reference_scores(PilotTask.generation, ["a b c"], ["a b c"]).tolist() == [1.0]
    assert reference_scores(PilotTask.qa, ["the Paris"], ["Paris"]).tolist() == [1.0]
    assert reference_scores(PilotTask.qa, ["Lyon"], ["Paris"]).tolist() == [0.0]


def test_the_primary_metric_is_the_judges_pass_rate_when_a_judge_ran() -> None:
    assert primary_metric(PilotTask.generation, ["t"], judged=True) == JUDGE_PASS
    assert primary_metric(PilotTask.qa, ["t"], judged=True) == JUDGE_PASS
    assert primary_metric(PilotTask.generation, ["t"]) == "rouge_l"
    # Exact tasks keep their exact metric even if a judge was named.
    assert primary_metric(PilotTask.classification, ["a"], judged=True) == "accuracy"
    assert primary_metric(PilotTask.extraction, ['{"a": 1}'], judged=True) == "field_f1"


def test_the_catalogue_names_and_formats_the_judge_metrics() -> None:
    assert metric_label(JUDGE_PASS) == "judge pass rate"
    assert format_metric_value(JUDGE_PASS, 0.725) == "72.5%"
    assert format_metric_value("judge_agreement", 0.4213) == "+0.42"
    assert format_metric_value("judge_unreadable", 3) == "3"
    assert format_metric_value("judge_cost_usd", 0.0421) == "$0.042"


def test_the_stored_results_read_back_and_say_what_was_unreadable() -> None:
    stored = JudgeResults(model_id="judge", reference_metric="rouge_l").as_json()
    assert JudgeResults.read(stored) == JudgeResults(model_id="judge", reference_metric="rouge_l")
    assert JudgeResults.read(None) is None
    assert unreadable_line(3, 120) == "3 of 120 verdicts unreadable"
    assert unreadable_line(0, 1) == "0 of 1 verdict unreadable"
