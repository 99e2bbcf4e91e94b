"""What the prompting arms (few-shot, RAG) share: the prompt plan and greedy answering.

Both arms plan prompts under the same window and output budget and decode the same way, so
the only difference between them is what goes into the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from app.domain.prompts import stops_at_newline
from app.domain.records import PilotData, Prediction, ProgressCallback
from worker.pilots.arm_results import predictions_from_outputs
from worker.pilots.context_fit import PromptPlan, plan_prompts
from worker.pilots.endpoint_answers import answer_with_endpoint
from worker.pilots.generation import generate
from worker.pilots.prompt_rendering import Prompt
from worker.pilots.resources import Resources


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


@dataclass(frozen=True)
class Answers:
    predictions: list[Prediction]
    notes: list[str]


def answer(
    prompts: Sequence[Prompt],
    plan: PromptPlan,
    config: PromptingConfig,
    resources: Resources,
    data: PilotData,
    progress: ProgressCallback,
) -> Answers:
    """Greedy answers to `prompts` with the task's stop rule: from the pilot's prompting
    endpoint when it has one, else from the in-process model, batched."""
    if resources.prompt_endpoint is not None:
        asked = answer_with_endpoint(
            resources.prompt_endpoint,
            prompts,
            max_new_tokens=plan.max_new,
            stop_at_newline=stops_at_newline(data.task),
            progress=progress,
        )
        return Answers(asked.predictions, asked.notes)
    outputs = generate(
        resources.model,
        resources.tokenizer,
        [prompt.text for prompt in prompts],
        max_new_tokens=plan.max_new,
        batch_size=config.batch_size,
        progress=progress,
        stop_at_newline=stops_at_newline(data.task),
    )
    return Answers(predictions_from_outputs(outputs), [])
