"""Fine-tune with TRL's SFTTrainer: QLoRA (4-bit NF4 base + LoRA), loss on the answer only.

Reproduces the pilot's recipe (finetune/recipe.json): "pilot" is exactly what the pilot ran
on its base model; "target" is the same recipe code re-scaled to the model you will deploy.
The data is the pilot's own training and validation split (data/*.chat.jsonl). Every row is
tokenised here by pilot_encoding.py (generated from PathPilot's source), exactly as the pilot
trained: the prompt is the chat template's rendering tokenised without added special tokens,
as vLLM tokenises a chat request (one BOS, the template's), then the answer and the family's
end-of-turn token (<|eot_id|>, <end_of_turn>, <|end|>, <|im_end|>, </s>). TRL gets token ids
and labels, so it adds nothing of its own (a plain-text prompt would get a second BOS).

    python finetune/train_trl.py --base-model PATH_OR_HUB_ID            # target recipe
    python finetune/train_trl.py --recipe pilot --base-model PATH --max-steps 2

Writes the adapter to OUTPUT_DIR/adapter and the loss log to OUTPUT_DIR/train_log.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    EarlyStoppingCallback,
)
from trl import SFTConfig, SFTTrainer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # pilot_encoding.py sits next to this script

from pilot_encoding import (  # noqa: E402
    ChatTemplateMissing,
    chat_messages,
    encode_chat,
    resolve_target_modules,
)


def read_chat_jsonl(path: Path) -> list[list[dict[str, str]]]:
    """Every row's messages: the pilot's short prompt, then the answer."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["messages"] for line in lines if line.strip()]


def training_rows(path: Path, tokenizer, max_seq_len: int) -> list[dict[str, list[int]]]:
    """input_ids and labels (-100 on the prompt) per row, as the pilot encoded them."""
    rows = []
    for messages in read_chat_jsonl(path):
        input_ids, labels, _ = encode_chat(
            tokenizer, messages[:-1], messages[-1]["content"], max_seq_len=max_seq_len
        )
        rows.append({"input_ids": input_ids, "labels": labels})
    return rows


def system_note(tokenizer, path: Path) -> str | None:
    """Said when this template has no system role: the client must fold it the same way."""
    messages = read_chat_jsonl(path)[0][:-1]
    if chat_messages(tokenizer, messages) != messages:
        return (
            "This chat template has no system role: the system message was put at the head "
            "of the user message, so ask the served model with serve/client.py --fold-system."
        )
    return None


def compute_dtype(use_cpu: bool) -> torch.dtype:
    if not use_cpu:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    has_bf16 = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return torch.bfloat16 if has_bf16 else torch.float32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=["target", "pilot"], default="target")
    parser.add_argument("--base-model", help="local directory or hub id; default: recipe.json's")
    parser.add_argument("--data-dir", type=Path, default=HERE.parent / "data")
    parser.add_argument("--output-dir", type=Path, default=HERE / "outputs")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop early (a smoke test)")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    args = parser.parse_args(argv)

    config = json.loads((HERE / "recipe.json").read_text(encoding="utf-8"))
    recipe = config["recipes"][args.recipe]
    base_model = args.base_model or recipe.get("base_model")
    if not base_model:
        parser.error(f"the {args.recipe} recipe names no base model: pass --base-model")
    use_cpu = args.cpu or not torch.cuda.is_available()
    dtype = compute_dtype(use_cpu)

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    max_len = recipe["max_seq_len"]
    try:
        train = Dataset.from_list(
            training_rows(args.data_dir / "train.chat.jsonl", tokenizer, max_len)
        )
        note = system_note(tokenizer, args.data_dir / "train.chat.jsonl")
    except ChatTemplateMissing as error:
        parser.error(str(error))
    if note:
        print(note)
    validation_path = args.data_dir / "validation.chat.jsonl"
    validation_rows = (
        training_rows(validation_path, tokenizer, max_len) if validation_path.exists() else []
    )
    validation = Dataset.from_list(validation_rows) if validation_rows else None
    evaluate = validation is not None and args.max_steps < 0

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype if dtype != torch.float32 else torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        base_model,
        quantization_config=quantization,
        dtype=dtype,
        device_map={"": "cpu" if use_cpu else 0},
    )
    # q/k/v/o_proj is what most families call attention; Phi-3, Falcon and GPT-NeoX name it
    # otherwise, and PEFT fails on a name the model does not have.
    target_modules = resolve_target_modules(
        recipe["target_modules"],
        model.config.model_type,
        [name for name, _ in model.named_modules()],
    )
    if target_modules != recipe["target_modules"]:
        print(f"target modules for {model.config.model_type}: {target_modules}")
    lora = LoraConfig(
        r=recipe["rank"],
        lora_alpha=recipe["alpha"],
        lora_dropout=recipe["dropout"],
        target_modules=target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    training = SFTConfig(
        output_dir=str(args.output_dir),
        # The rows are token ids with labels (-100 on the prompt): TRL uses them as they are,
        # so the loss is on the answer and its end-of-turn token only.
        max_length=recipe["max_seq_len"],
        learning_rate=recipe["learning_rate"],
        num_train_epochs=recipe["epochs"],
        max_steps=args.max_steps,
        per_device_train_batch_size=recipe["batch_size"],
        per_device_eval_batch_size=recipe["batch_size"] * 2,
        gradient_accumulation_steps=recipe["grad_accum"],
        optim="adamw_torch",
        weight_decay=0.0,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        warmup_steps=recipe["warmup_ratio"],  # a float below 1 is a share of the steps
        eval_strategy="steps" if evaluate else "no",
        eval_steps=recipe["eval_every_steps"],
        save_strategy="steps" if evaluate else "no",
        save_steps=recipe["eval_every_steps"],
        load_best_model_at_end=evaluate,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_total_limit=2,
        logging_steps=1,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=use_cpu,
        seed=recipe["seed"],
        report_to=[],
        dataset_num_proc=None,
    )
    callbacks = (
        [EarlyStoppingCallback(early_stopping_patience=recipe["early_stopping_patience"])]
        if evaluate
        else []
    )
    trainer = SFTTrainer(
        model=model,
        args=training,
        train_dataset=train,
        eval_dataset=validation if evaluate else None,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=callbacks,
    )
    trainer.train()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(args.output_dir / "adapter"))
    history = trainer.state.log_history
    (args.output_dir / "train_log.json").write_text(json.dumps(history, indent=2) + "\n")
    losses = [entry["loss"] for entry in history if "loss" in entry]
    first = losses[0] if losses else float("nan")
    print(
        json.dumps({"recipe": args.recipe, "steps": trainer.state.global_step, "first_loss": first})
    )
    reference = config.get("pilot_first_train_loss")
    if args.recipe == "pilot" and reference:
        print(f"The pilot's first logged training loss was {reference:.4f}.")
    return 0 if losses and all(math.isfinite(loss) for loss in losses) else 1


if __name__ == "__main__":
    sys.exit(main())
