"""The report page, its PDF and the compare view, against the real app and SQLite database."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from app.domain.formatting import format_quality
from tests.app.reports.factory import DEFAULT_ARMS, MANIFEST, finished_pilot
from tests.factories.assessments import scored_assessment
from tests.factories.pages import ARTIFACTS, needs_pdftotext, pdf_text, svgs

XSS_TITLE = "Routing <script>alert(1)</script><img src=x onerror=alert(2)>"


def test_report_page_shows_headline_arms_and_five_charts(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    pilot_id = finished_pilot(aid)
    page = client.get(f"/assessments/{aid}/report")
    assert page.status_code == 200
    html = page.text
    assert 'id="headline"' in html and "confidence" in html
    # The synthetic pilot cannot resolve QLoRA against RAG / QLoRA + RAG on its 120 paired
    # items: the rubric decides, and the page says what test size would resolve it.
    assert "Low confidence" in html
    assert "What would settle it" in html and "test items (now 120)" in html
    assert "on 120 paired items" in html
    # The rule, stated on the page.
    assert "the whole 95% interval of their difference lies at or beyond the minimum" in html
    for spec in DEFAULT_ARMS:
        assert f'data-arm="{spec.arm}"' in html
        assert format_quality(spec.accuracy) in html
    charts = ("chart-quality", "chart-cost", "chart-loss", "chart-latency", "chart-cumulative")
    for chart in charts:
        assert f'id="{chart}"' in html
    assert len(svgs(html)) == len(charts)
    assert MANIFEST["base_model_id"] in html  # the note names the base model
    assert "leakage" in html  # data warnings
    assert "dataset_sha256" in html  # manifest
    assert "split_sizes.test" in html
    assert f"/assessments/{aid}/report.pdf?pilot={pilot_id}" in html
    assert 'class="table-scroll"' in html


def test_report_without_a_pilot_is_rubric_only(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    html = client.get(f"/assessments/{aid}/report").text
    assert "from the rubric alone" in html
    assert "a pilot on your own sample would add measured evidence" in html
    assert 'id="chart-cost"' in html and 'id="chart-quality"' not in html
    assert "High confidence" not in html


def test_assessment_and_pilot_pages_link_to_the_report(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    pilot_id = finished_pilot(aid)
    assert f'href="/assessments/{aid}/report"' in client.get(f"/assessments/{aid}").text
    pilot_page = client.get(f"/pilots/{pilot_id}").text
    assert f'href="/assessments/{aid}/report?pilot={pilot_id}"' in pilot_page


def test_charts_are_deterministic_and_the_pdf_uses_the_page_svgs(client) -> None:
    from app.accounts.models import User
    from app.assessments.models import Assessment
    from app.db import session_scope
    from app.reports.pdf import render_html
    from app.reports.service import build_report

    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid)
    page_svgs = svgs(client.get(f"/assessments/{aid}/report").text)
    assert page_svgs == svgs(client.get(f"/assessments/{aid}/report").text)
    with session_scope() as session:
        assessment = session.get(Assessment, aid)
        assert assessment is not None
        owner = session.get(User, assessment.owner_id)
        assert owner is not None
        report = build_report(session, assessment=assessment, owner=owner)
    assert svgs(render_html(report)) == page_svgs
    assert not any(re.search(r"\d{4}-\d\d-\d\dT", svg) for svg in page_svgs)
    ids = re.findall(r'\bid="([^"]+)"', "".join(page_svgs))
    assert len(ids) == len(set(ids)), "charts in one page must not share element ids"


@needs_pdftotext
def test_pdf_matches_the_page_and_page_one_is_rendered(client, tmp_path: Path) -> None:
    client.signup()
    aid = scored_assessment(client, title="Banking support intent routing (Q3 pilot)")
    finished_pilot(aid)
    html = client.get(f"/assessments/{aid}/report").text
    response = client.get(f"/assessments/{aid}/report.pdf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        'attachment; filename="pathpilot-banking-support-intent-routing-q3-pilot.pdf"'
    )
    pdf = response.content
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf, tmp_path)
    headline = re.search(r'<h2 id="rec-h">([^<]+)</h2>', html)
    assert headline is not None
    # The kicker above the headline is upper-cased by CSS; the paragraph is not.
    assert f"RECOMMENDATION {headline.group(1)}" in text
    assert f"{headline.group(1)} is recommended with low confidence" in text
    assert "Low confidence" in text
    for spec in DEFAULT_ARMS:
        figure = format_quality(spec.accuracy)
        assert figure in html and figure in text
    for needle in (
        "lead@example.com",
        "Banking support intent routing (Q3 pilot)",
        MANIFEST["base_model_id"],
        "References",
        "Reproducibility manifest",
        "Page 1 of",
        "arXiv",
    ):
        assert needle in text, needle
    assert "Download PDF" not in text and "Log out" not in text

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.pdf").write_bytes(pdf)
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "110",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(ARTIFACTS / "report.pdf"),
            str(ARTIFACTS / "report-page1"),
        ],
        check=True,
        timeout=60,
    )
    png = ARTIFACTS / "report-page1.png"
    assert png.read_bytes().startswith(b"\x89PNG")


@needs_pdftotext
def test_user_text_is_escaped_in_the_page_and_literal_in_the_pdf(client, tmp_path: Path) -> None:
    client.signup()
    aid = scored_assessment(client, title=XSS_TITLE)
    finished_pilot(aid)
    html = client.get(f"/assessments/{aid}/report").text
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    response = client.get(f"/assessments/{aid}/report.pdf")
    assert response.status_code == 200
    assert (
        'filename="pathpilot-routing-script-alert-1-script-img-src-x-onerror-alert-2.pdf"'
        in (response.headers["content-disposition"])
    )
    assert XSS_TITLE in pdf_text(response.content, tmp_path)


def test_another_users_report_is_404(make_client) -> None:
    owner, other = make_client(), make_client()
    owner.signup("owner@example.com")
    aid = scored_assessment(owner)
    first, second = finished_pilot(aid), finished_pilot(aid)
    other.signup("other@example.com")
    compare = f"/assessments/{aid}/report/compare?pilots={first}&pilots={second}"
    for url in (f"/assessments/{aid}/report", f"/assessments/{aid}/report.pdf", compare):
        assert other.get(url).status_code == 404, url
        assert owner.get(url).status_code == 200, url
    # Nor can one's own assessment show a pilot of someone else's.
    other_aid = scored_assessment(other)
    assert other.get(f"/assessments/{other_aid}/report?pilot={first}").status_code == 404
    assert other.get(f"/assessments/{other_aid}/report.pdf?pilot={first}").status_code == 404


def test_compare_two_pilots(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    first, second = finished_pilot(aid), finished_pilot(aid)
    report = client.get(f"/assessments/{aid}/report").text
    assert f'action="/assessments/{aid}/report/compare"' in report  # the no-JS compare form
    page = client.get(f"/assessments/{aid}/report/compare", params={"pilots": [first, second]})
    assert page.status_code == 200
    assert page.text.count(f"/report?pilot={first}") == 1
    assert page.text.count(f"/report?pilot={second}") == 1
    for spec in DEFAULT_ARMS:
        assert page.text.count(format_quality(spec.accuracy)) >= 2
    one = client.get(f"/assessments/{aid}/report/compare", params={"pilots": [first]})
    assert one.status_code == 422 and "two or more" in one.text


def test_unknown_pilot_or_unscored_assessment(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    assert client.get(f"/assessments/{aid}/report?pilot=nope").status_code == 404
    draft = client.post("/assessments").headers["location"].split("/")[2]
    assert client.get(f"/assessments/{draft}/report").status_code == 409
