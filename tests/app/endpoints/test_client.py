"""The OpenAI-compatible endpoint client against real HTTP servers.

Fast tests run a fault-injecting server on 127.0.0.1 that plays an OpenAI-compatible API
itself. Tests marked `vllm` talk to a real vLLM server, directly and through the same
fault-injecting server acting as a proxy. Backoff pauses are recorded instead of taken
(`sleep=`), except where a test says otherwise.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app.integrations.openai_compatible.check import check_connection
from app.integrations.openai_compatible.client import MAX_RETRY_AFTER_S, OpenAICompatibleClient
from app.integrations.openai_compatible.exceptions import (
    EndpointAuthError,
    EndpointConnectionError,
    EndpointError,
    EndpointNotFound,
    EndpointProtocolError,
    EndpointRateLimited,
    EndpointRejected,
    EndpointServerError,
    EndpointTimeout,
    EndpointTLSError,
    EndpointUnavailable,
)
from app.integrations.openai_compatible.lora import load_lora_adapter, unload_lora_adapter
from app.integrations.openai_compatible.schemas import ChatAnswer, ChatRequest, EndpointSpec
from tests.app.endpoints.fault_server import (
    CHAT,
    MODELS,
    FaultServer,
    body,
    drop,
    slow,
    status,
)
from tests.conftest import REPO
from tests.serving import free_port
from tests.vllm_server import MAX_MODEL_LEN, VLLMServer

KEY = "sk-test-4f9c2a7e1b8d4c3aa0e5"


class Pauses:
    """A `sleep` that records the pause instead of taking it (thread-safe)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.seconds.append(seconds)


def ask(text: str, max_tokens: int = 16) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], max_tokens=max_tokens)


def spec_for(server: FaultServer, **overrides: object) -> EndpointSpec:
    spec = EndpointSpec(base_url=server.base_url, model="test-model", timeout_s=5.0)
    return replace(spec, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture
def pauses() -> Pauses:
    return Pauses()


def every_message(error: BaseException) -> str:
    """The messages of an error and of everything chained to it, as a traceback shows them."""
    texts = []
    current: BaseException | None = error
    while current is not None:
        texts.append(f"{type(current).__name__}: {current} {current.args!r}")
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


# --- answers ---------------------------------------------------------------------------------


def test_chat_returns_text_usage_and_sends_the_key_as_bearer(fake: FaultServer) -> None:
    with OpenAICompatibleClient(spec_for(fake, api_key=KEY)) as client:
        answer = client.chat(
            ChatRequest([{"role": "user", "content": "what is two and two"}], stop=["\n"])
        )
    assert answer.text == "answer to: what is two and two"
    assert (answer.prompt_tokens, answer.completion_tokens) == (5, 7)
    assert answer.attempts == 1
    assert answer.finish_reason == "stop"
    assert answer.model == "test-model"
    assert answer.latency_ms > 0
    assert fake.seen[0].authorization == f"Bearer {KEY}"
    sent = json.loads(fake.seen[0].body)
    assert sent["temperature"] == 0.0  # greedy by default
    assert sent["stop"] == ["\n"]
    assert sent["messages"] == [{"role": "user", "content": "what is two and two"}]


def test_the_key_is_not_in_the_specs_repr_or_str() -> None:
    spec = EndpointSpec("http://127.0.0.1:9/v1", "m", api_key=KEY)
    assert KEY not in repr(spec)
    assert KEY not in str(spec)


@pytest.mark.parametrize("url", ["localhost:8000/v1", "ftp://host/v1", "http://[::1/v1", " "])
def test_a_base_url_that_cannot_work_is_refused_up_front(url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        EndpointSpec(url, "m")


def test_latency_counts_the_successful_attempt_only(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(slow(0.6), status(503, retry_after="0"))
    client = OpenAICompatibleClient(spec_for(fake, timeout_s=0.3), sleep=pauses)
    started = time.perf_counter()
    answer = client.chat(ask("hi"))
    total_ms = (time.perf_counter() - started) * 1000
    assert answer.attempts == 3
    assert total_ms > 300, "the timed-out first attempt took the timeout"
    assert answer.latency_ms < 250, "the latency is the last attempt's, not the whole call's"


# --- retries ---------------------------------------------------------------------------------


def test_5xx_is_retried_until_it_passes(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(status(500), status(503), status(502))
    answer = OpenAICompatibleClient(spec_for(fake), sleep=pauses).chat(ask("hi"))
    assert answer.attempts == 4
    assert fake.count(CHAT) == 4
    assert len(pauses.seconds) == 3


def test_retry_after_seconds_is_honoured(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(status(429, retry_after="3"), status(503, retry_after="7"))
    answer = OpenAICompatibleClient(spec_for(fake), sleep=pauses).chat(ask("hi"))
    assert answer.attempts == 3
    assert pauses.seconds == [3.0, 7.0]


def test_retry_after_http_date_is_honoured(fake: FaultServer, pauses: Pauses) -> None:
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    fake.add(status(429, retry_after=when))
    OpenAICompatibleClient(spec_for(fake), sleep=pauses).chat(ask("hi"))
    assert len(pauses.seconds) == 1
    assert 3.0 < pauses.seconds[0] <= 5.0  # an HTTP date has whole seconds


def test_retry_after_is_ignored_on_500(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(status(500, retry_after="60"))
    OpenAICompatibleClient(spec_for(fake), sleep=pauses, jitter=lambda ceiling: ceiling).chat(
        ask("hi")
    )
    assert pauses.seconds == [0.5], "500 takes the backoff, not the header"


def test_too_long_a_retry_after_gives_up_at_once(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(status(429, retry_after="3600"))
    with pytest.raises(EndpointRateLimited) as caught:
        OpenAICompatibleClient(spec_for(fake), sleep=pauses).chat(ask("hi"))
    assert "3600 s" in str(caught.value)
    assert f"{MAX_RETRY_AFTER_S:.0f} s" in str(caught.value)
    assert fake.count(CHAT) == 1
    assert pauses.seconds == []


def test_backoff_doubles_up_to_its_cap(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(*[status(500)] * 5)
    client = OpenAICompatibleClient(
        spec_for(fake),
        sleep=pauses,
        jitter=lambda ceiling: ceiling,  # the top of each jitter range
        backoff_base_s=0.5,
        backoff_max_s=3.0,
    )
    assert client.chat(ask("hi")).attempts == 6
    assert pauses.seconds == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_draws_each_pause_below_its_ceiling(fake: FaultServer) -> None:
    fake.add(*[status(503)] * 5)
    pauses = Pauses()
    OpenAICompatibleClient(spec_for(fake), sleep=pauses).chat(ask("hi"))
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0]
    assert len(pauses.seconds) == 5
    assert all(0 <= s <= c for s, c in zip(pauses.seconds, ceilings, strict=True))


def test_real_backoff_pauses_are_taken(fake: FaultServer) -> None:
    """Without an injected sleep the client really waits (an interruptible wait)."""
    fake.add(status(503), status(503))
    client = OpenAICompatibleClient(
        spec_for(fake), backoff_base_s=0.2, jitter=lambda ceiling: ceiling
    )
    started = time.perf_counter()
    assert client.chat(ask("hi")).attempts == 3
    assert time.perf_counter() - started >= 0.6  # 0.2 + 0.4


def test_gives_up_after_max_retries_naming_the_cause(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(*[status(503)] * 10)
    with pytest.raises(EndpointServerError) as caught:
        OpenAICompatibleClient(spec_for(fake, max_retries=2), sleep=pauses).chat(ask("hi"))
    message = str(caught.value)
    assert message.startswith(f"503 Service Unavailable from {fake.base_url}/chat/completions")
    assert "gave up after 3 attempts" in message
    assert "injected 503" in message, "the server's own words are passed on"
    assert fake.count(CHAT) == 3


def test_a_dropped_connection_is_retried(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(drop(), drop())
    answer = OpenAICompatibleClient(spec_for(fake), sleep=pauses).chat(ask("hi"))
    assert answer.attempts == 3
    assert fake.count(CHAT) == 3


def test_dropped_every_time_names_the_drop(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(*[drop()] * 3)
    with pytest.raises(EndpointConnectionError) as caught:
        OpenAICompatibleClient(spec_for(fake, max_retries=2), sleep=pauses).chat(ask("hi"))
    assert "dropped before a full answer" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value)


def test_a_slow_answer_times_out_and_is_retried(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(slow(5.0))
    answer = OpenAICompatibleClient(spec_for(fake, timeout_s=0.3), sleep=pauses).chat(ask("hi"))
    assert answer.attempts == 2
    assert fake.count(CHAT) == 2


def test_slow_every_time_is_a_timeout_error(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(slow(5.0), slow(5.0))
    client = OpenAICompatibleClient(spec_for(fake, timeout_s=0.3, max_retries=1), sleep=pauses)
    with pytest.raises(EndpointTimeout) as caught:
        client.chat(ask("hi"))
    assert f"no answer from {fake.base_url}/chat/completions within 0.3 s" in str(caught.value)


def test_connection_refused_is_retried_then_named(pauses: Pauses) -> None:
    spec = EndpointSpec(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=2)
    with pytest.raises(EndpointConnectionError) as caught:
        OpenAICompatibleClient(spec, sleep=pauses).chat(ask("hi"))
    assert "connection refused" in str(caught.value)
    assert "is the server running" in str(caught.value)
    assert len(pauses.seconds) == 2


# --- errors that are not retried -------------------------------------------------------------


def test_401_is_not_retried_and_says_the_key_was_rejected(pauses: Pauses) -> None:
    with FaultServer(api_key="the-right-key") as server:
        client = OpenAICompatibleClient(spec_for(server, api_key=KEY), sleep=pauses)
        with pytest.raises(EndpointAuthError) as caught:
            client.chat(ask("hi"))
        assert server.count(CHAT) == 1
    assert str(caught.value) == (
        f"401 Unauthorized from {server.base_url}/chat/completions: the API key was rejected"
    )
    assert pauses.seconds == []


def test_401_without_a_key_says_one_is_needed(pauses: Pauses) -> None:
    with FaultServer(api_key="the-right-key") as server:
        with pytest.raises(EndpointAuthError, match="the endpoint needs an API key"):
            OpenAICompatibleClient(spec_for(server), sleep=pauses).chat(ask("hi"))
        assert server.count(CHAT) == 1


def test_403_and_400_are_not_retried(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(status(403), status(400))
    client = OpenAICompatibleClient(spec_for(fake), sleep=pauses)
    with pytest.raises(EndpointAuthError, match="may not use this endpoint or model"):
        client.chat(ask("hi"))
    with pytest.raises(EndpointRejected, match="the server rejected the request"):
        client.chat(ask("hi"))
    assert fake.count(CHAT) == 2
    assert pauses.seconds == []


def test_404_names_the_model_and_is_not_retried(fake: FaultServer, pauses: Pauses) -> None:
    client = OpenAICompatibleClient(spec_for(fake, model="no-such-model"), sleep=pauses)
    with pytest.raises(EndpointNotFound) as caught:
        client.chat(ask("hi"))
    message = str(caught.value)
    assert "404 Not Found" in message
    assert "wrong base URL or model name (asked for model 'no-such-model')" in message
    assert "Valid aliases: test-model" in message
    assert fake.count(CHAT) == 1


def test_a_body_that_is_not_json_is_named(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(body(b"<html><body>Welcome to the dashboard</body></html>", "text/html"))
    with pytest.raises(EndpointProtocolError) as caught:
        OpenAICompatibleClient(spec_for(fake), sleep=pauses).chat(ask("hi"))
    message = str(caught.value)
    assert "a body that is not JSON (text/html" in message
    assert "usually ending in /v1" in message
    assert fake.count(CHAT) == 1


def test_json_without_choices_is_named(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(body(b'{"object": "chat.completion", "choices": []}', "application/json"))
    fake.add(body(b'{"id": "x"}', "application/json"))
    client = OpenAICompatibleClient(spec_for(fake), sleep=pauses)
    for _ in range(2):
        with pytest.raises(EndpointProtocolError, match=r"not a chat completion.*choices"):
            client.chat(ask("hi"))
    assert fake.count(CHAT) == 2


def test_tls_to_a_plain_http_port_is_named(fake: FaultServer, pauses: Pauses) -> None:
    spec = EndpointSpec(fake.base_url.replace("http://", "https://"), "test-model")
    with pytest.raises(EndpointTLSError) as caught:
        OpenAICompatibleClient(spec, sleep=pauses).chat(ask("hi"))
    assert "TLS handshake" in str(caught.value)
    assert "use http://" in str(caught.value)
    assert pauses.seconds == [], "a TLS failure is not retried"


def test_an_unknown_host_is_not_retried(pauses: Pauses) -> None:
    spec = EndpointSpec("http://no-such-host.invalid/v1", "m")
    with pytest.raises(
        EndpointError, match=r"cannot resolve the host name 'no-such-host\.invalid'"
    ):
        OpenAICompatibleClient(spec, sleep=pauses).chat(ask("hi"))
    assert pauses.seconds == []


# --- the key never leaks ---------------------------------------------------------------------


def test_the_key_is_in_no_error_and_no_log_line(
    caplog: pytest.LogCaptureFixture, pauses: Pauses
) -> None:
    caplog.set_level(logging.DEBUG)  # everything the app's own loggers say
    errors: list[EndpointError] = []
    with FaultServer(api_key=KEY) as server:
        # Right key: retries (logged), then server errors until the breaker opens.
        client = OpenAICompatibleClient(
            spec_for(server, api_key=KEY, max_retries=2, max_consecutive_failures=2),
            sleep=pauses,
        )
        server.add(status(429, retry_after="0"), drop())
        assert client.chat(ask("hi")).attempts == 3
        server.add(*[status(503)] * 3, *[status(500)] * 3)
        for _ in range(2):  # the second opens the breaker
            with pytest.raises(EndpointError) as caught:
                client.chat(ask("hi"))
            errors.append(caught.value)
        assert isinstance(errors[-1], EndpointUnavailable)
        # A wrong key the server echoes back in its 401 body.
        wrong = f"{KEY}-wrong"
        with pytest.raises(EndpointAuthError) as rejected:
            OpenAICompatibleClient(spec_for(server, api_key=wrong), sleep=pauses).chat(ask("x"))
        errors.append(rejected.value)
        # The key echoed in other answers (the server's words are passed on, the key blanked).
        server.add(status(400, message=f"bad request from {KEY}"))
        server.add(body(b"not json " + KEY.encode(), "text/plain"))
        fresh = OpenAICompatibleClient(spec_for(server, api_key=KEY), sleep=pauses)
        with pytest.raises(EndpointRejected) as echoed:
            fresh.chat(ask("x"))
        assert "bad request from [api key]" in str(echoed.value)
        with pytest.raises(EndpointProtocolError) as garbled:
            fresh.chat(ask("x"))
        errors.extend([echoed.value, garbled.value])
        report = check_connection(spec_for(server, api_key=wrong))
    assert server.seen[0].authorization == f"Bearer {KEY}", "the key was sent"
    assert "attempt 1 of 3 failed" in caplog.text, "retries are logged"
    # httpx and httpcore log URLs (and headers, at DEBUG): held at WARNING by the client.
    assert "HTTP Request" not in caplog.text
    assert not [r for r in caplog.records if r.name.split(".")[0] in ("httpx", "httpcore")]
    assert not report.ok
    for error in errors:
        assert KEY not in every_message(error)
    assert KEY not in report.message
    assert KEY not in caplog.text
    assert all(KEY not in str(r.args) for r in caplog.records)


# --- the circuit breaker ---------------------------------------------------------------------


def test_the_breaker_opens_after_n_failures_in_a_row(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(*[status(500)] * 20)
    client = OpenAICompatibleClient(
        spec_for(fake, max_retries=1, max_consecutive_failures=3), sleep=pauses
    )
    for _ in range(2):
        with pytest.raises(EndpointServerError):
            client.chat(ask("hi"))
    assert not client.breaker_open
    with pytest.raises(EndpointUnavailable) as caught:
        client.chat(ask("hi"))
    message = str(caught.value)
    assert message.startswith(f"{fake.base_url} looks unavailable: 3 requests in a row failed")
    assert "500 Internal Server Error" in message, "it names the last cause"
    assert isinstance(caught.value.__cause__, EndpointServerError)
    assert client.breaker_open
    assert fake.count(CHAT) == 6  # 3 requests, 2 attempts each
    with pytest.raises(EndpointUnavailable):
        client.chat(ask("hi"))
    assert fake.count(CHAT) == 6, "an open breaker sends nothing"


def test_a_success_resets_the_count(fake: FaultServer, pauses: Pauses) -> None:
    fake.add(status(500), status(500))
    client = OpenAICompatibleClient(
        spec_for(fake, max_retries=0, max_consecutive_failures=3), sleep=pauses
    )
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(client.chat(ask("hi")).text)
        except EndpointServerError:
            outcomes.append("failed")
    fake.add(status(500), status(500))
    for _ in range(2):
        with pytest.raises(EndpointServerError):
            client.chat(ask("hi"))
    assert outcomes == ["failed", "failed", "answer to: hi"]
    assert not client.breaker_open, "4 failures, but never 3 in a row"


def test_chat_many_stops_submitting_when_the_breaker_opens(pauses: Pauses) -> None:
    with FaultServer(answer_delay_s=0.05) as server:
        server.add(*[status(500)] * 40)
        client = OpenAICompatibleClient(
            spec_for(server, max_retries=0, max_consecutive_failures=3, max_concurrency=2),
            sleep=pauses,
        )
        done: list[ChatAnswer | EndpointError] = []
        with pytest.raises(EndpointUnavailable, match="3 requests in a row failed"):
            client.chat_many(
                [ask(f"q{i}") for i in range(20)],
                on_done=lambda index, outcome: done.append(outcome),
                return_exceptions=True,
            )
        # The third failure opens it; at most the one other request in flight then follows.
        assert server.count(CHAT) <= 4
        assert len(done) <= 2
        assert all(isinstance(outcome, EndpointServerError) for outcome in done)


def test_chat_many_raises_the_first_failure_and_cancels_the_rest(pauses: Pauses) -> None:
    with FaultServer(api_key="the-right-key", answer_delay_s=0.05) as server:
        client = OpenAICompatibleClient(
            spec_for(server, api_key=KEY, max_concurrency=2), sleep=pauses
        )
        with pytest.raises(EndpointAuthError):
            client.chat_many([ask(f"q{i}") for i in range(20)])
        # The two in flight, and at most one more each before the batch is called off.
        assert server.count(CHAT) <= 4


def test_chat_many_can_return_a_failure_in_its_place(pauses: Pauses) -> None:
    with FaultServer(max_prompt_words=5) as server:
        client = OpenAICompatibleClient(spec_for(server), sleep=pauses)
        texts = ["short", "one two three four five six seven", "also short"]
        outcomes = client.chat_many([ask(t) for t in texts], return_exceptions=True)
    assert isinstance(outcomes[0], ChatAnswer) and outcomes[0].text == "answer to: short"
    assert isinstance(outcomes[1], EndpointRejected)
    assert "maximum context length is 5 tokens" in str(outcomes[1])
    assert isinstance(outcomes[2], ChatAnswer) and outcomes[2].text == "answer to: also short"


# --- concurrency -----------------------------------------------------------------------------


def test_chat_many_bounds_concurrency_and_keeps_the_order(pauses: Pauses) -> None:
    with FaultServer(answer_delay_s=0.2) as server:
        client = OpenAICompatibleClient(spec_for(server, max_concurrency=4), sleep=pauses)
        finished: list[int] = []
        texts = [f"question {i}" for i in range(16)]
        started = time.perf_counter()
        answers = client.chat_many(
            [ask(t) for t in texts], on_done=lambda index, outcome: finished.append(index)
        )
        elapsed = time.perf_counter() - started
    assert [a.text for a in answers] == [f"answer to: {t}" for t in texts]
    assert sorted(finished) == list(range(16))
    assert server.max_in_flight == 4, "the pool filled, and never went beyond max_concurrency"
    assert elapsed < 16 * 0.2 / 2, "the requests overlapped"


def test_threads_calling_chat_share_the_bound(pauses: Pauses) -> None:
    with FaultServer(answer_delay_s=0.15) as server:
        client = OpenAICompatibleClient(spec_for(server, max_concurrency=2), sleep=pauses)
        threads = [threading.Thread(target=client.chat, args=(ask("hi"),)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert server.count(CHAT) == 8
    assert server.max_in_flight == 2


# --- the connection check --------------------------------------------------------------------


def test_check_connection_reports_model_latency_and_context(fake: FaultServer) -> None:
    report = check_connection(spec_for(fake))
    assert report.ok, report.message
    assert report.model == "test-model"
    assert report.context_window == 4096
    assert report.latency_ms is not None and report.latency_ms > 0
    assert report.served_models == ("test-model",)
    assert "context window 4096 tokens" in report.message
    assert json.loads(fake.seen[-1].body)["max_tokens"] == 1


def test_check_connection_lists_the_served_models_for_a_wrong_name() -> None:
    with FaultServer(models=("alpha", "beta")) as server:
        report = check_connection(spec_for(server, model="gamma"))
    assert not report.ok
    assert "404 Not Found" in report.message
    assert "asked for model 'gamma'" in report.message
    assert report.message.endswith("The server serves: alpha, beta")


def test_check_connection_names_a_wrong_base_url(fake: FaultServer) -> None:
    report = check_connection(replace(spec_for(fake), base_url=f"http://127.0.0.1:{fake.port}"))
    assert not report.ok
    assert "404 Not Found" in report.message
    assert "base URL is most likely wrong" in report.message


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("401", "401 Unauthorized"),
        ("refused", "connection refused"),
        ("timeout", "no answer from"),
        ("tls", "TLS handshake"),
        ("html", "not JSON"),
    ],
)
def test_check_connection_says_what_is_wrong(setup: str, expected: str) -> None:
    with FaultServer(api_key="the-right-key" if setup == "401" else None) as server:
        spec = spec_for(server, api_key="the-right-key", timeout_s=0.3)
        if setup == "401":
            spec = replace(spec, api_key=KEY)
        elif setup == "refused":
            spec = replace(spec, base_url=f"http://127.0.0.1:{free_port()}/v1")
        elif setup == "timeout":
            server.add(slow(5.0, path=MODELS))
        elif setup == "tls":
            spec = replace(spec, base_url=server.base_url.replace("http://", "https://"))
        elif setup == "html":
            server.add(body(b"<html>login</html>", "text/html", path=MODELS))
        started = time.perf_counter()
        report = check_connection(spec)
        assert time.perf_counter() - started < 3, "a check answers quickly"
    assert not report.ok
    assert expected in report.message
    assert KEY not in report.message


# --- a real vLLM server --------------------------------------------------------------------


def vllm_spec(server: VLLMServer, **overrides: object) -> EndpointSpec:
    spec = EndpointSpec(base_url=server.base_url, model=server.model, timeout_s=120.0)
    return replace(spec, **overrides)  # type: ignore[arg-type]


QUESTIONS = [
    "What is the capital of France?",
    "Name a primary colour.",
    "What is two plus two? Answer with a number.",
    "Which planet is known as the red planet?",
    "Give one word that means happy.",
    "What do bees make?",
    "How many days are in a week?",
    "What is the opposite of cold?",
    "Name an animal that barks.",
    "What colour is the sky on a clear day?",
    "What is frozen water called?",
    "Which is bigger, an elephant or a mouse?",
]


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_greedy_chat_returns_text_and_usage(vllm_server: VLLMServer) -> None:
    with OpenAICompatibleClient(vllm_spec(vllm_server)) as client:
        first = client.chat(ask("What is the capital of France?"))
        second = client.chat(ask("What is the capital of France?"))
    assert "Paris" in first.text
    assert second.text == first.text, "temperature 0 is greedy"
    assert first.prompt_tokens is not None and first.prompt_tokens > 5
    assert first.completion_tokens is not None and 0 < first.completion_tokens <= 16
    assert first.finish_reason in ("stop", "length")
    assert first.model == vllm_server.model


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_answers_survive_faults_through_a_proxy(vllm_server: VLLMServer) -> None:
    requests = [ask(q) for q in QUESTIONS]
    with OpenAICompatibleClient(vllm_spec(vllm_server)) as direct:
        expected = direct.chat_many(requests)
    faults = [
        status(429, retry_after="0"),
        status(500),
        status(503, retry_after="0"),
        drop(),
        slow(60.0),
        status(502),
        drop(),
    ]
    pauses = Pauses()
    with FaultServer(upstream=vllm_server.base_url) as proxy:
        proxy.add(*faults)
        # More retries than faults: whichever request the faults hit, every one gets through.
        spec = replace(vllm_spec(vllm_server), base_url=proxy.base_url, timeout_s=10.0)
        with OpenAICompatibleClient(replace(spec, max_retries=len(faults)), sleep=pauses) as c:
            answers = c.chat_many(requests)
        assert proxy.faults_left() == 0
        assert proxy.count(CHAT) == len(requests) + len(faults)
    assert sum(a.attempts for a in answers) == len(requests) + len(faults)
    assert len(pauses.seconds) == len(faults)
    # The answers are the real ones, in order: the prompt sizes match the direct answers'.
    assert [a.prompt_tokens for a in answers] == [a.prompt_tokens for a in expected]
    assert all(a.text for a in answers)


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_check_connection_reports_model_and_context(vllm_server: VLLMServer) -> None:
    report = check_connection(vllm_spec(vllm_server))
    assert report.ok, report.message
    assert report.model == vllm_server.model
    assert report.context_window == MAX_MODEL_LEN
    assert report.served_models == (vllm_server.model,)


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_wrong_model_name_lists_the_served_one(vllm_server: VLLMServer) -> None:
    report = check_connection(vllm_spec(vllm_server, model="SmolLM2-135M"))
    assert not report.ok
    assert "404 Not Found" in report.message
    assert f"The server serves: {vllm_server.model}" in report.message


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_loads_and_unloads_a_lora_adapter_at_runtime(
    vllm_server: VLLMServer, tiny_lora_adapter: Path
) -> None:
    spec = vllm_spec(vllm_server)
    load_lora_adapter(spec, "tiny", tiny_lora_adapter)
    try:
        with OpenAICompatibleClient(spec) as client:
            assert "tiny" in [m.id for m in client.list_models()]
        adapter = replace(spec, model="tiny")
        with OpenAICompatibleClient(adapter) as client:
            answer = client.chat(ask("What is the capital of France?"))
        assert answer.model == "tiny"
        assert answer.text
        with pytest.raises(EndpointRejected, match=r"cannot load LoRA adapter 'tiny'.*already"):
            load_lora_adapter(spec, "tiny", tiny_lora_adapter)
    finally:
        unload_lora_adapter(spec, "tiny")
    with OpenAICompatibleClient(spec) as client:
        assert [m.id for m in client.list_models()] == [vllm_server.model]
    with pytest.raises(EndpointNotFound, match=r"cannot unload 'tiny'.*cannot be found"):
        unload_lora_adapter(spec, "tiny")
    missing = tiny_lora_adapter.parent / "no-such-adapter"
    with pytest.raises(EndpointNotFound, match="must hold a PEFT adapter"):
        load_lora_adapter(spec, "ghost", missing)


# The modules the web app and the worker import; the others come along with them.
CLIENT_MODULES = (
    "app.integrations.openai_compatible.check",
    "app.integrations.openai_compatible.client",
    "app.integrations.openai_compatible.lora",
)


def test_the_client_imports_only_the_standard_library_httpx_and_pydantic() -> None:
    """The web app and the worker both import it: nothing of either may come along."""
    result = subprocess.run(
        [sys.executable, "-c", f"import sys, {', '.join(CLIENT_MODULES)}; print(*sys.modules)"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    modules = set(result.stdout.split())
    packages = {name.split(".")[0] for name in modules}
    heavy = {"fastapi", "starlette", "sqlalchemy", "celery", "torch", "transformers", "worker"}
    assert packages & heavy == set()
    assert {"httpx", "pydantic"} <= packages
    assert sorted(m for m in modules if m.split(".")[0] == "app") == sorted(
        [
            "app",
            "app.integrations",
            "app.integrations.egress",
            "app.integrations.host_slots",
            "app.integrations.openai_compatible",
            *CLIENT_MODULES,
            "app.integrations.openai_compatible.exceptions",
            "app.integrations.openai_compatible.parsing",
            "app.integrations.openai_compatible.schemas",
        ]
    )
