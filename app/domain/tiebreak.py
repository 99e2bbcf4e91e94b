"""A measured gain too small to matter, and how the tie it leaves is broken.

The intake's `min_difference_points` is the smallest quality gain, in percentage points, that
the team would pay for. When the whole 95% interval of a difference lies inside plus or minus
that minimum (`app.domain.evidence`), the arms are tied on quality, and practical concerns
decide, in this order:

1. cost per 1,000 queries (priced from the pilot's measured tokens), lower first;
2. latency p50, lower first;
3. simplicity: prompting, then RAG, then fine-tuning, then fine-tuning + RAG.

Costs and latencies are compared as the report prints them, so it never says that one arm is
cheaper when both print as the same figure. A criterion some contender has no figure for
(an old pilot, an arm that stored no cost) is skipped for the whole group: half-measured
figures must not rank arms.

Pure: the reconciliation rule (`app.domain.reconcile`) calls it; unit tests hit it alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from app.domain.formatting import format_ms, format_usd, points_value
from app.domain.scoring.paths import HYBRID_FT_RAG, PATHS

Criterion = Literal["cost", "latency", "simplicity"]

# Simplest first: the rubric's own order of paths (start from a prompt), then the combination.
SIMPLICITY: Final[tuple[str, ...]] = (*PATHS, HYBRID_FT_RAG)


def format_minimum(min_points: float) -> str:
    """'2-point', '2.5-point': the minimum as the report names it."""
    return f"{min_points:g}-point"


@dataclass(frozen=True)
class Contender:
    """One arm tied on quality, with the figures that can break the tie."""

    arm: str
    label: str
    option: str  # the path (or combination) the arm is evidence for
    cost_per_1k_usd: float | None = None
    latency_p50_ms: float | None = None


@dataclass(frozen=True)
class Verdict:
    """Why the winner was preferred to one other contender."""

    other: Contender
    criterion: Criterion


@dataclass(frozen=True)
class TieBreak:
    winner: Contender
    verdicts: tuple[Verdict, ...]  # one per other contender, in the order given

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        """The criteria that decided, each once, in the rule's order."""
        used = {v.criterion for v in self.verdicts}
        order: tuple[Criterion, ...] = ("cost", "latency", "simplicity")
        return tuple(c for c in order if c in used)


def _printed(value: float, fmt: Callable[[float], str]) -> float:
    """The number as printed: '$0.310' → 0.31, '1,204 ms' → 1204.0."""
    text = fmt(value).replace("$", "").replace(",", "").removesuffix(" ms")
    return float(text)


def _simplicity(contender: Contender) -> int:
    option = contender.option
    return SIMPLICITY.index(option) if option in SIMPLICITY else len(SIMPLICITY)


def break_tie(contenders: Sequence[Contender]) -> TieBreak:
    """The contender that cost, then latency, then simplicity prefer (module docstring).

    Raises ValueError for an empty group. Equal on every criterion, the first given wins.
    """
    if not contenders:
        raise ValueError("a tie needs at least one contender")
    use_cost = all(c.cost_per_1k_usd is not None for c in contenders)
    use_latency = all(c.latency_p50_ms is not None for c in contenders)

    def keys(c: Contender) -> dict[Criterion, float]:
        found: dict[Criterion, float] = {}
        if use_cost and c.cost_per_1k_usd is not None:
            found["cost"] = _printed(c.cost_per_1k_usd, format_usd)
        if use_latency and c.latency_p50_ms is not None:
            found["latency"] = _printed(c.latency_p50_ms, format_ms)
        found["simplicity"] = float(_simplicity(c))
        return found

    def rank(c: Contender) -> tuple[float, ...]:
        return tuple(keys(c).values())

    winner = min(contenders, key=rank)
    verdicts = []
    for other in contenders:
        if other is winner:
            continue
        mine, theirs = keys(winner), keys(other)
        decided: Criterion = next((k for k in mine if mine[k] != theirs[k]), "simplicity")
        verdicts.append(Verdict(other, decided))
    return TieBreak(winner, tuple(verdicts))


def explain(winner: Contender, verdict: Verdict, delta: float, min_points: float) -> str:
    """One sentence: how far apart the two are on quality, and which criterion decided.

    `delta` is quality(winner) − quality(other), a 0–1 fraction.
    """
    other = verdict.other
    gap = (
        f"{winner.label} and {other.label} differ by {points_value(abs(delta)):.1f} points, "
        f"under the {format_minimum(min_points)} minimum that matters to you"
    )
    if verdict.criterion == "cost" and None not in (winner.cost_per_1k_usd, other.cost_per_1k_usd):
        reason = (
            f"cost decided: {winner.label} costs {format_usd(winner.cost_per_1k_usd or 0.0)} vs "
            f"{format_usd(other.cost_per_1k_usd or 0.0)} per 1,000 queries"
        )
    elif verdict.criterion == "latency" and None not in (
        winner.latency_p50_ms,
        other.latency_p50_ms,
    ):
        reason = (
            f"latency decided: {winner.label} answers in {format_ms(winner.latency_p50_ms or 0.0)}"
            f" vs {format_ms(other.latency_p50_ms or 0.0)} (median)"
        )
    else:
        reason = (
            "simplicity decided: cost and latency did not separate them, and "
            f"{winner.label} is the simpler path to build and run"
        )
    return f"{gap}, so {reason}."
