"""Batched, left-padded greedy decoding with the real converted SmolLM2."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from app.domain.prompts import build_messages
from app.domain.records import Progress
from app.domain.samples.schemas import Example, PilotTask
from tests.factories.engine import QUESTIONS
from worker.pilots.generation import MIN_SHARED_PREFIX_TOKENS, generate, shared_prefix_length
from worker.pilots.prompt_rendering import render_prompt

pytestmark = pytest.mark.slow


def _prompts(tokenizer: Any) -> list[str]:
    return [
        render_prompt(tokenizer, build_messages(PilotTask.qa, Example(input=q, target="")))
        for q in QUESTIONS
    ]


@pytest.fixture(scope="module")
def fp32_model(resources: Any) -> Any:
    # Exact equality needs fp32: in bf16 a different padding changes accumulation order,
    # and a near-tie between two tokens can flip after a dozen steps (seen on this CPU).
    return copy.deepcopy(resources.model).to(torch.float32)


def test_batched_outputs_equal_one_at_a_time(resources: Any, fp32_model: Any) -> None:
    tokenizer = resources.tokenizer
    prompts = _prompts(tokenizer)
    events: list[Progress] = []
    batched = generate(
        fp32_model, tokenizer, prompts, max_new_tokens=12, batch_size=4, progress=events.append
    )
    single = [
        generate(fp32_model, tokenizer, [p], max_new_tokens=12, batch_size=1)[0] for p in prompts
    ]
    assert [b.text for b in batched] == [s.text for s in single]
    assert [b.output_tokens for b in batched] == [s.output_tokens for s in single]
    assert [b.prompt_tokens for b in batched] == [s.prompt_tokens for s in single]
    assert "paris" in batched[0].text.lower()  # order restored after sorting by length
    assert all(0 < b.output_tokens <= 12 and b.latency_ms > 0 for b in batched)
    assert events[0].step == 0 and events[-1].step == events[-1].total == 4
    assert events[-1].eta_seconds == 0


def test_edge_cases(resources: Any) -> None:
    model, tokenizer = resources.model, resources.tokenizer
    assert generate(model, tokenizer, [], max_new_tokens=4, batch_size=8) == []
    outputs = generate(model, tokenizer, _prompts(tokenizer)[:2], max_new_tokens=3, batch_size=64)
    assert len(outputs) == 2 and all(o.output_tokens <= 3 for o in outputs)
    with pytest.raises(ValueError):
        generate(model, tokenizer, ["x"], max_new_tokens=1, batch_size=0)


def test_stop_at_newline_cuts_the_first_line(resources: Any) -> None:
    tokenizer = resources.tokenizer
    prompt = render_prompt(
        tokenizer,
        build_messages(
            PilotTask.generation, Example(input="List three colours, one per line.", target="")
        ),
    )
    free = generate(resources.model, tokenizer, [prompt], max_new_tokens=24, batch_size=1)[0]
    cut = generate(
        resources.model, tokenizer, [prompt], max_new_tokens=24, batch_size=1, stop_at_newline=True
    )[0]
    assert "\n" in free.text
    assert "\n" not in cut.text and cut.text and free.text.startswith(cut.text)
    assert cut.output_tokens < free.output_tokens


def test_a_progress_hook_that_raises_stops_a_batch_mid_decoding(
    resources: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancelled pilot's hook raises: generation stops within a step, not at batch end."""
    import time

    from worker.pilots import generation

    monkeypatch.setattr(generation, "STILL_WORKING_EVERY_S", 0.0)  # report at every step
    seen: list[Progress] = []

    class Stop(Exception):
        pass

    def hook(update: Progress) -> None:
        seen.append(update)
        if len(seen) == 3:  # the start, then two reports while the batch decodes
            raise Stop

    started = time.perf_counter()
    with pytest.raises(Stop):
        generate(
            resources.model,
            resources.tokenizer,
            _prompts(resources.tokenizer),
            max_new_tokens=400,
            batch_size=4,
            progress=hook,
        )
    assert time.perf_counter() - started < 5  # 400 tokens would take far longer
    assert [(e.step, e.total) for e in seen] == [(0, 4)] * 3
    # The right-padded path's attention setting is put back even when a batch stops midway.
    assert resources.model.config._attn_implementation == "sdpa"


def _few_shot_prompts(tokenizer: Any) -> list[str]:
    """Prompts that share a long prefix (system message and shots) and differ in length."""
    shots = [
        Example(input="What colour is the sky on a clear day?", target="Blue"),
        Example(input="How many legs does a spider have?", target="Eight"),
        Example(input="Which planet is closest to the sun?", target="Mercury"),
    ]
    return [
        render_prompt(
            tokenizer, build_messages(PilotTask.qa, Example(input=q, target=""), shots=shots)
        )
        for q in QUESTIONS
    ]


def test_shared_prefix_length_leaves_every_row_a_token() -> None:
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # one token of each is fed
    assert shared_prefix_length([[7, 1], [8, 1]]) == 0
    assert shared_prefix_length([]) == 0


def test_a_shared_prefix_computed_once_gives_the_same_outputs(
    resources: Any, fp32_model: Any
) -> None:
    tokenizer = resources.tokenizer
    prompts = _few_shot_prompts(tokenizer)
    rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert shared_prefix_length(rows) >= MIN_SHARED_PREFIX_TOKENS  # the cache is used
    assert len({len(row) for row in rows}) > 1  # rows are padded between prefix and suffix
    kwargs: dict[str, Any] = {"max_new_tokens": 12, "batch_size": 3}
    shared = generate(fp32_model, tokenizer, prompts, **kwargs)
    whole = generate(fp32_model, tokenizer, prompts, share_prefix=False, **kwargs)
    assert [s.text for s in shared] == [w.text for w in whole]
    assert [s.output_tokens for s in shared] == [w.output_tokens for w in whole]
    assert [s.prompt_tokens for s in shared] == [w.prompt_tokens for w in whole]
    assert "paris" in shared[0].text.lower()
