"""/docs serves the vendored Swagger UI under the app's strict Content-Security-Policy."""

from __future__ import annotations

import re

from app.main import CONTENT_SECURITY_POLICY


def test_docs_page_loads_only_vendored_assets_and_no_inline_script(client) -> None:
    page = client.http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources, page.text
    assert all(s.startswith("/") for s in sources), sources  # nothing from a CDN
    for source in sources:
        assert client.http.get(source).status_code == 200, source
    # Every <script> has a src: an inline one would be blocked by script-src 'self'.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) == []
    assert 'data-openapi-url="/openapi.json"' in page.text


def test_fastapi_cdn_pages_are_not_served(client) -> None:
    assert client.http.get("/redoc").status_code == 404
    assert client.http.get("/docs/oauth2-redirect").status_code == 404
