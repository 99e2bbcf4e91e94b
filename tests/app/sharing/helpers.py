"""Create share links through the owner's page, as a browser would."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.app.accounts.helpers import shown_once


def create_link(client, assessment_id: str, label: str = "") -> str:  # type: ignore[no-untyped-def]
    """Create a share link; returns its path, /share/<token>."""
    response = client.post(f"/assessments/{assessment_id}/sharing", {"label": label})
    assert response.status_code == 201, response.text
    return urlsplit(shown_once(response.text, "new-link-value")).path
