"""Helpers for tests that need an API token or a share link made through the real pages."""

from __future__ import annotations

import re


def shown_once(html: str, element_id: str) -> str:
    """The value of the read-only input a creation page shows its new secret in."""
    match = re.search(rf'id="{element_id}"[^>]*\bvalue="([^"]+)"', html)
    assert match, f"no #{element_id} on the page"
    return match.group(1)


def create_token(client, name: str = "CI pipeline") -> str:  # type: ignore[no-untyped-def]
    """Create an API token on /account/tokens as the client's user; returns the secret."""
    response = client.post("/account/tokens", {"name": name})
    assert response.status_code == 201, response.text
    return shown_once(response.text, "new-token-value")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
