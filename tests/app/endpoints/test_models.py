"""Registered models: pages, API, validation, ownership, and a key that is never shown."""

from __future__ import annotations

import pytest

from tests.app.accounts.helpers import bearer, create_token

SECRET = "sk-test-never-shown-7d41c9"


def register(client, **fields: object):  # type: ignore[no-untyped-def]
    body = {
        "name": "Team 8B",
        "kind": "openai_compatible",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "llama-8b",
        **fields,
    }
    return client.http.post("/api/v1/models", json=body, headers=bearer(create_token(client)))


def test_the_api_registers_a_model_and_never_returns_its_key(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    created = register(client, api_key=SECRET, parameters_b=8, deployment=True)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["has_api_key"] is True and "api_key" not in body
    assert SECRET not in created.text
    listed = client.http.get("/api/v1/models")
    assert listed.status_code == 200 and SECRET not in listed.text
    assert [m["name"] for m in listed.json()] == ["Team 8B"]
    page = client.get("/models")
    assert "Team 8B" in page.text and "API key saved" in page.text and SECRET not in page.text


def test_the_key_is_encrypted_at_rest(client) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.endpoints.models import LlmModel

    client.signup()
    assert register(client, api_key=SECRET).status_code == 201
    with get_sessionmaker()() as session:
        stored = session.scalars(select(LlmModel.api_key_ciphertext)).one()
    assert stored is not None and SECRET not in stored


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"base_url": "ftp://host/v1"}, "base_url"),
        ({"base_url": None}, "base_url"),
        ({"kind": "local", "base_url": "http://x/v1"}, "base_url"),
        ({"name": ""}, "name"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"input_usd_per_million": -1}, "input_usd_per_million"),
        ({"parameters_b": 0}, "parameters_b"),
        ({"kind": "gguf"}, "kind"),
        ({"extra": "field"}, "extra"),
        # PostgreSQL cannot store NUL in text: a 422 here, not a database error.
        ({"name": "a\x00b"}, "name"),
        ({"model": "m\x00"}, "model"),
        ({"base_url": "http://x/v1\x00"}, "base_url"),
    ],
)
def test_bad_model_fields_are_a_422_naming_the_field(client, fields: dict, where: str) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    response = register(client, **fields)
    assert response.status_code == 422, response.text
    assert where in response.text


def test_the_form_names_the_bad_field_and_does_not_echo_the_key(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    response = client.post(
        "/models",
        {"name": "x", "kind": "openai_compatible", "base_url": "nope", "model": "m",
         "api_key": SECRET, "max_concurrency": "4"},
    )  # fmt: skip
    assert response.status_code == 422
    assert "base_url" in response.text and SECRET not in response.text
    assert client.get("/models").text.count('data-model-id="') == 0  # nothing was stored


def test_checking_a_local_model_looks_at_its_directory(client, llm_dir) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    headers = bearer(create_token(client))
    good = client.http.post(
        "/api/v1/models",
        json={"name": "default", "kind": "local", "model": str(llm_dir)},
        headers=headers,
    ).json()
    bad = client.http.post(
        "/api/v1/models",
        json={"name": "missing", "kind": "local", "model": "/nonexistent/dir"},
        headers=headers,
    ).json()
    ok = client.http.post(f"/api/v1/models/{good['id']}/check", headers=headers).json()
    assert ok["ok"] is True
    missing = client.http.post(f"/api/v1/models/{bad['id']}/check", headers=headers).json()
    assert missing["ok"] is False and "No Hugging Face model directory" in missing["message"]
    assert client.http.get(f"/api/v1/models/{bad['id']}").json()["check_ok"] is False


def test_a_refused_connection_is_reported_not_raised(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    created = register(client).json()  # port 9 on loopback: nothing listens there
    report = client.http.post(f"/api/v1/models/{created['id']}/check").json()
    assert report["ok"] is False
    assert "127.0.0.1:9" in report["message"]


def test_a_pilot_refuses_another_users_model_and_a_model_of_the_wrong_kind(
    make_client,  # type: ignore[no-untyped-def]
) -> None:
    from tests.app.reports.factory import scored_assessment

    owner, other = make_client(), make_client()
    owner.signup("owner@example.com")
    other.signup("other@example.com")
    aid = scored_assessment(owner)
    foreign = register(other).json()["id"]
    mine = register(owner).json()["id"]
    headers = bearer(create_token(owner))
    for field, model_id, message in (
        ("prompt_model_id", foreign, "no such model among yours"),
        ("base_model_id", mine, "is not a local model directory"),
    ):
        response = owner.http.post(
            f"/api/v1/assessments/{aid}/pilots", json={field: model_id}, headers=headers
        )
        assert response.status_code == 422, response.text
        assert field in response.text and message in response.text


def test_a_pilot_serving_endpoint_must_be_the_owners_openai_compatible_model(
    make_client,  # type: ignore[no-untyped-def]
) -> None:
    from app.db import get_sessionmaker
    from app.pilots.models import Pilot
    from tests.app.reports.factory import scored_assessment

    owner, other = make_client(), make_client()
    owner.signup("owner@example.com")
    other.signup("other@example.com")
    aid = scored_assessment(owner)
    foreign = register(other).json()["id"]
    local = register(owner, name="Base dir", kind="local", base_url=None, model="/srv/base")
    served = register(owner, name="vLLM with LoRA").json()["id"]
    headers = bearer(create_token(owner))
    for model_id, message in (
        (foreign, "no such model among yours"),
        (local.json()["id"], "'Base dir' is not an OpenAI-compatible endpoint"),
    ):
        response = owner.http.post(
            f"/api/v1/assessments/{aid}/pilots",
            json={"serving_model_id": model_id},
            headers=headers,
        )
        assert response.status_code == 422, response.text
        assert "serving_model_id:" in response.text and message in response.text
    # The page's form refuses it the same way, and offers the owner's endpoints only.
    page = owner.get(f"/assessments/{aid}")
    assert 'name="serving_model_id"' in page.text and "vLLM with LoRA" in page.text
    assert "Team 8B" not in page.text  # the other user's endpoint
    form = owner.post(
        f"/assessments/{aid}/pilots", {"max_train": "60", "serving_model_id": foreign}
    )
    assert form.status_code == 422 and "serving_model_id" in form.text
    accepted = owner.http.post(
        f"/api/v1/assessments/{aid}/pilots", json={"serving_model_id": served}, headers=headers
    )
    assert accepted.status_code == 202, accepted.text
    with get_sessionmaker()() as session:
        pilot = session.get(Pilot, accepted.json()["id"])
    assert pilot is not None and pilot.serving_model_id == served


def test_a_nul_in_the_api_key_is_a_422_that_does_not_echo_the_key(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    response = register(client, api_key="sk-SECRETVALUE\x00")
    assert response.status_code == 422, response.text
    assert "api_key" in response.text
    assert "SECRETVALUE" not in response.text
