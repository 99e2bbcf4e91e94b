"""What the worker builds from a pilot's row before it runs the arms."""

from __future__ import annotations

from tests.app.accounts.helpers import bearer, create_token
from tests.app.endpoints.test_models import register
from tests.app.reports.factory import scored_assessment


def test_the_worker_hands_the_pilots_serving_endpoint_to_the_fine_tuned_arms(client) -> None:  # type: ignore[no-untyped-def]
    from app.settings import get_settings
    from worker.jobs import _serving_endpoint

    client.signup()
    aid = scored_assessment(client)
    served = register(client, name="vLLM", base_url="http://vllm:8000/v1", model="base")
    headers = bearer(create_token(client))
    plain = client.http.post(f"/api/v1/assessments/{aid}/pilots", json={}, headers=headers)
    with_server = client.http.post(
        f"/api/v1/assessments/{aid}/pilots",
        json={"serving_model_id": served.json()["id"]},
        headers=headers,
    )
    assert _serving_endpoint(get_settings(), plain.json()["id"]) is None
    pilot_id = with_server.json()["id"]
    serving = _serving_endpoint(get_settings(), pilot_id)
    assert serving is not None
    assert (serving.spec.base_url, serving.spec.model) == ("http://vllm:8000/v1", "base")
    assert serving.scope == pilot_id  # adapter names are unique per pilot
    assert serving.model.via == "endpoint"


def test_the_worker_reads_the_pilots_prompting_and_base_models(client, llm_dir) -> None:  # type: ignore[no-untyped-def]
    from app.settings import get_settings
    from worker.jobs import _base_model, _prompt_endpoint

    client.signup()
    aid = scored_assessment(client)
    endpoint = register(client, name="Team 8B", model="llama-8b", parameters_b=8)
    base = register(
        client, name="Our base", kind="local", base_url=None, model=str(llm_dir), deployment=True
    )
    headers = bearer(create_token(client))
    plain = client.http.post(f"/api/v1/assessments/{aid}/pilots", json={}, headers=headers)
    chosen = client.http.post(
        f"/api/v1/assessments/{aid}/pilots",
        json={"prompt_model_id": endpoint.json()["id"], "base_model_id": base.json()["id"]},
        headers=headers,
    )
    settings = get_settings()
    assert _prompt_endpoint(settings, plain.json()["id"]) is None  # no DEFAULT_ENDPOINT_URL
    assert _base_model(settings, plain.json()["id"]) == (settings, False)
    prompt = _prompt_endpoint(settings, chosen.json()["id"])
    assert prompt is not None
    assert (prompt.spec.model, prompt.model.parameters) == ("llama-8b", 8_000_000_000)
    based, declared = _base_model(settings, chosen.json()["id"])
    assert (based.llm_model, declared) == (str(llm_dir), True)
