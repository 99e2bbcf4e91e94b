"""QLoRA training throughput: PathPilot's loop against the TRL reference, same recipe (CPU).

Both paths train the same LoRA adapter on the same 4-bit base with the same data:

* model: the default LLM, loaded by `worker.pilots.arms.qlora.model.load_quantized_base`
  (bitsandbytes NF4, double quantisation, bf16 compute), then
  `peft.prepare_model_for_kbit_training` and `peft.get_peft_model` with the recipe's rank,
  alpha, dropout and target modules, from the same seed;
* data: classification examples from `examples/banking77-sample.csv`, split by the app's own
  `prepare_pilot_data`, encoded once by `worker.pilots.arms.qlora.data.encode_example` (the
  short prompt + target + EOS, loss on the target only); the reference gets exactly these token
  ids with a completion mask, so both see the same tokens;
* recipe: one `QLoRARecipe` (learning rate, batch, accumulation, epochs, warmup, sequence
  length), no weight decay, gradient clipping at 1.0, linear decay, AdamW.

Measured (production path): `worker.pilots.arms.qlora.training.train` with that recipe pinned
(no time planning, no early stop: validation at step 0 and at the end, both counted in its
time). Reference (same run): TRL `SFTTrainer` (`SFTConfig(completion_only_loss=True)`, right
padding, its own collator and loop, no gradient checkpointing) with the same arguments.

Printed: training tokens/s of each (real tokens, padding not counted, over the wall time of the
training call without model loading), the ratio, the final validation loss of each computed
by the same function (`loop.validation_loss`, mean per completion token) and their relative
difference, and MFU: nominal model FLOPs (4 x parameters of the linear layers incl. the LM head
x tokens: forward plus the backward to the activations; the 4-bit base has no weight
gradients, the LoRA matrices' are negligible) divided by this machine's bf16 matrix-multiply
rate, measured here with `torch.matmul` on the same threads.

Run from the repository root:  .venv/bin/python -m bench.qlora_training
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_LLM, SAMPLE


def gemm_rate(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """bf16 matmul FLOP/s (best of `repeats`) on `size`^3, the machine's reference rate."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(size, size, dtype=torch.bfloat16)
    b = torch.randn(size, size, dtype=torch.bfloat16)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def linear_parameters(model: Any) -> int:
    """Parameters of the base's linear layers (4-bit ones counted unpacked) and the LM head."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    total = 0
    for name, module in base.named_modules():
        if "lora_" in name:
            continue
        if isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features
    return total


def load_data(n_train: int, n_validation: int, seed: int) -> Any:
    from app.assessments.service import sample_limits
    from app.domain.preparation import prepare_pilot_data
    from app.domain.samples.formats import parse_sample
    from app.settings import get_settings

    parsed = parse_sample(SAMPLE.read_bytes(), SAMPLE.name, sample_limits(get_settings()))
    data, _ = prepare_pilot_data(parsed, [], seed=seed, max_train=10_000, max_test=50)
    return dataclasses.replace(
        data,
        train=list(data.train[:n_train]),
        validation=list((data.validation + data.train[n_train:])[:n_validation]),
    )


def peft_model(llm: str, recipe: Any, seed: int) -> Any:
    import peft

    from worker.pilots.arms.qlora.model import load_quantized_base
    from worker.pilots.arms.qlora.training import seed_everything

    seed_everything(seed)
    base = load_quantized_base(llm, "cpu")
    base = peft.prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    lora = peft.LoraConfig(
        r=recipe.rank,
        lora_alpha=recipe.alpha,
        lora_dropout=recipe.dropout,
        target_modules=recipe.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(base, lora)


def run_pathpilot(
    llm: str,
    tokenizer: Any,
    data: Any,
    recipe: Any,
    seed: int,
    dequantize_once: bool | None,
    group_by_length: bool,
) -> tuple[float, Any]:
    from app.domain.arms import QLoRAConfig
    from worker.pilots.arms.qlora.training import train
    from worker.pilots.resources import Resources

    resources = Resources(
        llm_path=llm,
        tokenizer=tokenizer,
        model=None,
        embedder=None,
        device="cpu",
        model_id=Path(llm).name,
        model_sha256=None,
    )
    with tempfile.TemporaryDirectory() as adapter_dir:
        config = QLoRAConfig(
            adapter_dir=Path(adapter_dir),
            seed=seed,
            max_train_minutes=600,
            recipe=dataclasses.replace(recipe),
            max_validation_examples=len(data.validation),
            dequantize_once=dequantize_once,
            group_by_length=group_by_length,
        )
        trained = train(config, resources, data)
    return trained.result.training_seconds, trained.model


def run_trl(
    llm: str, tokenizer: Any, encoded: list[Any], recipe: Any, seed: int, threads: int
) -> tuple[float, Any]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from worker.pilots.arms.qlora.data import IGNORE_INDEX
    from worker.pilots.arms.qlora.loop import schedule_steps

    model = peft_model(llm, recipe, seed)
    rows = {
        "input_ids": [e.input_ids for e in encoded],
        "completion_mask": [[int(x != IGNORE_INDEX) for x in e.labels] for e in encoded],
    }
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out,
            per_device_train_batch_size=recipe.batch_size,
            gradient_accumulation_steps=recipe.grad_accum,
            learning_rate=recipe.learning_rate,
            num_train_epochs=recipe.epochs,
            lr_scheduler_type="linear",
            # The loop's own warmup (round(steps x ratio) steps), as a count: transformers
            # would take ceil() of a ratio, one more step at a small learning rate here.
            warmup_steps=schedule_steps(recipe, len(encoded))[1],
            weight_decay=0.0,
            max_grad_norm=1.0,
            optim="adamw_torch",
            bf16=True,
            use_cpu=True,
            seed=seed,
            data_seed=seed,
            max_length=recipe.max_seq_len,
            completion_only_loss=True,
            packing=False,
            gradient_checkpointing=False,
            save_strategy="no",
            eval_strategy="no",
            logging_steps=1,
            report_to="none",
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        dataset = Dataset.from_dict(rows)
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer
        )
        import torch

        torch.set_num_threads(threads)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return seconds, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", default=str(DEFAULT_LLM))
    parser.add_argument("--train", type=int, default=96, help="training examples")
    parser.add_argument("--validation", type=int, default=32, help="validation examples")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--dequantize-once",
        choices=("auto", "on", "off"),
        default="auto",
        help="PathPilot's lever: auto is the production default (on for a small model on CPU)",
    )
    parser.add_argument(
        "--group-by-length",
        choices=("on", "off"),
        default="on",
        help="PathPilot's lever: micro-batches of similar lengths (on is the production default)",
    )
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from app.domain.recipe import QLoRARecipe
    from worker.pilots.arms.qlora.data import (
        encode_example,
        length_grouped_batches,
        micro_batches,
        padded_tokens,
    )
    from worker.pilots.arms.qlora.loop import validation_loss

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.llm)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    data = load_data(args.train, args.validation, args.seed)
    recipe = QLoRARecipe(
        epochs=args.epochs,
        batch_size=args.batch,
        grad_accum=args.grad_accum,
        early_stopping_patience=10**6,
        eval_every_steps=10**6,
    )
    encode = lambda e: encode_example(  # noqa: E731
        tokenizer, data.task, e, max_seq_len=recipe.max_seq_len
    )
    encoded = [encode(e) for e in data.train]
    validation = micro_batches([encode(e) for e in data.validation], recipe.batch_size * 2, pad_id)
    tokens = sum(len(e.input_ids) for e in encoded) * recipe.epochs
    lengths = sorted(len(e.input_ids) for e in encoded)
    print(
        f"{len(encoded)} training examples x {recipe.epochs} epoch(s), {tokens} tokens "
        f"(length min/median/max {lengths[0]}/{lengths[len(lengths) // 2]}/{lengths[-1]}), "
        f"{len(data.validation)} validation; rank {recipe.rank}, alpha {recipe.alpha}, "
        f"targets {recipe.target_modules}, lr {recipe.learning_rate}, batch {recipe.batch_size} "
        f"x {recipe.grad_accum}, {args.threads} threads, dequantize once: {args.dequantize_once}, "
        f"group by length: {args.group_by_length}"
    )
    # Padding computed in one epoch's micro-batches: in random order (as the reference
    # batches) and grouped by length (PathPilot's default).
    shuffled = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(args.seed))
    plain = micro_batches([encoded[i] for i in shuffled.tolist()], recipe.batch_size, pad_id)
    grouped = length_grouped_batches(
        encoded, recipe.batch_size, pad_id, torch.Generator().manual_seed(args.seed)
    )
    plain_share, grouped_share = (
        padding / computed for computed, padding in (padded_tokens(plain), padded_tokens(grouped))
    )
    print(
        f"padding in the micro-batches: {plain_share:.1%} in random order, "
        f"{grouped_share:.1%} grouped by length"
    )

    rate_before = gemm_rate(args.threads)
    trl_seconds, trl_model = run_trl(args.llm, tokenizer, encoded, recipe, args.seed, args.threads)
    trl_loss = validation_loss(trl_model, validation, "cpu")
    n_linear = linear_parameters(trl_model)
    del trl_model
    lever = {"auto": None, "on": True, "off": False}[args.dequantize_once]
    grouping = args.group_by_length == "on"
    pp_seconds, pp_model = run_pathpilot(
        args.llm, tokenizer, data, recipe, args.seed, lever, grouping
    )
    pp_loss = validation_loss(pp_model, validation, "cpu")
    del pp_model
    rate = max(rate_before, gemm_rate(args.threads))

    trl_tps, pp_tps = tokens / trl_seconds, tokens / pp_seconds
    flops_per_token = 4 * n_linear
    trl_mfu, pp_mfu = (t * flops_per_token / rate for t in (trl_tps, pp_tps))
    loss_gap = (pp_loss - trl_loss) / trl_loss
    print(
        f"bf16 GEMM rate: {rate / 1e9:.0f} GFLOP/s; model FLOPs/token {flops_per_token / 1e6:.0f}M"
    )
    print(f"{'path':<14}{'seconds':>9}{'tokens/s':>10}{'val loss':>10}{'MFU':>8}")
    print(f"{'TRL (ref)':<14}{trl_seconds:>9.1f}{trl_tps:>10.1f}{trl_loss:>10.4f}{trl_mfu:>8.1%}")
    print(f"{'PathPilot':<14}{pp_seconds:>9.1f}{pp_tps:>10.1f}{pp_loss:>10.4f}{pp_mfu:>8.1%}")
    print(
        f"speed-up {pp_tps / trl_tps:.2f}x (goal >= 1.5x); validation loss "
        f"{loss_gap:+.1%} vs the reference (goal within +-2%); MFU {pp_mfu:.1%} (goal >= 25%)"
    )
    print(f"RESULT trl_tokens_per_s={trl_tps:.1f}")
    print(f"RESULT pathpilot_tokens_per_s={pp_tps:.1f}")
    print(f"RESULT speedup={pp_tps / trl_tps:.2f}")
    print(f"RESULT trl_val_loss={trl_loss:.4f}")
    print(f"RESULT pathpilot_val_loss={pp_loss:.4f}")
    print(f"RESULT val_loss_rel_diff={loss_gap:.4f}")
    print(f"RESULT gemm_gflops={rate / 1e9:.1f}")
    print(f"RESULT pathpilot_mfu={pp_mfu:.4f}")
    print(f"RESULT trl_mfu={trl_mfu:.4f}")
    print(f"RESULT padding_share_random={plain_share:.4f}")
    print(f"RESULT padding_share_grouped={grouped_share:.4f}")


if __name__ == "__main__":
    main()
