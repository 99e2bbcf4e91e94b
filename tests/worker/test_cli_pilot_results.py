"""`pathpilot pilot`: each arm's figure as soon as it finishes, provisional, then the tables."""

from __future__ import annotations

from rich.console import Console

from app.domain.arm_figures import PROVISIONAL_NOTE, scored_sample
from app.domain.records import (
    ArmOutcome,
    ArmStatus,
    Manifest,
    MetricValue,
    PilotOutcome,
    SplitSizes,
)
from app.domain.samples.schemas import Example, PilotTask
from worker.cli_pilot_output import arm_done_line, print_outcome

# Twelve questions on four passages: intervals resample whole passages.
TEST = [Example(input=f"q{i}", target="a", context=f"passage {i % 4}") for i in range(12)]
SAMPLE = scored_sample(PilotTask.qa, TEST)
FEWSHOT = ArmOutcome(
    arm="fewshot",
    status=ArmStatus.done,
    metrics=[
        MetricValue("exact_match", 0.5, 0.25, 0.75),
        MetricValue("token_f1", 0.725, 0.642, 0.801),
        MetricValue("latency_p50_ms", 120.0),
    ],
)


def test_a_finished_arm_prints_its_primary_figure_marked_provisional() -> None:
    assert arm_done_line(FEWSHOT, SAMPLE) == (
        f"fewshot: done; token F1 72.5% [64.2, 80.1] on 12 items in 4 groups ({PROVISIONAL_NOTE})"
    )
    failed = ArmOutcome(arm="qlora", status=ArmStatus.failed, error="out of memory")
    assert arm_done_line(failed, SAMPLE) == "qlora: failed: out of memory"


def test_the_concluded_tables_print_the_same_figure_without_the_provisional_mark() -> None:
    outcome = PilotOutcome(
        task=PilotTask.qa,
        primary_metric="token_f1",
        arms=[FEWSHOT],
        differences=[],
        warnings=[],
        caps=[],
        manifest=Manifest(seed=13, split_sizes=SplitSizes(test=12)),
    )
    console = Console(record=True, width=160)
    print_outcome(outcome, console, SAMPLE)
    text = console.export_text()
    assert "primary metric: token_f1 on 12 items in 4 groups" in text
    assert "72.5% [64.2, 80.1]" in text
    assert "provisional" not in text
