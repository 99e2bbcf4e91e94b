"""Two users and everything the owner can have: the fixture of the security tests.

Built through the real pages and API (tokens from /account/tokens, links from the sharing
page), except finished pilots, which come from the report tests' factory (the worker is not
what these tests are about).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.accounts.models import ApiToken
from app.db import get_sessionmaker
from app.sharing.models import ShareLink
from tests.app.accounts.helpers import bearer, create_token
from tests.app.reports.factory import finished_pilot
from tests.app.sharing.helpers import create_link
from tests.factories.assessments import scored_assessment
from tests.factories.models import in_models_dir

# In every page or body the owner's data appears in, and in nothing another user gets.
OWNER_MARKER = "Owner-only routing 7f3a9c"


@dataclass
class World:
    owner: Any  # WebClient, logged in
    other: Any  # WebClient, logged in as someone else
    anonymous: Any  # WebClient with a session (and CSRF token) but no log-in
    owner_token: str
    other_token: str
    assessment_id: str
    pilot_ids: list[str]
    token_id: int
    link_id: int
    share_path: str
    model_id: str

    def params(self) -> dict[str, Any]:
        """Values for every path parameter a route may have."""
        return {
            "assessment_id": self.assessment_id,
            "pilot_id": self.pilot_ids[0],
            "step_name": "use_case",
            "token_id": self.token_id,
            "link_id": self.link_id,
            "token": self.share_path.removeprefix("/share/"),
            "model_id": self.model_id,
        }

    def owner_auth(self) -> dict[str, str]:
        return bearer(self.owner_token)

    def other_auth(self) -> dict[str, str]:
        return bearer(self.other_token)


def build_world(make_client) -> World:  # type: ignore[no-untyped-def]
    owner, other, anonymous = make_client(), make_client(), make_client()
    owner.signup("owner@example.com")
    aid = scored_assessment(owner, title=OWNER_MARKER)
    pilot_ids = [finished_pilot(aid), finished_pilot(aid)]
    owner_token = create_token(owner, "owner script")
    share_path = create_link(owner, aid, "for the board")
    other.signup("other@example.com")
    other_token = create_token(other, "other script")
    # A registered model whose check looks at the (missing) directory, never at the network.
    model = owner.http.post(
        "/api/v1/models",
        json={"name": OWNER_MARKER, "kind": "local", "model": in_models_dir("model-dir")},
        headers=bearer(owner_token),
    )
    assert model.status_code == 201, model.text
    anonymous.csrf()  # a session with a CSRF token, so only the log-in check can refuse it
    with get_sessionmaker()() as session:
        token_id = session.scalars(select(ApiToken.id).where(ApiToken.name == "owner script")).one()
        link_id = session.scalars(select(ShareLink.id)).one()
    return World(
        owner=owner,
        other=other,
        anonymous=anonymous,
        owner_token=owner_token,
        other_token=other_token,
        assessment_id=aid,
        pilot_ids=pilot_ids,
        token_id=token_id,
        link_id=link_id,
        share_path=share_path,
        model_id=model.json()["id"],
    )
