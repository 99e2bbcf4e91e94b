"""Heavy resources (LLM, tokenizer, embedder), loaded once per worker process.

Loading SmolLM2 and MiniLM takes seconds; a pilot runs several arms and a worker runs many
pilots, so they are cached for the life of the process (the procrastinate/arq pattern).
Arms must not mutate `Resources.model`: the QLoRA arms load their own quantised copy from
`llm_path`.
"""

from __future__ import annotations

import gc
import os
import threading
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub

from app.domain.records import ArmModel
from worker.model_store import model_identity, resolve_embedder, resolve_llm
from worker.pilots.endpoint_answers import EndpointRuntime
from worker.pilots.served_adapters import ServingRuntime


@dataclass
class Resources:
    llm_path: str  # local dir (or cached hub id) the LLM was loaded from
    tokenizer: Any
    model: Any  # bf16, eval mode, on `device`
    embedder: Any  # sentence_transformers.SentenceTransformer
    device: str  # "cuda" or "cpu"
    model_id: str
    model_sha256: str | None
    embedder_path: str = ""
    model_parameters: int | None = None  # the LLM's size: the report's proxy rule reads it
    # Set per pilot (dataclasses.replace) when its prompting arms ask an endpoint instead.
    prompt_endpoint: EndpointRuntime | None = None
    # Set per pilot when a vLLM endpoint serves the fine-tuning base with LoRA enabled: the
    # fine-tuned arms then answer through it, with their adapter loaded at runtime.
    serving_endpoint: ServingRuntime | None = None
    # Set per pilot when the base is a registered model the user declared the deployment one.
    declared_deployment: bool = False

    def arm_model(self, *, adapter: bool) -> ArmModel:
        """What the manifest records about the in-process base model answering an arm."""
        return ArmModel(
            model_id=self.model_id,
            parameters=self.model_parameters,
            adapter=adapter,
            deployment=self.declared_deployment,
        )


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model_and_tokenizer(path: str, device: str) -> tuple[Any, Any]:
    """A causal LM in bf16 (CPU and CUDA alike) with a pad token, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # bf16 on CPU too: this CPU has AMX, where bf16 matmul is ~6x faster than fp32.
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    model.to(device)
    model.eval()
    return model, tokenizer


def load_embedder(path: str, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


def _load(settings: Any) -> Resources:
    device = pick_device()
    llm_path = resolve_llm(settings)
    model, tokenizer = load_model_and_tokenizer(llm_path, device)
    embedder_path = resolve_embedder(settings)
    embedder = load_embedder(embedder_path, device)
    model_id, model_sha = model_identity(llm_path)
    return Resources(
        llm_path=llm_path,
        tokenizer=tokenizer,
        model=model,
        embedder=embedder,
        device=device,
        model_id=model_id,
        model_sha256=model_sha,
        embedder_path=embedder_path,
        model_parameters=sum(p.numel() for p in model.parameters()),
    )


_cache: dict[tuple[str, str, str], Resources] = {}
_lock = threading.Lock()


def load_resources(settings: Any | None = None) -> Resources:
    """The process-wide Resources for these settings (loaded on first call, then reused)."""
    if settings is None:
        from app.settings import get_settings

        settings = get_settings()
    key = (
        str(getattr(settings, "llm_model", "")),
        str(getattr(settings, "embedder_model", "")),
        str(settings.models_dir),
    )
    with _lock:
        if key not in _cache:
            # One base model per worker process: a pilot on another model replaces it, so a
            # long-lived worker never holds two.
            _cache.clear()
            gc.collect()
            _cache[key] = _load(settings)
        return _cache[key]


def clear_resources() -> None:
    """Forget cached resources (tests, or a worker switching models)."""
    with _lock:
        _cache.clear()
