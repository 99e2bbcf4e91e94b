"""A person changes the report's what-if answers and watches the costs and the answer move.

Real server and Chromium; the assessment comes through the JSON API and no pilot runs, so the
panel prices the rubric's estimates (the pilot's figures are tested in tests/app/reports).
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import REPO

pytestmark = [pytest.mark.browser]

ARTIFACTS = REPO / "test-artifacts"


def test_what_if_updates_live_keeps_the_scenario_in_the_address_and_names_bad_values(
    page: Page, live_server: str
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{live_server}/signup")
    page.fill("input[name=email]", "what-if-browser@example.com")
    page.fill("input[name=password]", "a long enough password")
    page.click("button:has-text('Sign up')")
    expect(page.get_by_role("heading", name="Your assessments")).to_be_visible()
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    assert csrf
    intake = json.loads((REPO / "examples" / "intake-banking-intents.json").read_text())
    created = page.request.post(
        f"{live_server}/api/v1/assessments", data=intake, headers={"X-CSRF-Token": csrf}
    )
    assert created.status == 201, created.text()
    aid = created.json()["id"]

    page.goto(f"{live_server}/assessments/{aid}/report")
    result = page.locator("#what-if-result")
    expect(result).to_contain_text("At your own answers")
    expect(page.locator("#total-cost-table tbody tr")).to_have_count(3)
    before = page.locator("#total-cost-table").inner_text()

    # A change swaps the panel in place (no navigation) and puts the scenario in the address.
    page.fill("#wi-queries_per_day", "10")
    page.locator("#wi-queries_per_day").press("Tab")
    expect(result).to_contain_text("Queries per day: 40,000 → 10")
    expect(page).to_have_url(re.compile(r"queries_per_day=10"))
    assert page.locator("#total-cost-table").inner_text() != before
    page.select_option("#wi-gpu_access", "none")
    expect(result).to_contain_text("GPU access: A 24 GB GPU → No GPU")
    expect(page).to_have_url(re.compile(r"gpu_access=none"))
    expect(page.locator("#what-if-flips li").first).to_contain_text("queries a day")
    page.screenshot(path=str(ARTIFACTS / "report-what-if.png"), full_page=True)

    # The address alone brings the same scenario back (a bookmark, a link to a colleague).
    shared = page.url
    page.goto(shared)
    expect(page.locator("#wi-queries_per_day")).to_have_value("10")
    expect(result).to_contain_text("Queries per day: 40,000 → 10")

    # A bad value is named, and nothing is recalculated.
    page.fill("#wi-queries_per_day", "-5")
    page.locator("#wi-queries_per_day").press("Tab")
    expect(page.locator("#what-if-errors")).to_contain_text(
        "Queries per day (queries_per_day): Must be at least 0."
    )
    expect(page.locator("#total-cost-table")).to_have_count(0)
