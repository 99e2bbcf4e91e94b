"""Prompts through the real SmolLM2 chat template; shot selection; context fitting."""

from __future__ import annotations

from typing import Any

from app.domain.prompts import build_messages, short_messages
from app.domain.samples.schemas import Example, PilotTask
from worker.pilots.context_fit import (
    context_window,
    count_tokens,
    max_items_that_fit,
    truncate_to_tokens,
)
from worker.pilots.prompt_rendering import labels_fit, render_prompt, render_training_text

QUERY = Example(input="Where is my new card?", target="card_arrival")
SHOTS = [
    Example(input="My card has not come yet", target="card_arrival"),
    Example(input="I lost my card", target="lost_or_stolen_card"),
]


def test_shots_become_chat_turns_and_the_target_is_never_leaked() -> None:
    messages = build_messages(
        PilotTask.classification, QUERY, shots=SHOTS, labels=["card_arrival", "lost_or_stolen_card"]
    )
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert messages[2]["content"] == "card_arrival"  # a shot's target is the plain completion
    assert messages[-1]["content"] == QUERY.input
    assert "card_arrival, lost_or_stolen_card" in messages[0]["content"]
    assert all(m["content"] != QUERY.target for m in messages[-1:])


def test_passages_sit_right_above_the_input() -> None:
    messages = build_messages(
        PilotTask.qa,
        QUERY,
        shots=SHOTS[:1],
        contexts=["Cards arrive in 5 days.", "Fees."],
        shot_contexts=[["Delivery takes a week."]],
    )
    assert messages[-1]["content"] == (
        "Passages:\n[1] Cards arrive in 5 days.\n[2] Fees.\n\nQuestion: Where is my new card?"
    )
    assert messages[1]["content"].startswith("Passages:\n[1] Delivery takes a week.")
    assert "passages" in messages[0]["content"]


def test_shared_instruction_goes_once_into_the_system_message() -> None:
    instructed = [e.model_copy(update={"instruction": "Be terse."}) for e in [QUERY, *SHOTS]]
    messages = build_messages(PilotTask.generation, instructed[0], shots=instructed[1:])
    assert "Be terse." in messages[0]["content"]
    assert all("Be terse." not in m["content"] for m in messages[1:])
    mixed = build_messages(PilotTask.generation, instructed[0], shots=SHOTS)
    assert mixed[-1]["content"].startswith("Be terse.\n\n")


def test_short_prompt_is_instruction_and_input_only() -> None:
    messages = short_messages(PilotTask.classification, QUERY)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "labels" not in messages[0]["content"].lower()


def test_render_uses_the_chat_template(tokenizer: Any) -> None:
    prompt = render_prompt(tokenizer, build_messages(PilotTask.classification, QUERY, shots=SHOTS))
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert prompt.count("<|im_start|>user") == 3
    prompt_only, completion = render_training_text(
        tokenizer, short_messages(PilotTask.qa, QUERY), "x"
    )
    assert completion == "x<|im_end|>"
    assert prompt_only.endswith("<|im_start|>assistant\n")


def test_label_list_is_left_out_when_it_would_crowd_the_prompt(tokenizer: Any) -> None:
    few = ["positive", "negative"]
    many = [f"some_fairly_long_intent_label_{i}" for i in range(77)]
    assert labels_fit(tokenizer, few, budget=2000)
    assert not labels_fit(tokenizer, many, budget=2000)
    assert not labels_fit(tokenizer, [], budget=2000)


def test_context_window_and_fitting(tokenizer: Any) -> None:
    assert context_window(tokenizer) == 2048  # tokenizer has no real limit: safe default
    assert context_window(tokenizer, cap=512) == 512
    shots = [Example(input="word " * 50, target="label")] * 20

    def render(n: int) -> str:
        return render_prompt(
            tokenizer, build_messages(PilotTask.classification, QUERY, shots=shots[:n])
        )

    fitted = max_items_that_fit(render, tokenizer, max_items=20, budget=400)
    assert 0 < fitted < 20
    assert (
        count_tokens(tokenizer, render(fitted)) <= 400 < count_tokens(tokenizer, render(fitted + 1))
    )
    assert max_items_that_fit(render, tokenizer, max_items=20, budget=5) == 0
    assert count_tokens(tokenizer, truncate_to_tokens(tokenizer, "word " * 100, 10)) <= 10
