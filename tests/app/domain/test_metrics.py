"""Metrics against values worked out by hand (in the comments)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.domain.metric_catalogue import primary_metric
from app.domain.metrics import (
    PriceRow,
    aligned_predictions,
    cost_per_1k_queries,
    evaluate,
    exact_match,
    field_f1,
    json_valid,
    label_ids,
    label_match_metrics,
    lcs_length,
    macro_f1_value,
    match_label,
    normalize_answer,
    normalize_label,
    operational_metrics,
    quality_statistics,
    rouge_l,
    token_f1,
)
from app.domain.records import Prediction
from app.domain.samples.schemas import PilotTask

LABELS = ["card", "card_arrival", "lost_or_stolen_card"]


def test_label_normalisation_ignores_case_underscores_and_edge_punctuation() -> None:
    assert normalize_label("  Card_Arrival. ") == "card arrival"
    assert normalize_label("lost-or  stolen_card") == "lost or stolen card"


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("card_arrival", "card_arrival"),
        ("Card arrival\nbecause the user waits", "card_arrival"),  # first line only
        ("card_arrival_extra words", "card_arrival"),  # longest label it starts with
        ("card", "card"),
        ("\n\nlost or stolen card", "lost_or_stolen_card"),  # first non-empty line
        ("my card is late", None),
        ("", None),
        ("cardinal", None),  # a label matches whole words, never the start of a word
        ("card arrivals", "card"),  # "card arrival" ends inside a word here; "card" does not
        ("card arrival is late", "card_arrival"),  # the longest whole-word label wins
        ("card: the user asks about it", "card"),  # punctuation ends a word
        ("Label: card_arrival", "card_arrival"),  # a lead-in before the label is read past
        ("**Answer:** card.", "card"),
        ("The answer is: lost or stolen card", "lost_or_stolen_card"),
        ("Answer: cardinal", None),  # the label after a lead-in is word-bounded too
        ("labels: card", None),  # a lead-in is whole words as well
    ],
)
def test_prediction_maps_to_a_label(prediction: str, expected: str | None) -> None:
    assert match_label(prediction, LABELS) == expected


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("none of these", None),  # not "no": the label is a word, not a prefix
        ("Notable", None),
        ("No, it is not", "no"),
        ("no.", "no"),
        ("Yes", "yes"),
    ],
)
def test_a_short_label_is_not_the_start_of_a_longer_word(
    prediction: str, expected: str | None
) -> None:
    assert match_label(prediction, ["no", "yes"]) == expected


def test_the_unmatched_rate_counts_predictions_that_name_no_label() -> None:
    targets = ["no", "yes", "no", "yes", "no", "yes", "no", "yes"]
    # Two name no label ("none of these", "Notable"); "yes" for a "no" is wrong but matched.
    predictions = ["no", "yes", "none of these", "Yes.", "Notable", "No", "yes", "yes"]
    values = label_match_metrics(PilotTask.classification, predictions, targets, ["no", "yes"])
    assert [(m.name, m.value) for m in values] == [("label_unmatched", pytest.approx(2 / 8))]
    # Other tasks name no labels, so they have no unmatched rate.
    assert label_match_metrics(PilotTask.qa, ["x"], ["y"], []) == []
    assert label_match_metrics(PilotTask.classification, [], [], ["no"]) == []


def test_accuracy_and_macro_f1_by_hand() -> None:
    targets = ["a", "a", "b", "c"]
    predictions = ["a", "b", "B.", "something else"]
    # accuracy 2/4. Per label F1 = 2tp / (gold + predicted):
    # a: 2*1/(2+1) = 2/3; b: 2*1/(1+2) = 2/3; c: 0/(1+0) = 0  -> macro (4/3)/3 = 4/9.
    stats = quality_statistics(
        PilotTask.classification, predictions, targets, labels=["a", "b", "c"]
    )
    assert evaluate(stats["accuracy"], 4) == pytest.approx(0.5)
    assert evaluate(stats["macro_f1"], 4) == pytest.approx(4 / 9)
    gold, predicted = label_ids(predictions, targets, ["a", "b", "c"])
    assert predicted.tolist()[-1] == -1  # unmatched is no label, not a class of its own
    assert macro_f1_value(gold, gold) == 1.0


def test_squad_exact_match_and_token_f1() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert exact_match("Eiffel", "eiffel tower") == 0.0
    # pred [in, paris, france], gold [paris]: P = 1/3, R = 1, F1 = 2(1/3)/(4/3) = 0.5
    assert token_f1("in Paris, France", "Paris") == pytest.approx(0.5)
    assert token_f1("", "") == 1.0
    assert token_f1("London", "Paris") == 0.0


def test_squad_scores_take_the_best_gold_answer() -> None:
    # The SQuAD v1.1 evaluation script scores a prediction against every gold answer and
    # keeps the maximum, for exact match and for F1 alike.
    predictions = ["Normans", "the Norman rulers", "Rollo"]
    targets = ["The Normans of France", "Normans", "Rollo"]
    alternatives = [["Normans"], ["Norman rulers of Normandy", "rulers"], []]
    stats = quality_statistics(PilotTask.qa, predictions, targets, alternatives=alternatives)
    # item 1 matches only its second gold: EM 1. Item 2: [norman, rulers] vs the golds
    # [normans] F1 0; [norman, rulers, of, normandy] P 1, R 1/2, F1 2/3; [rulers] P 1/2,
    # R 1, F1 2/3 -> 2/3, EM 0. Item 3 matches its only gold: EM 1, F1 1.
    assert evaluate(stats["exact_match"], 3) == pytest.approx(2 / 3)
    assert evaluate(stats["token_f1"], 3) == pytest.approx((1 + 2 / 3 + 1) / 3)
    # Without the alternatives only the first gold counts (item 1: EM 0, F1 1/2).
    first_only = quality_statistics(PilotTask.qa, predictions, targets)
    assert evaluate(first_only["exact_match"], 3) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="alternatives"):
        quality_statistics(PilotTask.qa, predictions, targets, alternatives=[[]])


def test_json_validity_and_field_f1() -> None:
    assert json_valid('```json\n{"a": 1}\n```') == 1.0  # a code fence is tolerated
    assert json_valid('Sure! {"a": 1}') == 0.0  # chatter around JSON is not
    assert json_valid("42") == 0.0  # a bare scalar is no structured output
    # pred {(name, ann), (city, oslo)}; gold {(name, ann), (city, bergen), (age, 3)}:
    # overlap 1, P = 1/2, R = 1/3, F1 = 2(1/6)/(5/6) = 0.4
    gold = '{"name": "Ann", "city": "Bergen", "age": 3}'
    assert field_f1('{"name": "ann", "city": "Oslo"}', gold) == pytest.approx(0.4)
    assert field_f1(gold, gold) == 1.0
    assert field_f1("not json", gold) == 0.0
    # nested paths and list items as a multiset
    assert field_f1('{"a": {"b": [1, 2]}}', '{"a": {"b": [2, 1]}}') == 1.0


def test_rouge_l_uses_the_longest_common_subsequence() -> None:
    assert lcs_length(["a", "b", "c", "d", "e"], ["a", "c", "e", "f"]) == 3
    # LCS "the cat on the mat" = 5 of 6 tokens each way: P = R = F = 5/6
    assert rouge_l("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l("", "") == 1.0
    assert rouge_l("x", "y") == 0.0


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        ("Париж", "Берлин", 0.0),  # no Latin letters is no reason for a perfect score
        ("Париж", "париж", 1.0),
        # LCS [столица, россии] = 2 of 3 tokens each way: P = R = F = 2/3
        ("Москва — столица России", "Столица России: Москва", 2 / 3),
        ("東京", "大阪", 0.0),
        ("東京", "東京", 1.0),
        # Han characters are tokens of their own (no spaces between words): 東京 vs 京都
        # share 京, LCS 1 of 2 each way -> 1/2
        ("東京", "京都", 0.5),
        ("déjà vu", "deja vu", 0.5),  # accents are part of the word: only "vu" is shared
        ("card_arrival", "card arrival", 1.0),  # an underscore separates words
    ],
)
def test_rouge_l_tokens_are_unicode_words(prediction: str, target: str, expected: float) -> None:
    assert rouge_l(prediction, target) == pytest.approx(expected)


def test_rouge_l_of_texts_without_words_is_one_only_when_they_are_equal() -> None:
    assert rouge_l("?!", "?!") == 1.0
    assert rouge_l(" ... ", "...") == 1.0
    assert rouge_l("?!", "...") == 0.0
    assert rouge_l("", "—") == 0.0


def test_embedding_similarity_with_real_minilm(embedder: Any) -> None:
    stats = quality_statistics(
        PilotTask.generation,
        ["The meeting moved to Friday.", "Bananas are yellow."],
        ["The meeting was rescheduled to Friday.", "Our quarterly revenue grew."],
        embedder=embedder,
    )
    scores = stats["embedding_similarity"](np.array([[0], [1]]))
    assert scores[0] > 0.7 > 0.3 > scores[1]


def test_primary_metric_per_task() -> None:
    assert primary_metric(PilotTask.classification, ["a"]) == "accuracy"
    assert primary_metric(PilotTask.qa, ["Paris"]) == "token_f1"
    assert primary_metric(PilotTask.extraction, ['{"a": 1}']) == "field_f1"
    assert primary_metric(PilotTask.extraction, ["plain span"]) == "token_f1"
    assert primary_metric(PilotTask.generation, ["text"]) == "rouge_l"


def test_latency_percentiles_tokens_and_cost() -> None:
    predictions = [
        Prediction(index=i, prediction="", latency_ms=ms, prompt_tokens=100, output_tokens=10)
        for i, ms in enumerate([10.0, 20.0, 30.0, 40.0])
    ]
    price = PriceRow("hosted-base", input_per_million=0.5, output_per_million=1.5)
    values = {m.name: m.value for m in operational_metrics(predictions, price)}
    assert values["latency_p50_ms"] == pytest.approx(25.0)
    assert values["latency_p95_ms"] == pytest.approx(38.5)  # 30 + 0.85 * (40 - 30)
    assert values["prompt_tokens_per_query"] == 100
    # (100 * 0.5 + 10 * 1.5) / 1e6 USD per query -> 0.065 USD per 1,000 queries
    assert values["cost_per_1k_usd"] == pytest.approx(0.065)
    assert cost_per_1k_queries(1_000_000, 0, price) == pytest.approx(500.0)


def test_predictions_are_aligned_to_test_order() -> None:
    predictions = [
        Prediction(index=2, prediction="c", latency_ms=1, prompt_tokens=1, output_tokens=1),
        Prediction(index=0, prediction="a", latency_ms=1, prompt_tokens=1, output_tokens=1),
    ]
    assert aligned_predictions(predictions, 3) == ["a", "", "c"]
