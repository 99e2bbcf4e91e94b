"""The learning curve on the report page, in its PDF and in the API, from a stored pilot."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from app.db import session_scope
from app.domain.formatting import format_quality
from app.pilots.models import Pilot
from tests.app.reports.factory import CURVE_RIGHT, N_TEST, finished_pilot, learning_curve
from tests.factories.assessments import scored_assessment
from tests.factories.pages import ARTIFACTS, needs_pdftotext, pdf_text, svgs

# The banking intake says 10,000 examples; 4x the 60 trained is as far as the trend is read.
SENTENCE = re.compile(r"About [\d,]+ examples to reach \d+% if the trend holds \(an extrapolation")


def test_report_shows_the_curve_its_sentence_and_the_guard(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid, curve=learning_curve())
    html = client.get(f"/assessments/{aid}/report").text
    assert 'id="learning-curve"' in html and 'id="chart-curve"' in html
    curve_svg = next(s for s in svgs(html) if "Learning curve of the QLoRA" in s)
    assert "Training examples (log scale)" in curve_svg and "extrapolation" in curve_svg
    assert SENTENCE.search(html), html[html.index('id="curve-sentence"') :][:300]
    assert "10,000 examples lie past 4x the largest size trained" in html
    assert "read only up to 240" in html
    for _, right in CURVE_RIGHT:
        assert format_quality(right / N_TEST) in html
    assert "the QLoRA arm itself" in html
    assert "every point evaluated in-process" in html
    assert "test-item noise only, not training-seed variance" in html
    assert "one training run per size" in html


def test_sizes_that_answer_alike_are_not_called_flat(client) -> None:
    # The same 9 of 12 items right at every size: the bootstrap sees no spread, which is no
    # evidence that more data would not help.
    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid, curve=learning_curve(((15, 9), (30, 9), (60, 9))))
    html = client.get(f"/assessments/{aid}/report").text
    assert "cannot tell whether more data helps" in html
    assert "will not help" not in html


def test_every_size_at_zero_is_not_called_flat(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid, curve=learning_curve(((15, 0), (30, 0), (60, 0))))
    html = client.get(f"/assessments/{aid}/report").text
    assert "Every size scored 0%: the curve cannot tell whether more data helps." in html
    assert "will not help" not in html


def test_a_curve_stored_before_the_bounded_fit_still_renders(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    pilot_id = finished_pilot(aid, curve=learning_curve())
    # The JSON an earlier version stored: a straight line on ln(n), no fit or evaluation named.
    stored = learning_curve().as_json()
    for added in ("fit", "evaluated", "training_runs_per_size"):
        del stored[added]
    sizes = [n for n, _ in CURVE_RIGHT]
    slope, intercept = np.polyfit(np.log(sizes), [r / N_TEST for _, r in CURVE_RIGHT], 1)
    stored |= {"intercept": intercept, "slope": slope, "draws": [[intercept, slope]] * 50}
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        pilot.learning_curve_results = stored
    html = client.get(f"/assessments/{aid}/report").text
    assert 'id="chart-curve"' in html
    assert "stored before the bounded fit" in html and "was not recorded" in html
    body = client.http.get(f"/api/v1/pilots/{pilot_id}").json()
    assert body["learning_curve"]["fit"] == "linear"


def test_no_curve_section_without_a_curve(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid)
    html = client.get(f"/assessments/{aid}/report").text
    assert 'id="learning-curve"' not in html and 'id="chart-curve"' not in html


def test_api_returns_the_stored_curve(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    pilot_id = finished_pilot(aid, curve=learning_curve())
    body = client.http.get(f"/api/v1/pilots/{pilot_id}").json()
    curve = body["learning_curve"]
    assert [p["examples"] for p in curve["points"]] == [n for n, _ in CURVE_RIGHT]
    assert curve["slope"] > 0 and len(curve["draws"]) == 400


@needs_pdftotext
def test_pdf_contains_the_curve(client, tmp_path: Path) -> None:
    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid, curve=learning_curve())
    response = client.get(f"/assessments/{aid}/report.pdf")
    assert response.status_code == 200
    text = pdf_text(response.content, tmp_path)
    assert "How much data: the learning curve" in text
    assert SENTENCE.search(text), text
    # The chart's own text (axis label, marker) is in the PDF as text, not only the caption.
    assert "Training examples (log scale)" in text
    assert "Measured, 95% interval" in text

    # The page holding the curve renders to an image with the chart drawn on it.
    source = tmp_path / "report.pdf"
    pages = int(re.search(r"Pages:\s+(\d+)", _pdfinfo(source)).group(1))  # type: ignore[union-attr]
    page = next(
        n for n in range(1, pages + 1) if "Training examples (log scale)" in _page_text(source, n)
    )
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / "report-learning-curve"
    paths = [str(source), str(target)]
    subprocess.run(
        ["pdftoppm", "-png", "-r", "80", "-f", str(page), "-l", str(page), "-singlefile", *paths],
        check=True,
        timeout=60,
    )
    png = target.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def _pdfinfo(path: Path) -> str:
    return subprocess.run(
        ["pdfinfo", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def _page_text(path: Path, page: int) -> str:
    return subprocess.run(
        ["pdftotext", "-f", str(page), "-l", str(page), str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
