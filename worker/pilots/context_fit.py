"""How many shots or passages fit the model's context window.

The window is the model's own limit (config.max_position_embeddings, or the tokenizer's
model_max_length when that is a real number), capped by the arm's `max_prompt_tokens`:
on a CPU the cost of a prompt grows with its length on every query, so a pilot keeps
prompts to a size it can afford even when the model could take more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Tokenizers without a limit report a huge sentinel (int(1e30)); anything above this is not
# a real window.
_NO_LIMIT = 10_000_000


def context_window(tokenizer: Any, model: Any = None, *, cap: int | None = None) -> int:
    """Usable context length in tokens: the model's limit, capped by `cap` when given."""
    candidates: list[int] = []
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        candidates.append(positions)
    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_max, int) and 0 < tokenizer_max < _NO_LIMIT:
        candidates.append(tokenizer_max)
    if cap is not None:
        candidates.append(cap)
    if not candidates:
        return 2048  # a conservative default for an unknown model
    return min(candidates)


def count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_budget(window: int, max_new_tokens: int) -> int:
    """Tokens left for the prompt once room for the completion is reserved."""
    return max(window - max_new_tokens, 0)


def max_items_that_fit(
    render: Callable[[int], str],
    tokenizer: Any,
    *,
    max_items: int,
    budget: int,
) -> int:
    """The largest n <= max_items whose rendered prompt `render(n)` fits in `budget` tokens.

    Prompt length grows with n, so a binary search needs O(log n) tokenisations. Returns 0
    when even the bare prompt does not fit (the caller decides whether to truncate).
    """
    low, high = 0, max(max_items, 0)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(tokenizer, render(middle)) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def truncate_to_tokens(tokenizer: Any, text: str, max_tokens: int) -> str:
    """`text` cut to at most `max_tokens` tokens (on a token boundary)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return str(tokenizer.decode(ids[: max(max_tokens, 0)], skip_special_tokens=True))
