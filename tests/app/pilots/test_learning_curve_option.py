"""The learning-curve option: off by default, a tick on the page or a field in the API."""

from __future__ import annotations

from app.db import get_sessionmaker
from app.pilots.models import Pilot
from tests.factories.assessments import scored_assessment


def _stored(pilot_id: str) -> bool:
    with get_sessionmaker()() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        return pilot.learning_curve


def test_the_page_offers_the_curve_unticked_and_a_tick_asks_for_it(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    page = client.get(f"/assessments/{aid}").text
    box = page[page.index('id="learning-curve"') - 60 :][:120]
    assert 'name="learning_curve"' in box and "checked" not in box
    plain = client.post(f"/assessments/{aid}/pilots", {"max_train": "60", "arms": ["qlora"]})
    ticked = client.post(
        f"/assessments/{aid}/pilots",
        {"max_train": "60", "arms": ["qlora"], "learning_curve": "on"},
    )
    assert plain.status_code == ticked.status_code == 303
    assert not _stored(plain.headers["location"].rsplit("/", 1)[1])
    assert _stored(ticked.headers["location"].rsplit("/", 1)[1])


def test_the_api_takes_the_option_and_defaults_to_the_setting(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    default = client.http.post(f"/api/v1/assessments/{aid}/pilots", json={"arms": ["qlora"]})
    asked = client.http.post(
        f"/api/v1/assessments/{aid}/pilots", json={"arms": ["qlora"], "learning_curve": True}
    )
    assert default.status_code == asked.status_code == 202
    assert not _stored(default.json()["id"])
    assert _stored(asked.json()["id"])
    body = client.http.get(f"/api/v1/pilots/{asked.json()['id']}").json()
    assert body["learning_curve"] is None  # nothing measured until the worker has run it
