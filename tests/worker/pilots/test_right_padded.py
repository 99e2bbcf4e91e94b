"""Right-padded greedy decoding against transformers' own generate(), with the real SmolLM2."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from app.domain.prompts import build_messages
from app.domain.samples.schemas import Example, PilotTask
from tests.factories.engine import QUESTIONS
from worker.pilots.generation import _count_output_tokens, _left_padded_generate, generate
from worker.pilots.prompt_rendering import render_prompt
from worker.pilots.right_padded import (
    _ReservedLayer,
    greedy_right_padded,
    supports_right_padding,
)

pytestmark = pytest.mark.slow

SHOTS = [
    Example(input="What colour is the sky on a clear day?", target="Blue"),
    Example(input="How many legs does a spider have?", target="Eight"),
]
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def fp32_model(resources: Any) -> Any:
    # Exact equality needs fp32 (bf16 rounds differently with another padding or kernel).
    return copy.deepcopy(resources.model).to(torch.float32)


# A passage after each question makes a row longer than the shared prefix (the RAG shape).
PASSAGE = (
    "Paris is the capital and largest city of France. It lies on the Seine, in the north of "
    "the country, and has been a centre of finance, diplomacy, commerce, fashion and science "
    "for centuries. The city is known for its museums and monuments. "
)


def _rows(tokenizer: Any, shots: list[Example], passages: int = 0) -> list[list[int]]:
    prompts = [
        render_prompt(
            tokenizer,
            build_messages(
                PilotTask.qa,
                Example(input=q + " " + PASSAGE * (passages + i) if passages else q, target=""),
                shots=shots,
            ),
        )
        for i, q in enumerate(QUESTIONS)
    ]
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


def _alone(model: Any, row: list[int], stop_ids: set[int], pad_id: int) -> list[int]:
    """transformers' generate() on one row (the fallback path: no padding, no shared cache)."""
    return _left_padded_generate(
        model,
        [row],
        head=[],
        prefix=None,
        max_new_tokens=NEW_TOKENS,
        stop_ids=stop_ids,
        pad_id=pad_id,
    )[0]


def _until_stop(tokens: list[int], stop_ids: set[int]) -> list[int]:
    return tokens[: _count_output_tokens(tokens, stop_ids)]


def test_a_padded_batch_decodes_as_each_row_alone(resources: Any, fp32_model: Any) -> None:
    tokenizer = resources.tokenizer
    rows = _rows(tokenizer, shots=[])
    assert len({len(row) for row in rows}) > 1  # some rows are padded
    stop_ids, pad_id = {int(tokenizer.eos_token_id)}, int(tokenizer.eos_token_id)
    with torch.inference_mode():
        batched = greedy_right_padded(
            fp32_model, rows, max_new_tokens=NEW_TOKENS, stop_ids=stop_ids, pad_id=pad_id
        )
        alone = [_alone(fp32_model, row, stop_ids, pad_id) for row in rows]
    assert [_until_stop(b, stop_ids) for b in batched] == [_until_stop(a, stop_ids) for a in alone]
    assert all(len(b) <= NEW_TOKENS for b in batched)
    assert "paris" in tokenizer.decode(batched[0]).lower()


@pytest.mark.parametrize(
    "passages", [0, 3], ids=["rows shorter than the prefix", "rows longer than the prefix"]
)
def test_rows_after_a_cached_prefix_decode_as_the_whole_prompt_alone(
    resources: Any, fp32_model: Any, passages: int
) -> None:
    tokenizer = resources.tokenizer
    rows = _rows(tokenizer, shots=SHOTS, passages=passages)
    shared = 0
    while all(row[shared] == rows[0][shared] for row in rows):
        shared += 1
    assert shared > 32  # the system message and the shots
    # Both sides of the attention's choice: masked call, or dummy queries before the rows.
    assert (min(len(row) for row in rows) - shared > shared) == bool(passages)
    stop_ids, pad_id = {int(tokenizer.eos_token_id)}, int(tokenizer.eos_token_id)
    with torch.inference_mode():
        prefix = fp32_model(input_ids=torch.tensor([rows[0][:shared]]), use_cache=True).cache
        batched = greedy_right_padded(
            fp32_model,
            [row[shared:] for row in rows],
            max_new_tokens=NEW_TOKENS,
            stop_ids=stop_ids,
            pad_id=pad_id,
            prefix=prefix,
        )
        alone = [_alone(fp32_model, row, stop_ids, pad_id) for row in rows]
        # The prefix's cache is copied into the batch, never written: a second batch reuses it.
        again = greedy_right_padded(
            fp32_model,
            [rows[1][shared:]],
            max_new_tokens=NEW_TOKENS,
            stop_ids=stop_ids,
            pad_id=pad_id,
            prefix=prefix,
        )
    assert [_until_stop(b, stop_ids) for b in batched] == [_until_stop(a, stop_ids) for a in alone]
    assert _until_stop(again[0], stop_ids) == _until_stop(alone[1], stop_ids)
    assert prefix.get_seq_length() == shared


def test_a_finished_row_is_padded_while_the_others_go_on(resources: Any) -> None:
    tokenizer = resources.tokenizer
    rows = _rows(tokenizer, shots=[])
    with torch.inference_mode():
        free = greedy_right_padded(resources.model, rows, max_new_tokens=6, stop_ids={-1}, pad_id=0)
        # The second token of the first row becomes a stop id: that row ends there.
        stop = free[0][1]
        stopped = greedy_right_padded(
            resources.model, rows, max_new_tokens=6, stop_ids={stop}, pad_id=0
        )
    assert all(len(row) == 6 for row in free)  # no stop id: every row runs to the budget
    assert stopped[0][:2] == free[0][:2] and stopped[0][2:] == [0] * 4


def test_the_reserved_cache_refuses_to_grow_past_its_capacity() -> None:
    layer = _ReservedLayer(capacity=3)
    keys = torch.zeros((1, 2, 2, 4))
    first, _ = layer.update(keys, keys)
    assert first.shape == (1, 2, 2, 4) and layer.get_seq_length() == 2
    second, _ = layer.update(torch.ones((1, 2, 1, 4)), torch.ones((1, 2, 1, 4)))
    assert second.shape == (1, 2, 3, 4) and float(second[0, 0, 2].sum()) == 4.0
    with pytest.raises(RuntimeError, match="reserved for 3 positions, 4 needed"):
        layer.update(torch.ones((1, 2, 1, 4)), torch.ones((1, 2, 1, 4)))


def _tiny(config: Any, cls: Any) -> Any:
    torch.manual_seed(0)
    return cls(config).eval()


def test_only_plain_causal_sdpa_models_take_the_right_padded_path(resources: Any) -> None:
    assert supports_right_padding(resources.model)
    shape = {
        "vocab_size": 64,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
    }
    eager = _tiny(LlamaConfig(**shape, attn_implementation="eager"), LlamaForCausalLM)
    assert not supports_right_padding(eager)
    sliding = _tiny(
        Qwen2Config(
            **shape,
            use_sliding_window=True,
            sliding_window=8,
            max_window_layers=0,
            attn_implementation="sdpa",
        ),
        Qwen2ForCausalLM,
    )
    assert not supports_right_padding(sliding)


def test_a_model_without_the_fast_path_gives_the_same_answers(
    resources: Any, fp32_model: Any
) -> None:
    """generate() falls back to transformers' left-padded generate(): same outputs in fp32."""
    tokenizer = resources.tokenizer
    prompts = [
        render_prompt(
            tokenizer, build_messages(PilotTask.qa, Example(input=q, target=""), shots=SHOTS)
        )
        for q in QUESTIONS
    ]
    eager = copy.deepcopy(fp32_model)
    eager.config._attn_implementation = "eager"
    assert not supports_right_padding(eager)
    fast = generate(fp32_model, tokenizer, prompts, max_new_tokens=NEW_TOKENS, batch_size=4)
    fallback = generate(eager, tokenizer, prompts, max_new_tokens=NEW_TOKENS, batch_size=4)
    assert [f.text for f in fast] == [s.text for s in fallback]
    assert [f.output_tokens for f in fast] == [s.output_tokens for s in fallback]
