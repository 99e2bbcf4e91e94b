from __future__ import annotations

from tests.factories.assessments import intake


def test_create_and_get_assessment(client) -> None:
    client.signup()
    created = client.http.post("/api/v1/assessments", json=intake())
    assert created.status_code == 201
    body = created.json()
    assert set(body["result"]["scores"]) == {"prompting", "rag", "fine_tuning"}
    fetched = client.http.get(f"/api/v1/assessments/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["result"]["scores"] == body["result"]["scores"]


def test_api_requires_login(client) -> None:
    assert client.http.post("/api/v1/assessments", json=intake()).status_code == 401


def test_invalid_body_names_the_field(client) -> None:
    client.signup()
    body = intake() | {"queries_per_day": -1, "gpu_access": "quantum"}
    response = client.http.post("/api/v1/assessments", json=body)
    assert response.status_code == 422
    locs = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert ("body", "queries_per_day") in locs
    assert ("body", "gpu_access") in locs


def test_unknown_field_is_rejected(client) -> None:
    client.signup()
    response = client.http.post("/api/v1/assessments", json=intake() | {"colour": "blue"})
    assert response.status_code == 422
    assert ["body", "colour"] in [e["loc"] for e in response.json()["detail"]]


def test_other_user_gets_404(make_client) -> None:
    owner, other = make_client(), make_client()
    owner.signup("owner@example.com")
    aid = owner.http.post("/api/v1/assessments", json=intake()).json()["id"]
    other.signup("other@example.com")
    assert other.http.get(f"/api/v1/assessments/{aid}").status_code == 404


def test_the_minimum_difference_is_in_the_api_schema_with_its_default_and_range(client) -> None:
    spec = client.get("/openapi.json").json()
    field = spec["components"]["schemas"]["Intake"]["properties"]["min_difference_points"]
    assert field["default"] == 2.0 and field["minimum"] == 0 and field["maximum"] == 50
    assert "treated as a tie" in field["description"]
    assert "min_difference_points" not in spec["components"]["schemas"]["Intake"]["required"]
    client.signup()
    created = client.http.post("/api/v1/assessments", json=intake())  # without the field
    assert created.status_code == 201
    fetched = client.http.get(f"/api/v1/assessments/{created.json()['id']}").json()
    assert fetched["intake"]["min_difference_points"] == 2.0
    bad = client.http.post("/api/v1/assessments", json=intake() | {"min_difference_points": -1})
    assert bad.status_code == 422
    assert ["body", "min_difference_points"] in [e["loc"] for e in bad.json()["detail"]]
