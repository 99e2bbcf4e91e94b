"""The report's verdict through the JSON API: the same verdict as the page and the PDF."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
from pathlib import Path

import pytest

from tests.app.accounts.helpers import bearer, create_token
from tests.app.reports.factory import finished_pilot
from tests.factories.assessments import scored_assessment
from tests.factories.cli import run_cli
from tests.factories.pages import pdf_text


def headline(page: str) -> tuple[str, str, str]:
    """(label, confidence, why) as the report page shows them."""
    label = re.search(r'<h2 id="rec-h">(.*?)</h2>', page, re.DOTALL)
    confidence = re.search(r'id="confidence">(\w+) confidence', page)
    why = re.search(r'<p class="why" id="why">(.*?)</p>', page, re.DOTALL)
    assert label and confidence and why
    return (
        html_lib.unescape(label.group(1).strip()),
        confidence.group(1).lower(),
        html_lib.unescape(why.group(1).strip()),
    )


def test_the_api_verdict_equals_the_report_page(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    pilot_id = finished_pilot(aid)
    token = create_token(client)
    api = client.get(f"/api/v1/assessments/{aid}/report", headers=bearer(token))
    assert api.status_code == 200, api.text
    verdict = api.json()
    assert verdict["schema_version"] == 1
    assert verdict["pilot_id"] == pilot_id
    page = client.get(f"/assessments/{aid}/report").text
    assert headline(page) == (verdict["label"], verdict["confidence"], verdict["why"])
    assert verdict["rule"] and verdict["differences"]
    assert all(d["sample"] for d in verdict["differences"])
    for estimate in verdict["more_data"]:
        assert estimate["text"] in verdict["why"] or estimate["n_needed"] is not None


def test_the_api_pdf_is_the_pages_pdf(client, tmp_path: Path) -> None:
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext) is not installed")
    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid)
    token = create_token(client)
    api = client.get(f"/api/v1/assessments/{aid}/report.pdf", headers=bearer(token))
    assert api.status_code == 200
    assert api.headers["content-type"] == "application/pdf"
    verdict = client.get(f"/api/v1/assessments/{aid}/report", headers=bearer(token)).json()
    text = pdf_text(api.content, tmp_path)
    # The PDF's headline carries the same verdict, word for word.
    assert " ".join(verdict["why"].split()) in text
    assert api.content == client.get(f"/assessments/{aid}/report.pdf").content


def test_the_api_report_needs_a_token_and_the_owner(client, make_client) -> None:
    client.signup()
    aid = scored_assessment(client)
    stranger = make_client()  # no cookie, no token
    assert stranger.get(f"/api/v1/assessments/{aid}/report").status_code == 401
    other = make_client()
    other.signup(email="other@example.com")
    theirs = create_token(other)
    response = other.get(f"/api/v1/assessments/{aid}/report", headers=bearer(theirs))
    assert response.status_code == 404
    mine = create_token(client)
    missing = client.get(f"/api/v1/assessments/{aid}/report?pilot=nope", headers=bearer(mine))
    assert missing.status_code == 404


def test_the_cli_prints_the_same_verdict_as_the_api(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid)
    token = create_token(client)
    api = client.get(f"/api/v1/assessments/{aid}/report", headers=bearer(token)).json()
    done = run_cli("report", aid, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == api
