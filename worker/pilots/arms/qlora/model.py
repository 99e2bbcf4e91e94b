"""The 4-bit NF4 base: compute dtype, autocast, quantisation, and the model for evaluation.

The same code path on CPU and CUDA: bitsandbytes >= 0.50 runs NF4 `Linear4bit` on the CPU,
so the base is quantised exactly as on a GPU, and bf16 autocast is used on both (on this
CPU, AMX makes bf16 matmul ~6x faster than fp32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


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
    _own_unquantized_tensors(model)
    return model


def _own_unquantized_tensors(model: Any) -> None:
    """Copy the tensors that were not quantised (embeddings, tied LM head, norms) out of the
    memory-mapped checkpoint, so the mapping is released.

    On the CPU they are loaded as views into the mmapped safetensors file, and while one view
    lives the whole file stays mapped and resident, every page of it read by quantisation:
    257 MiB for the default model on top of the 4-bit copy (bench/memory_qlora.py). The
    copies cost their own size (~55 MiB, the embedding) and hold the same values.
    """
    import bitsandbytes as bnb

    for parameter in model.parameters():
        if parameter.device.type == "cpu" and not isinstance(parameter, bnb.nn.Params4bit):
            parameter.data = parameter.data.clone()
    for module in model.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.device.type == "cpu":
                module._buffers[name] = buffer.clone()


def count_linear4bit(model: Any) -> int:
    import bitsandbytes as bnb

    return sum(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())


def iter_linear4bit(model: Any) -> Iterator[tuple[str, Any]]:
    """(name, module) of every 4-bit linear layer (tests check the base stays frozen)."""
    import bitsandbytes as bnb

    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            yield name, module


def dequantize_once(model: Any) -> int:
    """Make every 4-bit layer compute with its weights dequantised once, not at every call.

    The base is frozen, so its NF4 weights dequantise to the same compute-dtype matrix at
    every forward and again in every backward; on a CPU that repeated dequantisation (and
    the copies around it) is a large share of a step. Each layer keeps its own dequantised
    matrix (the bf16 size of the linear layers: ~0.2 GB for a 135M model) and computes
    exactly what bitsandbytes' own training path computes: the input in the compute dtype,
    `linear` with the dequantised weight, the output back in the input's dtype. Only the
    training copy gets this; returns the number of layers changed.
    """
    import bitsandbytes.functional as bnb_functional

    changed = 0
    for _, module in iter_linear4bit(model):
        quant_state = module.weight.quant_state
        weight = bnb_functional.dequantize_4bit(module.weight.data, quant_state).detach()
        weight = weight.to(quant_state.dtype)
        bias = module.bias.detach().to(weight.dtype) if module.bias is not None else None

        def forward(
            x: torch.Tensor, _weight: torch.Tensor = weight, _bias: torch.Tensor | None = bias
        ) -> torch.Tensor:
            return torch.nn.functional.linear(x.to(_weight.dtype), _weight, _bias).to(x.dtype)

        module.forward = forward
        changed += 1
    return changed


class _MaskDropout(torch.autograd.Function):
    """torch's CPU dropout, keeping a 1-byte mask for the backward instead of its noise."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:
        # The same draws and arithmetic as `torch.nn.functional.dropout` on the CPU
        # (ATen's `_dropout_impl`): fp32 noise of 0 or 1/(1-p), times the input.
        noise = torch.empty_like(x).bernoulli_(1 - p)
        noise.div_(1 - p)
        ctx.save_for_backward(noise.ne(0))
        ctx.p = p
        ctx.noise_dtype = noise.dtype
        return x * noise

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (kept,) = ctx.saved_tensors
        noise = kept.to(ctx.noise_dtype).div_(1 - ctx.p)  # the forward's noise, bit for bit
        return grad * noise, None


class MaskDropout(torch.nn.Dropout):
    """`nn.Dropout` whose backward keeps a bool mask, not the noise tensor (CPU only).

    On the CPU, torch's dropout multiplies by a noise tensor of the input's dtype and autograd
    keeps that tensor until the backward: 4 bytes per element of every LoRA layer's input, 7
    layers per block (~20 KB per token per block on the default model, a fifth of a training
    step's activations). The noise is 0 or 1/(1-p), so a 1-byte mask rebuilds it exactly: the
    same random draws, outputs and gradients. Elsewhere (CUDA's fused kernel already keeps a
    mask), in eval mode or in place, it is plain `nn.Dropout`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.inplace or x.device.type != "cpu" or not 0 < self.p < 1:
            return super().forward(x)
        if x.numel() == 0:
            return x
        result: torch.Tensor = _MaskDropout.apply(x, self.p)
        return result


def use_mask_dropout(model: Any) -> int:
    """Swap every LoRA layer's `nn.Dropout` for `MaskDropout`; returns the number swapped."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if type(dropout) is torch.nn.Dropout:
                dropouts[name] = MaskDropout(dropout.p)
                swapped += 1
    return swapped


class _SiluGate(torch.autograd.Function):
    """`silu(gate) * up`, keeping only the two inputs for the backward."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return torch.nn.functional.silu(gate) * up

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate, up = ctx.saved_tensors
        # The same ops autograd runs for `silu(gate) * up` (mul's backward, then silu's),
        # with silu(gate) computed again instead of kept: the same gradients, bit for bit.
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        return grad_gate, grad * torch.nn.functional.silu(gate)


def _silu_gate_forward(mlp: Any) -> Any:
    def forward(x: torch.Tensor) -> torch.Tensor:
        gate, up = mlp.gate_proj(x), mlp.up_proj(x)
        if torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad):
            return mlp.down_proj(_SiluGate.apply(gate, up))
        return mlp.down_proj(torch.nn.functional.silu(gate) * up)

    return forward


def use_silu_gate(model: Any) -> int:
    """Make every gated SiLU MLP (`down(silu(gate(x)) * up(x))`, the Llama family's) keep
    its two projections for the backward, not the activation too; returns the MLPs changed.

    Autograd keeps `gate(x)` for silu's backward and both `silu(gate(x))` and `up(x)` for the
    product's: three tensors of the intermediate size per token and layer, in fp32 because
    `prepare_model_for_kbit_training` keeps the residual stream in fp32. The activation alone
    is a tenth of what a training step keeps on the default model (94 of 903 MiB for 8 x 67
    tokens), and it is one elementwise op away from `gate(x)`, so the backward computes it
    again: the same forward, the same gradients. The projections run in the same order as
    before, so dropout draws the same random numbers.
    """
    from transformers.activations import SiLUActivation

    changed = 0
    for module in model.modules():
        projections = all(hasattr(module, n) for n in ("gate_proj", "up_proj", "down_proj"))
        activation = getattr(module, "act_fn", None)
        if projections and isinstance(activation, SiLUActivation | torch.nn.SiLU):
            module.forward = _silu_gate_forward(module)
            changed += 1
    return changed


def trainable_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def base_parameter_count(model: Any) -> int:
    """Parameters of the unquantised model (transformers counts packed 4-bit weights x2)."""
    return int(model.num_parameters())


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
