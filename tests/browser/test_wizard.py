"""A person completes the wizard in Chromium and sees the scores and the chart."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import REPO

pytestmark = pytest.mark.browser


def test_complete_wizard_and_see_scores(page: Page, live_server: str, tmp_path) -> None:
    page.goto(f"{live_server}/signup")
    page.fill("input[name=email]", "browser@example.com")
    page.fill("input[name=password]", "a long enough password")
    page.click("button:has-text('Sign up')")
    expect(page.get_by_role("heading", name="Your assessments")).to_be_visible()

    page.click("button:has-text('New assessment')")
    page.fill("input[name=title]", "Browser routing test")
    page.fill("textarea[name=use_case]", "Route banking messages to intents.")
    page.check("input[name=task_type][value=classification]")
    page.click("button:has-text('Save and continue')")

    expect(page.get_by_role("heading", name="What goes wrong")).to_be_visible()
    page.check("input[name=failure_modes][value=ignores_format]")
    page.fill("input[name=prompt_tokens_today]", "1500")
    page.click("button:has-text('Save and continue')")

    page.check("input[name=volatility][value=yearly]")
    page.check("input[name=needs_citations][value=false]")
    page.check("input[name=has_documents][value=false]")
    page.click("button:has-text('Save and continue')")

    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    sample = REPO / "examples" / "banking77-sample.csv"
    page.set_input_files("input[name=file]", str(sample))
    page.click("button:has-text('Upload sample')")
    expect(page.locator("#sample-summary")).to_contain_text("classification")
    page.fill("input[name=examples_available]", "3000")
    page.check("input[name=examples_reviewed][value=true]")
    page.click("button:has-text('Save and continue')")

    page.fill("input[name=budget_one_off_usd]", "5000")
    page.fill("input[name=budget_monthly_usd]", "2000")
    page.check("input[name=gpu_access][value=gpu_24gb]")
    page.check("input[name=timeline][value=weeks]")
    page.check("input[name=team_skills][value=python]")
    page.click("button:has-text('Save and continue')")

    # A wrong answer shows inline, next to the field, and the page keeps the other answers.
    page.fill("input[name=queries_per_day]", "-3")
    page.fill("input[name=latency_target_ms]", "900")
    page.check("input[name=data_residency][value=none]")
    page.fill("input[name=target_model_size_b]", "8")
    page.click("button:has-text('Save and continue')")
    expect(page.locator("#queries_per_day-error")).to_have_text("Must be at least 0.")
    expect(page.locator("input[name=latency_target_ms]")).to_have_value("900")
    page.fill("input[name=queries_per_day]", "20000")
    page.click("button:has-text('Save and continue')")

    expect(page.get_by_role("heading", name="Review and submit")).to_be_visible()
    page.click("button:has-text('Score the three paths')")

    expect(page.get_by_role("heading", name="Browser routing test")).to_be_visible()
    expect(page.locator(".score-card")).to_have_count(3)
    expect(page.locator("#score-chart svg")).to_be_visible()
    expect(page.locator(".factor-table tbody tr").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "scores.png"), full_page=True)
