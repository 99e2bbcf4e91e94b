"""Batched greedy decoding shared by every arm (and the QLoRA arms' evaluation).

Why batched and padded: prompts of different lengths share a batch, so the shorter ones are
padded. Plain causal models (most decoder-only checkpoints under SDPA) are padded on the
right and decoded by `right_padded.greedy_right_padded`: the prefill needs no padding mask
and the KV cache is written in place, both measurably faster on long prompts (see that
module). Other models keep transformers' `generate()` with left padding: a decoder-only model
continues from the *last* position, and the attention mask hides the padding (transformers
derives position ids from the mask). Either way the KV cache is on, so each new token costs
one forward step over the batch, not a re-read of the prompt.

Prompts are sorted by token length so each batch wastes little on padding; the longest
batch goes first so memory problems and a pessimistic ETA show up at once. Results come
back in the caller's order.

Exactness: in fp32, batched outputs equal one-at-a-time outputs (tested). In bf16, padding
changes the accumulation order and a near-tie between two tokens (logits within bf16's
step, ~0.25 at logit 32) can flip, as on any batched inference server. With the 135M default
that is not rare (bench/generation_batching.py: 4 of 32 few-shot label answers, 16 of 48
free-text completions differ from one-at-a-time decoding, which itself differs as often from
fp32). The pilot accepts that for bf16's 3-6x batched speed: every arm is decoded the same
way, so the rounding noise falls on all arms alike (it is not in the bootstrap intervals,
which resample test items only).

Shared prefix: when every prompt starts with the same tokens (the system message and the
shots of a few-shot or RAG prompt, often most of it), that prefix is run through the model
once and its KV cache copied into each batch, so a batch prefills only what differs. The
rows then hold the prefix, then their own tokens, padded (on the right, or between prefix and
tokens on the left-padded path); every token sits at the position it would have without the
shared cache. In fp32 the outputs equal those of the plain path (tested); in bf16 the prefix
computed alone rounds differently from the same prefix inside a padded batch, with the
near-tie flips described above.

Latency: the per-example figure is the batch's wall time divided by its size. That is the
throughput-amortised cost of one query in this pilot, not the latency a single user would
see when sending one request alone (which is lower per batch, higher per query served).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from app.domain.records import Progress, ProgressCallback, no_progress
from worker.pilots.memory import contiguous_head_input
from worker.pilots.right_padded import greedy_right_padded, supports_right_padding

# A shared prefix shorter than this is recomputed in every batch: below it, copying its cache
# into each batch saves too little to be worth a separate forward pass.
MIN_SHARED_PREFIX_TOKENS = 32

# While a batch decodes, progress is reported again at most this often (same step).
STILL_WORKING_EVERY_S = 0.5


@contextmanager
def _still_working(model: Any, report: Callable[[], None]) -> Iterator[None]:
    """While a batch is prefilled and decoded, re-report the current progress at most every
    STILL_WORKING_EVERY_S, from a hook before each transformer layer (the layers of every
    ModuleList). A long batch then keeps the caller informed, and a caller whose progress hook
    raises (a cancelled pilot) stops within one layer's forward pass, not at the end of the
    batch: on a loaded CPU the prefill of one batch alone can take tens of seconds."""
    last = [time.perf_counter()]

    def tick(_module: Any, _args: Any) -> None:
        now = time.perf_counter()
        if now - last[0] >= STILL_WORKING_EVERY_S:
            last[0] = now
            report()

    handles = [
        layer.register_forward_pre_hook(tick)
        for module in model.modules()
        if isinstance(module, torch.nn.ModuleList)
        for layer in module
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class GenerationOutput:
    text: str  # decoded completion, cut at the stop string, stripped
    latency_ms: float  # batch wall time / batch size (see module docstring)
    prompt_tokens: int
    output_tokens: int  # generated tokens up to and including EOS / the stop token


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def _count_output_tokens(row: list[int], stops: set[int]) -> int:
    """Tokens actually generated: up to the first EOS/stop token, inclusive (rest is padding)."""
    for position, token in enumerate(row):
        if token in stops:
            return position + 1
    return len(row)


def _cut(text: str, stop_strings: Sequence[str]) -> str:
    for stop in stop_strings:
        position = text.find(stop)
        if position >= 0:
            text = text[:position]
    return text.strip()


def _newline_token_ids(tokenizer: Any) -> set[int]:
    """Ids of every vocabulary token whose text contains a newline (cached per tokenizer)."""
    cached = getattr(tokenizer, "_pathpilot_newline_ids", None)
    if cached is not None:
        return set(cached)
    ids = {
        token_id
        for token_id in range(len(tokenizer))
        if "\n" in tokenizer.decode([token_id], skip_special_tokens=False)
    }
    tokenizer._pathpilot_newline_ids = frozenset(ids)
    return ids


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row shares, always leaving each row at least one token of
    its own (generation has to start from a token that is fed, not cached)."""
    if not rows:
        return 0
    first = rows[0]
    limit = min(len(row) for row in rows) - 1
    length = 0
    while length < limit and all(row[length] == first[length] for row in rows):
        length += 1
    return length


def _left_padded(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, attention mask) with every row padded on the left to the longest."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for position, row in enumerate(rows):
        if row:
            ids[position, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[position, width - len(row) :] = 1
    return ids, mask


def _left_padded_generate(
    model: Any,
    rows: Sequence[Sequence[int]],
    *,
    head: Sequence[int],
    prefix: Any,
    max_new_tokens: int,
    stop_ids: set[int],
    pad_id: int,
) -> list[list[int]]:
    """New token ids per row from transformers' generate(), rows padded on the left (after the
    shared `head`, whose cache `prefix` holds, when there is one)."""
    device = next(model.parameters()).device
    ids, mask = _left_padded(rows, pad_id)
    cache: Any = None
    if prefix is not None:
        cache = copy.deepcopy(prefix)
        cache.batch_repeat_interleave(len(rows))
        shared = torch.tensor([list(head)], dtype=torch.long).expand(len(rows), len(head))
        ids = torch.cat([shared, ids], dim=1)
        mask = torch.cat([torch.ones((len(rows), len(head)), dtype=torch.long), mask], dim=1)
    output = model.generate(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        cache=cache,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        use_cache=True,
        eos_token_id=sorted(stop_ids),
        pad_token_id=pad_id,
        # Unset sampling knobs a checkpoint's generation_config may carry, so greedy
        # decoding is exactly greedy and transformers does not warn about them.
        temperature=None,
        top_p=None,
        top_k=None,
    )
    new_tokens: list[list[int]] = output[:, ids.shape[1] :].tolist()
    return new_tokens


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    progress: ProgressCallback = no_progress,
    stage: str = "generating",
    stop_at_newline: bool = False,
    stop_strings: Sequence[str] = (),
    share_prefix: bool = True,
) -> list[GenerationOutput]:
    """Greedy completions for `prompts` (already rendered with the chat template).

    `stop_at_newline` ends a sequence at its first newline (classification labels, short
    answers); `stop_strings` are cut from the decoded text afterwards. Generation always
    stops at EOS. Prompts must already contain their special tokens (the chat template adds
    them), so none are added here. `share_prefix` computes a prefix all prompts share once
    (see the module docstring); off, every batch prefills its prompts whole.
    """
    if not prompts:
        return []
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    device = next(model.parameters()).device
    token_ids = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    lengths = [len(ids) for ids in token_ids]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i], reverse=True)
    stops = _eos_ids(model, tokenizer)
    if tokenizer.pad_token_id is not None:
        pad_id = int(tokenizer.pad_token_id)
    elif stops:
        pad_id = min(stops)  # padding after a finished row is never read
    else:
        raise ValueError("the tokenizer has neither a pad nor an EOS token")
    stop_ids = set(stops)
    if stop_at_newline:
        # Newline tokens are treated as extra EOS ids: generate() then marks the row finished
        # without a per-step decode of the whole batch (what stop_strings would do).
        stop_ids |= _newline_token_ids(tokenizer)
    cut_strings = [*stop_strings, "\n"] if stop_at_newline else list(stop_strings)

    results: list[GenerationOutput | None] = [None] * len(prompts)
    started = time.perf_counter()
    done = 0
    total = len(prompts)
    progress(Progress(stage=stage, step=0, total=total, eta_seconds=None))
    shared = shared_prefix_length(token_ids) if share_prefix else 0
    if shared < MIN_SHARED_PREFIX_TOKENS:
        shared = 0
    prefix_cache: Any = None
    prefix_ms = 0.0
    if shared:
        report_start = partial(
            progress, Progress(stage=stage, step=0, total=total, eta_seconds=None)
        )
        with torch.inference_mode(), _still_working(model, report_start):
            prefix = torch.tensor([token_ids[0][:shared]], dtype=torch.long, device=device)
            prefix_cache = model(input_ids=prefix, use_cache=True, logits_to_keep=1).cache
        # One forward pass served every prompt: its cost is spread over all of them.
        prefix_ms = (time.perf_counter() - started) * 1000.0 / total
    # Plain causal models decode right-padded batches (worker/pilots/right_padded.py: no mask
    # in the prefill, a cache written in place); others keep transformers' generate().
    right_padded = supports_right_padding(model)
    for begin in range(0, total, batch_size):
        indices = order[begin : begin + batch_size]
        rows = [token_ids[i][shared:] for i in indices]
        batch_started = time.perf_counter()
        report = partial(
            progress,
            Progress(
                stage=stage,
                step=done,
                total=total,
                eta_seconds=(batch_started - started) / done * (total - done) if done else None,
            ),
        )
        with torch.inference_mode(), _still_working(model, report), contiguous_head_input(model):
            if right_padded and all(rows):
                new_tokens = greedy_right_padded(
                    model,
                    rows,
                    max_new_tokens=max_new_tokens,
                    stop_ids=stop_ids,
                    pad_id=pad_id,
                    prefix=prefix_cache,
                )
            else:
                new_tokens = _left_padded_generate(
                    model,
                    rows,
                    head=token_ids[indices[0]][:shared],
                    prefix=prefix_cache,
                    max_new_tokens=max_new_tokens,
                    stop_ids=stop_ids,
                    pad_id=pad_id,
                )
        elapsed = time.perf_counter() - batch_started
        per_example_ms = elapsed * 1000.0 / len(indices) + prefix_ms
        for row, index in zip(new_tokens, indices, strict=True):
            count = _count_output_tokens(row, stop_ids)
            text = tokenizer.decode(row[:count], skip_special_tokens=True)
            results[index] = GenerationOutput(
                text=_cut(text, cut_strings),
                latency_ms=per_example_ms,
                prompt_tokens=lengths[index],
                output_tokens=count,
            )
        done += len(indices)
        spent = time.perf_counter() - started
        eta = spent / done * (total - done)
        progress(Progress(stage=stage, step=done, total=total, eta_seconds=eta))
    return [result for result in results if result is not None]
