"""MaskDropout: torch's CPU dropout with a 1-byte mask kept for the backward, same numbers;
the gated SiLU MLP keeping its projections only, same numbers."""

from __future__ import annotations

import copy

import pytest
import torch

from worker.pilots.arms.qlora.model import MaskDropout, use_mask_dropout, use_silu_gate


def _run(dropout: torch.nn.Module, x: torch.Tensor, *, autocast: bool) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(7)
    inputs = x.clone().requires_grad_(True)
    saved: list[torch.dtype] = []

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.dtype)
        return tensor

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            out = dropout(inputs)
        loss = (out * torch.arange(out.numel()).reshape(out.shape)).sum()
    loss.backward()
    assert inputs.grad is not None
    return out.detach(), inputs.grad, torch.rand(3), torch.tensor([d == torch.bool for d in saved])


@pytest.mark.parametrize("autocast", [False, True])
def test_mask_dropout_draws_and_computes_what_dropout_does(autocast: bool) -> None:
    x = torch.randn(4, 5, 24, generator=torch.Generator().manual_seed(0))
    out, grad, after, _ = _run(torch.nn.Dropout(0.05), x, autocast=autocast)
    lean_out, lean_grad, lean_after, lean_saved = _run(MaskDropout(0.05), x, autocast=autocast)
    assert torch.equal(out, lean_out) and torch.equal(grad, lean_grad)
    assert torch.equal(after, lean_after)  # the generator moved on by the same draws
    assert bool((out == 0).any()) and lean_saved.all()  # it dropped some, kept only a mask


def test_mask_dropout_is_the_identity_where_dropout_is() -> None:
    x = torch.randn(3, 8)
    assert MaskDropout(0.05).eval()(x) is x
    assert torch.equal(MaskDropout(0.0)(x), x)


def test_use_mask_dropout_swaps_the_lora_dropouts_only() -> None:
    import peft

    torch.manual_seed(0)
    base = torch.nn.Sequential(
        torch.nn.Linear(16, 16), torch.nn.Dropout(0.1), torch.nn.Linear(16, 4)
    )
    config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=["0", "2"])
    plain = peft.get_peft_model(base, config)
    lean = copy.deepcopy(plain)
    assert use_mask_dropout(lean) == 2
    assert type(lean.base_model.model[1]) is torch.nn.Dropout  # not a LoRA dropout
    x = torch.randn(6, 16)

    def gradients(model: torch.nn.Module) -> list[torch.Tensor]:
        model.train()
        torch.manual_seed(3)
        model(x).square().sum().backward()
        return [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]

    expected, got = gradients(plain), gradients(lean)
    assert len(expected) == len(got) == 4
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))


class _GatedMLP(torch.nn.Module):
    """The Llama family's MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, activation: torch.nn.Module) -> None:
        super().__init__()
        self.gate_proj = torch.nn.Linear(12, 20)
        self.up_proj = torch.nn.Linear(12, 20)
        self.down_proj = torch.nn.Linear(20, 12)
        self.act_fn = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


def _mlp_run(model: torch.nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], int]:
    inputs = x.clone().requires_grad_(True)
    saved: list[int] = []

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        out = model(inputs)
    (out * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
    assert inputs.grad is not None
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return [out.detach(), inputs.grad, *grads], sum(saved)


def test_silu_gate_computes_what_the_mlp_does_keeping_less() -> None:
    from transformers.activations import SiLUActivation

    torch.manual_seed(0)
    plain = torch.nn.Sequential(_GatedMLP(SiLUActivation()), _GatedMLP(torch.nn.GELU()))
    lean = copy.deepcopy(plain)
    assert use_silu_gate(lean) == 1  # the GELU MLP is left alone
    x = torch.randn(3, 5, 12)
    expected, expected_saved = _mlp_run(plain, x)
    got, got_saved = _mlp_run(lean, x)
    assert len(got) == len(expected) == 14
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    assert expected_saved - got_saved == 3 * 5 * 20  # silu(gate(x)) is no longer kept
    with torch.no_grad():
        assert torch.equal(lean(x), plain(x))
