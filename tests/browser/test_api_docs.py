"""The API reference at /docs renders in a real browser under the strict CSP."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_api_reference_renders_under_the_csp(page: Page, live_server: str) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{live_server}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("PathPilot")
    expect(page.get_by_text("/api/v1/assessments").first).to_be_visible()
    assert not [e for e in errors if "Content Security Policy" in e], errors
