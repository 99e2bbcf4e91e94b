"""One arm's primary figure: the metric and sample of the test split, and how it reads."""

from __future__ import annotations

from app.domain.arm_figures import arm_figure, sample_text, scored_sample
from app.domain.records import MetricValue
from app.domain.samples.schemas import Example, PilotTask


def test_the_sample_counts_questions_on_one_passage_as_one_group() -> None:
    test = [Example(input=f"q{i}", target="a", context=f"passage {i // 3}") for i in range(9)] + [
        Example(input="alone", target="b")
    ]
    sample = scored_sample(PilotTask.qa, test)
    assert (sample.metric, sample.n_items, sample.n_groups) == ("token_f1", 10, 4)
    # Extraction with JSON targets is scored field by field, as the conclusion scores it.
    json_test = [Example(input="x", target='{"name": "Ada"}')]
    assert scored_sample(PilotTask.extraction, json_test).metric == "field_f1"


def test_a_figure_reads_with_its_interval_and_sample_and_stays_provisional_until_concluded() -> (
    None
):
    measured = {"accuracy": MetricValue("accuracy", 0.725, 0.642, 0.801)}
    figure = arm_figure(measured, metric="accuracy", n_items=312, n_groups=80, concluded=False)
    assert figure is not None and figure.provisional
    assert figure.text == "accuracy 72.5% [64.2, 80.1] on 312 items in 80 groups"
    final = arm_figure(measured, metric="accuracy", n_items=312, n_groups=312, concluded=True)
    assert final is not None and not final.provisional
    assert final.text == "accuracy 72.5% [64.2, 80.1] on 312 items"
    assert (final.value, final.low, final.high) == (0.725, 0.642, 0.801)
    # The judge's pass rate, primary only after the conclusion, is not there before it.
    assert arm_figure(measured, metric="judge_pass", n_items=1, n_groups=1, concluded=False) is None


def test_an_unknown_sample_reads_as_nothing() -> None:
    assert sample_text(None, None) == ""
    assert sample_text(1200, None) == "1,200 items"
    assert sample_text(1200, 1200) == "1,200 items"
