"""Prompt building for every arm, through the tokenizer's own chat template.

All arms speak to the model the same way, so differences between arms come from what goes
*into* the prompt (shots, retrieved passages, a fine-tuned adapter), not from wording.

Shots are rendered as earlier user/assistant turns: small instruct models imitate a turn
they have seen far more reliably than an "Example:" block inside one message. Targets are
plain-text completions (the assistant turn), which is also what the fine-tuned arm learns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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

# The label list may take at most this share of the prompt budget; beyond it, it would crowd
# out the shots (which show the label vocabulary in use anyway).
MAX_LABEL_SHARE = 0.2


def format_labels(labels: Sequence[str]) -> str:
    return ", ".join(labels)


def labels_fit(tokenizer: Any, labels: Sequence[str], *, budget: int) -> bool:
    """Whether listing the label set leaves most of the prompt budget for shots and input."""
    if not labels:
        return False
    tokens = len(tokenizer(format_labels(labels), add_special_tokens=False)["input_ids"])
    return tokens <= MAX_LABEL_SHARE * budget


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


@dataclass(frozen=True)
class Prompt:
    """One test query's prompt: the chat messages (what an endpoint is sent) and the same
    messages rendered with the local chat template (what the in-process model reads)."""

    messages: list[Message]
    text: str


def make_prompt(tokenizer: Any, messages: Sequence[Message]) -> Prompt:
    return Prompt(messages=list(messages), text=render_prompt(tokenizer, messages))


def render_prompt(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The prompt text up to and including the assistant header, ready for generation."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return str(text)


def render_training_text(
    tokenizer: Any, messages: Sequence[Message], target: str
) -> tuple[str, str]:
    """(prompt, completion) for training with loss on the completion only.

    The completion is the target followed by the end-of-turn token, so the model learns to
    stop; the prompt is exactly what `render_prompt` produces at inference time.
    """
    prompt = render_prompt(tokenizer, messages)
    eos = tokenizer.eos_token or ""
    return prompt, f"{target}{eos}"
