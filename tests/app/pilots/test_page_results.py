"""The pilot page: each arm's primary figure as soon as the arm finishes, marked provisional
and with no comparison until the pilot concludes; then the report's own figures."""

from __future__ import annotations

import re

from app.domain.formatting import format_interval, format_quality
from tests.app.reports.factory import (
    DEFAULT_ARMS,
    N_TEST,
    conclude_in_progress,
    pilot_in_progress,
)
from tests.factories.assessments import scored_assessment

SPECS = {spec.arm: spec for spec in DEFAULT_ARMS}


def _quality_cells(html: str) -> dict[str, str]:
    """Each arm row's quality cell, as plain text."""
    rows = dict(re.findall(r'<tr data-arm="(\w+)"[^>]*>(.*?)</tr>', html, flags=re.S))
    cells = {}
    for arm, row in rows.items():
        found = re.search(r'<td class="quality">(.*?)</td>', row, flags=re.S)
        assert found is not None, arm
        cells[arm] = " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())
    return cells


def _figure(arm: str) -> str:
    spec = SPECS[arm]
    return f"{format_quality(spec.accuracy)} {format_interval(*spec.ci)} on {N_TEST} items"


def test_the_live_panel_shows_finished_arms_provisionally_and_no_comparison(client) -> None:
    client.signup()
    pilot = pilot_in_progress(scored_assessment(client), done=2)
    page = client.get(f"/pilots/{pilot.id}").text
    partial = client.get(f"/pilots/{pilot.id}/progress", headers={"HX-Request": "true"}).text
    for html in (page, partial):
        assert "Accuracy (95% CI)" in html
        cells = _quality_cells(html)
        for arm in ("fewshot", "rag"):
            assert cells[arm] == f"{_figure(arm)} provisional", cells[arm]
        assert cells["qlora"] == cells["qlora_rag"] == "—"
        note = re.search(r'<p class="notice info" id="provisional-note">(.*?)</p>', html)
        assert note is not None
        assert note.group(1) == (
            "Provisional: the comparison and verdict come when every arm has finished."
        )
        assert "Differences between arms" not in html
        assert "clear difference" not in html


def test_once_concluded_the_page_shows_the_reports_figures_not_provisional(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    pilot = pilot_in_progress(aid, done=2)
    before = _quality_cells(client.get(f"/pilots/{pilot.id}").text)
    conclude_in_progress(pilot)
    page = client.get(f"/pilots/{pilot.id}").text
    after = _quality_cells(page)
    report = client.get(f"/assessments/{aid}/report?pilot={pilot.id}").text
    report_rows = dict(re.findall(r'<tr data-arm="(\w+)"[^>]*>(.*?)</tr>', report, flags=re.S))
    assert 'id="provisional-note"' not in page and "Differences between arms" in page
    for arm in SPECS:
        assert after[arm] == _figure(arm), after[arm]
        spec = SPECS[arm]
        # The report's arms table prints the same value and interval.
        assert format_quality(spec.accuracy) in report_rows[arm]
        assert format_interval(*spec.ci) in report_rows[arm]
    for arm in ("fewshot", "rag"):
        assert before[arm] == f"{after[arm]} provisional"


def test_a_pilot_that_failed_before_its_conclusion_says_its_figures_were_never_compared(
    client,
) -> None:
    from app.db import session_scope
    from app.pilots.service import fail_pilot

    client.signup()
    pilot = pilot_in_progress(scored_assessment(client), done=1)
    with session_scope() as session:
        fail_pilot(session, pilot_id=pilot.id, message="the worker ran out of disk")
    html = client.get(f"/pilots/{pilot.id}").text
    assert _quality_cells(html)["fewshot"] == f"{_figure('fewshot')} provisional"
    note = re.search(r'<p class="notice info" id="provisional-note">(.*?)</p>', html)
    assert note is not None and note.group(1) == (
        "Not compared: the pilot failed before its conclusion, so these figures stand alone."
    )
