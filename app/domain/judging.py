"""The LLM judge for open-ended tasks, the pure part: prompts, reading verdicts, tallies.

A judge model grades each arm's answer against the reference with one fixed rubric (a score
1-5 and pass/fail, asked as a small JSON object) and compares arms pairwise, in both orders,
so that a preference for whatever comes first cancels out. What is asked of the endpoint,
and when, lives in `worker.pilots.judge`; this module holds what a unit test can check
without one.

Nothing here drops a verdict silently: text that is not the JSON asked for reads as None,
and the caller counts it as unreadable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

import numpy as np
from scipy import stats

from app.domain.metrics import PriceRow, Statistic, rouge_l, token_f1
from app.domain.records import JudgeResults, PairResult
from app.domain.samples.schemas import PilotTask

# Free-form tasks, where string overlap with one reference misses answers worded otherwise.
# Classification and extraction have exact metrics a judge would only blur.
JUDGED_TASKS = frozenset({PilotTask.generation, PilotTask.qa})

JUDGE_SCORE = "judge_score"  # mean 1-5 score, as (score - 1) / 4
JUDGE_PASS = "judge_pass"  # share of readable verdicts that pass
JUDGE_UNREADABLE = "judge_unreadable"  # verdicts still malformed after the one retry
JUDGE_AGREEMENT = "judge_agreement"  # Spearman rho of judge scores vs the reference metric
JUDGE_COST = "judge_cost_usd"  # what grading the arm cost (pairwise cost is pilot-level)

# When the judge's pass rate may replace the reference metric as the primary one. Below 95%
# readable, the items an arm is compared on depend on what the judge could read, and a
# judge that cannot follow a fixed JSON format is not one to trust with the verdict.
JUDGE_MIN_READABLE = 0.95
# The judge must agree with the reference metric at least moderately (Cohen 1988: 0.3 is a
# medium correlation), on the lower end of the 95% interval of its pooled Spearman rho: it
# exists to credit answers the reference undercounts, not to grade something else entirely.
JUDGE_MIN_AGREEMENT = 0.3

# Long fields are clipped so that a prompt fits a small judge's context window; the judge
# is told so it does not mark an answer down for an ending it cannot see.
MAX_FIELD_CHARS = 1500
CLIPPED = " [... clipped]"

# Completion budgets: enough for the JSON object with some prose around it.
VERDICT_MAX_TOKENS = 96
PREFERENCE_MAX_TOKENS = 64

GRADING_SYSTEM = """\
You grade an answer against a reference answer written by an expert.
Score the answer from 1 to 5:
5 = says what the reference says, with nothing wrong;
4 = close to the reference: small omissions or different wording, nothing wrong;
3 = partly right: misses an important point or contains a small error;
2 = mostly wrong or missing, with something relevant;
1 = wrong, off-topic or empty.
The answer passes when it would serve in place of the reference (usually a score of 4 or 5).
Judge meaning, not wording or length.
Reply with only this JSON object and nothing else: {"score": <1-5>, "pass": <true or false>}"""

GRADING_REMINDER = (
    'That was not the JSON object asked for. Reply with only {"score": <1-5>, '
    '"pass": <true or false>}, for example {"score": 3, "pass": false}.'
)

PAIRWISE_SYSTEM = """\
You compare two answers to the same input with a reference answer written by an expert.
The better answer is the one closer in meaning to the reference: correct and complete.
The order in which the answers are shown and their length do not matter.
Reply with only one of these JSON objects and nothing else:
{"better": "A"}  {"better": "B"}  {"better": "tie"}"""

PAIRWISE_REMINDER = (
    'That was not the JSON object asked for. Reply with only {"better": "A"}, '
    '{"better": "B"} or {"better": "tie"}.'
)

_TASK_WORDS = {
    PilotTask.generation: "write the output the instruction and input ask for",
    PilotTask.qa: "answer the question",
}


class JudgeMessage(TypedDict):
    role: str
    content: str


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + CLIPPED


def _case(task: PilotTask, source: str, instruction: str, reference: str) -> str:
    parts = [f"The task: {_TASK_WORDS.get(task, 'respond to the input')}."]
    if instruction.strip():
        parts.append(f"Instruction:\n{_clip(instruction)}")
    parts.append(f"Input:\n{_clip(source)}")
    parts.append(f"Reference answer:\n{_clip(reference)}")
    return "\n\n".join(parts)


def grading_messages(
    task: PilotTask, *, source: str, instruction: str, reference: str, answer: str
) -> list[JudgeMessage]:
    """The rubric prompt for one answer (the same for every arm and item)."""
    user = f"{_case(task, source, instruction, reference)}\n\nAnswer to grade:\n{_clip(answer)}"
    return [{"role": "system", "content": GRADING_SYSTEM}, {"role": "user", "content": user}]


def pairwise_messages(
    task: PilotTask,
    *,
    source: str,
    instruction: str,
    reference: str,
    answer_a: str,
    answer_b: str,
) -> list[JudgeMessage]:
    """The comparison prompt: answer A is shown first, answer B second."""
    user = (
        f"{_case(task, source, instruction, reference)}\n\n"
        f"Answer A:\n{_clip(answer_a)}\n\nAnswer B:\n{_clip(answer_b)}"
    )
    return [{"role": "system", "content": PAIRWISE_SYSTEM}, {"role": "user", "content": user}]


def with_reminder(
    messages: Sequence[JudgeMessage], reply: str, reminder: str
) -> list[JudgeMessage]:
    """The one retry: the conversation so far, the malformed reply, and the format again."""
    return [
        *messages,
        {"role": "assistant", "content": reply},
        {"role": "user", "content": reminder},
    ]


# --------------------------------------------------------------------------- reading replies


def json_objects(text: str) -> list[dict[str, object]]:
    """Every JSON object embedded in `text`, in order: models wrap the object asked for in
    prose or a code fence, and the object itself is what counts."""
    decoder = json.JSONDecoder()
    found: list[dict[str, object]] = []
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        position = text.find("{", end)
    return found


@dataclass(frozen=True)
class Verdict:
    score: int  # 1-5
    passed: bool


_TRUE = {"true", "pass", "passed", "yes"}
_FALSE = {"false", "fail", "failed", "no"}


def _score(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*[1-5](\.0+)?\s*", value):
        value = float(value)
    if isinstance(value, int | float) and float(value).is_integer() and 1 <= value <= 5:
        return int(value)
    return None


def _passed(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def parse_verdict(text: str) -> Verdict | None:
    """The first JSON object in `text` with a score 1-5 and a pass/fail, else None.

    The pass/fail is the judge's own call, as asked; a score without one (or out of range,
    or not a whole number) is unreadable rather than guessed."""
    for value in json_objects(text):
        score = _score(value.get("score"))
        passed = _passed(value.get("pass", value.get("passed")))
        if score is not None and passed is not None:
            return Verdict(score, passed)
    return None


Preference = Literal["A", "B", "tie"]


def parse_preference(text: str) -> Preference | None:
    """ "A", "B" or "tie" from the first JSON object naming one as `better`, else None."""
    for value in json_objects(text):
        better = value.get("better")
        if not isinstance(better, str):
            continue
        word = better.strip().lower()
        if word == "a":
            return "A"
        if word == "b":
            return "B"
        if word in ("tie", "neither", "equal", "both"):
            return "tie"
    return None


# --------------------------------------------------------------------------- pairwise


def combine_orders(shown_first: Preference | None, shown_second: Preference | None) -> PairResult:
    """One item of a pair, from the first arm's side, out of both orders of asking.

    `shown_first` is the judge's preference when the first arm's answer was answer A,
    `shown_second` when it was answer B. A win counts only when both orders agree on it;
    any disagreement (the position decided) or a tie in either order is a tie. An order
    whose reply stayed unreadable makes the item unreadable: it is counted, not guessed.
    """
    if shown_first is None or shown_second is None:
        return PairResult.unreadable
    if shown_first == "A" and shown_second == "B":
        return PairResult.win
    if shown_first == "B" and shown_second == "A":
        return PairResult.loss
    return PairResult.tie


# --------------------------------------------------------------------------- statistics


def reference_metric(task: PilotTask) -> str:
    """The string-overlap metric the judge's scores are checked against."""
    return "rouge_l" if task is PilotTask.generation else "token_f1"


def reference_scores(
    task: PilotTask, predictions: Sequence[str], targets: Sequence[str]
) -> np.ndarray:
    """Per-item values of `reference_metric(task)`."""
    score = rouge_l if task is PilotTask.generation else token_f1
    return np.array([score(p, t) for p, t in zip(predictions, targets, strict=True)], dtype=float)


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranked = np.empty(len(values), dtype=float)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranked[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranked


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's r of average ranks), or None where it is not
    defined: fewer than two pairs, or one side constant (a judge that gives every answer
    the same score tells nothing about agreement)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape:
        raise ValueError("spearman needs two sequences of the same length")
    if len(a) < 2:
        return None
    rank_a, rank_b = ranks(a), ranks(b)
    rank_a -= rank_a.mean()
    rank_b -= rank_b.mean()
    denominator = float(np.sqrt((rank_a**2).sum() * (rank_b**2).sum()))
    if denominator == 0:
        return None
    return float(np.clip((rank_a * rank_b).sum() / denominator, -1.0, 1.0))


def readable_mean_statistic(values: np.ndarray) -> Statistic:
    """The mean over readable items (NaN marks an unreadable verdict), for the bootstrap.

    A resample that happens to draw no readable item at all gets the full-sample mean: it
    says nothing either way, and a NaN would poison the percentiles."""
    readable = ~np.isnan(values)
    filled = np.where(readable, values, 0.0)
    overall = float(filled.sum() / readable.sum()) if readable.any() else 0.0

    def statistic(indices: np.ndarray) -> np.ndarray:
        counts = readable[indices].sum(axis=1)
        sums = filled[indices].sum(axis=1)
        return np.where(counts > 0, sums / np.maximum(counts, 1), overall)

    return statistic


def verdict_arrays(verdicts: Sequence[Verdict | None]) -> tuple[np.ndarray, np.ndarray]:
    """(score as (s - 1) / 4, pass as 0/1), NaN where the verdict is unreadable."""
    scores = np.array([(v.score - 1) / 4 if v else np.nan for v in verdicts], dtype=float)
    passes = np.array([float(v.passed) if v else np.nan for v in verdicts], dtype=float)
    return scores, passes


def judge_statistics(verdicts: Sequence[Verdict | None]) -> dict[str, Statistic]:
    """The judge's quality metrics for one arm; none when no verdict was readable."""
    if not any(verdicts):
        return {}
    scores, passes = verdict_arrays(verdicts)
    return {
        JUDGE_SCORE: readable_mean_statistic(scores),
        JUDGE_PASS: readable_mean_statistic(passes),
    }


def agreement(verdicts: Sequence[Verdict | None], reference: Sequence[float]) -> float | None:
    """Spearman's rho between readable 1-5 scores and the reference metric on those items."""
    pairs = [(v.score, r) for v, r in zip(verdicts, reference, strict=True) if v is not None]
    if not pairs:
        return None
    return spearman([p[0] for p in pairs], [p[1] for p in pairs])


def judge_cost(prompt_tokens: int, completion_tokens: int, price: PriceRow | None) -> float | None:
    """USD for these tokens at the judge's price row (None without one)."""
    if price is None:
        return None
    return (
        prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million
    ) / 1_000_000


def spearman_interval(
    rho: float, n: int, *, confidence: float = 0.95
) -> tuple[float, float] | None:
    """95% interval of Spearman's rho through Fisher's z, with the variance 1.06 / (n - 3)
    that Fieller, Hartley and Pearson (1957) give for rank correlations; None below 4 pairs."""
    if n < 4:
        return None
    z = float(np.arctanh(np.clip(rho, -0.999999, 0.999999)))
    critical = float(stats.norm.ppf(0.5 + confidence / 2))
    half = critical * float(np.sqrt(1.06 / (n - 3)))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def readable_share(results: JudgeResults, arms: set[str]) -> float:
    """The smallest share of readable verdicts among `arms` (0 for an arm never graded)."""
    shares = []
    for arm in sorted(arms):
        record = next((r for r in results.arms if r.arm == arm), None)
        shares.append(
            (record.verdicts - record.unreadable) / record.verdicts
            if record is not None and record.verdicts
            else 0.0
        )
    return min(shares) if shares else 0.0


def judge_primary_refusal(results: JudgeResults, arms: set[str]) -> str | None:
    """Why the judge's pass rate may not decide between `arms`; None when it may.

    It may when every arm has at least `JUDGE_MIN_READABLE` readable verdicts and the judge's
    pooled agreement with the reference metric has a 95% interval whose lower end reaches
    `JUDGE_MIN_AGREEMENT`.
    """
    share = readable_share(results, arms)
    if share < JUDGE_MIN_READABLE:
        worst = min(
            sorted(arms),
            key=lambda arm: next(
                (
                    (r.verdicts - r.unreadable) / r.verdicts
                    for r in results.arms
                    if r.arm == arm and r.verdicts
                ),
                0.0,
            ),
        )
        return (
            f"only {share:.0%} of the judge's verdicts on {worst} were readable "
            f"({JUDGE_MIN_READABLE:.0%} are needed)"
        )
    rho, n = results.agreement, results.agreement_n
    if rho is None:
        return "the judge's agreement with the reference metric could not be measured"
    interval = spearman_interval(rho, n) if n is not None else None
    if interval is None:
        return "too few readable verdicts to measure the judge's agreement with the reference"
    if interval[0] < JUDGE_MIN_AGREEMENT:
        return (
            f"the judge's agreement with {results.reference_metric} is Spearman rho "
            f"{rho:.2f} (95% CI {interval[0]:.2f} to {interval[1]:.2f}, n = {n}), below the "
            f"bar of {JUDGE_MIN_AGREEMENT:.1f} on the interval's lower end"
        )
    return None
