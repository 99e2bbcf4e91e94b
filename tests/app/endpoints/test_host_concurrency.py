"""One cap per endpoint host, shared by every client in the process (several pilots and models
on one vLLM host), against a real HTTP server on 127.0.0.1 that counts what it has in flight."""

from __future__ import annotations

import threading

import pytest

from app.endpoints.service import egress_policy
from app.integrations.openai_compatible.client import OpenAICompatibleClient
from app.integrations.openai_compatible.schemas import ChatRequest, EndpointSpec
from app.settings import get_settings
from tests.app.endpoints.fault_server import FaultServer


def ask(text: str) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], max_tokens=8)


def _batches(specs: list[EndpointSpec], per_client: int) -> None:
    """Each spec's client sends its batch at the same time as the others, as pilots would."""
    errors: list[BaseException] = []

    def run(spec: EndpointSpec) -> None:
        try:
            with OpenAICompatibleClient(spec) as client:
                answers = client.chat_many([ask(f"{spec.model} {i}") for i in range(per_client)])
            assert len(answers) == per_client
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(spec,)) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


def test_clients_of_one_host_share_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENDPOINT_MAX_CONCURRENCY_PER_HOST", "3")
    get_settings.cache_clear()
    policy = egress_policy(get_settings())
    assert policy.max_per_host == 3
    with FaultServer(answer_delay_s=0.1, models=("model-a", "model-b")) as server:
        # Two models on one server, each allowed 8 at once: 16 without the host's cap.
        specs = [
            EndpointSpec(base_url=server.base_url, model=name, max_concurrency=8, egress=policy)
            for name in ("model-a", "model-b")
        ]
        _batches(specs, per_client=12)
        assert server.count() == 24
        assert server.max_in_flight == 3, "the host's cap held across both clients"
    get_settings.cache_clear()


def test_another_host_name_has_its_own_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENDPOINT_MAX_CONCURRENCY_PER_HOST", "2")
    get_settings.cache_clear()
    policy = egress_policy(get_settings())
    with FaultServer(answer_delay_s=0.1) as server:
        by_address = EndpointSpec(
            base_url=server.base_url, model="test-model", max_concurrency=8, egress=policy
        )
        by_name = EndpointSpec(
            base_url=server.base_url.replace("127.0.0.1", "localhost"),
            model="test-model",
            max_concurrency=8,
            egress=policy,
        )
        _batches([by_address, by_name], per_client=10)
        # Each name its own 2: the cap is per host as named, and no client exceeds it.
        assert 2 < server.max_in_flight <= 4
    get_settings.cache_clear()


def test_the_cap_is_a_positive_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("ENDPOINT_MAX_CONCURRENCY_PER_HOST", "0")
    get_settings.cache_clear()
    with pytest.raises(ValidationError, match=r"endpoint_max_concurrency_per_host"):
        get_settings()
    get_settings.cache_clear()
