"""One conversation, one token sequence: how the pilot, the bundle and a server tokenise it.

A served model (vLLM, transformers' `generate` on a rendered prompt) renders the chat template
to text and tokenises that text with `add_special_tokens=False`: the template already writes
the BOS for the families that have one (Llama-3.x, Mistral, Gemma, Phi-3). Tokenising the same
text with the tokenizer's defaults adds a second BOS, so a model trained that way learns a
prefix it never sees when served. The pilot's QLoRA arm and the bundle's `train_trl.py` both
encode through `encode_chat` here (the bundle gets a generated copy, `app.exports.codegen`),
so the training ids are the served prompt's ids followed by the answer and the family's own
end-of-turn token.

Pure: the tokenizer is duck-typed (`apply_chat_template`, `__call__`, special tokens), so the
web app can copy this source without importing transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ChatMessage = dict[str, str]

IGNORE_INDEX = -100  # label value cross_entropy skips: prompt tokens

# The token each family closes an assistant turn with, when the chat template does not show it
# (it is read from the template first): Llama-3.x, Gemma, Phi-3, ChatML (Qwen, SmolLM).
# Training on the tokenizer's EOS instead (Gemma's <eos>, Phi-3's <|endoftext|>) teaches a
# stop the server does not wait for, so answers run on.
END_OF_TURN_TOKENS = ("<|eot_id|>", "<end_of_turn>", "<|end|>", "<|im_end|>")


class ChatTemplateMissing(ValueError):
    """The tokenizer has no chat template: a base (non-instruct) model's, usually."""


def require_chat_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ChatTemplateMissing(
            f"{name} has no chat template: the pilot's prompts are chat conversations, so "
            "use the model's instruct (chat) variant, or set tokenizer.chat_template"
        )


def fold_system(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The system message put at the head of the first user message, for templates that have
    no system role (Gemma). Servers must be sent the same folded messages."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    for message in rest:
        if message["role"] == "user":
            message["content"] = f"{system}\n\n{message['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def chat_messages(tokenizer: Any, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """`messages` as the tokenizer's template accepts them: unchanged, or with the system
    message folded into the first user turn when the template rejects a system role."""
    require_chat_template(tokenizer)
    try:
        tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    except Exception:  # jinja's TemplateError from the template's raise_exception
        folded = fold_system(messages)
        if folded == list(messages):
            raise
        # Gemma says "System role not supported", older Mistral "roles must alternate": the
        # folded messages must render, else the template's own error stands.
        tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=True)
        return folded
    return list(messages)


def render_chat_prompt(tokenizer: Any, messages: Sequence[ChatMessage]) -> str:
    """The prompt text up to and including the assistant header, as a server renders it."""
    accepted = chat_messages(tokenizer, messages)
    text = tokenizer.apply_chat_template(accepted, tokenize=False, add_generation_prompt=True)
    return str(text)


def prompt_token_ids(tokenizer: Any, messages: Sequence[ChatMessage]) -> list[int]:
    """The served prompt's ids: the rendered text, no special tokens added (the template has
    them), as vLLM's chat endpoint and the pilot's generation tokenise it."""
    text = render_chat_prompt(tokenizer, messages)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _special_tokens(tokenizer: Any) -> list[str]:
    names = set(getattr(tokenizer, "all_special_tokens", []) or [])
    added = getattr(tokenizer, "get_added_vocab", None)
    if callable(added):
        names.update(added())
    return sorted(names, key=len, reverse=True)  # longest first: "<|end|>" vs "<|endoftext|>"


def completion_text(tokenizer: Any, messages: Sequence[ChatMessage], answer: str) -> str:
    """The assistant turn as the chat template writes it after the prompt, up to and including
    the token that closes it (`<|eot_id|>`, `<end_of_turn>`, `<|end|>`, `<|im_end|>`, `</s>`):
    what the served model must generate, with the template's own spacing and trimming.

    Some templates render the history differently from the prompt (Mistral v0.3 puts the
    system message before the last user turn only), so the turn is read after the last user
    message alone when the whole conversation does not extend the prompt; failing both, the
    answer and a known end-of-turn token of the vocabulary, else the EOS.
    """
    messages = chat_messages(tokenizer, messages)
    body = answer.strip()
    specials = _special_tokens(tokenizer)
    for history in (messages, messages[-1:]):
        prompt = render_chat_prompt(tokenizer, history)
        turn = {"role": "assistant", "content": answer}
        whole = str(tokenizer.apply_chat_template([*history, turn], tokenize=False))
        at = whole.find(body, len(prompt)) if whole.startswith(prompt) and body else -1
        for position in range(at + len(body), len(whole)) if at >= 0 else ():
            for token in specials:
                if whole.startswith(token, position):
                    return whole[len(prompt) : position + len(token)]
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    end = next((t for t in END_OF_TURN_TOKENS if t in vocab), tokenizer.eos_token or "")
    return f"{answer}{end}"


def encode_chat(
    tokenizer: Any, messages: Sequence[ChatMessage], answer: str, *, max_seq_len: int
) -> tuple[list[int], list[int], bool]:
    """(input_ids, labels, truncated) for one example: the served prompt's ids, then the answer
    and the end-of-turn token; labels are IGNORE_INDEX on the prompt (loss on the answer only).

    Prompt and completion are tokenised separately so the boundary is exact (no merge of the
    last prompt token with the first answer token). A too-long sequence loses prompt tokens
    from the left: the completion is what is learned, so it is kept whole.
    """
    prompt_ids = prompt_token_ids(tokenizer, messages)
    completion = completion_text(tokenizer, messages, answer)
    completion_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    completion_ids = completion_ids[: max(1, max_seq_len - 1)]
    room = max_seq_len - len(completion_ids)
    truncated = len(prompt_ids) > room
    if truncated:
        prompt_ids = prompt_ids[len(prompt_ids) - room :]
    labels = [IGNORE_INDEX] * len(prompt_ids) + completion_ids
    return [*prompt_ids, *completion_ids], labels, truncated
