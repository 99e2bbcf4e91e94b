"""QLoRA arm: a 4-bit NF4 base, LoRA adapters, loss on completions only, then evaluation.

Why a plain PyTorch loop rather than the HF Trainer: the pilot needs a wall-clock cap that
stops mid-epoch, validation loss on a step schedule *and* at epoch ends, early stopping
that restores the best adapter, progress with an ETA in our own callback type, and one
trick the Trainer does not do for us: with left padding every completion ends at the last
position, so the LM head (a 49k-vocabulary matmul, ~20% of a 135M model's compute) runs
only on the last few positions (`logits_to_keep`). That is ~150 lines we fully control
instead of callbacks bolted onto a Trainer, and it is the same code on CPU and CUDA.

The same code path on CPU and CUDA: bitsandbytes >= 0.50 runs NF4 `Linear4bit` on the CPU,
so the base is quantised exactly as on a GPU, and bf16 autocast is used on both (on this
CPU, AMX makes bf16 matmul ~6x faster than fp32).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import inspect
import json
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.domain.recipe import QLoRARecipe, choose_recipe
from app.domain.records import (
    ArmResult,
    LossPoint,
    PilotData,
    Prediction,
    Progress,
    ProgressCallback,
    no_progress,
)
from app.domain.samples.schemas import Example, PilotTask
from app.domain.samples.stratified import stratified_sample
from worker.pilots.common import (
    max_new_tokens_for,
    predictions_from_outputs,
    stops_at_newline,
)
from worker.pilots.generation import generate
from worker.pilots.memory import PeakMemory
from worker.pilots.prompts import render_prompt, render_training_text, short_messages

IGNORE_INDEX = -100  # label value cross_entropy skips: prompt and padding tokens
TRAINING_SUMMARY = "pathpilot-training.json"  # written next to the adapter, read by qlora_rag


@dataclass
class QLoRAConfig:
    """Settings of the QLoRA arm; the hyper-parameters themselves come from the recipe."""

    adapter_dir: Path = field(metadata={"help": "Directory the trained adapter is saved to"})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, shuffling, LoRA init"})
    max_train_minutes: float = field(
        default=6.0, metadata={"help": "Wall-clock cap on the training loop (incl. validation)"}
    )
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Output budget; unset = the per-task default of all arms"}
    )
    batch_size: int = field(default=16, metadata={"help": "Prompts per generation batch"})
    recipe: QLoRARecipe | None = field(
        default=None, metadata={"help": "Use exactly this recipe (no time planning)"}
    )
    recipe_overrides: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "QLoRARecipe fields to override after choosing"}
    )
    seconds_per_step: float | None = field(
        default=None, metadata={"help": "Step-time estimate; None: measure with a probe"}
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "None: only on CUDA for models above 1B parameters"}
    )
    max_validation_examples: int = field(
        default=64, metadata={"help": "Cap on validation examples (each pass costs time)"}
    )
    eval_weights: str = field(
        default="merged",
        metadata={
            "help": '"merged": LoRA merged into the dequantised NF4 base (bf16), as a fine-tune '
            'is served; "nf4": the 4-bit base + adapter exactly as trained'
        },
    )


# --------------------------------------------------------------------------- model loading


def compute_dtype(device: str) -> torch.dtype:
    """bf16 where the hardware has it; fp16 on older GPUs."""
    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def cpu_has_bf16() -> bool:
    # Without AVX512-BF16/AMX, bf16 on the CPU is emulated and slower than fp32.
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def autocast(device: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 (or fp16) autocast on CUDA, bf16 on a CPU that supports it, else nothing.

    Needed even though the 4-bit layers compute in bf16: `prepare_model_for_kbit_training`
    upcasts the embeddings, norms and tied LM head to fp32, and LoRA weights are fp32.
    """
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=compute_dtype(device))
    if cpu_has_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bnb_config(device: str) -> Any:
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype(device),
    )


def load_quantized_base(llm_path: str, device: str) -> Any:
    """The base model with every linear layer (except the LM head) as NF4 `Linear4bit`."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        llm_path,
        quantization_config=bnb_config(device),
        dtype=compute_dtype(device),
        device_map={"": device},
    )
    if count_linear4bit(model) == 0:
        raise RuntimeError(f"{llm_path}: no layer was quantised to 4 bits")
    return model


def count_linear4bit(model: Any) -> int:
    import bitsandbytes as bnb

    return sum(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())


def trainable_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def base_parameter_count(model: Any) -> int:
    """Parameters of the unquantised model (transformers counts packed 4-bit weights x2)."""
    return int(model.num_parameters())


# ------------------------------------------------------------------------------ encoding


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]  # prompt + completion (+ EOS)
    labels: list[int]  # IGNORE_INDEX on prompt tokens, the token id on completion tokens
    truncated: bool = False

    @property
    def completion_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def encode_example(
    tokenizer: Any, task: PilotTask, example: Example, *, max_seq_len: int
) -> EncodedExample:
    """Short prompt (instruction + input, as at inference) + target + EOS; loss on the target.

    Prompt and completion are tokenised separately so the boundary is exact (no merge of
    the last prompt token with the first target token). A too-long sequence loses prompt
    tokens from the left: the completion is what is learned, so it is kept whole.
    """
    prompt, completion = render_training_text(
        tokenizer, short_messages(task, example), example.target
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    completion_ids = completion_ids[: max(1, max_seq_len - 1)]
    room = max_seq_len - len(completion_ids)
    truncated = len(prompt_ids) > room
    if truncated:
        prompt_ids = prompt_ids[len(prompt_ids) - room :]
    return EncodedExample(
        input_ids=[*prompt_ids, *completion_ids],
        labels=[IGNORE_INDEX] * len(prompt_ids) + list(completion_ids),
        truncated=truncated,
    )


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    keep: int  # last positions whose logits are needed (longest completion + 1)

    @property
    def completion_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def to(self, device: str) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.labels.to(device),
            self.keep,
        )


def collate(examples: Sequence[EncodedExample], pad_id: int) -> Batch:
    """Left-padded batch: every sequence ends at the last position, as in generation.

    Position ids come from the attention mask (cumsum - 1), which is what transformers'
    `generate` uses for left-padded prompts, so training and inference see the same
    positions.
    """
    length = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, length - n :] = torch.tensor(example.input_ids)
        labels[row, length - n :] = torch.tensor(example.labels)
        mask[row, length - n :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # Completion tokens sit at the end; a prediction for token t comes from position t-1.
    keep = min(length, max(e.completion_tokens for e in examples) + 1)
    return Batch(input_ids, mask, positions, labels, keep)


def _supports_logits_to_keep(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def completion_loss_sum(model: Any, batch: Batch, device: str) -> torch.Tensor:
    """Summed cross-entropy over completion tokens (caller divides by the token count)."""
    kwargs: dict[str, Any] = {}
    if _supports_logits_to_keep(model):
        kwargs["logits_to_keep"] = batch.keep
    with autocast(device):
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


@contextlib.contextmanager
def eval_mode_keeping_4bit_trainable(model: Any) -> Iterator[None]:
    """eval() for dropout and friends, but bnb `Linear4bit` layers stay in training mode.

    bitsandbytes 0.50 on a CPU with AVX512-BF16 repacks a `Linear4bit` weight into an
    inference layout on its first forward in eval mode under no_grad, and the packed
    matmul has no autograd: once repacked, gradients no longer flow through any base layer
    (measured: the first layer's LoRA gradient became exactly 0). A plain `model.eval()`
    for validation would silently cripple the rest of training.
    """
    import bitsandbytes as bnb

    was_training = model.training
    model.eval()
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.train()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def validation_loss(model: Any, batches: Sequence[Batch], device: str) -> float:
    """Mean per-token completion loss over the validation set (dropout off)."""
    total, tokens = 0.0, 0
    with eval_mode_keeping_4bit_trainable(model):
        for batch in batches:
            total += float(completion_loss_sum(model, batch, device))
            tokens += batch.completion_tokens
    return total / max(tokens, 1)


# ------------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)  # python, numpy, torch (and CUDA) RNGs


def subsample(examples: Sequence[Example], n: int, *, seed: int, stratify: bool) -> list[Example]:
    """`n` examples, every label kept when stratified. Draw order is enough: the loop
    reshuffles every epoch, and validation loss does not depend on the order."""
    return stratified_sample(
        examples, n, seed=seed, stratify=stratify, shuffle=False, labels_first=False
    )


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def adapter_bytes(adapter_dir: Path) -> int:
    """Size of what a deployment needs: the adapter weights and config (no README/summary)."""
    files = [*adapter_dir.glob("adapter_model.*"), adapter_dir / "adapter_config.json"]
    return sum(p.stat().st_size for p in files if p.is_file())


def _micro_batches(items: Sequence[EncodedExample], size: int, pad_id: int) -> list[Batch]:
    return [collate(items[i : i + size], pad_id) for i in range(0, len(items), size)]


# ------------------------------------------------------------------------------ training


@dataclass
class TrainedAdapter:
    """What training leaves behind: the model with its best adapter, and the arm's facts."""

    model: Any  # peft.PeftModel on the 4-bit base, best adapter loaded
    result: ArmResult  # everything but predictions
    recipe: QLoRARecipe
    initial_lora_state: dict[str, torch.Tensor]  # LoRA weights before training (diagnostics)


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


def _probe_seconds_per_step(
    model: Any, batches: Sequence[Batch], grad_accum: int, device: str
) -> float:
    """Time forward+backward of a real micro-batch (the second: the first warms up)."""
    timings: list[float] = []
    for batch in batches[:2]:
        started = time.perf_counter()
        loss = completion_loss_sum(model, batch.to(device), device) / max(
            batch.completion_tokens, 1
        )
        loss.backward()
        timings.append(time.perf_counter() - started)
    model.zero_grad(set_to_none=True)
    return timings[-1] * grad_accum * 1.05  # + optimizer step, clipping, bookkeeping


def train(
    config: QLoRAConfig,
    resources: Any,
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

    with PeakMemory(device) as memory:
        progress(Progress(stage="loading", step=0, total=1))
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
            validation = subsample(
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
        model.train()
        initial_lora_state = _lora_state(model)

        def encode(example: Example) -> EncodedExample:
            return encode_example(tokenizer, data.task, example, max_seq_len=recipe.max_seq_len)

        if not pinned and config.seconds_per_step is None:
            probe_examples = [
                encode(e)
                for e in random.Random(config.seed).sample(
                    train_pool, min(len(train_pool), 2 * recipe.batch_size)
                )
            ]
            probe = _micro_batches(probe_examples, recipe.batch_size, pad_id)
            estimate = _probe_seconds_per_step(model, probe, recipe.grad_accum, device)
            replanned = _apply_overrides(recipe_for(estimate), config.recipe_overrides)
            if _shape(replanned) != _shape(recipe):
                raise RuntimeError("re-planning changed the adapter shape the probe measured")
            recipe = replanned
            recipe.rationale.append(f"step time measured by a probe: {estimate:.2f} s/step.")

        if recipe.max_train_examples is not None and recipe.max_train_examples < len(train_pool):
            train_pool = subsample(
                train_pool, recipe.max_train_examples, seed=config.seed, stratify=classification
            )
            notes.append(f"time cap: trained on {len(train_pool)} of {len(data.train)} examples")

        encoded = [encode(e) for e in train_pool]
        truncated = sum(e.truncated for e in encoded)
        if truncated:
            notes.append(f"{truncated} training prompts cut to {recipe.max_seq_len} tokens")
        validation_batches = [
            b.to(device)
            for b in _micro_batches([encode(e) for e in validation], recipe.batch_size * 2, pad_id)
        ]

        loss_curve, outcome_notes, training_seconds, steps_done = _training_loop(
            model, encoded, validation_batches, recipe, config, device, pad_id, progress
        )
        notes.extend(outcome_notes)

        adapter_dir = Path(config.adapter_dir)
        adapter_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(adapter_dir))
        saved_bytes = adapter_bytes(adapter_dir)

    recipe_record = recipe.to_dict() | {
        "quantization": "nf4, double quant, compute "
        + str(compute_dtype(device)).removeprefix("torch."),
        "gradient_checkpointing": checkpointing,
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
    _write_summary(adapter_dir / TRAINING_SUMMARY, result)
    return TrainedAdapter(
        model=model, result=result, recipe=recipe, initial_lora_state=initial_lora_state
    )


def _linear_schedule(total_steps: int, warmup_steps: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        remaining = total_steps - step
        return max(0.0, remaining / max(1, total_steps - warmup_steps))

    return factor


def _training_loop(
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
    per_epoch = math.ceil(len(encoded) / recipe.effective_batch_size)
    total_steps = max(1, per_epoch * recipe.epochs)
    warmup = round(total_steps * recipe.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(total_steps, warmup))
    scaler = torch.amp.GradScaler("cuda") if compute_dtype(device) == torch.float16 else None
    generator = torch.Generator().manual_seed(config.seed)

    curve: list[LossPoint] = []
    # Step 0 is the base model's validation loss: the curve's reference point.
    validating = bool(validation_batches)
    best_loss = validation_loss(model, validation_batches, device) if validating else math.inf
    if validating:
        curve.append(LossPoint(step=0, epoch=0.0, train_loss=None, validation_loss=best_loss))
    else:
        notes.append("no validation examples: no early stopping, the last adapter is kept")
    best_state = _lora_state(model)
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
            best_loss, best_state, best_step, stale = loss, _lora_state(model), step, 0
        else:
            stale += 1
        return stale >= recipe.early_stopping_patience

    for epoch in range(recipe.epochs):
        order = torch.randperm(len(encoded), generator=generator).tolist()
        micro = _micro_batches([encoded[i] for i in order], recipe.batch_size, pad_id)
        for first in range(0, len(micro), recipe.grad_accum):
            if time.perf_counter() - started > cap_seconds:
                stop_reason = f"time cap of {config.max_train_minutes:g} min reached at step {step}"
                break
            group = micro[first : first + recipe.grad_accum]
            # Normalise by the tokens of the whole optimizer step, not per micro-batch, so a
            # short micro-batch does not weigh as much as a full one.
            tokens = max(1, sum(b.completion_tokens for b in group))
            step_loss = 0.0
            for batch in group:
                loss = completion_loss_sum(model, batch.to(device), device) / tokens
                (scaler.scale(loss) if scaler else loss).backward()
                step_loss += float(loss.detach())
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
        _load_lora_state(model, best_state)
        notes.append(
            f"restored the adapter from step {best_step} (best validation loss {best_loss:.4f})"
        )
    if validating and best_step == 0:
        notes.append("validation loss never improved on the base model: the adapter is a no-op")
    return curve, notes, training_seconds, step


def _lora_state(model: Any) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad
    }


def _load_lora_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in state:
                parameter.copy_(state[name])


def _write_summary(path: Path, result: ArmResult) -> None:
    summary = {
        "training_seconds": result.training_seconds,
        "peak_memory_mb": result.peak_memory_mb,
        "trainable_parameters": result.trainable_parameters,
        "adapter_bytes": result.adapter_bytes,
        "loss_curve": [dataclasses.asdict(p) for p in result.loss_curve],
        "recipe": result.recipe,
        "notes": result.notes,
    }
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")


def read_summary(adapter_dir: Path) -> dict[str, Any] | None:
    path = Path(adapter_dir) / TRAINING_SUMMARY
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------------------- evaluation


def load_eval_model(llm_path: str, adapter_dir: Path, device: str, weights: str = "merged") -> Any:
    """The fine-tuned model for generation, rebuilt from the saved adapter.

    "merged" dequantises the NF4 base (the exact weights the adapter was trained against)
    to bf16 and merges the LoRA update into it: the function is the one that was trained,
    up to bf16 rounding of the merge, and decoding runs at bf16 speed. That is how a
    fine-tune is served, and it keeps the arms' latencies comparable with the bf16 arms:
    bitsandbytes' 4-bit CPU decoding is slower (measured on a 10-label Banking77 subset: 25 s
    vs 14 s for 60 prompts, with the same 60/60 predictions), which would bill the kernel,
    not the method. "nf4" keeps the 4-bit base with the adapter on top, exactly as trained.
    """
    import peft

    if weights not in ("merged", "nf4"):
        raise ValueError(f"eval_weights must be 'merged' or 'nf4', not {weights!r}")
    base = load_quantized_base(llm_path, device)
    if weights == "merged":
        base = base.dequantize(dtype=compute_dtype(device))
        model = peft.PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    else:
        model = peft.PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    return model


def predict(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    task: PilotTask,
    device: str,
    max_new_tokens: int,
    batch_size: int,
    progress: ProgressCallback,
) -> list[Prediction]:
    """Greedy, batched generation through the shared `generate`, under the same autocast."""
    with autocast(device):
        outputs = generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            progress=progress,
            stage="evaluating",
            # Same stopping rule as the other arms; the model learned to stop with EOS anyway.
            stop_at_newline=stops_at_newline(task),
        )
    return predictions_from_outputs(outputs)


def evaluate(
    config: QLoRAConfig,
    resources: Any,
    data: PilotData,
    result: ArmResult,
    prompts: Sequence[str],
    progress: ProgressCallback = no_progress,
) -> ArmResult:
    """Fill `result.predictions` by answering `prompts` (one per test example)."""
    if result.adapter_path is None:
        raise ValueError("no adapter to evaluate")
    max_new = max_new_tokens_for(data.task, config.max_new_tokens)
    with PeakMemory(resources.device) as memory:
        model = load_eval_model(
            resources.llm_path, Path(result.adapter_path), resources.device, config.eval_weights
        )
        result.predictions = predict(
            model,
            resources.tokenizer,
            prompts,
            task=data.task,
            device=resources.device,
            max_new_tokens=max_new,
            batch_size=config.batch_size,
            progress=progress,
        )
        del model
    result.peak_memory_mb = max(result.peak_memory_mb, memory.peak_mb)
    result.recipe["eval_weights"] = config.eval_weights
    return result


def train_and_release(
    config: QLoRAConfig, resources: Any, data: PilotData, progress: ProgressCallback
) -> ArmResult:
    """Train the adapter (saved on disk) and free the training model; returns what it measured.

    The arms evaluate with a fresh model built from the saved adapter, so the training copy
    must go first: two copies would double the peak memory the report records.
    """
    trained = train(config, resources, data, progress)
    result = trained.result
    del trained
    gc.collect()
    return result


def run(
    config: QLoRAConfig,
    resources: Any,
    data: PilotData,
    progress: ProgressCallback = no_progress,
) -> ArmResult:
    """Train a QLoRA adapter on data.train, then answer data.test with the short prompt."""
    result = train_and_release(config, resources, data, progress)
    prompts = [render_prompt(resources.tokenizer, short_messages(data.task, e)) for e in data.test]
    return evaluate(config, resources, data, result, prompts, progress)


def iter_linear4bit(model: Any) -> Iterator[tuple[str, Any]]:
    """(name, module) of every 4-bit linear layer (tests check the base stays frozen)."""
    import bitsandbytes as bnb

    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            yield name, module
