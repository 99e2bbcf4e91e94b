"""A client for OpenAI-compatible chat endpoints: vLLM, hosted APIs, TGI, Ollama's `/v1`.

Failure policy, in one place:

* Retried, with exponential backoff and full jitter, or after the server's `Retry-After` on
  429 and 503: 429, 5xx, refused or dropped connections, timeouts. These pass.
* Not retried, raised at once with a message that names the cause: 401/403 (the key), 404
  (the base URL or the model name), other 4xx (the request itself), TLS failures, unknown
  host names, answers that are not an OpenAI chat completion, redirects (never followed),
  answers over the size cap, destinations the egress policy refuses. Sending them again
  cannot help.
* Every request goes through the spec's egress policy (`app.integrations.egress`): where it may
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

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from types import TracebackType
from typing import Literal, TypeVar, overload

import httpx

from app.integrations.egress import EgressRefused, EgressTransport, request_deadline
from app.integrations.host_slots import HOST_SLOTS, full_jitter, host_of
from app.integrations.openai_compatible.exceptions import (
    EndpointError,
    EndpointProtocolError,
    EndpointRefused,
    EndpointTimeout,
    EndpointUnavailable,
)
from app.integrations.openai_compatible.parsing import (
    BASE_URL_HINT,
    parse,
    size_text,
    status_error,
    transport_error,
)
from app.integrations.openai_compatible.schemas import (
    ChatAnswer,
    ChatRequest,
    Completion,
    EndpointSpec,
    ModelList,
    ServedModel,
    shown_url,
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


class _Cancelled(Exception):
    """A queued or retrying request was called off because its batch had already failed."""


# --- the client -----------------------------------------------------------------------------


T = TypeVar("T")
OnDone = Callable[[int, ChatAnswer | EndpointError], None]


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
            response, _ = self._send("GET", url, None, not_found=BASE_URL_HINT)
            listing = parse(response, ModelList, url, "a model list", self.spec.api_key)
            return [ServedModel(m.id, m.max_model_len) for m in listing.data]

        models, _ = self._call(attempt, self._idle)
        return models

    # -- the machinery --

    def _chat(self, request: ChatRequest, cancel: threading.Event) -> ChatAnswer:
        url = self.spec.url("chat/completions")
        payload = request.payload(self.spec.model)
        not_found = f"wrong base URL or model name (asked for model {self.spec.model!r})"

        def attempt() -> tuple[Completion, float]:
            response, latency_ms = self._send("POST", url, payload, not_found=not_found)
            completion = parse(response, Completion, url, "a chat completion", self.spec.api_key)
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
                    raise given_up(error, number) from error
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
        with self._slots, HOST_SLOTS.hold(host_of(url), limit=egress.max_per_host):
            started = self._clock()
            with request_deadline(egress.deadline_s) as deadline:
                try:
                    with self._http.stream(method, url, json=body) as streamed:
                        response = self._read_capped(streamed, url)
                except EgressRefused as refused:
                    raise EndpointRefused(
                        f"{shown_url(url)} was not contacted: {refused}", url=url
                    ) from None
                except httpx.HTTPError as exc:
                    if deadline.expired and isinstance(exc, httpx.TimeoutException):
                        raise EndpointTimeout(
                            f"no answer from {shown_url(url)} within {egress.deadline_s:g} s, "
                            "the limit on one whole request (however slowly it arrives)",
                            url=url,
                        ) from exc
                    raise transport_error(exc, url, self.spec.timeout_s) from exc
            latency_ms = (self._clock() - started) * 1000.0
        if response.is_redirect:
            # Followed, a redirect would take the request wherever the server says, past the
            # checks on the URL the user registered; where it points is not repeated either.
            raise EndpointProtocolError(
                f"{shown_url(url)} answered {response.status_code} (a redirect, which is not "
                "followed): use the URL it redirects to as the base URL",
                url=url,
                status=response.status_code,
            )
        if response.is_error:
            raise status_error(response, url, self.spec.api_key, not_found=not_found)
        return response, latency_ms

    def _read_capped(self, streamed: httpx.Response, url: str) -> httpx.Response:
        """The whole answer, at most `egress.max_answer_bytes` of it, as a read response."""
        cap = self.spec.egress.max_answer_bytes
        too_large = EndpointProtocolError(
            f"{shown_url(url)} answered {streamed.status_code} with a body over "
            f"{size_text(cap)}, the limit on one answer; nothing of it was used",
            url=url,
            status=streamed.status_code,
        )
        encoding = streamed.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise EndpointProtocolError(
                f"{shown_url(url)} answered {streamed.status_code} with a compressed body "
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


def given_up(error: EndpointError, attempts: int) -> EndpointError:
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
