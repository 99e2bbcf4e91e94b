"""The report's what-if panel, its 12-month total cost and the minimum difference that matters,
against the real app and SQLite database."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.app.reports.factory import DEFAULT_ARMS, ArmSpec, finished_pilot, paired_accuracy
from tests.factories.assessments import scored_assessment
from tests.factories.pages import needs_pdftotext, pdf_text

HTMX = {"HX-Request": "true"}
FLIP = re.compile(
    r"Above ~([\d,]+) queries a day, the recommendation changes from ([^.]+) to ([^.]+)\."
)
COST_FLIP = re.compile(
    r"Above ~([\d,]+) queries a day, ([^.]+?) becomes cheaper than ([^.]+?) over 12 months\."
)


def what_if(client, aid: str, **params: str):  # type: ignore[no-untyped-def]
    return client.get(f"/assessments/{aid}/report/what-if", params=params, headers=HTMX)


def label(page: str) -> str:
    found = re.search(r'id="what-if-label">([^<]+)<', page)
    assert found, page[-2000:]
    return html.unescape(found.group(1))


def cheapest(page: str) -> str:
    found = re.search(r'<tr data-option="([^"]+)" class="chosen">', page)
    assert found, page[-2000:]
    return found.group(1)


def test_the_what_if_changes_the_recommendation_across_the_flip_it_states(client) -> None:
    # Long prompts at volume favour fine-tuning; fast-changing knowledge favours RAG. The pilot
    # cannot separate its QLoRA, RAG and QLoRA + RAG arms, so the rubric picks among them.
    client.signup()
    aid = scored_assessment(client, failure_modes=["prompts_too_long"], has_documents=False)
    finished_pilot(aid)
    page = what_if(client, aid, volatility="daily")
    assert page.status_code == 200
    found = FLIP.search(html.unescape(page.text))
    assert found, page.text
    at = int(found.group(1).replace(",", ""))
    before, after = found.group(2), found.group(3)
    assert before != after
    below = what_if(client, aid, volatility="daily", queries_per_day=str(at // 3))
    above = what_if(client, aid, volatility="daily", queries_per_day=str(at * 3))
    assert label(below.text) == before
    assert label(above.text) == after
    # Each answer names the changes it was computed with.
    assert f"Queries per day: 40,000 → {at * 3:,}" in html.unescape(above.text)
    assert "How often the knowledge changes: Yearly → Daily or faster" in html.unescape(above.text)


def test_the_cheapest_path_changes_across_the_cost_break_even_it_states(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    # With documents, the few-shot arm prices prompting and the QLoRA arm (short prompts)
    # fine-tuning; QLoRA + RAG is the combination.
    finished_pilot(aid, documents=40)
    page = what_if(client, aid)
    found = COST_FLIP.search(html.unescape(page.text))
    assert found, page.text
    at = int(found.group(1).replace(",", ""))
    assert (found.group(2), found.group(3)) == ("Fine-tuning", "Prompting")
    below = what_if(client, aid, queries_per_day=str(max(1, at // 3)))
    above = what_if(client, aid, queries_per_day=str(at * 3))
    assert cheapest(below.text) == "prompting"
    assert cheapest(above.text) == "fine_tuning"
    # Above break-even the table and the chart say when fine-tuning pays back.
    assert re.search(r"pays back its one-off cost against Prompting in (day|month) ", above.text)
    assert 'id="chart-cumulative"' in above.text and "Fine-tuning pays back: " in above.text


def test_the_partial_is_the_block_alone_and_the_address_keeps_the_scenario(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    pilot = finished_pilot(aid)
    partial = what_if(client, aid, pilot=pilot, queries_per_day="1000", gpu_access="none")
    assert partial.status_code == 200
    assert partial.text.lstrip().startswith('<div id="what-if-result"')
    assert "<html" not in partial.text and 'id="headline"' not in partial.text
    pushed = urlsplit(partial.headers["HX-Push-Url"])
    assert pushed.path == f"/assessments/{aid}/report"
    assert parse_qs(pushed.query) == {
        "pilot": [pilot],
        "queries_per_day": ["1000"],
        "gpu_access": ["none"],
    }
    # Without JavaScript the same address is the whole page, with the same figures.
    plain = client.get(f"/assessments/{aid}/report/what-if?queries_per_day=1000&gpu_access=none")
    assert plain.status_code == 303
    page = client.get(plain.headers["location"])
    assert page.status_code == 200
    block = re.search(r'<div id="what-if-result".*?</div>\s*</section>', page.text, re.DOTALL)
    assert block is not None
    table = re.search(r'<table[^>]*id="total-cost-table".*?</table>', partial.text, re.DOTALL)
    assert table is not None and table.group(0) in page.text
    # The form shows the scenario's values and updates the panel on change, no inline script.
    assert 'id="wi-queries_per_day" name="queries_per_day"' in page.text
    assert 'value="1000"' in page.text and '<option value="none" selected>' in page.text
    assert f'hx-get="/assessments/{aid}/report/what-if"' in page.text
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) == []


def test_a_what_if_stores_nothing(client) -> None:
    from app.assessments.models import Assessment
    from app.db import session_scope
    from app.pilots.models import Pilot

    def state() -> tuple[object, ...]:
        with session_scope() as session:
            assessment = session.get(Assessment, aid)
            assert assessment is not None
            return (assessment.intake, assessment.score_result, session.query(Pilot).count())

    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid)
    before = state()
    assert what_if(client, aid, queries_per_day="5", volatility="daily").status_code == 200
    assert client.get(f"/assessments/{aid}/report?queries_per_day=7").status_code == 200
    assert state() == before


BAD = [
    ("queries_per_day", "-5", "Must be at least 0."),
    ("queries_per_day", "lots", "Enter a whole number"),
    ("queries_per_day", "12.5", "Enter a whole number"),
    ("queries_per_day", "9" * 60, "Keep it under 40 characters."),
    ("prompt_tokens_today", "2000000", "Must be at most 1,000,000."),
    ("budget_monthly_usd", "nan", "Enter a number"),
    ("gpu_access", "quantum", "Choose one of the options."),
    ("volatility", "<script>alert(1)</script>", "Choose one of the options."),
    ("training_runs", "0", "Must be at least 1."),
    ("compute_usd_per_hour", "-2", "Must be more than 0."),
    ("eval_usd_per_1k", "inf", "Enter a number"),
    ("rag_corpus_tokens", "1e3", "Enter a whole number"),
]


@pytest.mark.parametrize(
    ("name", "value", "message"), BAD, ids=[f"{n}={v[:12]}" for n, v, _ in BAD]
)
def test_bad_what_if_values_are_422_naming_the_field(
    client, name: str, value: str, message: str
) -> None:
    client.signup()
    aid = scored_assessment(client)
    for response in (
        what_if(client, aid, **{name: value}),
        client.get(f"/assessments/{aid}/report", params={name: value}),
    ):
        assert response.status_code == 422
        assert f"({name}): {message}" in html.unescape(response.text)
        assert "<script>alert(1)" not in response.text
        assert (
            'id="what-if-errors"' in response.text and 'id="total-cost-table"' not in response.text
        )
    # The full page marks the field itself too.
    assert f'id="wi-{name}-error"' in response.text


def test_an_intakes_minimum_difference_turns_a_small_lead_into_a_cost_decision(client) -> None:
    arms = (
        ArmSpec("fewshot", 0.40, (0.38, 0.42), right=5),
        ArmSpec("rag", 0.76, (0.74, 0.78), right=9),
        ArmSpec("qlora", 0.72, (0.70, 0.74), right=9, trains=True),
        ArmSpec("qlora_rag", 0.715, (0.695, 0.735), right=8, trains=True),
    )
    # On 2,000 paired items RAG leads QLoRA by 4.0 points, 95% CI [+2.6, +5.4], and QLoRA +
    # RAG by 4.5, [+3.1, +5.9]: each interval lies wholly inside ±6 points (a tie under a
    # 6-point minimum) and wholly beyond 2 (a difference that matters under the default).
    differences = (
        paired_accuracy("rag", "qlora", a_only=140, b_only=60, n=2000),
        paired_accuracy("rag", "qlora_rag", a_only=145, b_only=55, n=2000),
        paired_accuracy("rag", "fewshot", a_only=760, b_only=40, n=2000),
    )

    # The retrieval arms read documents, so RAG is an option the pilot measured.
    def pilot(assessment_id: str) -> str:
        return finished_pilot(
            assessment_id, arms=arms, differences=differences, documents=40, test_items=2000
        )

    client.signup()
    strict = scored_assessment(client, min_difference_points=6)
    pilot(strict)
    page = html.unescape(client.get(f"/assessments/{strict}/report").text)
    assert re.search(r'<h2 id="rec-h">Fine-tuning</h2>', page)
    assert "Decided by cost" in page
    assert (
        "differ by 4.0 points, under the 6-point minimum that matters to you, so cost decided"
        in page
    )
    # The default minimum of 2 points: a lead whose whole interval clears 2 points matters,
    # and the pilot decides.
    default = scored_assessment(client)
    pilot(default)
    page = client.get(f"/assessments/{default}/report").text
    assert re.search(r'<h2 id="rec-h">RAG</h2>', page)
    assert "Decided by the pilot&#39;s measured quality" in page


def test_an_intake_stored_before_the_minimum_existed_still_reports(client) -> None:
    from app.assessments.models import Assessment
    from app.db import session_scope

    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid)
    with session_scope() as session:
        assessment = session.get(Assessment, aid)
        assert assessment is not None
        old = dict(assessment.intake or {})
        old.pop("min_difference_points")
        assessment.intake = old
    assert client.get(f"/assessments/{aid}/report").status_code == 200
    assert what_if(client, aid, queries_per_day="10").status_code == 200
    assert client.http.get(f"/api/v1/assessments/{aid}").status_code == 200


@needs_pdftotext
def test_the_pdf_has_the_total_cost_table_chart_and_assumptions(client, tmp_path: Path) -> None:
    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid, documents=40)  # so QLoRA + RAG measured the combination
    page = client.get(f"/assessments/{aid}/report").text
    text = pdf_text(client.get(f"/assessments/{aid}/report.pdf").content, tmp_path)
    assert "Total cost over 12 months" in text
    rows = re.findall(
        r'<tr data-option="[^"]+"[^>]*><td>([^<]+)(?:<span[^>]*>[^<]*</span>)?</td>'
        r'<td class="num">([^<]+)</td><td class="num">([^<]+)</td><td class="num">([^<]+)</td>'
        r'<td class="num">([^<]+)</td>',
        page,
    )
    assert len(rows) == 4, rows  # prompting, RAG, fine-tuning and the measured combination
    for path, one_off, per_1k, monthly, total in rows:
        assert f"{path.strip()}" in text
        for figure in (one_off, per_1k, monthly, total):
            assert html.unescape(figure) in text, (path, figure)
    assert "Assumptions" in text and "Engineering time is not included." in text
    assert "Where the answer flips" in text
    # The chart is in the PDF as on the page (its title is the SVG's first text).
    assert "Cumulative cost per path over 12 months" in page
    assert "Recalculate" not in text  # the form is the page's alone
    assert len([a for a in DEFAULT_ARMS if a.trains]) == 2


def test_the_pilots_measurements_feed_the_total_cost(client) -> None:
    from app.db import session_scope
    from app.pilots.models import Pilot
    from app.reports.pilot_rows import load_pilot
    from app.reports.what_if import pilot_measurements
    from tests.app.reports.factory import MANIFEST

    client.signup()
    pilot_id = finished_pilot(scored_assessment(client))
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        measured = pilot_measurements(load_pilot(session, pilot=pilot))
    assert measured is not None
    assert measured.model_parameters == MANIFEST["base_model_parameters"]
    assert measured.training_examples == 60  # the pilot's cap on its 72-example split
    assert measured.device_usd_per_hour == 0.10  # a CPU pilot
    by_arm = {a.arm: a for a in measured.arms}
    assert set(by_arm) == {"fewshot", "rag", "qlora", "qlora_rag"}
    assert by_arm["qlora"].prompt_tokens == 60 and by_arm["qlora"].fine_tuned
    assert by_arm["rag"].prompt_tokens == 420 and not by_arm["rag"].fine_tuned
    assert by_arm["qlora"].training_seconds == 335 and by_arm["rag"].training_seconds == 0
    # A pilot running again (a retry) is not evidence yet, its stored figures included.
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        pilot.status = "running"
        assert pilot_measurements(load_pilot(session, pilot=pilot)) is None
