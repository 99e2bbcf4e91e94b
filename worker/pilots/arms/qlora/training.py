"""Training the adapter: quantise the base, plan the recipe, run the loop, save the result.

The recipe is planned twice: the first plan fixes the adapter's shape, then a probe times a
real step on this machine and the time cap is planned from that measurement, not a guess.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from app.domain.recipe import QLoRARecipe, choose_recipe
from app.domain.records import ArmResult, PilotData, Progress, ProgressCallback, no_progress
from app.domain.samples.schemas import Example, PilotTask
from app.domain.samples.stratified import stratified_sample
from worker.pilots.arms.qlora.adapter_io import lora_state, save_adapter, write_summary
from worker.pilots.arms.qlora.data import Batch, EncodedExample, encode_example, micro_batches
from worker.pilots.arms.qlora.loop import (
    accumulate_gradients,
    tokens_per_forward,
    training_loop,
)
from worker.pilots.arms.qlora.model import (
    base_parameter_count,
    compute_dtype,
    dequantize_once,
    load_quantized_base,
    trainable_parameters,
    use_mask_dropout,
    use_silu_gate,
)
from worker.pilots.arms.qlora.preflight import check_gpu_memory
from worker.pilots.memory import (
    PeakMemory,
    drop_mapped_pages,
    large_blocks_unmapped,
    release_freed_memory,
)
from worker.pilots.resources import Resources

if TYPE_CHECKING:
    from app.domain.arms import QLoRAConfig


@dataclass
class TrainedAdapter:
    """What training leaves behind: the model with its best adapter, and the arm's facts."""

    model: Any  # peft.PeftModel on the 4-bit base, best adapter loaded
    result: ArmResult  # everything but predictions
    recipe: QLoRARecipe
    initial_lora_state: dict[str, torch.Tensor]  # LoRA weights before training (diagnostics)


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)  # python, numpy, torch (and CUDA) RNGs


def _subset(examples: Sequence[Example], n: int, *, seed: int, stratify: bool) -> list[Example]:
    """`n` examples, every label kept when stratified. Draw order is enough: the loop
    reshuffles every epoch, and validation loss does not depend on the order."""
    return stratified_sample(
        examples, n, seed=seed, stratify=stratify, shuffle=False, labels_first=False
    )


def _apply_overrides(recipe: QLoRARecipe, overrides: dict[str, Any]) -> QLoRARecipe:
    if not overrides:
        return recipe
    names = {f.name for f in dataclasses.fields(QLoRARecipe)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown recipe fields: {sorted(unknown)}")
    recipe = dataclasses.replace(recipe, **overrides)
    recipe.rationale = [*recipe.rationale, f"overridden by configuration: {sorted(overrides)}"]
    return recipe


def _shape(recipe: QLoRARecipe) -> tuple[Any, ...]:
    """The fields that decide the model and step cost (what the probe measured)."""
    targets = recipe.target_modules
    return (recipe.rank, recipe.batch_size, recipe.grad_accum, str(targets), recipe.max_seq_len)


def _use_gradient_checkpointing(config: QLoRAConfig, device: str, params: int) -> bool:
    # Gradient checkpointing works on the CPU here (non-reentrant; verified with bnb 0.50 and
    # peft 0.21) but costs ~40% step time; a sub-1B model's activations on short sequences
    # are a few hundred MB, so it only pays where memory is the limit: big models on a GPU.
    if config.gradient_checkpointing is not None:
        return config.gradient_checkpointing
    return device.startswith("cuda") and params > 1_000_000_000


def _use_dequantize_once(config: QLoRAConfig, device: str, params: int) -> bool:
    # The dequantised copy costs the bf16 size of the linear layers; on a CPU with a small
    # model that is a few hundred MB and saves the dequantisation in every forward and
    # backward. A large model on a GPU is why QLoRA is 4-bit: there it stays 4-bit.
    if config.dequantize_once is not None:
        return config.dequantize_once
    return device == "cpu" and params <= 1_000_000_000


def _probe_seconds_per_step(
    model: Any, batches: Sequence[Batch], grad_accum: int, device: str, max_tokens: int | None
) -> float:
    """Time forward+backward of a real micro-batch (the second: the first warms up)."""
    timings: list[float] = []
    for batch in batches[:2]:
        started = time.perf_counter()
        accumulate_gradients(model, batch, device, max(batch.completion_tokens, 1), max_tokens)
        timings.append(time.perf_counter() - started)
    model.zero_grad(set_to_none=True)
    return timings[-1] * grad_accum * 1.05  # + optimizer step, clipping, bookkeeping


def train(
    config: QLoRAConfig,
    resources: Resources,
    data: PilotData,
    progress: ProgressCallback = no_progress,
) -> TrainedAdapter:
    """Quantise the base, train LoRA adapters on `data.train`, save the best adapter."""
    import peft

    device: str = resources.device
    tokenizer = resources.tokenizer
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    notes: list[str] = []
    seed_everything(config.seed)
    if not data.train:
        raise ValueError("the QLoRA arm needs training examples")

    # GPU workers refuse a run that cannot fit before loading anything, at the recipe the
    # run would start with (its batch and sequence length). Without the model's size there
    # is nothing to estimate, and a CPU has no card to fit.
    if device.startswith("cuda") and resources.model_parameters:
        planned = config.recipe or choose_recipe(
            resources.model_parameters,
            len(data.train),
            len(data.labels) if data.task == PilotTask.classification and data.labels else None,
            config.max_train_minutes,
            config.seconds_per_step,
        )
        check_gpu_memory(
            device,
            resources.model_parameters,
            _apply_overrides(copy.deepcopy(planned), config.recipe_overrides),
        )

    with PeakMemory(device) as memory, large_blocks_unmapped():
        progress(Progress(stage="loading", step=0, total=1))
        # The bf16 model maps the same file and is idle while this arm trains on its own copy.
        drop_mapped_pages(resources.llm_path)
        base = load_quantized_base(resources.llm_path, device)
        params = base_parameter_count(base)
        checkpointing = _use_gradient_checkpointing(config, device, params)
        base = peft.prepare_model_for_kbit_training(
            base,
            use_gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )

        classification = data.task == PilotTask.classification
        n_labels = len(data.labels) if classification and data.labels else None
        train_pool = list(data.train)
        validation = list(data.validation)
        if not validation:
            carve = min(64, max(1, len(train_pool) // 10))
            if len(train_pool) > carve:
                rng = random.Random(config.seed)
                rng.shuffle(train_pool)
                validation, train_pool = train_pool[:carve], train_pool[carve:]
                notes.append(f"no validation split given: held out {carve} training examples")
        if len(validation) > config.max_validation_examples:
            validation = _subset(
                validation,
                config.max_validation_examples,
                seed=config.seed,
                stratify=classification,
            )
            notes.append(f"validation capped at {config.max_validation_examples} examples")

        # First recipe without a time estimate: it fixes the model shape (targets, rank,
        # batch); the probe below then measures a real step, and the recipe is re-planned.
        pinned = config.recipe is not None

        def recipe_for(seconds_per_step: float | None) -> QLoRARecipe:
            return choose_recipe(
                params, len(train_pool), n_labels, config.max_train_minutes, seconds_per_step
            )

        recipe = config.recipe or recipe_for(config.seconds_per_step)
        recipe = _apply_overrides(copy.deepcopy(recipe), config.recipe_overrides)

        lora = peft.LoraConfig(
            r=recipe.rank,
            lora_alpha=recipe.alpha,
            lora_dropout=recipe.dropout,
            target_modules=recipe.target_modules,
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = peft.get_peft_model(base, lora)
        use_mask_dropout(model)
        use_silu_gate(model)
        model.train()
        dequantized = _use_dequantize_once(config, device, params) and dequantize_once(model) > 0
        initial_lora_state = lora_state(model)

        def encode(example: Example) -> EncodedExample:
            return encode_example(tokenizer, data.task, example, max_seq_len=recipe.max_seq_len)

        if not pinned and config.seconds_per_step is None:
            probe_examples = [
                encode(e)
                for e in random.Random(config.seed).sample(
                    train_pool, min(len(train_pool), 2 * recipe.batch_size)
                )
            ]
            probe = micro_batches(probe_examples, recipe.batch_size, pad_id)
            estimate = _probe_seconds_per_step(
                model, probe, recipe.grad_accum, device, tokens_per_forward(config, device)
            )
            replanned = _apply_overrides(recipe_for(estimate), config.recipe_overrides)
            if _shape(replanned) != _shape(recipe):
                raise RuntimeError("re-planning changed the adapter shape the probe measured")
            recipe = replanned
            recipe.rationale.append(f"step time measured by a probe: {estimate:.2f} s/step.")

        if recipe.max_train_examples is not None and recipe.max_train_examples < len(train_pool):
            train_pool = _subset(
                train_pool, recipe.max_train_examples, seed=config.seed, stratify=classification
            )
            notes.append(f"time cap: trained on {len(train_pool)} of {len(data.train)} examples")

        encoded = [encode(e) for e in train_pool]
        truncated = sum(e.truncated for e in encoded)
        if truncated:
            notes.append(f"{truncated} training prompts cut to {recipe.max_seq_len} tokens")
        held_out = [encode(e) for e in validation]
        if config.group_by_length:
            # The mean loss does not depend on the order; similar lengths together pad less.
            held_out.sort(key=lambda e: len(e.input_ids))
        validation_batches = [
            b.to(device) for b in micro_batches(held_out, recipe.batch_size * 2, pad_id)
        ]

        loss_curve, outcome_notes, training_seconds, steps_done = training_loop(
            model, encoded, validation_batches, recipe, config, device, pad_id, progress
        )
        notes.extend(outcome_notes)

        adapter_dir = Path(config.adapter_dir)
        saved_bytes = save_adapter(model, adapter_dir)

    recipe_record = recipe.to_dict() | {
        "quantization": "nf4, double quant, compute "
        + str(compute_dtype(device)).removeprefix("torch."),
        "gradient_checkpointing": checkpointing,
        "dequantized_once": dequantized,
        "tokens_per_forward": tokens_per_forward(config, device),
        "train_examples_used": len(encoded),
        "validation_examples": len(validation),
        "steps_run": steps_done,
        "seed": config.seed,
        "base_parameters": params,
    }
    result = ArmResult(
        arm="qlora",
        predictions=[],
        training_seconds=training_seconds,
        peak_memory_mb=memory.peak_mb,
        trainable_parameters=trainable_parameters(model),
        adapter_bytes=saved_bytes,
        adapter_path=str(adapter_dir),
        loss_curve=loss_curve,
        recipe=recipe_record,
        notes=notes,
    )
    write_summary(adapter_dir, result)
    return TrainedAdapter(
        model=model, result=result, recipe=recipe, initial_lora_state=initial_lora_state
    )


def train_and_release(
    config: QLoRAConfig, resources: Resources, data: PilotData, progress: ProgressCallback
) -> ArmResult:
    """Train the adapter (saved on disk) and free the training model; returns what it measured.

    The arms evaluate with a fresh model built from the saved adapter, so the training copy
    must go first: two copies would double the peak memory the report records. Its memory
    goes back to the OS before the next model loads: glibc keeps what training freed (up to
    the size of a step's activations, ~1 GB on the default model) and that would sit under
    the evaluation's own peak.
    """
    trained = train(config, resources, data, progress)
    result = trained.result
    del trained
    gc.collect()
    release_freed_memory()
    return result
