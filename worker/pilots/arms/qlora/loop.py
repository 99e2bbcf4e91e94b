"""The training loop, its completion-only loss, and validation loss.

Why a plain PyTorch loop rather than the HF Trainer: the pilot needs a wall-clock cap that
stops mid-epoch, validation loss on a step schedule *and* at epoch ends, early stopping
that restores the best adapter, progress with an ETA in our own callback type, and one
trick the Trainer does not do for us: with left padding every completion ends at the last
position, so the LM head (a 49k-vocabulary matmul, ~20% of a 135M model's compute) runs
only on the last few positions (`logits_to_keep`). That is ~150 lines we fully control
instead of callbacks bolted onto a Trainer, and it is the same code on CPU and CUDA.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from app.domain.recipe import QLoRARecipe
from app.domain.records import LossPoint, Progress, ProgressCallback
from worker.pilots.arms.qlora.adapter_io import load_lora_state, lora_state
from worker.pilots.arms.qlora.data import (
    IGNORE_INDEX,
    Batch,
    EncodedExample,
    length_grouped_batches,
    micro_batches,
)
from worker.pilots.arms.qlora.model import (
    autocast,
    compute_dtype,
    eval_mode_keeping_4bit_trainable,
)
from worker.pilots.memory import contiguous_head_input, release_freed_memory

if TYPE_CHECKING:
    from app.domain.arms import QLoRAConfig


def _supports_logits_to_keep(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def completion_loss_sum(model: Any, batch: Batch, device: str) -> torch.Tensor:
    """Summed cross-entropy over completion tokens (caller divides by the token count)."""
    kwargs: dict[str, Any] = {}
    if _supports_logits_to_keep(model):
        kwargs["logits_to_keep"] = batch.keep
    with autocast(device), contiguous_head_input(model):
        logits = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
            **kwargs,
        ).logits
    logits = logits[:, -batch.keep :]
    targets = batch.labels[:, -batch.keep + 1 :] if batch.keep > 1 else batch.labels[:, :0]
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


# On the CPU a training step's peak memory is the backward's saved activations for its
# longest micro-batch: ~1.7 MB a token on the default model with LoRA on every linear layer
# (bench/README.md, memory_pilot.py), so 8 rows of 100 tokens hold ~1.3 GB. At 384 tokens a
# micro-batch of 8 short rows stays whole and the longest run in two or three parts; the
# pilot's peak fell 57 MB below 512 tokens' for ~8% longer steps, and it is what brings a
# pilot at the worker's caps under 2.5 GB.
CPU_TOKENS_PER_FORWARD = 384


def tokens_per_forward(config: QLoRAConfig, device: str) -> int | None:
    """The cap on one training forward's rows x length (None: micro-batches stay whole)."""
    if config.max_tokens_per_forward is not None:
        return config.max_tokens_per_forward
    return None if device.startswith("cuda") else CPU_TOKENS_PER_FORWARD


def accumulate_gradients(
    model: Any,
    batch: Batch,
    device: str,
    divisor: int,
    max_tokens: int | None,
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """Forward and backward of one micro-batch, in parts of at most `max_tokens` tokens.

    Gradients accumulate over the parts as over micro-batches; the loss is summed and
    divided by `divisor` (the tokens of the whole optimizer step), so the parts add up to the
    batch's share of the step. Returns that share.
    """
    share = 0.0
    for part in batch.split(max_tokens):
        loss = completion_loss_sum(model, part.to(device), device) / divisor
        (scaler.scale(loss) if scaler else loss).backward()
        share += float(loss.detach())
    return share


@torch.no_grad()
def validation_loss(model: Any, batches: Sequence[Batch], device: str) -> float:
    """Mean per-token completion loss over the validation set (dropout off)."""
    total, tokens = 0.0, 0
    with eval_mode_keeping_4bit_trainable(model):
        for batch in batches:
            total += float(completion_loss_sum(model, batch, device))
            tokens += batch.completion_tokens
    return total / max(tokens, 1)


def linear_schedule(total_steps: int, warmup_steps: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        remaining = total_steps - step
        return max(0.0, remaining / max(1, total_steps - warmup_steps))

    return factor


def schedule_steps(recipe: QLoRARecipe, n_examples: int) -> tuple[int, int]:
    """(optimizer steps planned, of which warmup) for `n_examples` under `recipe`."""
    per_epoch = math.ceil(n_examples / recipe.effective_batch_size)
    total_steps = max(1, per_epoch * recipe.epochs)
    return total_steps, round(total_steps * recipe.warmup_ratio)


def training_loop(
    model: Any,
    encoded: list[EncodedExample],
    validation_batches: list[Batch],
    recipe: QLoRARecipe,
    config: QLoRAConfig,
    device: str,
    pad_id: int,
    progress: ProgressCallback,
) -> tuple[list[LossPoint], list[str], float, int]:
    """AdamW, linear warmup/decay, accumulation, validation, early stopping, time cap."""
    notes: list[str] = []
    parameters = [p for p in model.parameters() if p.requires_grad]
    # No weight decay: LoRA's B starts at zero and decay would pull the update back to none.
    optimizer = torch.optim.AdamW(parameters, lr=recipe.learning_rate, weight_decay=0.0)
    total_steps, warmup = schedule_steps(recipe, len(encoded))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total_steps, warmup))
    scaler = torch.amp.GradScaler("cuda") if compute_dtype(device) == torch.float16 else None
    on_cpu = not device.startswith("cuda")
    max_tokens = tokens_per_forward(config, device)
    generator = torch.Generator().manual_seed(config.seed)

    curve: list[LossPoint] = []
    # Step 0 is the base model's validation loss: the curve's reference point.
    validating = bool(validation_batches)
    best_loss = validation_loss(model, validation_batches, device) if validating else math.inf
    if validating:
        curve.append(LossPoint(step=0, epoch=0.0, train_loss=None, validation_loss=best_loss))
    else:
        notes.append("no validation examples: no early stopping, the last adapter is kept")
    best_state = lora_state(model)
    best_step, stale, step = 0, 0, 0
    stop_reason: str | None = None
    cap_seconds = config.max_train_minutes * 60.0
    started = time.perf_counter()
    progress(Progress(stage="training", step=0, total=total_steps, eta_seconds=None))

    def evaluate(epoch: float) -> bool:
        """Record validation loss; True when patience is exhausted."""
        nonlocal best_loss, best_state, best_step, stale
        if not validating:
            best_step = step  # nothing to compare against: keep the latest weights
            return False
        loss = validation_loss(model, validation_batches, device)
        if curve and curve[-1].step == step:
            curve[-1].validation_loss = loss
        else:
            curve.append(LossPoint(step=step, epoch=epoch, train_loss=None, validation_loss=loss))
        if loss < best_loss - 1e-4:
            best_loss, best_state, best_step, stale = loss, lora_state(model), step, 0
        else:
            stale += 1
        return stale >= recipe.early_stopping_patience

    for epoch in range(recipe.epochs):
        if config.group_by_length:
            micro = length_grouped_batches(encoded, recipe.batch_size, pad_id, generator)
        else:
            order = torch.randperm(len(encoded), generator=generator).tolist()
            micro = micro_batches([encoded[i] for i in order], recipe.batch_size, pad_id)
        for first in range(0, len(micro), recipe.grad_accum):
            if time.perf_counter() - started > cap_seconds:
                stop_reason = f"time cap of {config.max_train_minutes:g} min reached at step {step}"
                break
            group = micro[first : first + recipe.grad_accum]
            # Normalise by the tokens of the whole optimizer step, not per micro-batch, so a
            # short micro-batch does not weigh as much as a full one.
            tokens = max(1, sum(b.completion_tokens for b in group))
            step_loss = sum(
                accumulate_gradients(model, batch, device, tokens, max_tokens, scaler)
                for batch in group
            )
            if scaler:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if on_cpu:
                # glibc keeps the step's freed activations (blocks under the mmap threshold)
                # and steps of other lengths cannot reuse all of them: without this the
                # resident set grew by ~1.7 GB over 180 steps (bench/memory_pilot.py).
                release_freed_memory()
            step += 1
            epoch_position = epoch + min(1.0, (first + len(group)) / len(micro))
            curve.append(
                LossPoint(
                    step=step,
                    epoch=round(epoch_position, 3),
                    train_loss=step_loss,
                    validation_loss=None,
                )
            )
            elapsed = time.perf_counter() - started
            eta = min(elapsed / step * (total_steps - step), max(0.0, cap_seconds - elapsed))
            progress(Progress(stage="training", step=step, total=total_steps, eta_seconds=eta))
            if step % recipe.eval_every_steps == 0 and evaluate(epoch_position):
                stop_reason = (
                    f"early stopping at step {step}: validation loss did not improve for "
                    f"{recipe.early_stopping_patience} evaluations"
                )
                break
        if stop_reason:
            break
        if curve and curve[-1].validation_loss is None and evaluate(float(epoch + 1)):
            stop_reason = (
                f"early stopping after epoch {epoch + 1}: validation loss did not improve for "
                f"{recipe.early_stopping_patience} evaluations"
            )
            break
    if stop_reason and curve and curve[-1].validation_loss is None:
        evaluate(curve[-1].epoch)  # a final validation point for the curve
    training_seconds = time.perf_counter() - started

    if stop_reason:
        notes.append(stop_reason)
    if best_step != step:
        load_lora_state(model, best_state)
        notes.append(
            f"restored the adapter from step {best_step} (best validation loss {best_loss:.4f})"
        )
    if validating and best_step == 0:
        notes.append("validation loss never improved on the base model: the adapter is a no-op")
    return curve, notes, training_seconds, step
