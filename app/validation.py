"""Pydantic's validation errors in words a tech lead reads without knowing pydantic.

Forms (wizard, sign-up, share links) and the intake all show these; they live below every
feature so any of them can use them.
"""

from __future__ import annotations

from typing import Any


def friendly_message(error: dict[str, Any]) -> str:
    """Pydantic's error in words a tech lead reads without knowing pydantic."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length") == 1):
        return "This is required."
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return "Enter a whole number, e.g. 1200."
    if kind in ("float_parsing", "float_type", "finite_number"):
        return "Enter a number, e.g. 2500."
    if kind == "greater_than_equal":
        return f"Must be at least {_number(ctx['ge'])}."
    if kind == "greater_than":
        return f"Must be more than {_number(ctx['gt'])}."
    if kind == "less_than_equal":
        return f"Must be at most {_number(ctx['le'])}."
    if kind == "string_too_long":
        return f"Keep it under {ctx['max_length']:,} characters."
    if kind == "enum":
        return "Choose one of the options."
    if kind in ("bool_parsing", "bool_type"):
        return "Choose yes or no."
    return str(error.get("msg", "Invalid value.")).removeprefix("Value error, ")


def _number(value: Any) -> str:
    if isinstance(value, int | float) and float(value).is_integer():
        return f"{value:,.0f}"  # 1,000,000, not the 1e+06 that ':g' gives
    return f"{value:,g}" if isinstance(value, int | float) else str(value)
