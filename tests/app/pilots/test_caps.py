"""Per-user caps on pilots: one user cannot fill the shared queues (429 naming the cap)."""

from __future__ import annotations

from sqlalchemy import select

from app.db import session_scope, utcnow
from app.pilots.models import Pilot
from tests.factories.assessments import scored_assessment
from tests.factories.pilots import post_pilot


def _set_status(pilot_ids: list[str], status: str) -> None:
    """Move pilots on as a worker would (claimed: running; concluded: done)."""
    with session_scope() as session:
        for pilot in session.scalars(select(Pilot).where(Pilot.id.in_(pilot_ids))):
            pilot.status = status
            pilot.started_at = utcnow()
            if status == "done":
                pilot.finished_at = utcnow()


def test_a_user_may_have_three_pilots_queued(make_client) -> None:  # type: ignore[no-untyped-def]
    owner = make_client()
    owner.signup("owner@example.com")
    owner.csrf()  # the cookie-authenticated API writes send the page's CSRF header
    aid = scored_assessment(owner)
    started = [post_pilot(owner, aid, arms=["majority"]) for _ in range(3)]
    assert [r.status_code for r in started] == [202, 202, 202]

    refused = post_pilot(owner, aid, arms=["majority"])
    assert refused.status_code == 429
    detail = refused.json()["detail"]
    assert "You have 3 pilots queued" in detail and "at most 3 per user" in detail
    # The page's form says the same, on the error page.
    page = owner.post(f"/assessments/{aid}/pilots", {"arms": "majority", "max_train": "60"})
    assert page.status_code == 429 and "You have 3 pilots queued" in page.text
    with session_scope() as session:
        assert len(session.scalars(select(Pilot)).all()) == 3  # nothing was created

    # Another user's pilots do not count against this one, nor theirs against them.
    other = make_client()
    other.signup("other@example.com")
    other.csrf()
    assert post_pilot(other, scored_assessment(other), arms=["majority"]).status_code == 202

    # A cancelled pilot frees its place.
    first = started[0].json()["id"]
    assert owner.http.post(f"/api/v1/pilots/{first}/cancel").status_code in (200, 202)
    assert post_pilot(owner, aid, arms=["majority"]).status_code == 202


def test_a_user_may_have_two_pilots_running(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    client.csrf()
    aid = scored_assessment(client)
    ids = [post_pilot(client, aid, arms=["majority"]).json()["id"] for _ in range(2)]
    _set_status(ids, "running")  # both claimed by workers: their arms wait on the GPU queue

    refused = post_pilot(client, aid, arms=["majority"])
    assert refused.status_code == 429
    detail = refused.json()["detail"]
    assert "You have 2 pilots running" in detail and "at most 2 per user" in detail

    _set_status(ids[:1], "done")  # a finished pilot no longer counts
    assert post_pilot(client, aid, arms=["majority"]).status_code == 202


def test_the_caps_are_settings(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.settings import get_settings

    monkeypatch.setenv("MAX_QUEUED_PILOTS_PER_USER", "1")
    get_settings.cache_clear()
    client.signup()
    client.csrf()
    aid = scored_assessment(client)
    assert post_pilot(client, aid, arms=["majority"]).status_code == 202
    refused = post_pilot(client, aid, arms=["majority"])
    assert refused.status_code == 429
    assert "You have 1 pilot queued, and at most 1 per user" in refused.json()["detail"]
