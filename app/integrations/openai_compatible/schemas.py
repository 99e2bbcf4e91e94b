"""What a caller configures and sends to an OpenAI-compatible endpoint, what comes back, and
the wire shapes of its answers (validated by `parsing`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field

from app.integrations.egress import EMBEDDED, EgressPolicy


@dataclass(frozen=True)
class EndpointSpec:
    """Where and how to reach one model. `base_url` is the API root, e.g. `http://host:8000/v1`.

    `timeout_s` bounds connecting and each wait for data (httpx's per-phase timeout); the
    total of one request is bounded by `egress.deadline_s`. `egress` says where requests may
    go: the embedded default lets them reach this machine and its network, the shared mode
    only what the operator allowed (`app.endpoints.service.egress_policy` builds it from the
    settings). Prices are per million tokens, for cost estimates; None = unknown.
    """

    base_url: str
    model: str
    # repr=False keeps the key out of repr() and str(), and so out of logs and tracebacks.
    api_key: str | None = field(default=None, repr=False)
    max_concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 5
    max_consecutive_failures: int = 5
    context_window: int | None = None
    input_price_per_1m: float | None = None
    output_price_per_1m: float | None = None
    egress: EgressPolicy = field(default=EMBEDDED, repr=False)

    def __post_init__(self) -> None:
        base = self.base_url.strip().rstrip("/")
        # The message never repeats the URL: it may carry a password.
        problem = self.egress.url_problem(base)
        if problem is not None:
            raise ValueError(problem)
        object.__setattr__(self, "base_url", base)
        if not self.model.strip():
            raise ValueError("the model name is empty")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if self.max_consecutive_failures < 1:
            raise ValueError("max_consecutive_failures must be at least 1")
        if self.context_window is not None and self.context_window < 1:
            raise ValueError("context_window must be positive")

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def shown_base_url(self) -> str:
        """The base URL as messages show it: without a user:password part."""
        return shown_url(self.base_url)


class ChatMessage(TypedDict):
    role: str
    content: str


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion. temperature 0 asks for greedy decoding (the pilots' default)."""

    messages: Sequence[ChatMessage]
    max_tokens: int = 256
    stop: Sequence[str] = ()
    temperature: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "stop", tuple(self.stop))
        if not self.messages:
            raise ValueError("a chat request needs at least one message")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be 0 or more")

    def payload(self, model: str) -> dict[str, object]:
        body: dict[str, object] = {
            "model": model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.stop:
            body["stop"] = list(self.stop)
        return body


@dataclass(frozen=True)
class ChatAnswer:
    """What came back. Token counts are the server's `usage` (None when it sends none).

    `latency_ms` is the wall time of the attempt that succeeded, from sending the request to
    having read the whole answer; failed attempts and backoff pauses before it are not in it
    (`attempts` says how many tries it took), so it measures the endpoint, not our retries.
    """

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float
    attempts: int
    finish_reason: str | None
    model: str | None = None


@dataclass(frozen=True)
class ServedModel:
    id: str
    # vLLM reports `max_model_len`; most hosted APIs report nothing.
    context_window: int | None


@dataclass(frozen=True)
class ConnectionReport:
    """The outcome of `check_connection`, ready to show: `message` says what happened."""

    ok: bool
    message: str
    model: str | None = None
    latency_ms: float | None = None
    context_window: int | None = None
    served_models: tuple[str, ...] = ()


# --- the answers' wire shapes ---------------------------------------------------------------


class CompletionUsage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class CompletionMessage(BaseModel):
    content: str | None = None


class CompletionChoice(BaseModel):
    message: CompletionMessage
    finish_reason: str | None = None


class Completion(BaseModel):
    choices: list[CompletionChoice] = Field(min_length=1)
    usage: CompletionUsage | None = None
    model: str | None = None


class ModelInfo(BaseModel):
    id: str
    max_model_len: int | None = None


class ModelList(BaseModel):
    data: list[ModelInfo]


def shown_url(url: str) -> str:
    """The URL without a user:password part, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an invalid URL)"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))
