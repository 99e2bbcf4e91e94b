"""Asking the judge model: grade every arm's answers, compare arms pairwise in both orders.

The judge is an OpenAI-compatible endpoint (`EndpointRuntime`, as for the prompting arms).
Requests are greedy and go through the same answer cache as the arms' own endpoint answers,
so a re-queued pilot asks only what it has not been answered yet. A reply that is not the
JSON asked for is asked again once, with a reminder of the format; one still malformed is
counted as unreadable, never dropped (`app.domain.judging` says how replies are read).

An arm is judged as soon as it finishes, against each arm finished before it, so its judge
metrics are stored with the arm and progress keeps flowing while the judge works.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from app.domain.bootstrap import bootstrap_metric
from app.domain.judging import (
    GRADING_REMINDER,
    JUDGE_AGREEMENT,
    JUDGE_COST,
    JUDGE_PASS,
    JUDGE_SCORE,
    JUDGE_UNREADABLE,
    PAIRWISE_REMINDER,
    PREFERENCE_MAX_TOKENS,
    VERDICT_MAX_TOKENS,
    JudgeMessage,
    Preference,
    Verdict,
    agreement,
    combine_orders,
    grading_messages,
    judge_cost,
    judge_statistics,
    pairwise_messages,
    parse_preference,
    parse_verdict,
    reference_metric,
    reference_scores,
    spearman,
    verdict_arrays,
    with_reminder,
)
from app.domain.metrics import Statistic
from app.domain.records import (
    ArmJudging,
    JudgeResults,
    MetricValue,
    PairResult,
    PairTally,
    PilotData,
    Progress,
    ProgressCallback,
)
from app.integrations.openai_compatible.client import OpenAICompatibleClient
from app.integrations.openai_compatible.exceptions import EndpointError
from app.integrations.openai_compatible.schemas import ChatAnswer, ChatRequest
from worker.pilots.endpoint_answers import CachedAnswer, EndpointRuntime, request_key

logger = logging.getLogger(__name__)
T = TypeVar("T")

GRADING_STAGE = "judging"
PAIRWISE_STAGE = "judging pairs"


@dataclass
class Reply(Generic[T]):
    """What one question to the judge came to, over its one retry."""

    value: T | None
    retried: bool = False
    failed: str | None = None  # the request's error, when no reply came at all
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Asked:
    """What one pilot's judging took: each distinct request once, whoever needed it."""

    requests: int = 0  # sent to the endpoint in this attempt
    reused: int = 0  # answered in an earlier attempt of the pilot: kept, not paid again
    shared: int = 0  # the same request again in this attempt (two arms, one answer)
    tokens: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (prompt, output)

    def record(self, key: str, answer: CachedAnswer) -> None:
        self.tokens[key] = (answer.prompt_tokens, answer.completion_tokens)


def ask_cached(
    runtime: EndpointRuntime,
    requests: Sequence[ChatRequest],
    asked: Asked,
    on_answer: Callable[[], None],
) -> list[CachedAnswer | EndpointError]:
    """One outcome per request, in order; kept answers are not asked again, new ones are
    kept as they arrive. Raises `EndpointUnavailable` when the client's breaker opens."""
    keys = [request_key(runtime.spec, request) for request in requests]
    outcomes: dict[int, CachedAnswer | EndpointError] = {}
    for index, key in enumerate(keys):
        cached = runtime.cache.get(key)
        if cached is not None:
            outcomes[index] = cached
            if key in asked.tokens:
                asked.shared += 1
            else:
                asked.reused += 1
                asked.record(key, cached)
            on_answer()
    missing = [i for i in range(len(requests)) if i not in outcomes]
    lock = threading.Lock()

    def on_done(position: int, answer: ChatAnswer | EndpointError) -> None:
        index = missing[position]
        if isinstance(answer, EndpointError):
            outcome: CachedAnswer | EndpointError = answer
        else:
            outcome = CachedAnswer(
                text=answer.text,
                prompt_tokens=answer.prompt_tokens or 0,
                completion_tokens=answer.completion_tokens or 0,
                latency_ms=answer.latency_ms,
            )
            runtime.cache.put(keys[index], outcome)
        with lock:
            if isinstance(outcome, CachedAnswer):
                asked.record(keys[index], outcome)
            outcomes[index] = outcome
        on_answer()

    if missing:
        asked.requests += len(missing)
        with OpenAICompatibleClient(runtime.spec) as client:
            client.chat_many(
                [requests[i] for i in missing], on_done=on_done, return_exceptions=True
            )
    return [outcomes[i] for i in range(len(requests))]


def ask_with_retry(
    runtime: EndpointRuntime,
    conversations: Sequence[list[JudgeMessage]],
    *,
    max_tokens: int,
    parse: Callable[[str], T | None],
    reminder: str,
    asked: Asked,
    progress: ProgressCallback,
    stage: str,
) -> list[Reply[T]]:
    """Ask each conversation once; ask a malformed reply again once, with `reminder`."""
    total = [len(conversations)]
    done = [0]
    started = time.monotonic()
    lock = threading.Lock()

    def on_answer() -> None:
        with lock:
            done[0] += 1
            elapsed = time.monotonic() - started
            eta = elapsed / done[0] * (total[0] - done[0]) if done[0] else None
            progress(Progress(stage, done[0], total[0], eta))

    progress(Progress(stage, 0, total[0], None))
    first = ask_cached(
        runtime,
        [ChatRequest(messages, max_tokens=max_tokens) for messages in conversations],
        asked,
        on_answer,
    )
    replies: list[Reply[T]] = []
    again: list[int] = []
    for index, outcome in enumerate(first):
        if isinstance(outcome, EndpointError):
            replies.append(Reply(None, failed=str(outcome)))
            continue
        value = parse(outcome.text)
        replies.append(Reply(value, False, None, outcome.prompt_tokens, outcome.completion_tokens))
        if value is None:
            again.append(index)
    if not again:
        return replies
    with lock:
        total[0] += len(again)
    retry_requests = [
        ChatRequest(
            with_reminder(conversations[i], _text(first[i]), reminder), max_tokens=max_tokens
        )
        for i in again
    ]
    second = ask_cached(runtime, retry_requests, asked, on_answer)
    for index, outcome in zip(again, second, strict=True):
        reply = replies[index]
        reply.retried = True
        if isinstance(outcome, EndpointError):
            reply.failed = str(outcome)
            continue
        reply.value = parse(outcome.text)
        reply.prompt_tokens += outcome.prompt_tokens
        reply.completion_tokens += outcome.completion_tokens
    return replies


def _text(outcome: CachedAnswer | EndpointError) -> str:
    return outcome.text if isinstance(outcome, CachedAnswer) else ""


@dataclass
class ArmVerdicts:
    """What the judge adds to one arm: bootstrappable statistics, plain metrics, notes."""

    statistics: dict[str, Statistic] = field(default_factory=dict)
    # Per test item, NaN where the verdict was unreadable: comparisons between arms use only
    # the items both have a readable verdict for (app.domain.comparison).
    item_scores: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: list[MetricValue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class PilotJudge:
    """The judge for one pilot: grades each arm as it finishes and compares it with the arms
    finished before it; `results()` gives the pilot-level record."""

    def __init__(self, runtime: EndpointRuntime, data: PilotData, indices: np.ndarray) -> None:
        self.runtime = runtime
        self.data = data
        self.indices = indices
        self.reference_metric = reference_metric(data.task)
        self.asked = Asked()
        self.arms: list[ArmJudging] = []
        self.pairs: list[PairTally] = []
        self.errors: list[str] = []
        self._answers: dict[str, list[str]] = {}  # judged arms' answers, in run order
        self._scored: list[tuple[int, float]] = []  # (1-5 score, reference value), pooled

    @property
    def _targets(self) -> list[str]:
        return [example.target for example in self.data.test]

    def judge_arm(
        self, arm: str, answers: Sequence[str], progress: ProgressCallback
    ) -> ArmVerdicts:
        """Grade `answers` (one per test item), then compare them with each earlier arm's.

        The judge never fails an arm: an endpoint that stops answering is recorded as the
        judge's error, and the arm keeps its other metrics."""
        added = ArmVerdicts()
        try:
            self._grade(arm, list(answers), progress, added)
        except Exception as error:  # the arm's own result must survive the judge
            logger.exception("judging arm %s failed", arm)
            self.errors.append(f"{arm}: the judge could not grade this arm ({error})")
            return added
        try:
            self._compare(arm, list(answers), progress)
        except Exception as error:
            logger.exception("pairwise judging of arm %s failed", arm)
            self.errors.append(f"{arm}: the judge could not compare this arm ({error})")
        self._answers[arm] = list(answers)
        return added

    def _grade(
        self, arm: str, answers: list[str], progress: ProgressCallback, added: ArmVerdicts
    ) -> None:
        task = self.data.task
        conversations = [
            grading_messages(
                task,
                source=example.input,
                instruction=example.instruction,
                reference=example.target,
                answer=answer,
            )
            for example, answer in zip(self.data.test, answers, strict=True)
        ]
        replies = ask_with_retry(
            self.runtime,
            conversations,
            max_tokens=VERDICT_MAX_TOKENS,
            parse=parse_verdict,
            reminder=GRADING_REMINDER,
            asked=self.asked,
            progress=progress,
            stage=GRADING_STAGE,
        )
        verdicts: list[Verdict | None] = [reply.value for reply in replies]
        reference = reference_scores(task, answers, self._targets)
        rho = agreement(verdicts, reference.tolist())
        prompt = sum(reply.prompt_tokens for reply in replies)
        completion = sum(reply.completion_tokens for reply in replies)
        cost = judge_cost(prompt, completion, self.runtime.price)
        failed = [reply.failed for reply in replies if reply.failed]
        record = ArmJudging(
            arm=arm,
            verdicts=len(replies),
            unreadable=sum(reply.value is None for reply in replies),
            failed_requests=len(failed),
            retried=sum(reply.retried for reply in replies),
            agreement=rho,
            cost_usd=cost,
            prompt_tokens=prompt,
            completion_tokens=completion,
        )
        self.arms.append(record)
        self._scored.extend(
            (verdict.score, float(value))
            for verdict, value in zip(verdicts, reference, strict=True)
            if verdict is not None
        )
        n_items = len(replies)
        added.statistics = judge_statistics(verdicts)
        if added.statistics:
            scores, passes = verdict_arrays(verdicts)
            added.item_scores = {JUDGE_SCORE: scores, JUDGE_PASS: passes}
        for name, statistic in added.statistics.items():
            interval = bootstrap_metric(statistic, n_items, indices=self.indices)
            added.metrics.append(MetricValue(name, interval.value, interval.low, interval.high))
        added.metrics.append(MetricValue(JUDGE_UNREADABLE, float(record.unreadable)))
        if rho is not None:
            added.metrics.append(MetricValue(JUDGE_AGREEMENT, rho))
        if cost is not None:
            added.metrics.append(MetricValue(JUDGE_COST, cost))
        note = (
            f"Judge {self.runtime.model.model_id}: {record.unreadable_line}; "
            f"{record.retried} malformed replies were asked again."
        )
        if failed:
            note += f" {len(failed)} requests failed after retries (first: {failed[0]})."
        added.notes.append(note)

    def _compare(self, arm: str, answers: list[str], progress: ProgressCallback) -> None:
        """This arm (A of each pair) against every arm judged before it, in both orders."""
        task = self.data.task
        for earlier, earlier_answers in self._answers.items():
            tally = PairTally(arm_a=arm, arm_b=earlier)
            asked: list[int] = []
            conversations: list[list[JudgeMessage]] = []
            for index, example in enumerate(self.data.test):
                mine, theirs = answers[index], earlier_answers[index]
                if mine.strip() == theirs.strip():
                    # The same text: any preference could only come from its position.
                    tally.add(PairResult.tie)
                    tally.identical += 1
                    continue
                asked.append(index)
                for first, second in ((mine, theirs), (theirs, mine)):
                    conversations.append(
                        pairwise_messages(
                            task,
                            source=example.input,
                            instruction=example.instruction,
                            reference=example.target,
                            answer_a=first,
                            answer_b=second,
                        )
                    )
            replies: list[Reply[Preference]] = []
            if conversations:
                replies = ask_with_retry(
                    self.runtime,
                    conversations,
                    max_tokens=PREFERENCE_MAX_TOKENS,
                    parse=parse_preference,
                    reminder=PAIRWISE_REMINDER,
                    asked=self.asked,
                    progress=progress,
                    stage=PAIRWISE_STAGE,
                )
            for position in range(len(asked)):
                shown_first, shown_second = replies[2 * position], replies[2 * position + 1]
                result = combine_orders(shown_first.value, shown_second.value)
                tally.add(result)
                if result is PairResult.tie and shown_first.value == shown_second.value != "tie":
                    tally.disagreements += 1
            tally.prompt_tokens = sum(reply.prompt_tokens for reply in replies)
            tally.completion_tokens = sum(reply.completion_tokens for reply in replies)
            tally.cost_usd = judge_cost(
                tally.prompt_tokens, tally.completion_tokens, self.runtime.price
            )
            self.pairs.append(tally)

    @property
    def graded(self) -> set[str]:
        """Arms the judge graded with at least one readable verdict."""
        return {record.arm for record in self.arms if record.unreadable < record.verdicts}

    def results(self) -> JudgeResults:
        # Each distinct request once: an arm's or a pair's own figure also counts replies it
        # shares with another arm (the same answer to the same item), the total does not.
        prompt = sum(tokens[0] for tokens in self.asked.tokens.values())
        completion = sum(tokens[1] for tokens in self.asked.tokens.values())
        return JudgeResults(
            model_id=self.runtime.model.model_id,
            via=self.runtime.model.via,
            reference_metric=self.reference_metric,
            arms=list(self.arms),
            pairs=list(self.pairs),
            agreement=spearman([s for s, _ in self._scored], [r for _, r in self._scored]),
            agreement_n=len(self._scored),
            cost_usd=judge_cost(prompt, completion, self.runtime.price),
            prompt_tokens=prompt,
            completion_tokens=completion,
            requests=self.asked.requests,
            reused=self.asked.reused,
            shared=self.asked.shared,
            errors=list(self.errors),
        )
