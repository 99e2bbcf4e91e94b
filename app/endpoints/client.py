"""A client for OpenAI-compatible chat endpoints: vLLM, hosted APIs, TGI, Ollama's `/v1`.

Failure policy, in one place:

* Retried, with exponential backoff and full jitter, or after the server's `Retry-After` on
  429 and 503: 429, 5xx, refused or dropped connections, timeouts. These pass.
* Not retried, raised at once with a message that names the cause: 401/403 (the key), 404
  (the base URL or the model name), other 4xx (the request itself), TLS failures, unknown
  host names, answers that are not an OpenAI chat completion, redirects (never followed),
  answers over the size cap, destinations the egress policy refuses. Sending them again
  cannot help.
* Every request goes through the spec's egress policy (`app.endpoints.egress`): where it may
  connect, checked on the resolved address; at most `max_answer_bytes` of answer, read as a
  stream; at most `deadline_s` in all, however slowly the server drips its answer.
* At most `egress.max_per_host` (ENDPOINT_MAX_CONCURRENCY_PER_HOST) requests in flight to
  one host from this process (`HOST_SLOTS`), whichever clients send them: each model's own
  `max_concurrency` (up to 64) bounds one client only, and several pilots, models and users
  naming one host would otherwise add up to a flood of it.
* A circuit breaker: after `max_consecutive_failures` requests in a row have failed (each
  after its retries) the client raises `EndpointUnavailable`, naming the last cause, and sends
  nothing more; `chat_many` stops submitting and cancels what has not started. A pilot run
  then fails in seconds with the reason instead of grinding through every example.

The API key travels only in the `Authorization` header. Error messages and log lines are
built from the status, the URL (without any user:password part) and the server's own error
text from a JSON error object with the key blanked out, so the key never reaches a log, a page
or a stored error. Other answer bodies are never quoted: an endpoint that is not what it seems
(an internal service, a login page) must not have its content read back through our messages.
"""

from __future__ import annotations

import email.utils
import http
import json
import logging
import math
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC
from types import TracebackType
from typing import Literal, TypedDict, TypeVar, overload
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, Field, ValidationError

from app.endpoints.egress import (
    EMBEDDED,
    EgressPolicy,
    EgressRefused,
    EgressTransport,
    classify,
    literal_address,
    request_deadline,
)

log = logging.getLogger(__name__)

# httpx and httpcore log every request's URL at INFO (and headers at DEBUG): a user's endpoint
# URL is theirs, not the server log's. Set here, where both the web app and the worker import
# the client before sending anything; their warnings still show.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

# A server that asks for a longer pause than this is treated as down for now: waiting that
# long inside one request would stall a whole pilot run without saying why.
MAX_RETRY_AFTER_S = 120.0


# --- what the caller configures and sends ---------------------------------------------------


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
        return _shown_url(self.base_url)


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


# --- errors ---------------------------------------------------------------------------------


class EndpointError(Exception):
    """A request to an endpoint failed. str() names the cause in words a user can act on.

    `detail` is the server's own error text (the key blanked out), when it sent one.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        detail: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s


class EndpointAuthError(EndpointError):
    """401 or 403: the key is missing, wrong, or may not use this model."""


class EndpointNotFound(EndpointError):
    """404: the base URL or the model name is wrong."""


class EndpointRejected(EndpointError):
    """Another 4xx: the server refused this request (too long a prompt, a bad parameter)."""


class EndpointProtocolError(EndpointError):
    """The answer is not what an OpenAI-compatible server sends (not JSON, no `choices`)."""


class EndpointTLSError(EndpointError):
    """The TLS handshake failed: an untrusted certificate, or https:// to a plain-HTTP port."""


class EndpointRateLimited(EndpointError):
    """429, still there after the retries (or the server asked for too long a pause)."""

    retryable = True


class EndpointServerError(EndpointError):
    """5xx, still there after the retries."""

    retryable = True


class EndpointConnectionError(EndpointError):
    """No connection, or it was dropped before a full answer, after the retries."""

    retryable = True


class EndpointTimeout(EndpointConnectionError):
    """No answer within `timeout_s`, after the retries."""


class EndpointRefused(EndpointError):
    """The egress policy refused the destination: nothing was sent to it."""


class EndpointUnavailable(EndpointError):
    """The circuit breaker is open: too many requests in a row failed; nothing more is sent."""


class _Cancelled(Exception):
    """A queued or retrying request was called off because its batch had already failed."""


# --- the client -----------------------------------------------------------------------------


T = TypeVar("T")
OnDone = Callable[[int, ChatAnswer | EndpointError], None]


class HostSlots:
    """At most `limit` requests in flight to one host at once, across every client in this
    process (threads of one pilot, pilots side by side in a worker, the web's checks).

    Keyed by host name, not port: the servers on one machine share it. A host's semaphore
    lives while anything holds or waits for it and goes when idle, so the map stays as small
    as the set of hosts in use; its limit is the one its first request brought (every spec
    of a deployment carries the same policy), and a changed one applies once the host is idle.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # host -> (its semaphore, how many hold it or wait for it)
        self._hosts: dict[str, tuple[threading.BoundedSemaphore, int]] = {}

    @contextmanager
    def hold(self, host: str, *, limit: int) -> Iterator[None]:
        with self._lock:
            semaphore, users = self._hosts.get(host) or (threading.BoundedSemaphore(limit), 0)
            self._hosts[host] = (semaphore, users + 1)
        try:
            with semaphore:
                yield
        finally:
            with self._lock:
                semaphore, users = self._hosts[host]
                if users == 1:
                    del self._hosts[host]
                else:
                    self._hosts[host] = (semaphore, users - 1)


HOST_SLOTS = HostSlots()


def _host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def full_jitter(ceiling_s: float) -> float:
    """A pause drawn uniformly from [0, ceiling]: spreads the retries of many clients apart."""
    return random.uniform(0.0, ceiling_s)


class OpenAICompatibleClient:
    """Chat completions against one endpoint, with retries, a breaker and bounded concurrency.

    One pooled httpx connection set is shared by all threads; at most `max_concurrency`
    requests are in flight at once, whether they come from `chat_many` or from several
    threads calling `chat`. `sleep` (None: an interruptible wait), `clock` and `jitter` are
    parameters so tests can record the pauses instead of taking them.

    Requests go through `spec.egress` (`EgressTransport`). `transport` replaces it only with
    an `httpx.MockTransport`, for tests that script answers in-process: that opens no socket,
    so there is nothing for the policy to guard, and nothing else can get around it.
    """

    def __init__(
        self,
        spec: EndpointSpec,
        *,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        jitter: Callable[[float], float] = full_jitter,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        transport: httpx.MockTransport | None = None,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.MockTransport):
            raise TypeError("only an httpx.MockTransport may replace the egress transport")
        self.spec = spec
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        headers = {
            "Accept": "application/json",
            # The size cap counts the bytes that arrive: a compressed answer could inflate a
            # thousandfold past it, so none is asked for (and one that comes anyway is refused).
            "Accept-Encoding": "identity",
            "User-Agent": "pathpilot-endpoint-client",
        }
        if spec.api_key:
            headers["Authorization"] = f"Bearer {spec.api_key}"
        limits = httpx.Limits(
            max_connections=spec.max_concurrency,
            max_keepalive_connections=spec.max_concurrency,
        )
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(spec.timeout_s),
            limits=limits,
            transport=transport or EgressTransport(spec.egress, limits=limits),
            follow_redirects=False,
        )
        # The address the last answer came from (None before one, or with a MockTransport).
        self.last_peer: str | None = None
        self._slots = threading.BoundedSemaphore(spec.max_concurrency)
        self._lock = threading.Lock()
        self._failures_in_a_row = 0
        self._breaker_message: str | None = None
        self._idle = threading.Event()  # never set: `chat` outside a batch is never cancelled

    def __enter__(self) -> OpenAICompatibleClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def breaker_open(self) -> bool:
        with self._lock:
            return self._breaker_message is not None

    # -- public calls --

    def chat(self, request: ChatRequest) -> ChatAnswer:
        """One chat completion, retried as the module docstring says."""
        return self._chat(request, self._idle)

    @overload
    def chat_many(
        self,
        requests: Sequence[ChatRequest],
        *,
        on_done: OnDone | None = None,
        return_exceptions: Literal[False] = False,
    ) -> list[ChatAnswer]: ...

    @overload
    def chat_many(
        self,
        requests: Sequence[ChatRequest],
        *,
        on_done: OnDone | None = None,
        return_exceptions: Literal[True],
    ) -> list[ChatAnswer | EndpointError]: ...

    def chat_many(
        self,
        requests: Sequence[ChatRequest],
        *,
        on_done: OnDone | None = None,
        return_exceptions: bool = False,
    ) -> list[ChatAnswer] | list[ChatAnswer | EndpointError]:
        """Answers in the order of `requests`, at most `max_concurrency` at a time.

        `on_done(index, outcome)` runs in the calling thread as each request finishes (for
        progress). By default the first failed request (after its retries) stops the batch:
        nothing more is submitted, what has not started is cancelled, and its error is raised.
        With `return_exceptions=True` a failed request's error takes its place in the list and
        the others go on -- until the breaker opens, which stops the batch the same way and
        raises `EndpointUnavailable`.
        """
        outcomes = self._run_many(requests, on_done, return_exceptions)
        if return_exceptions:
            return outcomes
        # Without return_exceptions a failure has raised, so every outcome is an answer.
        return [outcome for outcome in outcomes if isinstance(outcome, ChatAnswer)]

    def list_models(self) -> list[ServedModel]:
        """The model ids the server serves (`GET /models`), with context windows if known."""
        url = self.spec.url("models")

        def attempt() -> list[ServedModel]:
            response, _ = self._send("GET", url, None, not_found=_BASE_URL_HINT)
            listing = _parse(response, _ModelList, url, "a model list", self.spec.api_key)
            return [ServedModel(m.id, m.max_model_len) for m in listing.data]

        models, _ = self._call(attempt, self._idle)
        return models

    # -- the machinery --

    def _chat(self, request: ChatRequest, cancel: threading.Event) -> ChatAnswer:
        url = self.spec.url("chat/completions")
        payload = request.payload(self.spec.model)
        not_found = f"wrong base URL or model name (asked for model {self.spec.model!r})"

        def attempt() -> tuple[_Completion, float]:
            response, latency_ms = self._send("POST", url, payload, not_found=not_found)
            completion = _parse(response, _Completion, url, "a chat completion", self.spec.api_key)
            return completion, latency_ms

        (completion, latency_ms), attempts = self._call(attempt, cancel)
        choice = completion.choices[0]
        usage = completion.usage
        return ChatAnswer(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_ms=latency_ms,
            attempts=attempts,
            finish_reason=choice.finish_reason,
            model=completion.model,
        )

    def _call(self, attempt: Callable[[], T], cancel: threading.Event) -> tuple[T, int]:
        """`attempt` with retries, under the breaker; returns (result, attempts made)."""
        try:
            result, attempts = self._retrying(attempt, cancel)
        except EndpointUnavailable:
            raise  # the breaker was already open: not one more failure of this request
        except EndpointError as error:
            unavailable = self._count_failure(error)
            if unavailable is None:
                raise
            raise unavailable from error
        with self._lock:
            self._failures_in_a_row = 0
        return result, attempts

    def _retrying(self, attempt: Callable[[], T], cancel: threading.Event) -> tuple[T, int]:
        tries = self.spec.max_retries + 1
        for number in range(1, tries + 1):
            if cancel.is_set():
                raise _Cancelled
            self._raise_if_open()
            try:
                return attempt(), number
            except EndpointError as error:
                if not error.retryable:
                    raise
                pause = self._pause(error, number)
                if number == tries or pause is None:
                    raise _given_up(error, number) from error
                log.warning(
                    "attempt %d of %d failed: %s; retrying in %.1f s", number, tries, error, pause
                )
            self._wait(pause, cancel)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _pause(self, error: EndpointError, number: int) -> float | None:
        """Seconds before the next try; None when the server asks for too long a pause."""
        if error.retry_after_s is not None:
            return error.retry_after_s if error.retry_after_s <= MAX_RETRY_AFTER_S else None
        ceiling = min(self._backoff_max_s, self._backoff_base_s * 2 ** (number - 1))
        return self._jitter(ceiling)

    def _wait(self, seconds: float, cancel: threading.Event) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            cancel.wait(seconds)  # returns early when the batch is called off

    def _send(
        self, method: str, url: str, body: dict[str, object] | None, *, not_found: str
    ) -> tuple[httpx.Response, float]:
        """One HTTP exchange; returns (response, wall ms) or raises an EndpointError.

        The answer is read as a stream up to `egress.max_answer_bytes`, within
        `egress.deadline_s` in all; a redirect is reported, not followed."""
        egress = self.spec.egress
        # The client's own slot first, then the host's: a request waiting for its host holds
        # only its own client's slot. The wait is not counted in the request's latency.
        with self._slots, HOST_SLOTS.hold(_host_of(url), limit=egress.max_per_host):
            started = self._clock()
            with request_deadline(egress.deadline_s) as deadline:
                try:
                    with self._http.stream(method, url, json=body) as streamed:
                        response = self._read_capped(streamed, url)
                except EgressRefused as refused:
                    raise EndpointRefused(
                        f"{_shown_url(url)} was not contacted: {refused}", url=url
                    ) from None
                except httpx.HTTPError as exc:
                    if deadline.expired and isinstance(exc, httpx.TimeoutException):
                        raise EndpointTimeout(
                            f"no answer from {_shown_url(url)} within {egress.deadline_s:g} s, "
                            "the limit on one whole request (however slowly it arrives)",
                            url=url,
                        ) from exc
                    raise _transport_error(exc, url, self.spec.timeout_s) from exc
            latency_ms = (self._clock() - started) * 1000.0
        if response.is_redirect:
            # Followed, a redirect would take the request wherever the server says, past the
            # checks on the URL the user registered; where it points is not repeated either.
            raise EndpointProtocolError(
                f"{_shown_url(url)} answered {response.status_code} (a redirect, which is not "
                "followed): use the URL it redirects to as the base URL",
                url=url,
                status=response.status_code,
            )
        if response.is_error:
            raise _status_error(response, url, self.spec.api_key, not_found=not_found)
        return response, latency_ms

    def _read_capped(self, streamed: httpx.Response, url: str) -> httpx.Response:
        """The whole answer, at most `egress.max_answer_bytes` of it, as a read response."""
        cap = self.spec.egress.max_answer_bytes
        too_large = EndpointProtocolError(
            f"{_shown_url(url)} answered {streamed.status_code} with a body over "
            f"{_size(cap)}, the limit on one answer; nothing of it was used",
            url=url,
            status=streamed.status_code,
        )
        encoding = streamed.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise EndpointProtocolError(
                f"{_shown_url(url)} answered {streamed.status_code} with a compressed body "
                f"({encoding[:40]}) although none was asked for; an OpenAI-compatible server "
                "sends plain JSON",
                url=url,
                status=streamed.status_code,
            )
        declared = streamed.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        # A MockTransport's answer is already in memory: nothing is left to stream.
        raw = [streamed.content] if streamed.is_stream_consumed else streamed.iter_raw()
        for chunk in raw:
            size += len(chunk)
            if size > cap:
                raise too_large
            chunks.append(chunk)
        network = streamed.extensions.get("network_stream")
        peer = network.get_extra_info("server_addr") if network is not None else None
        self.last_peer = str(peer[0]) if isinstance(peer, tuple) and peer else None
        headers = [(k, v) for k, v in streamed.headers.multi_items() if k != "content-encoding"]
        return httpx.Response(
            streamed.status_code,
            headers=headers,
            content=b"".join(chunks),
            request=streamed.request,
        )

    def _count_failure(self, error: EndpointError) -> EndpointUnavailable | None:
        with self._lock:
            if self._breaker_message is None:
                self._failures_in_a_row += 1
                if self._failures_in_a_row >= self.spec.max_consecutive_failures:
                    self._breaker_message = (
                        f"{self.spec.shown_base_url} looks unavailable: "
                        f"{self._failures_in_a_row} requests in a row failed, the last with: "
                        f"{error}. No more requests are sent to it."
                    )
                    log.error("%s", self._breaker_message)
            message = self._breaker_message
        if message is None:
            return None
        return EndpointUnavailable(message, url=error.url, status=error.status)

    def _raise_if_open(self) -> None:
        with self._lock:
            message = self._breaker_message
        if message is not None:
            raise EndpointUnavailable(message, url=self.spec.base_url)

    def _run_many(
        self,
        requests: Sequence[ChatRequest],
        on_done: OnDone | None,
        return_exceptions: bool,
    ) -> list[ChatAnswer | EndpointError]:
        done: dict[int, ChatAnswer | EndpointError] = {}
        cancel = threading.Event()
        pool = ThreadPoolExecutor(self.spec.max_concurrency, thread_name_prefix="endpoint")
        futures: dict[Future[ChatAnswer], int] = {}
        try:
            for index, request in enumerate(requests):
                futures[pool.submit(self._chat, request, cancel)] = index
            for future in as_completed(futures):
                outcome = _outcome(future, return_exceptions)
                if outcome is None:
                    continue  # cancelled because the batch failed; its cause is raised
                done[futures[future]] = outcome
                if on_done is not None:
                    on_done(futures[future], outcome)
        except BaseException:
            cancel.set()  # running requests stop before their next try
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return [done[index] for index in range(len(requests))]


def _outcome(
    future: Future[ChatAnswer], return_exceptions: bool
) -> ChatAnswer | EndpointError | None:
    try:
        return future.result()
    except _Cancelled:
        return None
    except EndpointUnavailable:
        raise
    except EndpointError as error:
        if return_exceptions:
            return error
        raise


# --- connection check and LoRA adapters -------------------------------------------------------


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


def load_lora_adapter(spec: EndpointSpec, name: str, path: str | os.PathLike[str]) -> None:
    """Ask a vLLM server to load a PEFT adapter directory at runtime, served as model `name`.

    `path` is read by the server, on its own machine. Needs a server started with
    `--enable-lora` and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True."""
    _lora_call(
        spec,
        "load_lora_adapter",
        {"lora_name": name, "lora_path": os.fspath(path)},
        f"cannot load LoRA adapter {name!r} from {os.fspath(path)}",
        " (the path is read on the server's machine and must hold a PEFT adapter: "
        "adapter_config.json and the weights)",
    )


def unload_lora_adapter(spec: EndpointSpec, name: str) -> None:
    """Ask a vLLM server to drop a runtime-loaded adapter; it leaves `/models`."""
    _lora_call(spec, "unload_lora_adapter", {"lora_name": name}, f"cannot unload {name!r}", "")


def _lora_call(
    spec: EndpointSpec, path: str, body: dict[str, object], failing: str, hint: str
) -> None:
    # Not retried: a second load after a lost answer would fail with "already loaded".
    url = spec.url(path)
    with OpenAICompatibleClient(replace(spec, max_retries=0)) as client:
        try:
            client._send("POST", url, body, not_found="")
        except EndpointNotFound as error:
            if error.detail in (None, "Not Found"):  # the route itself is missing
                raise EndpointNotFound(
                    f"{failing}: {_shown_url(url)} does not exist; start vLLM with --enable-lora "
                    "and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (and check the base URL)",
                    url=url,
                    status=404,
                    detail=error.detail,
                ) from error
            raise EndpointNotFound(
                f"{failing}: {error.detail}{hint}",
                url=url,
                status=404,
                detail=error.detail,
            ) from error
        except EndpointRejected as error:
            raise EndpointRejected(
                f"{failing}: {error.detail or error}", url=url, status=error.status
            ) from error
        except EndpointServerError as error:
            # vLLM answers 500 for an adapter it cannot take (a rank above --max-lora-rank,
            # layers its base lacks): say what was being loaded and the server's own words.
            raise EndpointServerError(
                f"{failing}: {error.detail or error}",
                url=url,
                status=error.status,
                detail=error.detail,
            ) from error


# --- answers and errors ---------------------------------------------------------------------


class _Usage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message
    finish_reason: str | None = None


class _Completion(BaseModel):
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None
    model: str | None = None


class _ModelInfo(BaseModel):
    id: str
    max_model_len: int | None = None


class _ModelList(BaseModel):
    data: list[_ModelInfo]


M = TypeVar("M", bound=BaseModel)

_BASE_URL_HINT = "wrong base URL (an OpenAI-compatible API usually ends in /v1)"


def _parse(response: httpx.Response, model: type[M], url: str, what: str, key: str | None) -> M:
    where = f"{_shown_url(url)} answered {response.status_code}"
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        # The body is not quoted: whatever answered is not the API, and its page (a login
        # form, an internal service) is not for reading back through this message.
        kind = " ".join(response.headers.get("content-type", "no content type").split())[:60]
        raise EndpointProtocolError(
            f"{where} with a body that is not JSON ({kind}): is this the API's base URL "
            "(usually ending in /v1) and not a web page or a proxy's error?",
            url=url,
            status=response.status_code,
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "the body" for e in exc.errors()})
        raise EndpointProtocolError(
            f"{where} with JSON that is not {what} (missing or malformed: {', '.join(fields)}); "
            "is it an OpenAI-compatible API?",
            url=url,
            status=response.status_code,
        ) from None


def _status_error(
    response: httpx.Response, url: str, key: str | None, *, not_found: str
) -> EndpointError:
    status = response.status_code
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = response.reason_phrase or "error"
    head = f"{status} {reason} from {_shown_url(url)}"
    detail = _server_detail(response, key)
    said = f" (the server said: {detail})" if detail else ""
    if status == 401:
        # The server's words are left out: some echo part of the key back.
        cause = "the API key was rejected" if key else "the endpoint needs an API key"
        return EndpointAuthError(f"{head}: {cause}", url=url, status=status)
    if status == 403:
        return EndpointAuthError(
            f"{head}: the API key may not use this endpoint or model{said}",
            url=url,
            status=status,
            detail=detail,
        )
    if status == 404:
        return EndpointNotFound(
            f"{head}: {not_found}{said}" if not_found else f"{head}{said}",
            url=url,
            status=status,
            detail=detail,
        )
    if status == 429:
        return EndpointRateLimited(
            f"{head}: the rate limit was hit; lower max_concurrency or raise the limit{said}",
            url=url,
            status=status,
            detail=detail,
            retry_after_s=_retry_after_s(response.headers.get("retry-after")),
        )
    if status >= 500:
        retry_after = _retry_after_s(response.headers.get("retry-after")) if status == 503 else None
        return EndpointServerError(
            f"{head}: the server failed or is overloaded{said}",
            url=url,
            status=status,
            detail=detail,
            retry_after_s=retry_after,
        )
    return EndpointRejected(
        f"{head}: the server rejected the request{said}", url=url, status=status, detail=detail
    )


def _server_detail(response: httpx.Response, key: str | None) -> str | None:
    """The server's own error text, from a JSON error object only: OpenAI/vLLM
    `{"error": {"message"}}` or FastAPI `{"detail"}`. A body of any other shape is not an
    API's error and is not quoted (see the module docstring)."""
    try:
        data: object = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    text = _error_text(data)
    if text is None:
        return None
    text = " ".join(_redact(text, key).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _error_text(data: object) -> str | None:
    if isinstance(data, dict):
        for name in ("error", "detail", "message"):
            value = data.get(name)
            if isinstance(value, str):
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
    return None


def _transport_error(exc: httpx.HTTPError, url: str, timeout_s: float) -> EndpointError:
    shown = _shown_url(url)
    if isinstance(exc, httpx.TimeoutException):
        return EndpointTimeout(f"no answer from {shown} within {timeout_s:g} s", url=url)
    tls = _find_cause(exc, ssl.SSLError)
    if tls is not None:
        reason = getattr(tls, "reason", None) or type(tls).__name__
        return EndpointTLSError(
            f"the TLS handshake with {shown} failed ({reason}): if the server speaks plain HTTP "
            "use http://; if its certificate comes from a private CA, the CA must be trusted "
            "on this machine",
            url=url,
        )
    if _find_cause(exc, socket.gaierror) is not None:
        host = urlsplit(url).hostname
        return EndpointError(
            f"cannot resolve the host name {host!r} of {shown}: check the base URL", url=url
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return EndpointError(f"{shown} is not a usable URL: check the base URL", url=url)
    if isinstance(exc, httpx.ConnectError):
        refused = _find_cause(exc, ConnectionRefusedError) is not None or "refused" in str(exc)
        why = "connection refused" if refused else str(exc) or type(exc).__name__
        return EndpointConnectionError(
            f"cannot connect to {shown} ({why}): is the server running, and the base URL's "
            "host and port right?",
            url=url,
        )
    return EndpointConnectionError(
        f"the connection to {shown} was dropped before a full answer "
        f"({str(exc) or type(exc).__name__})",
        url=url,
    )


def _given_up(error: EndpointError, attempts: int) -> EndpointError:
    """The same error, saying how often it was tried (or why no retry followed)."""
    if error.retry_after_s is not None and error.retry_after_s > MAX_RETRY_AFTER_S:
        note = (
            f"; it asks to wait {error.retry_after_s:.0f} s before trying again, longer than "
            f"the {MAX_RETRY_AFTER_S:.0f} s this client waits, so it gave up"
        )
    elif attempts > 1:
        note = f" (gave up after {attempts} attempts)"
    else:
        note = ""  # no retries were allowed
    return type(error)(
        f"{error}{note}",
        url=error.url,
        status=error.status,
        detail=error.detail,
        retry_after_s=error.retry_after_s,
    )


def _retry_after_s(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


E = TypeVar("E", bound=BaseException)


def _find_cause(exc: BaseException, kind: type[E]) -> E | None:
    for link in _chain(exc):
        if isinstance(link, kind):
            return link
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1024 / 1024:g} MiB" if n_bytes >= 1024 * 1024 else f"{n_bytes} bytes"


def _redact(text: str, key: str | None) -> str:
    return text.replace(key, "[api key]") if key else text


def _shown_url(url: str) -> str:
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
