<<<<<<< HEAD
"""The models a pilot may run on: local model directories and OpenAI-compatible endpoints."""
=======
"""OpenAI-compatible endpoints (vLLM, hosted APIs, TGI, Ollama's `/v1`): the client the web
app's "Check connection" and the worker's pilot arms share.

Only the standard library, httpx and pydantic are imported here, so either side can use it
without pulling in the other's framework."""

from app.endpoints.client import (
    ChatAnswer,
    ChatMessage,
    ChatRequest,
    ConnectionReport,
    EndpointAuthError,
    EndpointConnectionError,
    EndpointError,
    EndpointNotFound,
    EndpointProtocolError,
    EndpointRateLimited,
    EndpointRejected,
    EndpointServerError,
    EndpointSpec,
    EndpointTimeout,
    EndpointTLSError,
    EndpointUnavailable,
    OpenAICompatibleClient,
    ServedModel,
    check_connection,
    load_lora_adapter,
    unload_lora_adapter,
)

__all__ = [
    "ChatAnswer",
    "ChatMessage",
    "ChatRequest",
    "ConnectionReport",
    "EndpointAuthError",
    "EndpointConnectionError",
    "EndpointError",
    "EndpointNotFound",
    "EndpointProtocolError",
    "EndpointRateLimited",
    "EndpointRejected",
    "EndpointServerError",
    "EndpointSpec",
    "EndpointTLSError",
    "EndpointTimeout",
    "EndpointUnavailable",
    "OpenAICompatibleClient",
    "ServedModel",
    "check_connection",
    "load_lora_adapter",
    "unload_lora_adapter",
]
>>>>>>> vllm-infra
