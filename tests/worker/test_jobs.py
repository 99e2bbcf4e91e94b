"""What the worker builds from a pilot's row before it runs the arms."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.app.accounts.helpers import bearer, create_token
from tests.factories.assessments import scored_assessment
from tests.factories.models import register

if TYPE_CHECKING:
    from worker.runtime import RuntimeInputs


def _runtime_of(pilot_id: str) -> RuntimeInputs:
    """What an arm step builds from the pilot's row: its one read, through the runtime builder."""
    from app.settings import get_settings
    from worker.step_reads import read_step

    return read_step(get_settings(), pilot_id, split=False)[1]


def test_the_worker_hands_the_pilots_serving_endpoint_to_the_fine_tuned_arms(client) -> None:  # type: ignore[no-untyped-def]
    from worker import runtime
    from worker.step_reads import answers

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
    plain_id = plain.json()["id"]
    assert runtime.serving_runtime(_runtime_of(plain_id), answers(plain_id)) is None
    pilot_id = with_server.json()["id"]
    serving = runtime.serving_runtime(_runtime_of(pilot_id), answers(pilot_id))
    assert serving is not None
    assert (serving.spec.base_url, serving.spec.model) == ("http://vllm:8000/v1", "base")
    assert serving.scope == pilot_id  # adapter names are unique per pilot
    assert serving.model.via == "endpoint"


def test_the_worker_reads_the_pilots_prompting_and_base_models(client, llm_dir) -> None:  # type: ignore[no-untyped-def]
    from app.settings import get_settings
    from worker import runtime

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
    unchosen = _runtime_of(plain.json()["id"])
    assert unchosen.prompt is None  # no DEFAULT_ENDPOINT_URL
    assert runtime.base_settings(settings, unchosen) == settings
    assert unchosen.declared_deployment is False
    given = _runtime_of(chosen.json()["id"])
    prompt = given.prompt
    assert prompt is not None
    assert (prompt.spec.model, prompt.model.parameters) == ("llama-8b", 8_000_000_000)
    based = runtime.base_settings(settings, given)
    assert (based.llm_model, given.declared_deployment) == (str(llm_dir), True)
