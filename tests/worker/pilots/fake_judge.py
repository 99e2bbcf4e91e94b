"""A scripted judge endpoint for the judge's tests: an httpx transport, no server, no model.

It reads the prompts the judge module builds and answers as a perfectly informed judge
would: an answer equal to the reference scores 5 and passes, any other answer scores 1 and
fails; of two answers, the one equal to the reference is better. Answers containing
MALFORMED get prose without JSON the first time and a proper verdict once reminded; answers
containing GARBLED never get a readable one. `position_bias` makes it prefer whatever is
shown first, whatever the answers say; `never_readable` makes every verdict prose.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field

import httpx

from app.domain.judging import GRADING_SYSTEM, PAIRWISE_SYSTEM

PROMPT_TOKENS = 50
COMPLETION_TOKENS = 10


def section(text: str, name: str) -> str:
    """The text under the heading `name:` in the judge's user message."""
    match = re.search(rf"^{re.escape(name)}:\n(.*?)(?=\n\n[A-Z][^\n]*:\n|\Z)", text, re.S | re.M)
    assert match is not None, f"no {name!r} section in {text!r}"
    return match.group(1).strip()


@dataclass
class FakeJudge:
    position_bias: bool = False
    never_readable: bool = False
    grading: list[str] = field(default_factory=list)  # answers graded, one per request
    pairwise: list[tuple[str, str]] = field(default_factory=list)  # (A, B) per request
    reminded: int = 0  # requests that carried the format reminder
    lock: threading.Lock = field(default_factory=threading.Lock)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["temperature"] == 0  # greedy
        messages = body["messages"]
        system, user = messages[0]["content"], messages[1]["content"]
        reminded = len(messages) > 2
        reference = section(user, "Reference answer")
        if system == GRADING_SYSTEM:
            answer = section(user, "Answer to grade")
            with self.lock:
                self.grading.append(answer)
                self.reminded += reminded
            text = self._verdict(answer, reference, reminded)
        else:
            assert system == PAIRWISE_SYSTEM
            first, second = section(user, "Answer A"), section(user, "Answer B")
            with self.lock:
                self.pairwise.append((first, second))
                self.reminded += reminded
            text = self._preference(first, second, reference, reminded)
        return httpx.Response(
            200,
            json={
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}},
                ],
                "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS},
            },
        )

    @staticmethod
    def _broken(answers: str, reminded: bool) -> bool:
        return "GARBLED" in answers or ("MALFORMED" in answers and not reminded)

    def _verdict(self, answer: str, reference: str, reminded: bool) -> str:
        if self.never_readable or self._broken(answer, reminded):
            return "The answer is quite good, I would say four out of five."
        if answer == reference:
            return 'Verdict: {"score": 5, "pass": true}'
        return '{"score": 1, "pass": false}'

    def _preference(self, first: str, second: str, reference: str, reminded: bool) -> str:
        if self._broken(first + second, reminded):
            return "Answer A, clearly."
        if self.position_bias:
            return '{"better": "A"}'
        if first == reference and second != reference:
            return '{"better": "A"}'
        if second == reference and first != reference:
            return '{"better": "B"}'
        return '{"better": "tie"}'
