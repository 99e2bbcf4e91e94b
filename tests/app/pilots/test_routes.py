"""Starting pilots from the page and the API (queued only; the worker test runs them)."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.db import get_sessionmaker
from app.pilots.models import Pilot, PilotArm
from tests.factories.assessments import scored_assessment


def test_start_pilot_from_page_queues_arms(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    page = client.get(f"/assessments/{aid}")
    assert "Run pilot" in page.text
    response = client.post(
        f"/assessments/{aid}/pilots", {"max_train": "60", "arms": ["fewshot", "rag"]}
    )
    assert response.status_code == 303
    pilot_id = response.headers["location"].rsplit("/", 1)[1]
    with get_sessionmaker()() as session:
        pilot = session.get(Pilot, pilot_id)
        arms = session.scalars(select(PilotArm).where(PilotArm.pilot_id == pilot_id)).all()
    assert pilot is not None and pilot.status == "queued" and pilot.max_train == 60
    assert [a.arm for a in arms] == ["fewshot", "rag"]
    live = client.get(f"/pilots/{pilot_id}")
    assert 'hx-trigger="every 2s"' in live.text
    partial = client.get(f"/pilots/{pilot_id}/progress", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert partial.text.lstrip().startswith('<div id="pilot-live"')


def test_pilot_needs_a_sample(client) -> None:
    client.signup()
    aid = scored_assessment(client, sample=None)
    response = client.http.post(f"/api/v1/assessments/{aid}/pilots", json={})
    assert response.status_code == 422
    assert "Upload a data sample" in response.json()["detail"]


def test_pilot_request_errors_name_the_field(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    too_big = client.http.post(f"/api/v1/assessments/{aid}/pilots", json={"max_train": 10**6})
    assert too_big.status_code == 422 and "max_train" in too_big.json()["detail"]
    bad_arm = client.http.post(f"/api/v1/assessments/{aid}/pilots", json={"arms": ["magic"]})
    assert bad_arm.status_code == 422 and "unknown arm 'magic'" in bad_arm.json()["detail"]
    page = client.post(f"/assessments/{aid}/pilots", {"max_train": "many"})
    assert page.status_code == 422 and "whole number" in page.text


def test_other_user_cannot_see_or_start_pilots(make_client) -> None:
    owner, other = make_client(), make_client()
    owner.signup("owner@example.com")
    aid = scored_assessment(owner)
    pilot_id = owner.http.post(f"/api/v1/assessments/{aid}/pilots", json={}).json()["id"]
    other.signup("other@example.com")
    assert other.http.get(f"/api/v1/pilots/{pilot_id}").status_code == 404
    assert other.get(f"/pilots/{pilot_id}").status_code == 404
    assert other.http.post(f"/api/v1/assessments/{aid}/pilots", json={}).status_code == 404
    assert owner.http.get(f"/api/v1/pilots/{pilot_id}").json()["status"] == "queued"


def test_finished_pilot_page_shows_every_arms_operational_metrics(client) -> None:
    from tests.app.reports.factory import finished_pilot

    client.signup()
    aid = scored_assessment(client)
    page = client.get(f"/pilots/{finished_pilot(aid)}").text
    rows = re.findall(r'<tr data-arm="(\w+)"[^>]*>(.*?)</tr>', page, flags=re.S)
    assert [arm for arm, _ in rows] == ["fewshot", "rag", "qlora", "qlora_rag"]
    for arm, row in rows:
        cells = [
            re.sub(r"<[^>]+>", " ", c).split()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        ]
        latency, prompt_tokens, cost = cells[4], cells[5], cells[6]
        assert "—" not in latency + prompt_tokens + cost, (arm, cells)
        assert prompt_tokens == (["60"] if arm == "qlora" else ["420"])


def test_the_api_returns_each_difference_with_the_sample_it_rests_on(client) -> None:
    from app.domain.comparison import Method
    from tests.app.reports.factory import DEFAULT_DIFFERENCES, finished_pilot

    client.signup()
    pilot_id = finished_pilot(scored_assessment(client))
    body = client.http.get(f"/api/v1/pilots/{pilot_id}").json()
    got = {(d["arm_a"], d["arm_b"]): d for d in body["differences"]}
    assert set(got) == {(d.arm_a, d.arm_b) for d in DEFAULT_DIFFERENCES}
    for stored in DEFAULT_DIFFERENCES:
        d = got[(stored.arm_a, stored.arm_b)]
        assert (d["n_items"], d["n_groups"], d["discordant"]) == (120, 120, stored.discordant)
        assert d["p_value"] == stored.p_value and d["design_effect"] == 1.0
        assert d["method"] == Method.paired_binary
    # QLoRA vs RAG: 13 items only QLoRA got right, 7 only RAG.
    assert got[("qlora", "rag")]["discordant"] == 20
