"""Rendering prompts for every arm through the local tokenizer's own chat template.

The messages themselves (instruction, label list, shots, passages) are built in
`app.domain.prompts`, pure text shared with the hand-off bundle; this module renders them
with the local tokenizer for the in-process model and for training, and says whether a label
list fits the prompt budget. (The prompting arms' shared plan and answering:
`prompting_arms`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.domain.prompts import Message, format_labels

# The label list may take at most this share of the prompt budget; beyond it, it would crowd
# out the shots (which show the label vocabulary in use anyway).
MAX_LABEL_SHARE = 0.2


def labels_fit(tokenizer: Any, labels: Sequence[str], *, budget: int) -> bool:
    """Whether listing the label set leaves most of the prompt budget for shots and input."""
    if not labels:
        return False
    tokens = len(tokenizer(format_labels(labels), add_special_tokens=False)["input_ids"])
    return tokens <= MAX_LABEL_SHARE * budget


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
