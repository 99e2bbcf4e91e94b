"""Few-shot prompting arm: the baseline every other path has to beat.

k training examples, chosen reproducibly (stratified over labels for classification), are
shown as earlier chat turns; the same shots serve every test query. k is cut down until the
longest test query's prompt fits the context window. Decoding is greedy.

Gold context passages (Example.context) are *not* shown: this arm is the closed-book
baseline, and finding the passage is the RAG arm's job.
"""

from __future__ import annotations

import time

from app.domain.arms import FewShotConfig
from app.domain.prompts import build_messages
from app.domain.records import ArmResult, PilotData, ProgressCallback, no_progress
from app.domain.samples.schemas import PilotTask
from app.domain.samples.stratified import stratified_sample
from worker.pilots.arm_results import config_recipe
from worker.pilots.context_fit import count_tokens, max_items_that_fit
from worker.pilots.prompt_rendering import make_prompt, render_prompt
from worker.pilots.prompting_arms import answer, plan_for
from worker.pilots.resources import Resources

ARM = "fewshot"


def run(
    config: FewShotConfig,
    resources: Resources,
    data: PilotData,
    progress: ProgressCallback = no_progress,
) -> ArmResult:
    started = time.perf_counter()
    tokenizer = resources.tokenizer
    task = data.task
    plan = plan_for(config, resources, data)
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
        make_prompt(tokenizer, build_messages(task, example, shots=shots, labels=plan.listed))
        for example in plan.test
    ]
    answers = answer(prompts, plan, config, resources, data, progress)
    recipe = config_recipe(config) | {
        "k_used": k_used,
        "max_new_tokens_used": plan.max_new,
        "context_window": plan.window,
        "labels_listed": bool(plan.listed),
        "shot_lines": [shot.line for shot in shots],
    }
    return ArmResult(
        arm=ARM,
        predictions=answers.predictions,
        recipe=recipe,
        notes=[*notes, *answers.notes, f"Arm wall time {time.perf_counter() - started:.1f} s."],
    )
