"""Greedy decoding of a right-padded batch: prefill without an attention mask, a KV cache
that is written in place.

Why (bench/README.md, `docqa_pilot.py`): on CPU, a left-padded batch makes transformers pass
an explicit mask to `scaled_dot_product_attention`, which then computes every block of the
score matrix, masked or not; `is_causal=True` without a mask skips the upper triangle, about
half the work on long prompts. And transformers' dynamic cache grows by concatenation, so
every decoding step copies the whole cache: for 16 rows of 1,900 tokens that copy was three
quarters of a step's time.

How it stays exact:

* Rows are padded on the right. Under a causal mask a real token never attends to the pads
  after it, so the prefill needs no padding mask at all: it runs as plain causal attention.
  When a shared prefix is already cached (shorter queries than keys), the queries are
  preceded by dummy rows up to the keys' length, so the causal triangle lines up with the
  keys' positions (top-left alignment, as `is_causal` defines it); the dummy outputs are
  dropped. That costs the prefix's own triangle again, not its matrix multiplications, so
  it is done only when the new tokens outnumber the prefix's; a short suffix after a long
  prefix (a few-shot question) keeps the masked call, which is then the cheaper one.
* Each row's first new token comes from its own last real position, not the batch's last
  column. From then on, rows hold [prefix][own tokens][pads][new tokens]: decoding steps pass
  the mask that hides the pads (one query row, cheap) and each row's own position ids, so
  every token sits where it would in an unpadded run.
* The cache reserves room for the prompt and every new token up front and hands attention
  views of what is filled, so a step writes one column instead of copying the cache.

Only models whose every layer is plain full causal attention under SDPA take this path (no
sliding windows, no linear-attention layers, no soft-capping or sinks);
`supports_right_padding` decides, and `generation.generate` falls back to `model.generate`
for the rest. In fp32 the outputs equal the left-padded path's (tested); in bf16 near-tie
flips happen as with any change of batching.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION_NAME = "pathpilot_right_padded"

# Keyword arguments that mean a layer is not plain causal attention (soft-capping, attention
# sinks, a sliding window): such a call goes to transformers' own SDPA path.
_NOT_PLAIN = ("softcap", "s_aux", "sliding_window")


def _right_padded_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Plain causal SDPA for a right-padded prefill (see the module docstring). Decoding steps
    (one query), calls that are not plain causal, and prefills shorter than the cached prefix
    before them go to transformers' SDPA with the mask it built (a causal mask, the padding
    lies after every real token): there, the dummy queries would cost more than the mask."""
    query_length, key_length = query.shape[2], key.shape[2]
    offset = key_length - query_length  # tokens already cached: the shared prefix
    plain = not any(kwargs.get(name) is not None for name in _NOT_PLAIN)
    if query_length == 1 or not plain or offset >= query_length:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    if offset > 0:
        # Dummy queries for the cached prefix: with them, row i of the queries is key i.
        query = torch.cat([query.new_zeros(*query.shape[:2], offset, query.shape[3]), query], 2)
    output = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, is_causal=True, scale=scaling
    )
    return output[:, :, offset:].transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION_NAME, _right_padded_attention)
# Decoding steps and fallbacks need transformers' SDPA masks under this name too.
AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


class _ReservedLayer(DynamicLayer):
    """A dynamic cache layer that writes into a buffer reserved for `capacity` positions and
    returns views of the filled part, instead of concatenating a new tensor every step. Only
    `update` and the reads are used by this module's decoding; the beam-search and cropping
    methods it inherits would replace the views and are not meant for it."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def _reserve(self, like: torch.Tensor) -> torch.Tensor:
        batch, heads, _, width = like.shape
        return like.new_empty((batch, heads, self.capacity, width))

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._keys is None or self._values is None:
            self._keys, self._values = self._reserve(key_states), self._reserve(value_states)
            self.device = key_states.device
            self.is_initialized = True
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"cache reserved for {self.capacity} positions, {end} needed")
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self.keys = self._keys[:, :, :end]
        self.values = self._values[:, :, :end]
        return self.keys, self.values


def reserved_cache(model: Any, capacity: int, prefix: Cache | None, batch_size: int) -> Cache:
    """An empty cache of reserved layers, or one holding `prefix`'s keys and values once per
    row of the batch."""
    layers = [_ReservedLayer(capacity) for _ in range(_text_config(model).num_hidden_layers)]
    if prefix is not None:
        for layer, cached in zip(layers, prefix.layers, strict=True):
            # A model that takes this path caches plain dynamic layers (supports_right_padding).
            if not isinstance(cached, DynamicLayer) or cached.keys is None or cached.values is None:
                raise TypeError(f"the prefix's cache holds a {type(cached).__name__}")
            layer.update(
                cached.keys.expand(batch_size, -1, -1, -1),
                cached.values.expand(batch_size, -1, -1, -1),
            )
    return Cache(layers=list(layers))


def _text_config(model: Any) -> Any:
    return model.config.get_text_config(decoder=True)


def supports_right_padding(model: Any) -> bool:
    """Whether `model` is plain full causal attention under SDPA in every layer (see the module
    docstring); others keep transformers' own generation."""
    config = model.config
    if config.is_encoder_decoder or not getattr(_text_config(model), "is_causal", True):
        return False
    if config._attn_implementation != "sdpa":
        return False
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=config).layers)


@contextmanager
def _right_padded_attention_on(model: Any) -> Iterator[None]:
    """The model's attention is this module's for the duration (restored after, even on error)."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = before


def greedy_right_padded(
    model: Any,
    rows: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_ids: set[int],
    pad_id: int,
    prefix: Cache | None = None,
) -> list[list[int]]:
    """Greedy continuations of `rows` (each non-empty; after `prefix`'s cached tokens when
    given): per row, `max_new_tokens` ids or fewer, the first stop id included and `pad_id`
    after it, as `model.generate` returns them."""
    device = next(model.parameters()).device
    batch, width = len(rows), max(len(row) for row in rows)
    prefix_length = prefix.get_seq_length() if prefix is not None else 0
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    # What decoding steps may attend to: the prefix, each row's own tokens, then new tokens.
    visible = torch.zeros((batch, prefix_length + width + max_new_tokens), dtype=torch.long)
    visible[:, :prefix_length] = 1
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        visible[index, prefix_length : prefix_length + len(row)] = 1
    stops = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    cache = reserved_cache(model, visible.shape[1], prefix, batch)
    with _right_padded_attention_on(model):
        last = lengths - 1
        keep = torch.unique(last)  # sorted: the LM head runs on these columns only
        output = model(
            input_ids=ids.to(device), cache=cache, use_cache=True, logits_to_keep=keep.to(device)
        )
        columns = torch.searchsorted(keep, last).to(device)
        token = output.logits[torch.arange(batch, device=device), columns].argmax(-1)
        finished = torch.isin(token, stops)
        generated = [token]
        position = (prefix_length + lengths).to(device)
        filled = prefix_length + width
        visible = visible.to(device)
        for _ in range(max_new_tokens - 1):
            if bool(finished.all()):
                break
            visible[:, filled] = 1
            filled += 1
            output = model(
                input_ids=token[:, None],
                attention_mask=visible[:, :filled],
                position_ids=position[:, None],
                cache=cache,
                use_cache=True,
            )
            position = position + 1
            token = output.logits[:, -1].argmax(-1).masked_fill(finished, pad_id)
            finished = finished | torch.isin(token, stops)
            generated.append(token)
    return torch.stack(generated, dim=1).tolist()
