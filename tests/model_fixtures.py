"""Model fixtures (a pytest plugin): the real default models, converted once, shared by all.

The converted SmolLM2 lives in the project's var/models (the same place `pathpilot models
fetch` puts it), so only the first test session on a machine pays for the conversion.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pytest

from app.domain.samples.schemas import Example
from tests.conftest import REPO, shared_models_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHIPPED_BANKING77 = REPO / "examples" / "banking77-sample.csv"


@pytest.fixture(scope="session")
def llm_dir() -> Path:
    from worker.model_store import fetch_default_llm

    return fetch_default_llm(shared_models_dir())


@pytest.fixture(scope="session")
def tokenizer(llm_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llm_dir)


@pytest.fixture(scope="session")
def embedder() -> Any:
    from worker.model_store import default_embedder_path
    from worker.pilots.resources import load_embedder

    return load_embedder(str(default_embedder_path()), "cpu")


@pytest.fixture(scope="session")
def resources(llm_dir: Path, embedder: Any) -> Any:
    """Resources as the worker builds them (bf16 model on the CPU), without the settings."""
    from worker.model_store import default_embedder_path, model_identity
    from worker.pilots.resources import Resources, load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(llm_dir), "cpu")
    model_id, sha = model_identity(str(llm_dir))
    return Resources(
        llm_path=str(llm_dir),
        tokenizer=tokenizer,
        model=model,
        embedder=embedder,
        device="cpu",
        model_id=model_id,
        model_sha256=sha,
        embedder_path=str(default_embedder_path()),
        model_parameters=sum(p.numel() for p in model.parameters()),
    )


def read_banking77(split: str, limit: int | None = None) -> list[Example]:
    """Rows of the Banking77 sample shipped in examples/: every fifth row is "test".

    The shipped file, not ../shared/datasets, so the tests run the same on every machine.
    """
    with SHIPPED_BANKING77.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    examples = [
        Example(input=row["text"], target=row["label"], line=number)
        for number, row in enumerate(rows, start=2)
        if (number % 5 == 0) == (split == "test")
    ]
    return examples[:limit] if limit else examples
