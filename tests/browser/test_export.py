"""A person runs a pilot, opens the report, clicks Export and gets the hand-off bundle.

Real: `pathpilot serve` with its worker, the default models, a small pilot with every default
arm (so whichever path the report recommends, its arm and adapter exist), and Chromium.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import REPO
from tests.factories.assessments import tiny_sample

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALWAYS = {
    "README.md",
    "MANIFEST.json",
    "report.pdf",
    "data/train.chat.jsonl",
    "data/train.jsonl",
    "data/validation.chat.jsonl",
    "data/test/test.jsonl",
    "data/test/README.md",
    "finetune/train_trl.py",
    "finetune/axolotl.yaml",
    "finetune/requirements.txt",
    "serve/client.py",
    "serve/prompt.json",
}


def test_export_button_downloads_the_bundle(page: Page, live_server: str, tmp_path: Path) -> None:
    page.goto(f"{live_server}/signup")
    page.fill("input[name=email]", "export-browser@example.com")
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
    assessment_id = created.json()["id"]
    sample = tmp_path / "three-intents.csv"
    sample.write_text(tiny_sample())
    page.goto(f"{live_server}/assessments/{assessment_id}/steps/data")
    page.set_input_files("input[name=file]", str(sample))
    page.click("button:has-text('Upload sample')")
    # Wait for the upload's answer: leaving the page sooner can cancel it.
    expect(page.locator("#sample-summary")).to_contain_text("classification")
    page.goto(f"{live_server}/assessments/{assessment_id}")
    page.click("button:has-text('Run pilot')")
    expect(page.locator("#pilot-status")).to_have_text(re.compile("done|failed"), timeout=900_000)
    expect(page.locator("#pilot-status")).to_have_text("done")

    page.click("a:has-text('Report')")
    export = page.locator("#export-link")
    expect(export).to_have_text("Export")
    with page.expect_download() as download_info:
        export.click()
    download = download_info.value
    assert re.fullmatch(r"pathpilot-.+-bundle\.zip", download.suggested_filename)
    target = tmp_path / download.suggested_filename
    download.save_as(str(target))
    listing = set(zipfile.ZipFile(target).namelist())
    assert listing >= ALWAYS, sorted(ALWAYS - listing)
    readme = zipfile.ZipFile(target).read("README.md").decode()
    assert "adapter/adapter_config.json" in listing or "adapter/: not included" in readme
    assert "verified" in zipfile.ZipFile(target).read("data/README.md").decode()
