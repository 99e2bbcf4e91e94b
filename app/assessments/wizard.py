"""The intake wizard as data: steps, the Intake fields each step asks, and how to show them.

Validation of a step uses the same field definitions as `Intake`, so the wizard can never
accept what the API would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from app.domain import intake as s
from app.domain.intake import Intake
from app.validation import friendly_message


@dataclass(frozen=True)
class Widget:
    kind: str  # text | textarea | number | select | radio | checkboxes | yesno
    label: str
    help: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    step_attr: str = "1"  # for number inputs
    placeholder: str = ""


def _choices(labels: dict[Any, str]) -> tuple[tuple[str, str], ...]:
    return tuple((str(k.value), v) for k, v in labels.items())


WIDGETS: dict[str, Widget] = {
    "title": Widget("text", "Name of the use case", placeholder="Support ticket routing"),
    "use_case": Widget(
        "textarea", "What should the model do?", "A few sentences: inputs, outputs, who uses it."
    ),
    "task_type": Widget("radio", "Task type", choices=_choices(s.TASK_TYPE_LABELS)),
    "failure_modes": Widget(
        "checkboxes",
        "What goes wrong with a plain prompt today?",
        "Tick all that apply; leave empty if you have not tried yet.",
        choices=_choices(s.FAILURE_MODE_LABELS),
    ),
    "prompt_tokens_today": Widget(
        "number",
        "Tokens in today's prompt per query",
        "Instructions plus examples, roughly; 1 token ≈ ¾ of an English word.",
    ),
    "volatility": Widget(
        "radio", "How often does the knowledge change?", choices=_choices(s.VOLATILITY_LABELS)
    ),
    "needs_citations": Widget("yesno", "Must answers cite their sources?"),
    "has_documents": Widget(
        "yesno", "Is there a document corpus the model could look things up in?"
    ),
    "examples_available": Widget(
        "number",
        "How many input/output examples do you have?",
        "Labelled pairs you could train on.",
    ),
    "examples_reviewed": Widget("yesno", "Has a person reviewed those examples?"),
    "budget_one_off_usd": Widget("number", "One-off budget (USD)", step_attr="any"),
    "budget_monthly_usd": Widget("number", "Monthly running budget (USD)", step_attr="any"),
    "gpu_access": Widget("radio", "GPU access", choices=_choices(s.GPU_ACCESS_LABELS)),
    "timeline": Widget("radio", "Time to first version", choices=_choices(s.TIMELINE_LABELS)),
    "team_skills": Widget(
        "checkboxes", "Skills on the team", choices=_choices(s.TEAM_SKILL_LABELS)
    ),
    "queries_per_day": Widget("number", "Expected queries per day"),
    "latency_target_ms": Widget("number", "p95 latency target (milliseconds)"),
    "data_residency": Widget(
        "radio", "Data-residency constraints", choices=_choices(s.DATA_RESIDENCY_LABELS)
    ),
    "target_model_size_b": Widget(
        "number",
        "Size of the model you plan to serve (billions of parameters)",
        "E.g. 8 for an 8B model; 0.135 for the pilot's default model.",
        step_attr="any",
    ),
    "min_difference_points": Widget(
        "number",
        "Smallest quality gain that matters (percentage points)",
        "A measured gain smaller than this is treated as a tie: cost, latency and simplicity "
        "decide instead. 2 means a 1.5-point gain in accuracy would not justify a costlier path.",
        step_attr="any",
        placeholder="2",
    ),
}


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    intro: str
    fields: tuple[str, ...]


STEPS: tuple[Step, ...] = (
    Step("use_case", "Use case", "What the model is for.", ("title", "use_case", "task_type")),
    Step(
        "problems",
        "What goes wrong",
        "Failure modes point to different fixes: missing facts to retrieval, format and tone "
        "to fine-tuning.",
        ("failure_modes", "prompt_tokens_today"),
    ),
    Step(
        "knowledge",
        "Knowledge",
        "Fast-changing or citable knowledge favours retrieval over baking facts into weights.",
        ("volatility", "needs_citations", "has_documents"),
    ),
    Step(
        "data",
        "Data",
        "Upload a sample of your examples; the pilot runs on it. A document corpus is optional.",
        ("examples_available", "examples_reviewed"),
    ),
    Step(
        "resources",
        "Budget and team",
        "What you can spend and who will build it.",
        ("budget_one_off_usd", "budget_monthly_usd", "gpu_access", "timeline", "team_skills"),
    ),
    Step(
        "traffic",
        "Traffic and constraints",
        "Volume and latency decide whether shorter prompts pay for a fine-tune.",
        (
            "queries_per_day",
            "latency_target_ms",
            "data_residency",
            "target_model_size_b",
            "min_difference_points",
        ),
    ),
    Step("review", "Review and submit", "Check your answers, then score the three paths.", ()),
)
STEP_NAMES = tuple(step.name for step in STEPS)
LIST_FIELDS = frozenset(name for name, w in WIDGETS.items() if w.kind == "checkboxes")


def get_step(name: str) -> Step | None:
    return next((step for step in STEPS if step.name == name), None)


def neighbours(name: str) -> tuple[str | None, str | None]:
    index = STEP_NAMES.index(name)
    prev = STEP_NAMES[index - 1] if index > 0 else None
    nxt = STEP_NAMES[index + 1] if index + 1 < len(STEP_NAMES) else None
    return prev, nxt


def _field_model(name: str) -> type[BaseModel]:
    field = Intake.model_fields[name]
    definition: Any = (field.annotation, field)
    return create_model(f"{name}_field", **{name: definition})


# One model per field: each answer is validated on its own, so a step with one bad answer
# still saves the good ones.
_FIELD_MODELS = {name: _field_model(name) for name in Intake.model_fields}
TEXT_FIELDS = ("title", "use_case")


def validate_step(step: Step, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Clean the step's answers; returns (JSON-ready values of valid fields, errors by field)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in step.fields:
        value = raw.get(name)
        if name in TEXT_FIELDS and isinstance(value, str):
            value = value.strip() or None
            if value is not None and "\x00" in value:
                # PostgreSQL cannot store NUL in text, and the title is stored at once.
                errors[name] = "Must not contain NUL characters."
                continue
        if value is None:
            if Intake.model_fields[name].is_required():
                errors[name] = "This is required."
            continue
        try:
            model = _FIELD_MODELS[name].model_validate({name: value})
        except ValidationError as exc:
            errors[name] = friendly_message(dict(exc.errors()[0]))
            continue
        values.update(model.model_dump(mode="json"))
    return values, errors


def form_to_raw(step: Step, form: Any) -> dict[str, Any]:
    """Read a step's fields from a submitted form (lists from repeated keys; blanks as absent)."""
    raw: dict[str, Any] = {}
    for name in step.fields:
        if name in LIST_FIELDS:
            raw[name] = [v for v in form.getlist(name) if isinstance(v, str)]
            continue
        value = form.get(name)
        if isinstance(value, str) and value.strip() != "":
            raw[name] = value.strip() if WIDGETS[name].kind != "textarea" else value
    return raw


def display_value(name: str, value: Any) -> str:
    """An answer as the review step shows it."""
    widget = WIDGETS[name]
    if value is None or value == "" or value == []:
        return "—"
    labels = dict(widget.choices)
    if widget.kind == "checkboxes":
        return ", ".join(labels.get(str(v), str(v)) for v in value)
    if widget.kind in ("radio", "select"):
        return labels.get(str(value), str(value))
    if widget.kind == "yesno":
        return "Yes" if value else "No"
    if isinstance(value, StrEnum):
        return value.value
    return str(value)
