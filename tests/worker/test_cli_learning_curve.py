"""The command line prints the learning curve's points and sentence, and writes it to --out."""

from __future__ import annotations

import json

from rich.console import Console

from app.domain.records import Manifest, PilotOutcome
from app.domain.samples.schemas import PilotTask
from tests.app.reports.factory import learning_curve
from worker.cli_pilot_output import outcome_json, print_learning_curve


def _outcome() -> PilotOutcome:
    return PilotOutcome(
        task=PilotTask.classification,
        primary_metric="accuracy",
        arms=[],
        differences=[],
        warnings=[],
        caps=[],
        manifest=Manifest(seed=13),
        learning_curve=learning_curve(),
    )


def test_the_curve_is_printed_with_its_sentence() -> None:
    console = Console(record=True, width=100)
    print_learning_curve(_outcome(), console)
    text = " ".join(console.export_text().split())  # the sentence wraps at the console width
    assert "Learning curve of qlora" in text and "the arm itself" in text
    for examples in ("15", "30", "60"):
        assert examples in text
    # Without an intake the trend is read one doubling out: 120 examples.
    assert "if the trend holds (an extrapolation beyond the 60 examples trained)" in text
    # What the band covers, and that every point was evaluated the same way.
    assert "every point evaluated in-process" in text
    assert "test-item noise only, not training-seed variance: one training run per size" in text


def test_the_curve_is_in_the_json_outcome() -> None:
    stored = json.loads(outcome_json(_outcome()))["learning_curve"]
    assert [p["examples"] for p in stored["points"]] == [15, 30, 60]
    assert stored["slope"] > 0
    assert stored["fit"] == "logit" and stored["evaluated"] == "in_process"
    assert stored["training_runs_per_size"] == 1
