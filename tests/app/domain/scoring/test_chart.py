"""The score chart is valid, accessible, self-contained SVG, identical on every render."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from app.domain.intake import FailureMode
from app.domain.scoring.chart import score_chart_svg
from app.domain.scoring.engine import score
from app.domain.scoring.paths import PATH_LABELS
from tests.app.domain.scoring.intakes import make_intake

SVG = "{http://www.w3.org/2000/svg}"


def _chart(**changes: object) -> str:
    return score_chart_svg(score(make_intake(**changes)))


def test_chart_is_an_inline_svg_with_a_title_first() -> None:
    svg = _chart(failure_modes=[FailureMode.missing_facts])

    assert svg.startswith("<svg ")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    title = root[0]
    assert title.tag == f"{SVG}title"
    assert title.text is not None and title.text.startswith("Path scores out of 100: RAG ")


def test_chart_draws_the_three_path_labels_and_scores_as_text() -> None:
    result = score(make_intake(failure_modes=[FailureMode.ignores_format]))
    root = ET.fromstring(score_chart_svg(result))

    texts = {element.text for element in root.iter(f"{SVG}text")}
    assert set(PATH_LABELS.values()) <= texts
    assert {f"{value:.0f}" for value in result.scores.values()} <= texts


def test_chart_is_deterministic_and_undated() -> None:
    first = _chart()
    assert first == _chart()
    assert "dc:date" not in first
    assert "Matplotlib" not in first  # no generator stamp, which would change with upgrades


def test_chart_changes_with_the_scores() -> None:
    assert _chart() != _chart(failure_modes=[FailureMode.missing_facts])
