"""Fixtures for tests that talk to a real vLLM server (marker `vllm`).

The server starts once per session, on first use, and stops at the end of the session. The
tests skip only when vLLM's virtualenv is absent; a server that fails to start is an error,
reported with the end of its log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vllm_server import (
    DEFAULT_MODEL_DIR,
    MAX_LORA_RANK,
    VLLMServer,
    running_vllm,
    vllm_missing,
)


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    missing = vllm_missing()
    if missing:
        pytest.skip(missing)
    with running_vllm(tmp_path_factory.mktemp("vllm")) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_lora_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT LoRA adapter (rank 8 on the attention projections) for the default model, as
    a pilot's fine-tune saves one; freshly initialised, so it changes no answer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    assert MAX_LORA_RANK >= 8, "the server must accept the adapter's rank"
    model = AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_DIR, dtype=torch.bfloat16)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )
    path = tmp_path_factory.mktemp("lora") / "tiny-adapter"
    get_peft_model(model, config).save_pretrained(str(path))
    return path
