"""Which tasks' answers end at their first newline."""

from __future__ import annotations

from app.domain.prompts import stops_at_newline
from app.domain.samples.schemas import PilotTask


def test_labels_and_short_answers_stop_at_the_first_newline() -> None:
    assert stops_at_newline(PilotTask.classification)
    assert stops_at_newline(PilotTask.qa)
    # JSON objects and free text may span lines.
    assert not stops_at_newline(PilotTask.extraction)
    assert not stops_at_newline(PilotTask.generation)
