"""What if the traffic, the prompt, the budget, the GPU or the volatility were different?

A scenario is the stored intake with a few of its own fields replaced, plus the total-cost
assumptions (`app.domain.scoring.total_cost.Assumptions`). Each value is validated with the
very field definition the intake (or the assumptions) declares, so the what-if accepts exactly
what the wizard and the API accept. Nothing here stores anything or runs a pilot.

`find_flips` says where an answer changes as the daily volume changes: it evaluates the answer
on a log-spaced scan of volumes, then bisects each change down to about 1%. A change that flips
and flips back between two neighbouring scan points (a quarter of a decade apart) can be
missed; the rubric's and the cost model's answers move smoothly with volume, so none does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Final, Generic, TypeVar

from pydantic import BaseModel, ValidationError, create_model

from app.domain.intake import Intake
from app.domain.scoring.total_cost import Assumptions

T = TypeVar("T")

# The intake's own fields a reader may change on the report, in the form's order.
INTAKE_FIELDS: Final[tuple[str, ...]] = (
    "queries_per_day",
    "prompt_tokens_today",
    "budget_monthly_usd",
    "gpu_access",
    "volatility",
)
ASSUMPTION_FIELDS: Final[tuple[str, ...]] = tuple(Assumptions.model_fields)
FIELDS: Final[tuple[str, ...]] = (*INTAKE_FIELDS, *ASSUMPTION_FIELDS)
# Longer than any valid value: refused before parsing, and never echoed back in full.
MAX_VALUE_CHARS: Final = 40

# The scan: 1 query a day up to the intake's own ceiling, four points per decade.
SCAN_LOW: Final = 1
SCAN_HIGH: Final = 1_000_000_000
SCAN_POINTS_PER_DECADE: Final = 4
BISECT_PRECISION: Final = 0.01


def _field_model(model: type[BaseModel], name: str) -> type[BaseModel]:
    info = model.model_fields[name]
    definition: Any = (info.annotation, info)
    return create_model(f"what_if_{name}", **{name: definition})


_MODELS: Final[dict[str, type[BaseModel]]] = {
    **{name: _field_model(Intake, name) for name in INTAKE_FIELDS},
    **{name: _field_model(Assumptions, name) for name in ASSUMPTION_FIELDS},
}


@dataclass(frozen=True)
class Scenario:
    """The reader's changes: validated values, what they typed, and what was wrong."""

    changes: dict[str, Any] = field(default_factory=dict)  # intake fields, validated
    assumptions: Assumptions = field(default_factory=Assumptions)
    raw: dict[str, str] = field(default_factory=dict)  # non-blank values as typed (clipped)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)  # field → pydantic error

    @property
    def valid(self) -> bool:
        return not self.errors


def parse_scenario(raw: Mapping[str, str | None]) -> Scenario:
    """Validate the known fields of `raw` (a query string); blanks and unknown keys are ignored."""
    typed: dict[str, str] = {}
    values: dict[str, Any] = {}
    errors: dict[str, dict[str, Any]] = {}
    for name in FIELDS:
        value = raw.get(name)
        if value is None or not value.strip():
            continue
        value = value.strip()
        typed[name] = value[:MAX_VALUE_CHARS]
        if len(value) > MAX_VALUE_CHARS:
            errors[name] = {"type": "string_too_long", "ctx": {"max_length": MAX_VALUE_CHARS}}
            continue
        try:
            parsed = _MODELS[name].model_validate({name: value})
        except ValidationError as exc:
            errors[name] = dict(exc.errors()[0])
            continue
        values[name] = getattr(parsed, name)
    assumptions = Assumptions(**{k: v for k, v in values.items() if k in ASSUMPTION_FIELDS})
    changes = {k: v for k, v in values.items() if k in INTAKE_FIELDS}
    return Scenario(changes=changes, assumptions=assumptions, raw=typed, errors=errors)


def apply(intake: Intake, changes: Mapping[str, Any]) -> Intake:
    """A copy of `intake` with `changes` in place, validated as a whole."""
    return Intake.model_validate({**intake.model_dump(), **changes})


@dataclass(frozen=True)
class Flip(Generic[T]):
    """From `at` queries a day on, the answer is `after` instead of `before`."""

    at: int
    before: T
    after: T


def scan_points(low: int = SCAN_LOW, high: int = SCAN_HIGH) -> list[int]:
    """Whole volumes from `low` to `high`, `SCAN_POINTS_PER_DECADE` per decade, both ends in."""
    decades = math.log10(high / low)
    steps = max(1, math.ceil(decades * SCAN_POINTS_PER_DECADE))
    points = sorted({round(low * (high / low) ** (i / steps)) for i in range(steps + 1)})
    return points


def find_flips(
    answer: Callable[[int], T], *, low: int = SCAN_LOW, high: int = SCAN_HIGH
) -> list[Flip[T]]:
    """Every volume in [low, high] where `answer` changes, each to within about 1%."""
    points = scan_points(low, high)
    answers = [answer(q) for q in points]
    flips: list[Flip[T]] = []
    for (lo, before), (hi, after) in pairwise(zip(points, answers, strict=True)):
        if before == after:
            continue
        # Invariant: answer(lo) == before, answer(hi) != before.
        while hi - lo > max(1, lo * BISECT_PRECISION):
            middle = round(math.sqrt(lo * hi)) if lo > 0 else (lo + hi) // 2
            middle = min(max(middle, lo + 1), hi - 1)
            if answer(middle) == before:
                lo = middle
            else:
                hi = middle
        flips.append(Flip(at=hi, before=before, after=answer(hi)))
    return flips


def round_volume(value: int) -> str:
    """A flip point as a reader quotes it: two significant figures, '~12,000'."""
    if value < 100:
        return f"~{value:,}"
    digits = math.floor(math.log10(value)) - 1
    return f"~{round(value, -digits):,}"
