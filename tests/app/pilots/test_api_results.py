"""GET /api/v1/pilots/{id}: each arm's primary figure as soon as the arm finishes, provisional
until the pilot concludes, then the report's own figure."""

from __future__ import annotations

from app.db import session_scope
from app.domain.arm_figures import PROVISIONAL_NOTE
from app.pilots.models import Pilot
from app.reports.pilot_evidence import pilot_evidence
from app.reports.pilot_rows import load_pilot
from tests.app.accounts.helpers import bearer, create_token
from tests.app.reports.factory import (
    DEFAULT_ARMS,
    N_TEST,
    conclude_in_progress,
    pilot_in_progress,
)
from tests.factories.assessments import scored_assessment

SPECS = {spec.arm: spec for spec in DEFAULT_ARMS}


def _arms(client, token: str, pilot_id: str) -> tuple[dict, dict]:
    response = client.http.get(f"/api/v1/pilots/{pilot_id}", headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    return body, {arm["arm"]: arm for arm in body["arms"]}


def test_a_finished_arm_shows_its_figure_before_the_others_finish(client) -> None:
    client.signup()
    token = create_token(client)
    pilot = pilot_in_progress(scored_assessment(client), done=2)
    body, arms = _arms(client, token, pilot.id)
    assert body["status"] == "running" and body["stage"] == "arms"
    assert [arms[a]["status"] for a in SPECS] == ["done", "done", "running", "pending"]
    for name in ("fewshot", "rag"):
        spec = SPECS[name]
        assert arms[name]["result"] == {
            "metric": "accuracy",
            "value": spec.accuracy,
            "low": spec.ci[0],
            "high": spec.ci[1],
            "n_items": N_TEST,
            "n_groups": N_TEST,  # no two test items share a group
            "provisional": True,
        }
    assert arms["qlora"]["result"] is None and arms["qlora_rag"]["result"] is None
    # No comparison and no verdict until every arm has finished.
    assert body["differences"] == [] and body["primary_metric"] is None


def test_after_the_conclusion_the_figures_are_the_reports(client) -> None:
    client.signup()
    token = create_token(client)
    pilot = pilot_in_progress(scored_assessment(client), done=2)
    _, before = _arms(client, token, pilot.id)
    conclude_in_progress(pilot)
    body, after = _arms(client, token, pilot.id)
    assert body["status"] == "done" and body["differences"]
    with session_scope() as session:
        stored = session.get(Pilot, pilot.id)
        assert stored is not None
        rows = load_pilot(session, pilot=stored)
        evidence = pilot_evidence(rows)
    assert evidence is not None and {arm.arm for arm in evidence.arms} == set(SPECS)
    for arm in evidence.arms:
        result = after[arm.arm]["result"]
        assert result["provisional"] is False and result["metric"] == body["primary_metric"]
        assert (result["value"], result["low"], result["high"]) == (
            arm.value,
            arm.ci_low,
            arm.ci_high,
        )
        assert result["n_items"] == rows.n_test == N_TEST
    # An arm's figure does not move at the conclusion; only the provisional mark goes.
    for name in ("fewshot", "rag"):
        assert {**before[name]["result"], "provisional": False} == after[name]["result"]


def test_the_openapi_schema_describes_the_result(client) -> None:
    schema = client.http.get("/openapi.json").json()["components"]["schemas"]
    result = schema["ArmResultOut"]
    assert set(result["properties"]) == {
        "metric",
        "value",
        "low",
        "high",
        "n_items",
        "n_groups",
        "provisional",
    }
    assert "provisional" in result["description"].lower()
    assert "result" not in schema["ArmOut"].get("required", [])  # an added, optional field
    assert PROVISIONAL_NOTE.startswith("provisional")
