"""Answering a prompting arm's test prompts through an OpenAI-compatible endpoint.

The same prompts the in-process model reads, sent as chat messages with greedy decoding and
the same stop rule. Latency is each request's own wall time; tokens come from the response's
`usage` and cost from the model's prices. Every answer is kept in an `AnswerCache` as it
arrives, so a pilot that is re-queued after a crash does not pay for it twice.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from app.domain.metrics import PriceRow
from app.domain.records import ArmModel, Prediction, Progress, ProgressCallback
from app.integrations.openai_compatible.client import OpenAICompatibleClient
from app.integrations.openai_compatible.exceptions import EndpointError
from app.integrations.openai_compatible.schemas import ChatAnswer, ChatRequest, EndpointSpec
from worker.pilots.prompt_rendering import Prompt


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float


class AnswerCache(Protocol):
    def get(self, key: str) -> CachedAnswer | None: ...

    def put(self, key: str, answer: CachedAnswer) -> None: ...


@dataclass
class MemoryCache:
    """A cache for one process (the command line); the worker keeps answers in SQL."""

    answers: dict[str, CachedAnswer] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> CachedAnswer | None:
        with self.lock:
            return self.answers.get(key)

    def put(self, key: str, answer: CachedAnswer) -> None:
        with self.lock:
            self.answers[key] = answer


@dataclass(frozen=True)
class EndpointRuntime:
    """A prompting model reached over HTTP, for one pilot."""

    spec: EndpointSpec
    model: ArmModel  # what the manifest records about it
    cache: AnswerCache

    @property
    def price(self) -> PriceRow | None:
        if self.spec.input_price_per_1m is None or self.spec.output_price_per_1m is None:
            return None
        return PriceRow(
            name=self.spec.model,
            input_per_million=self.spec.input_price_per_1m,
            output_per_million=self.spec.output_price_per_1m,
        )


def request_key(spec: EndpointSpec, request: ChatRequest) -> str:
    """A stable hash of what was asked of which model (never the API key). Answers are kept
    per pilot, and a pilot asks one model, so the server's address is not part of it."""
    payload = json.dumps(request.payload(spec.model), sort_keys=True).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class EndpointAnswers:
    predictions: list[Prediction]
    notes: list[str]


def chat_requests(
    prompts: Sequence[Prompt], *, max_new_tokens: int, stop_at_newline: bool
) -> list[ChatRequest]:
    """One greedy request per prompt: its chat messages, with the task's stop rule."""
    return [
        ChatRequest(
            [{"role": m["role"], "content": m["content"]} for m in prompt.messages],
            max_tokens=max_new_tokens,
            stop=("\n",) if stop_at_newline else (),
        )
        for prompt in prompts
    ]


def answer_with_endpoint(
    runtime: EndpointRuntime,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int,
    stop_at_newline: bool,
    progress: ProgressCallback,
) -> EndpointAnswers:
    """One greedy answer per prompt, in order; cached answers are not asked again.

    A request that still fails after its retries counts as an empty (wrong) answer and is
    noted; when failures run together the client's breaker opens and the arm fails with the
    cause (`EndpointUnavailable`)."""
    requests = chat_requests(
        prompts, max_new_tokens=max_new_tokens, stop_at_newline=stop_at_newline
    )
    keys = [request_key(runtime.spec, request) for request in requests]
    answers: dict[int, CachedAnswer] = {}
    for index, key in enumerate(keys):
        cached = runtime.cache.get(key)
        if cached is not None:
            answers[index] = cached
    missing = [i for i in range(len(requests)) if i not in answers]
    total, started = len(requests), time.monotonic()
    done = [len(answers)]
    lock = threading.Lock()
    progress(Progress("asking endpoint", done[0], total, None))

    failures: dict[int, str] = {}

    def on_done(position: int, answer: ChatAnswer | EndpointError) -> None:
        index = missing[position]
        if isinstance(answer, EndpointError):
            with lock:
                failures[index] = str(answer)
            return
        kept = CachedAnswer(
            text=answer.text,
            prompt_tokens=answer.prompt_tokens or 0,
            completion_tokens=answer.completion_tokens or 0,
            latency_ms=answer.latency_ms,
        )
        runtime.cache.put(keys[index], kept)
        with lock:
            answers[index] = kept
            done[0] += 1
            asked = done[0] - (total - len(missing))
            elapsed = time.monotonic() - started
            eta = elapsed / asked * (total - done[0]) if asked else None
            progress(Progress("asking endpoint", done[0], total, eta))

    if missing:
        with OpenAICompatibleClient(runtime.spec) as client:
            client.chat_many(
                [requests[i] for i in missing], on_done=on_done, return_exceptions=True
            )
    predictions = [
        Prediction(
            index=i,
            prediction=answers[i].text.strip() if i in answers else "",
            latency_ms=answers[i].latency_ms if i in answers else 0.0,
            prompt_tokens=answers[i].prompt_tokens if i in answers else 0,
            output_tokens=answers[i].completion_tokens if i in answers else 0,
        )
        for i in range(total)
    ]
    notes = [
        f"Asked {runtime.spec.model} at {runtime.spec.shown_base_url}; "
        f"{total - len(missing)} of {total} answers came from earlier attempts."
    ]
    if failures:
        first = failures[min(failures)]
        notes.append(
            f"{len(failures)} of {total} requests failed after retries and count as wrong "
            f"answers (first: {first})."
        )
    return EndpointAnswers(predictions, notes)
