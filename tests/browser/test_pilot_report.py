"""A person runs a real pilot from the page, watches it live, reads the report, gets the PDF.

Everything is real: `pathpilot serve` with its Celery worker, the default models, a small
four-arm pilot (the live server's caps keep it to a few minutes), and Chromium.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import REPO
from tests.factories.assessments import tiny_sample

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts"

# Elements that stick out of a narrow viewport, outside any box that scrolls on its own.
OVERFLOWING = """() => [...document.querySelectorAll('body *')].filter(el => {
  const box = el.getBoundingClientRect();
  if (box.width === 0 || box.right <= window.innerWidth + 1) return false;
  for (let p = el.parentElement; p; p = p.parentElement) {
    if (getComputedStyle(p).overflowX !== 'visible') return false;
  }
  return true;
}).slice(0, 10).map(el => `${el.tagName}#${el.id}.${el.className} ${Math.round(
  el.getBoundingClientRect().right)}px: ${el.textContent.slice(0, 60)}`)"""


def test_run_pilot_watch_progress_read_report_get_pdf(
    page: Page, live_server: str, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{live_server}/signup")
    page.fill("input[name=email]", "pilot-browser@example.com")
    page.fill("input[name=password]", "a long enough password")
    page.click("button:has-text('Sign up')")
    expect(page.get_by_role("heading", name="Your assessments")).to_be_visible()

    # The intake through the JSON API with the page's session (the wizard has its own test).
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    assert csrf
    intake = json.loads((REPO / "examples" / "intake-banking-intents.json").read_text())
    created = page.request.post(
        f"{live_server}/api/v1/assessments", data=intake, headers={"X-CSRF-Token": csrf}
    )
    assert created.status == 201, created.text()
    assessment_id = created.json()["id"]

    sample = tmp_path / "three-intents.csv"
    sample.write_text(tiny_sample())
    page.goto(f"{live_server}/assessments/{assessment_id}/steps/data")
    page.set_input_files("input[name=file]", str(sample))
    page.click("button:has-text('Upload sample')")
    expect(page.locator("#sample-summary")).to_contain_text("classification")

    page.goto(f"{live_server}/assessments/{assessment_id}")
    # The learning curve is off by default; a tick trains QLoRA on 6 and 12 of the 24 too.
    expect(page.locator("#learning-curve")).not_to_be_checked()
    page.check("#learning-curve")
    page.click("button:has-text('Run pilot')")
    expect(page.get_by_role("heading", name="Pilot", exact=True)).to_be_visible()

    # Live progress: HTMX swaps in a running arm's stage, step/total and a progress bar.
    running = page.locator("#arms-table tr[data-arm] progress")
    expect(running.first).to_be_attached(timeout=120_000)
    progress_text = page.locator("#arms-table").inner_text()
    assert re.search(r"\d+/\d+", progress_text), progress_text
    page.screenshot(path=str(ARTIFACTS / "pilot-running.png"), full_page=True)

    # No reload: the polling panel itself reaches the end.
    expect(page.locator("#pilot-status")).to_have_text(re.compile("done|failed"), timeout=900_000)
    expect(page.locator("#pilot-status")).to_have_text("done")
    # The four arms and the majority-label floor every classification pilot gets.
    for arm in ("majority", "fewshot", "rag", "qlora", "qlora_rag"):
        row = page.locator(f"#arms-table tr[data-arm={arm}]")
        expect(row.locator(".badge")).to_have_text("done")
        expect(row.locator(".quality")).to_contain_text("%")
    page.screenshot(path=str(ARTIFACTS / "pilot-done.png"), full_page=True)

    page.click("a:has-text('Report')")
    expect(page.locator("#headline h2")).not_to_be_empty()
    expect(page.locator("#confidence")).to_contain_text("confidence")
    expect(page.locator("#arms-table tr[data-arm]")).to_have_count(5)
    # Five charts with the cumulative cost, and the learning curve's.
    expect(page.locator("figure.chart > svg")).to_have_count(6)
    curve = page.locator("#learning-curve")
    expect(curve.locator("#chart-curve > svg")).to_be_visible()
    expect(curve.locator("#curve-points tbody tr")).to_have_count(3)
    expect(curve.locator("#curve-sentence")).to_contain_text(
        # A tiny CPU pilot often scores 0% at every size: the curve then says it cannot tell.
        re.compile(r"if the trend holds|the curve is flat|does not rise|cannot tell", re.IGNORECASE)
    )
    curve.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "report-learning-curve-browser.png"))
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)

    # On a phone the page does not scroll sideways: wide tables scroll inside their own box.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator("#headline h2")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, page.evaluate(OVERFLOWING)
    page.screenshot(path=str(ARTIFACTS / "report-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})

    href = page.locator("#pdf-link").get_attribute("href")
    assert href
    pdf = page.request.get(f"{live_server}{href}")
    assert pdf.status == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF")
