"""The pilot's prompts as chat messages: pure text, no tokenizer (the worker renders them).

All arms speak to the model the same way, so differences between arms come from what goes
*into* the prompt (shots, retrieved passages, a fine-tuned adapter), not from wording.

Shots are rendered as earlier user/assistant turns: small instruct models imitate a turn
they have seen far more reliably than an "Example:" block inside one message. Targets are
plain-text completions (the assistant turn), which is also what the fine-tuned arm learns.

The web app reads this module too: the hand-off bundle (`app.exports`) writes the same
messages into its training data and generates its client's prompt code from this source, so
the exported scripts ask a served model exactly what the pilot asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.samples.schemas import Example, PilotTask

Message = dict[str, str]

TASK_INSTRUCTIONS: dict[PilotTask, str] = {
    PilotTask.classification: "Classify the user's text. Reply with the label only.",
    PilotTask.qa: "Answer the question briefly. Reply with the answer only.",
    PilotTask.extraction: "Extract the requested fields. Reply with JSON only.",
    PilotTask.generation: "Respond to the user's request.",
}

# How the input is introduced when passages precede it.
INPUT_HEADINGS: dict[PilotTask, str] = {
    PilotTask.classification: "Text",
    PilotTask.qa: "Question",
    PilotTask.extraction: "Text",
    PilotTask.generation: "Request",
}


def format_labels(labels: Sequence[str]) -> str:
    return ", ".join(labels)


def _user_text(example: Example, *, include_instruction: bool) -> str:
    if include_instruction and example.instruction:
        return f"{example.instruction}\n\n{example.input}"
    return example.input


def _system_text(
    task: PilotTask,
    *,
    shared_instruction: str,
    contexts: Sequence[str],
    labels: Sequence[str],
) -> str:
    parts = [TASK_INSTRUCTIONS[task]]
    if shared_instruction:
        parts.append(shared_instruction)
    if labels:
        parts.append(f"Possible labels: {format_labels(labels)}.")
    if contexts:
        parts.append("Use the passages given with the input when they help.")
    return "\n\n".join(parts)


def _with_passages(task: PilotTask, text: str, passages: Sequence[str]) -> str:
    """The input with its passages right above it, where a small model attends to them."""
    if not passages:
        return text
    numbered = "\n".join(f"[{i}] {passage}" for i, passage in enumerate(passages, start=1))
    return f"Passages:\n{numbered}\n\n{INPUT_HEADINGS[task]}: {text}"


def build_messages(
    task: PilotTask,
    example: Example,
    *,
    shots: Sequence[Example] = (),
    contexts: Sequence[str] = (),
    labels: Sequence[str] = (),
    shot_contexts: Sequence[Sequence[str]] = (),
) -> list[Message]:
    """Chat messages for one query: system (task, labels), shot turns, the query.

    `contexts` (retrieved passages) go into the query's own user turn, just above the
    input: SmolLM2-135M answers from a passage there, but ignores one in the system message
    and copies a shot's answer instead. `shot_contexts[i]` are shot i's passages, so shots
    look exactly like the query. `labels` are listed as given; the caller decides whether
    they fit (see `labels_fit`). `example.target` is never used, so this serves test queries.
    An instruction shared by the query and all shots goes once into the system message;
    differing per-example instructions stay in their own user turns.
    """
    instructions = {example.instruction, *(shot.instruction for shot in shots)}
    shared = example.instruction if len(instructions) == 1 else ""
    system = _system_text(
        task,
        shared_instruction=shared,
        contexts=[*contexts, *(c for group in shot_contexts for c in group)],
        labels=labels,
    )
    messages: list[Message] = [{"role": "system", "content": system}]
    for position, shot in enumerate(shots):
        passages = shot_contexts[position] if position < len(shot_contexts) else ()
        text = _with_passages(task, _user_text(shot, include_instruction=not shared), passages)
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": shot.target})
    query = _with_passages(task, _user_text(example, include_instruction=not shared), contexts)
    messages.append({"role": "user", "content": query})
    return messages


def short_messages(task: PilotTask, example: Example) -> list[Message]:
    """Instruction + input only: the fine-tuned arm's prompt (no shots, no label list).

    Shortening the prompt is fine-tuning's point: the behaviour lives in the weights, so
    every query costs fewer prompt tokens.
    """
    return build_messages(task, example)


# Output budget per task when a config leaves it unset: labels are a few tokens, answers a
# sentence, JSON objects and free text need room.
DEFAULT_MAX_NEW_TOKENS: dict[PilotTask, int] = {
    PilotTask.classification: 20,
    PilotTask.qa: 48,
    PilotTask.extraction: 160,
    PilotTask.generation: 160,
}


def max_new_tokens_for(task: PilotTask, configured: int | None) -> int:
    return configured if configured else DEFAULT_MAX_NEW_TOKENS[task]


def stops_at_newline(task: PilotTask) -> bool:
    """Classification answers are one line; anything after the first newline is noise."""
    return task is PilotTask.classification
