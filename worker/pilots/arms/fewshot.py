"""Few-shot prompting arm: the baseline every other path has to beat.

k training examples, chosen reproducibly (stratified over labels for classification), are
shown as earlier chat turns; the same shots serve every test query. k is cut down until the
longest test query's prompt fits the context window. Decoding is greedy.

Gold context passages (Example.context) are *not* shown: this arm is the closed-book
baseline, and finding the passage is the RAG arm's job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from app.domain.records import ArmResult, PilotData, ProgressCallback, no_progress
from app.domain.samples.schemas import PilotTask
from app.domain.samples.stratified import stratified_sample
from worker.pilots.common import (
    config_recipe,
    peak_memory_mb,
    predictions_from_outputs,
    stops_at_newline,
)
from worker.pilots.context_fit import count_tokens, max_items_that_fit, plan_prompts
from worker.pilots.generation import generate
from worker.pilots.prompts import build_messages, render_prompt
from worker.resources import Resources

ARM = "fewshot"


@dataclass
class FewShotConfig:
    k: int = field(default=8, metadata={"help": "Shots to show (fewer if they do not fit)."})
    seed: int = field(default=0, metadata={"help": "Seed for choosing the shots."})
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Output budget; unset = a per-task default."}
    )
    batch_size: int = field(default=16, metadata={"help": "Prompts decoded together."})
    max_prompt_tokens: int = field(
        default=2048,
        metadata={"help": "Cap on the context window used (prompt + output), for speed."},
    )


def run(
    config: FewShotConfig,
    resources: Resources,
    data: PilotData,
    progress: ProgressCallback = no_progress,
) -> ArmResult:
    started = time.perf_counter()
    tokenizer = resources.tokenizer
    task = data.task
    plan = plan_prompts(
        tokenizer,
        resources.model,
        data,
        max_new_tokens=config.max_new_tokens,
        max_prompt_tokens=config.max_prompt_tokens,
    )
    notes = plan.notes
    if plan.labels and not plan.listed:
        notes.append(
            f"The {len(plan.labels)} labels were too many to list; shots show them instead."
        )

    candidates = stratified_sample(
        data.train,
        config.k,
        seed=config.seed,
        stratify=task is PilotTask.classification,
        shuffle=True,
        labels_first=True,
    )
    longest = max(plan.test, key=lambda ex: count_tokens(tokenizer, ex.input), default=None)
    k_used = 0
    if longest is not None:
        probe = longest

        def render_with(n: int) -> str:
            messages = build_messages(task, probe, shots=candidates[:n], labels=plan.listed)
            return render_prompt(tokenizer, messages)

        k_used = max_items_that_fit(
            render_with, tokenizer, max_items=len(candidates), budget=plan.budget
        )
    if k_used < config.k:
        notes.append(f"Used {k_used} shots of the {config.k} asked for (context or data limit).")
    shots = candidates[:k_used]

    prompts = [
        render_prompt(tokenizer, build_messages(task, example, shots=shots, labels=plan.listed))
        for example in plan.test
    ]
    outputs = generate(
        resources.model,
        tokenizer,
        prompts,
        max_new_tokens=plan.max_new,
        batch_size=config.batch_size,
        progress=progress,
        stop_at_newline=stops_at_newline(task),
    )
    recipe = config_recipe(config) | {
        "k_used": k_used,
        "max_new_tokens_used": plan.max_new,
        "context_window": plan.window,
        "labels_listed": bool(plan.listed),
        "shot_lines": [shot.line for shot in shots],
    }
    return ArmResult(
        arm=ARM,
        predictions=predictions_from_outputs(outputs),
        peak_memory_mb=peak_memory_mb(resources.device),
        recipe=recipe,
        notes=[*notes, f"Arm wall time {time.perf_counter() - started:.1f} s."],
    )
