"""What the prompting arms (few-shot, RAG) share: the prompt plan and greedy answering.

Both arms plan prompts under the same window and output budget and decode the same way, so
the only difference between them is what goes into the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from app.domain.records import PilotData, Prediction, ProgressCallback
from worker.pilots.common import predictions_from_outputs, stops_at_newline
from worker.pilots.context_fit import PromptPlan, plan_prompts
from worker.pilots.generation import generate
from worker.resources import Resources


class PromptingConfig(Protocol):
    max_new_tokens: int | None
    max_prompt_tokens: int
    batch_size: int


def plan_for(config: PromptingConfig, resources: Resources, data: PilotData) -> PromptPlan:
    """The prompt plan for the test split under the arm's budgets."""
    return plan_prompts(
        resources.tokenizer,
        resources.model,
        data,
        max_new_tokens=config.max_new_tokens,
        max_prompt_tokens=config.max_prompt_tokens,
    )


def answer(
    prompts: Sequence[str],
    plan: PromptPlan,
    config: PromptingConfig,
    resources: Resources,
    data: PilotData,
    progress: ProgressCallback,
) -> list[Prediction]:
    """Greedy answers to `prompts`, batched, with the task's stop rule."""
    outputs = generate(
        resources.model,
        resources.tokenizer,
        prompts,
        max_new_tokens=plan.max_new,
        batch_size=config.batch_size,
        progress=progress,
        stop_at_newline=stops_at_newline(data.task),
    )
    return predictions_from_outputs(outputs)
