"""Cancel from the page and the API, and the queue position with its ETA."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.db import session_scope, utcnow
from app.domain.queueing import queue_eta_seconds
from app.pilots.models import Pilot, PilotArm
from tests.factories.pilots import signed_up_pilot


def test_the_owner_cancels_a_queued_pilot_once(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("app.queue.send", lambda job: None)
    pilot_id = signed_up_pilot(client, arms=["majority"])
    page = client.get(f"/pilots/{pilot_id}").text
    assert 'id="cancel-pilot"' in page and "Next in the queue" in page

    response = client.http.post(f"/api/v1/pilots/{pilot_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": pilot_id, "status": "cancelled"}
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        arms = session.scalars(select(PilotArm).where(PilotArm.pilot_id == pilot_id)).all()
        assert pilot is not None and (pilot.status, pilot.lease) == ("cancelled", None)
        assert [(a.status, a.error) for a in arms] == [("failed", "not run: cancelled")]
    again = client.http.post(f"/api/v1/pilots/{pilot_id}/cancel")
    assert again.status_code == 409 and "already finished" in again.json()["detail"]
    page = client.get(f"/pilots/{pilot_id}").text
    assert 'id="cancel-pilot"' not in page and "Cancelled by its owner." in page


def test_the_page_button_cancels_and_the_queue_shows_who_is_ahead(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("app.queue.send", lambda job: None)
    first = signed_up_pilot(client, arms=["majority"])
    aid = client.http.get(f"/api/v1/pilots/{first}").json()["assessment_id"]
    later = [
        client.http.post(f"/api/v1/assessments/{aid}/pilots", json={"arms": ["majority"]}).json()[
            "id"
        ]
        for _ in range(2)
    ]
    # One earlier pilot ran for 10 minutes: the last in line waits for three such runs.
    with session_scope() as session:
        done = session.get(Pilot, later[0])
        assert done is not None
        done.status, done.finished_at = "done", utcnow()
        done.started_at = done.finished_at - timedelta(minutes=10)
    api = client.http.get(f"/api/v1/pilots/{later[1]}").json()
    assert api["queue"] == {"ahead": 1, "eta_seconds": 1200.0}
    assert "1 pilot ahead of yours · ETA about 20 min" in client.get(f"/pilots/{later[1]}").text

    response = client.post(f"/pilots/{first}/cancel")
    assert response.status_code == 303 and response.headers["location"] == f"/pilots/{first}"
    assert client.http.get(f"/api/v1/pilots/{later[1]}").json()["queue"]["ahead"] == 0


def test_the_eta_shares_the_queue_among_busy_workers() -> None:
    assert queue_eta_seconds(3, [], busy_workers=2) is None
    assert queue_eta_seconds(3, [60.0, 120.0, 600.0], busy_workers=0) == 480.0
    assert queue_eta_seconds(3, [60.0, 120.0, 600.0], busy_workers=2) == 240.0
