"""QLoRA arm: a 4-bit NF4 base, LoRA adapters, loss on completions only, then evaluation.

`model` quantises and loads the base, `data` encodes and batches examples, `training` plans
the recipe and trains (the loop itself in `loop`), `adapter_io` saves and reads the adapter,
and `evaluation` answers the test split with it. The config is `app.domain.arms.QLoRAConfig`.
"""

from __future__ import annotations

from app.domain.arms import QLoRAConfig
from app.domain.prompts import max_new_tokens_for, short_messages
from app.domain.records import ArmResult, PilotData, ProgressCallback, no_progress
from worker.pilots.arms.qlora.evaluation import evaluate
from worker.pilots.arms.qlora.training import train_and_release
from worker.pilots.prompt_rendering import make_prompt
from worker.pilots.resources import Resources
from worker.pilots.served_adapters import answer_as_served


def run(
    config: QLoRAConfig,
    resources: Resources,
    data: PilotData,
    progress: ProgressCallback = no_progress,
) -> ArmResult:
    """Train a QLoRA adapter on data.train, then answer data.test with the short prompt:
    in-process, and through the serving endpoint when the pilot has one."""
    result = train_and_release(config, resources, data, progress)
    prompts = [make_prompt(resources.tokenizer, short_messages(data.task, e)) for e in data.test]
    result = evaluate(config, resources, data, result, [p.text for p in prompts], progress)
    if resources.serving_endpoint is None:
        return result
    return answer_as_served(
        resources.serving_endpoint,
        result,
        prompts,
        task=data.task,
        max_new_tokens=max_new_tokens_for(data.task, config.max_new_tokens),
        progress=progress,
    )
