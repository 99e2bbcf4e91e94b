"""A person registers their served model, checks the connection, pilots on it, and sees in
the report which model answered each arm. Real: `pathpilot serve`, a vLLM server, Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import REPO
from tests.factories.assessments import tiny_sample

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.vllm]

ARTIFACTS = REPO / "test-artifacts"


def test_register_check_and_pilot_on_an_endpoint(
    page: Page, live_server: str, vllm_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{live_server}/signup")
    page.fill("input[name=email]", "models-browser@example.com")
    page.fill("input[name=password]", "a long enough password")
    page.click("button:has-text('Sign up')")

    page.click("nav a:has-text('Models')")
    page.fill("input[name=name]", "Our served model")
    page.select_option("select[name=kind]", "openai_compatible")
    page.fill("input[name=base_url]", vllm_server.base_url)
    page.fill("input[name=model]", vllm_server.model)
    page.fill("input[name=api_key]", "sk-browser-test-key")
    page.fill("input[name=parameters_b]", "0.135")
    page.click("button:has-text('Add model')")
    row = page.locator("#models tr[data-model-id]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("API key saved")
    expect(row).not_to_contain_text("sk-browser-test-key")

    row.locator("button:has-text('Check connection')").click()
    expect(row.locator("[role=status]")).to_contain_text("answered in", timeout=60_000)
    expect(row.locator("[role=status]")).to_contain_text("context window 2048")
    page.screenshot(path=str(ARTIFACTS / "models.png"), full_page=True)

    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    assert csrf
    intake = json.loads((REPO / "examples" / "intake-banking-intents.json").read_text())
    created = page.request.post(
        f"{live_server}/api/v1/assessments", data=intake, headers={"X-CSRF-Token": csrf}
    )
    assessment_id = created.json()["id"]
    sample = tmp_path / "three-intents.csv"
    sample.write_text(tiny_sample())
    page.goto(f"{live_server}/assessments/{assessment_id}/steps/data")
    page.set_input_files("input[name=file]", str(sample))
    page.click("button:has-text('Upload sample')")
    # Wait for the upload's answer: leaving the page sooner can cancel it, and with no sample
    # the assessment page has no pilot form.
    expect(page.locator("#sample-summary")).to_contain_text("classification")

    page.goto(f"{live_server}/assessments/{assessment_id}")
    for box in page.locator("input[name=arms]").all():
        if box.get_attribute("value") not in ("majority", "fewshot"):
            box.uncheck()
    page.select_option("#prompt-model", label=f"Our served model ({vllm_server.model})")
    page.click("button:has-text('Run pilot')")
    expect(page.locator("#pilot-status")).to_have_text(re.compile("done|failed"), timeout=600_000)
    expect(page.locator("#pilot-status")).to_have_text("done")

    page.click("a:has-text('Report')")
    fewshot = page.locator("#arms-table tr[data-arm=fewshot]")
    expect(fewshot.locator(".arm-model")).to_contain_text(f"{vllm_server.model} (endpoint)")
    # The intake names an 8B model; a 135M endpoint is a stand-in, and the headline says so.
    expect(page.locator("#stand-in-note")).to_contain_text("not the 8B model you plan to deploy")
    # Only the few-shot arm used a model (the floor needs none): the note names the endpoint's.
    expect(page.locator("#proxy-note")).to_contain_text(f"This pilot ran on {vllm_server.model}")
    page.screenshot(path=str(ARTIFACTS / "report-endpoint.png"), full_page=True)
