"""*Check connection*: one quick, unretried probe of an endpoint, answered as a report to show."""

from __future__ import annotations

from dataclasses import replace

from app.integrations.egress import classify, literal_address
from app.integrations.openai_compatible.client import OpenAICompatibleClient
from app.integrations.openai_compatible.exceptions import EndpointError, EndpointNotFound
from app.integrations.openai_compatible.schemas import (
    ChatRequest,
    ConnectionReport,
    EndpointSpec,
    ServedModel,
)


def check_connection(spec: EndpointSpec, *, timeout_s: float = 30.0) -> ConnectionReport:
    """One quick probe: `GET /models` (the served ids and, from vLLM, the context window),
    then a 1-token chat completion for the latency. Never raises for endpoint trouble: the
    report's `message` says what is wrong. Nothing is retried, so an answer comes fast, and
    each request ends within `timeout_s` in all. A key sent over plain http:// to a public
    address gets a warning in the message."""
    timeout_s = min(spec.timeout_s, timeout_s)
    probe = replace(
        spec,
        max_retries=0,
        max_concurrency=1,
        timeout_s=timeout_s,
        max_consecutive_failures=10,
        egress=replace(spec.egress, deadline_s=min(spec.egress.deadline_s, timeout_s)),
    )
    with OpenAICompatibleClient(probe) as client:
        report = _probe(client, spec)
        warning = plain_http_key_warning(spec, client.last_peer)
    if warning:
        report = replace(report, message=f"{report.message} {warning}")
    return report


def plain_http_key_warning(spec: EndpointSpec, peer: str | None) -> str | None:
    """A warning when the key went over plain http:// to a public address: anyone on the way
    can read it. On a private network (a vLLM beside the app) that is the usual set-up."""
    if not spec.api_key or not spec.base_url.startswith("http://") or peer is None:
        return None
    address = literal_address(peer)
    if address is None or classify(address) != "public":
        return None
    return (
        "Warning: the API key is sent over plain http:// to a public address, where anyone "
        "on the way can read it; use https:// if the server offers it."
    )


def _probe(client: OpenAICompatibleClient, spec: EndpointSpec) -> ConnectionReport:
    served: list[ServedModel] | None
    try:
        served = client.list_models()
    except EndpointNotFound:
        served = None  # some servers have no /models; the chat request decides
    except EndpointError as error:
        return ConnectionReport(ok=False, message=str(error))
    ids = tuple(model.id for model in served or ())
    context = next((m.context_window for m in served or () if m.id == spec.model), None)
    try:
        answer = client.chat(ChatRequest([{"role": "user", "content": "Hi"}], max_tokens=1))
    except EndpointNotFound as error:
        message = str(error)
        if served is None:
            message += (
                ". Neither /models nor /chat/completions exists there, so the base URL is "
                "most likely wrong (an OpenAI-compatible API usually ends in /v1)"
            )
        elif ids and spec.model not in ids:
            message += f". The server serves: {', '.join(ids)}"
        return ConnectionReport(ok=False, message=message, served_models=ids)
    except EndpointError as error:
        return ConnectionReport(ok=False, message=str(error), served_models=ids)
    model = answer.model or spec.model
    window = f"context window {context} tokens" if context else "context window not reported"
    return ConnectionReport(
        ok=True,
        message=(
            f"Connected to {spec.shown_base_url}: model {model!r} answered in "
            f"{answer.latency_ms:.0f} ms; {window}."
        ),
        model=model,
        latency_ms=answer.latency_ms,
        context_window=context,
        served_models=ids,
    )
