"""Registered models: pages, API, validation, ownership, and a key that is never shown."""

from __future__ import annotations

import pytest

from tests.app.accounts.helpers import bearer, create_token
from tests.factories.models import in_models_dir, register

SECRET = "sk-test-never-shown-7d41c9"


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
        json={"name": "missing", "kind": "local", "model": in_models_dir("missing")},
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
    from tests.factories.assessments import scored_assessment

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
    from tests.factories.assessments import scored_assessment

    owner, other = make_client(), make_client()
    owner.signup("owner@example.com")
    other.signup("other@example.com")
    aid = scored_assessment(owner)
    foreign = register(other).json()["id"]
    base = in_models_dir("base")
    local = register(owner, name="Base dir", kind="local", base_url=None, model=base)
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


# --- the egress policy at registration and at the check ----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://2852039166/v1",
        "http://0251.0376.0251.0376/v1",
        "http://[::ffff:169.254.169.254]/v1",
        "http://metadata.google.internal/v1",
        f"http://team:{SECRET}@llm.example.test/v1",
        f"http://llm.example.test/v1?key={SECRET}",
        "http://llm.example.test/v1#",
    ],
)
def test_a_forbidden_base_url_is_a_422_naming_it_never_stored_nor_echoed(client, url: str) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    response = register(client, base_url=url)
    assert response.status_code == 422, response.text
    assert "base_url" in response.text and SECRET not in response.text
    form = client.post(
        "/models",
        {"name": "x", "kind": "openai_compatible", "base_url": url, "model": "m",
         "max_concurrency": "4"},
    )  # fmt: skip
    assert form.status_code == 422
    assert "base_url" in form.text and SECRET not in form.text
    assert client.http.get("/api/v1/models").json() == []


def test_the_shared_mode_refuses_internal_addresses_unless_allowlisted(  # type: ignore[no-untyped-def]
    client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.settings import get_settings

    client.signup()
    monkeypatch.setenv("EGRESS_MODE", "shared")
    get_settings.cache_clear()
    refused = register(client, base_url="http://127.0.0.1:8000/v1")
    assert refused.status_code == 422, refused.text
    assert "base_url" in refused.text and "ENDPOINT_ALLOWED_HOSTS" in refused.text
    form = client.post(
        "/models",
        {"name": "x", "kind": "openai_compatible", "base_url": "http://10.0.0.5/v1",
         "model": "m", "max_concurrency": "4", "api_key": SECRET},
    )  # fmt: skip
    assert form.status_code == 422
    assert "base_url" in form.text and "ENDPOINT_ALLOWED_HOSTS" in form.text
    assert SECRET not in form.text
    monkeypatch.setenv("ENDPOINT_ALLOWED_HOSTS", "10.0.0.0/8")
    get_settings.cache_clear()
    assert register(client, base_url="http://10.0.0.5/v1").status_code == 201
    assert register(client, base_url="http://127.0.0.1:8000/v1").status_code == 422


def test_a_model_stored_before_the_deployment_went_shared_is_refused_at_the_check(  # type: ignore[no-untyped-def]
    client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.settings import get_settings
    from tests.app.endpoints.fault_server import FaultServer

    client.signup()
    with FaultServer() as server:
        created = register(client, base_url=server.base_url, model="test-model").json()
        check = f"/api/v1/models/{created['id']}/check"
        assert client.http.post(check).json()["ok"] is True
        monkeypatch.setenv("EGRESS_MODE", "shared")
        get_settings.cache_clear()
        seen = len(server.seen)
        response = client.http.post(check)
        assert len(server.seen) == seen, "nothing was sent"
    assert response.status_code == 200
    report = response.json()
    assert report["ok"] is False and "ENDPOINT_ALLOWED_HOSTS" in report["message"]


def test_the_deployments_default_endpoint_is_reached_in_the_shared_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.endpoints.service import default_endpoint_spec
    from app.integrations.openai_compatible.check import check_connection
    from app.settings import Settings
    from tests.app.endpoints.fault_server import FaultServer

    with FaultServer() as server:
        settings = Settings(
            var_dir=tmp_path,
            egress_mode="shared",
            default_endpoint_url=server.base_url,
            default_endpoint_model="test-model",
        )
        spec = default_endpoint_spec(settings)
        assert spec is not None and spec.egress.mode == "shared"
        assert check_connection(spec).ok


def test_connection_checks_are_rate_limited_per_user(make_client) -> None:  # type: ignore[no-untyped-def]
    owner, other = make_client(), make_client()
    owner.signup("owner@example.com")
    other.signup("other@example.com")
    local = {"name": "dir", "kind": "local", "base_url": None, "model": in_models_dir("dir")}
    mine = register(owner, **local).json()["id"]
    theirs = register(other, **local).json()["id"]
    for _ in range(10):
        assert owner.http.post(f"/api/v1/models/{mine}/check").status_code == 200
    throttled = owner.http.post(f"/api/v1/models/{mine}/check")
    assert throttled.status_code == 429
    assert "Too many connection checks" in throttled.json()["detail"]
    assert int(throttled.headers["retry-after"]) >= 1
    page = owner.post(f"/models/{mine}/check", {}, headers={"HX-Request": "true"})
    assert page.status_code == 429 and "Too many connection checks" in page.text
    assert other.http.post(f"/api/v1/models/{theirs}/check").status_code == 200
