"""Batched greedy generation vs one prompt at a time, on the default LLM (CPU).

What it measures: `worker.pilots.generation.generate` -- the production decoder every arm
uses (left padding, KV cache, newline/EOS stops) -- on real classification prompts built
from `examples/banking77-sample.csv` through the arms' own prompt code (`--shots 0`: the
instruction + input prompt of `short_messages`; `--shots k`: the few-shot arm's prompt with
k stratified shots), with `--batch-size` prompts per batch.

Reference, measured in the same run on the same prompts: the same function with
`batch_size=1` (one prompt at a time, no padding at all). The two are interleaved batch by
batch so that load from other work falls on both alike. The script prints prompts/s for
both, the speed-up ratio (batched / sequential), and compares the greedy outputs text by
text: in bf16 some may differ (see the `generation` module docstring), and each mismatch is
listed so it can be judged rather than hidden; `--dtype fp32` checks that batching by
itself changes nothing.

Run from the repository root:  .venv/bin/python -m bench.generation_batching
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

import torch

from app.domain.prompts import build_messages, short_messages
from app.domain.samples.schemas import Example, PilotTask
from app.domain.samples.stratified import stratified_sample
from bench.common import DEFAULT_LLM, SAMPLE
from worker.pilots.context_fit import context_window, prompt_budget
from worker.pilots.generation import GenerationOutput, generate
from worker.pilots.prompt_rendering import labels_fit, render_prompt
from worker.pilots.resources import load_model_and_tokenizer


def read_examples(path: Path) -> list[Example]:
    """Every row of a text,label CSV as a classification example."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            Example(input=row["text"], target=row["label"], line=line)
            for line, row in enumerate(csv.DictReader(handle), start=2)
        ]


def build_prompts(
    tokenizer: Any, model: Any, examples: list[Example], *, n: int, shots: int
) -> list[str]:
    """Prompts for the first `n` rows, rendered as the arms render them.

    shots=0: `short_messages` (instruction + input, the fine-tuned arm's prompt).
    shots>0: the few-shot arm's prompt -- `shots` stratified shots from the remaining rows,
    and the label list when it fits the prompt budget (the arm's own rule).
    """
    if len(examples) < n + shots:
        raise SystemExit(f"the sample has {len(examples)} rows, {n} + {shots} shots asked for")
    task = PilotTask.classification
    test, pool = examples[:n], examples[n:]
    if shots == 0:
        return [render_prompt(tokenizer, short_messages(task, example)) for example in test]
    chosen = stratified_sample(pool, shots, seed=0, stratify=True, shuffle=True, labels_first=True)
    labels = sorted({example.target for example in examples})
    budget = prompt_budget(context_window(tokenizer, model, cap=2048), 20)
    listed = labels if labels_fit(tokenizer, labels, budget=budget) else []
    return [
        render_prompt(tokenizer, build_messages(task, example, shots=chosen, labels=listed))
        for example in test
    ]


def timed(
    model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int, batch_size: int
) -> tuple[list[GenerationOutput], float]:
    started = time.perf_counter()
    outputs = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        stop_at_newline=True,
    )
    return outputs, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="prompts (rows of the sample)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per batch")
    parser.add_argument("--max-new-tokens", type=int, default=12, help="output budget")
    parser.add_argument("--model", type=Path, default=DEFAULT_LLM, help="local model directory")
    parser.add_argument(
        "--shots",
        type=int,
        default=0,
        help="0: instruction + input only; k>0: the few-shot arm's prompt with k shots",
    )
    parser.add_argument("--show", type=int, default=10, help="mismatches to print at most")
    parser.add_argument(
        "--dtype",
        choices=["bf16", "fp32"],
        default="bf16",
        help="bf16 is what the worker runs; fp32 checks that batching alone changes nothing",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    model, tokenizer = load_model_and_tokenizer(str(args.model), "cpu")
    if args.dtype == "fp32":
        model = model.to(torch.float32)
    prompts = build_prompts(tokenizer, model, read_examples(SAMPLE), n=args.n, shots=args.shots)
    prompt_tokens = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    print(
        f"model={args.model.name} dtype={next(model.parameters()).dtype} "
        f"torch_threads={torch.get_num_threads()} n={len(prompts)} "
        f"shots={args.shots} batch_size={args.batch_size} max_new_tokens={args.max_new_tokens} "
        f"prompt_tokens min/mean/max={min(prompt_tokens)}/"
        f"{sum(prompt_tokens) / len(prompt_tokens):.0f}/{max(prompt_tokens)}"
    )

    # Warm-up (not timed): first-call costs -- the newline-token scan that `generate` caches
    # on the tokenizer, and the allocations and kernel set-up for the largest batch shape --
    # land here and not in either measurement.
    order = sorted(range(len(prompts)), key=lambda i: prompt_tokens[i], reverse=True)
    longest_first = [prompts[i] for i in order]
    timed(model, tokenizer, longest_first[:1], max_new_tokens=args.max_new_tokens, batch_size=1)
    timed(
        model,
        tokenizer,
        longest_first[: args.batch_size],
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )

    # Interleaved so that load from other work on a shared machine falls on both alike: the
    # prompts are cut into the very batches `generate` forms (longest first), and each batch
    # is decoded both ways back to back, the order alternating. Since `generate` sorts and
    # slices exactly like this, the batched outputs equal those of one call over all prompts.
    sequential: list[GenerationOutput | None] = [None] * len(prompts)
    batched: list[GenerationOutput | None] = [None] * len(prompts)
    t_seq = t_bat = 0.0
    chunk_ratios: list[float] = []
    for number, begin in enumerate(range(0, len(order), args.batch_size)):
        indices = order[begin : begin + args.batch_size]
        chunk = [prompts[i] for i in indices]
        runs = {"seq": 1, "bat": args.batch_size}
        elapsed: dict[str, float] = {}
        for name in sorted(runs, reverse=number % 2 == 1):
            outputs, elapsed[name] = timed(
                model, tokenizer, chunk, max_new_tokens=args.max_new_tokens, batch_size=runs[name]
            )
            target = sequential if name == "seq" else batched
            for index, output in zip(indices, outputs, strict=True):
                target[index] = output
        t_seq += elapsed["seq"]
        t_bat += elapsed["bat"]
        chunk_ratios.append(elapsed["seq"] / elapsed["bat"])

    seq_rate = len(prompts) / t_seq
    bat_rate = len(prompts) / t_bat
    print(f"sequential (batch_size=1): {t_seq:7.2f} s  {seq_rate:7.2f} prompts/s  (reference)")
    print(f"batched (batch_size={args.batch_size}):  {t_bat:7.2f} s  {bat_rate:7.2f} prompts/s")
    print(
        f"speed-up ratio batched/sequential: {bat_rate / seq_rate:.2f}x "
        f"(per batch: {', '.join(f'{r:.1f}' for r in chunk_ratios)})"
    )
    seq_out = [output for output in sequential if output is not None]
    bat_out = [output for output in batched if output is not None]

    mismatches = [
        i for i, (s, b) in enumerate(zip(seq_out, bat_out, strict=True)) if s.text != b.text
    ]
    token_mismatches = sum(
        s.output_tokens != b.output_tokens for s, b in zip(seq_out, bat_out, strict=True)
    )
    print(
        f"identical outputs: {len(prompts) - len(mismatches)}/{len(prompts)} "
        f"(text mismatches {len(mismatches)}, output-token-count mismatches {token_mismatches})"
    )
    for i in mismatches[: args.show]:
        print(
            f"  mismatch #{i} ({prompt_tokens[i]} prompt tokens): "
            f"sequential={seq_out[i].text!r} batched={bat_out[i].text!r}"
        )


if __name__ == "__main__":
    main()
