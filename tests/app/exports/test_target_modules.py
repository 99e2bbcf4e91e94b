"""A recipe's target modules fit every family: PEFT on tiny models of each architecture."""

from __future__ import annotations

import pytest

from app.domain.recipe import ATTENTION_MODULES, choose_recipe, resolve_target_modules

SMALL = {
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 64,
    "pad_token_id": 0,
}  # fmt: skip


def tiny_model(model_type: str):  # type: ignore[no-untyped-def]
    """A randomly initialised one-layer model of the architecture (no weights downloaded)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    extra = {"n_embd": 32, "n_layer": 1, "n_head": 2} if model_type == "gpt2" else {}
    config = AutoConfig.for_model(model_type, intermediate_size=64, **SMALL, **extra)
    return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize(
    ("model_type", "expected"),
    [
        ("llama", ATTENTION_MODULES),
        ("mistral", ATTENTION_MODULES),
        ("qwen2", ATTENTION_MODULES),
        ("gemma2", ATTENTION_MODULES),
        ("phi3", ["qkv_proj", "o_proj"]),
        ("falcon", ["query_key_value", "dense"]),
        ("gpt_neox", ["query_key_value", "dense"]),
        ("gpt2", ["c_attn", "c_proj"]),
    ],
)
def test_the_attention_recipe_trains_on_every_family(model_type: str, expected: list[str]) -> None:
    from peft import LoraConfig, get_peft_model

    recipe = choose_recipe(8_000_000_000, 1000, 3, 60.0, None)
    assert recipe.target_modules == ATTENTION_MODULES  # the 3B+ default
    model = tiny_model(model_type)
    names = [name for name, _ in model.named_modules()]
    modules = resolve_target_modules(recipe.target_modules, model.config.model_type, names)
    assert modules == expected
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=modules))
    assert peft_model.get_nb_trainable_parameters()[0] > 0


def test_q_k_v_o_misses_attention_without_the_mapping() -> None:
    """What the mapping prevents: PEFT refuses a model with none of the names (Falcon) and, on
    Phi-3, silently adapts o_proj alone (its q/k/v are one qkv_proj layer)."""
    from peft import LoraConfig, get_peft_model

    with pytest.raises(ValueError, match="not found in the base model"):
        get_peft_model(tiny_model("falcon"), LoraConfig(r=4, target_modules=ATTENTION_MODULES))
    phi3 = get_peft_model(tiny_model("phi3"), LoraConfig(r=4, target_modules=ATTENTION_MODULES))
    adapted = [name for name, _ in phi3.named_modules() if name.endswith(".lora_A")]
    assert adapted and all(name.endswith(".o_proj.lora_A") for name in adapted)


def test_all_linear_and_unknown_names() -> None:
    assert resolve_target_modules("all-linear", "phi3", ["a.qkv_proj"]) == "all-linear"
    assert resolve_target_modules(["w_in"], "unknown", ["a.b"]) == "all-linear"
    assert resolve_target_modules(["q_proj"], "llama", ["x.q_proj"]) == ["q_proj"]
