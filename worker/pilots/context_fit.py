"""How many shots or passages fit the model's context window.

The window is the model's own limit (config.max_position_embeddings, or the tokenizer's
model_max_length when that is a real number), capped by the arm's `max_prompt_tokens`:
on a CPU the cost of a prompt grows with its length on every query, so a pilot keeps
prompts to a size it can afford even when the model could take more.

`plan_prompts` settles, once for every prompting arm, what the window leaves for the prompt:
the output reserve, the prompt budget, test inputs cut to fit, and whether the label list fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.domain.prompts import max_new_tokens_for
from app.domain.records import PilotData
from app.domain.samples.schemas import Example, PilotTask
from worker.pilots.prompt_rendering import labels_fit

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


def fit_inputs(
    examples: list[Example], tokenizer: Any, max_tokens: int
) -> tuple[list[Example], int]:
    """Test inputs cut to `max_tokens` tokens where longer; returns (examples, how many cut)."""
    fitted: list[Example] = []
    cut = 0
    for example in examples:
        text = truncate_to_tokens(tokenizer, example.input, max_tokens)
        if text != example.input:
            cut += 1
            example = example.model_copy(update={"input": text})
        fitted.append(example)
    return fitted, cut


@dataclass(frozen=True)
class PromptPlan:
    """What the context window leaves for an arm's prompts, settled before any are built."""

    test: list[Example]  # data.test, inputs cut to `input_tokens` where longer
    max_new: int  # tokens reserved for the completion
    window: int  # usable context window (prompt + completion)
    budget: int  # tokens left for the prompt
    input_tokens: int  # the most tokens a test input may keep
    inputs_cut: int  # how many test inputs were cut to `input_tokens`
    labels: list[str]  # the classification label set offered for listing ([] otherwise)
    listed: list[str]  # the labels to list in the prompt: `labels` if they fit, else []

    @property
    def notes(self) -> list[str]:
        """The plan's notes, as a fresh list the arm may add its own to."""
        if not self.inputs_cut:
            return []
        return [
            f"{self.inputs_cut} test inputs were cut to {self.input_tokens} tokens to fit the "
            "context."
        ]


def plan_prompts(
    tokenizer: Any,
    model: Any,
    data: PilotData,
    *,
    max_new_tokens: int | None,
    max_prompt_tokens: int,
    list_labels: bool = True,
) -> PromptPlan:
    """The prompt plan for `data.test` under the arm's output budget and window cap.

    `list_labels=False` offers no label list (an arm whose model learned the labels).
    """
    max_new = max_new_tokens_for(data.task, max_new_tokens)
    window = context_window(tokenizer, model, cap=max_prompt_tokens)
    budget = prompt_budget(window, max_new)
    # Inputs longer than half the budget are cut so shots, passages and instructions still fit.
    input_tokens = budget // 2
    test, cut = fit_inputs(data.test, tokenizer, input_tokens)
    classification = list_labels and data.task is PilotTask.classification
    labels = data.labels if classification else []
    listed = labels if labels_fit(tokenizer, labels, budget=budget) else []
    return PromptPlan(
        test=test,
        max_new=max_new,
        window=window,
        budget=budget,
        input_tokens=input_tokens,
        inputs_cut=cut,
        labels=labels,
        listed=listed,
    )
