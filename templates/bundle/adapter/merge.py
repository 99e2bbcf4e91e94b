"""Merge the pilot's LoRA adapter into full weights with peft's merge_and_unload.

    python adapter/merge.py --base-model PATH_OR_HUB_ID --out merged-model

The result is a plain Hugging Face model directory (weights and tokenizer) that any server
loads without LoRA support. The pilot trained the adapter against the 4-bit NF4 base and, by
default, evaluated it merged into that base dequantised to bf16; --from-nf4 does the same
here (it needs bitsandbytes), otherwise the adapter is merged into the bf16 base weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", required=True, help="local directory or hub id")
    parser.add_argument("--adapter", type=Path, default=HERE, help="default: this folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--from-nf4", action="store_true", help="merge into the dequantised NF4 base"
    )
    args = parser.parse_args(argv)

    dtype = torch.bfloat16
    if args.from_nf4:
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        base = AutoModelForCausalLM.from_pretrained(
            args.base_model, quantization_config=quantization, dtype=dtype
        ).dequantize(dtype=dtype)
    else:
        base = AutoModelForCausalLM.from_pretrained(args.base_model, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(args.adapter)).merge_and_unload()
    merged.save_pretrained(str(args.out))
    AutoTokenizer.from_pretrained(args.base_model).save_pretrained(str(args.out))
    print(f"Merged model written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
