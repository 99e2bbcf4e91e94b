"""docker-compose.yml (two GPUs) and docker-compose.one-gpu.yml (one GPU, a stated memory
split), read as data: valid against the Compose Specification's schema, no GPU reserved by two
services unless vLLM is capped to a split the GPU worker's pre-flight accepts, vLLM pinned to
the release the tests serve with, and the LoRA settings the pilots rely on kept in both."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from app.domain.recipe import QLoRARecipe
from app.domain.scoring.costs import qlora_memory_need, qlora_preflight
from tests.deploy import compose

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BASE_FILE = REPO / "docker-compose.yml"
ONE_GPU_FILE = REPO / "docker-compose.one-gpu.yml"
SCHEMA = HERE / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"

# The memory arithmetic of a shared card (docker-compose.one-gpu.yml's comment).
BF16_BYTES_PER_PARAMETER = 2
# Llama-3.1-8B's KV cache: 32 layers x 8 KV heads x 128 dims x (K and V) x 2 bytes.
KV_BYTES_PER_TOKEN = 32 * 8 * 128 * 2 * 2
VLLM_ACTIVATIONS_GB = 2.0  # vLLM's profiling run and CUDA graphs, beyond weights and KV cache
CUDA_CONTEXT_GB = 1.0  # the worker's own CUDA context and allocator slack

APP_SERVICES = ("migrate", "web", "worker", "gpu-worker", "beat")


def _flag(command: list[str], name: str) -> str:
    assert command.count(name) == 1, f"{name} appears {command.count(name)} times in {command}"
    return command[command.index(name) + 1]


def _gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return [d for d in reservations.get("devices", []) if "gpu" in d.get("capabilities", [])]


def _gpu_owners(model: dict[str, Any]) -> dict[str, list[str]]:
    """Device id -> the services that reserve it; a reservation by count fails the test."""
    owners: dict[str, list[str]] = {}
    for name, service in model["services"].items():
        for device in _gpu_devices(service):
            assert "count" not in device, f"{name} reserves GPUs by count, not by device id"
            assert device.get("device_ids"), f"{name} reserves a GPU without naming it"
            for device_id in device["device_ids"]:
                owners.setdefault(str(device_id), []).append(name)
    return owners


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return compose.load(BASE_FILE)


@pytest.fixture(scope="module")
def one_gpu_file() -> dict[str, Any]:
    return compose.load(ONE_GPU_FILE)


@pytest.fixture(scope="module")
def one_gpu(base: dict[str, Any], one_gpu_file: dict[str, Any]) -> dict[str, Any]:
    merged = compose.merge(base, one_gpu_file)
    assert isinstance(merged, dict)
    return merged


@pytest.fixture(scope="module")
def validator() -> Any:
    raw = SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "the vendored schema changed"
    return jsonschema_rs.validator_for(json.loads(raw))


def test_compose_files_are_valid_against_the_compose_specification(
    validator: Any, base: dict[str, Any], one_gpu_file: dict[str, Any], one_gpu: dict[str, Any]
) -> None:
    for label, model in (
        ("docker-compose.yml", base),
        ("docker-compose.one-gpu.yml", compose.plain(one_gpu_file)),
        ("both files merged", one_gpu),
    ):
        errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(model)]
        assert not errors, f"{label}: {errors}"


def test_the_schema_check_catches_a_misspelt_attribute(
    validator: Any, base: dict[str, Any]
) -> None:
    broken = compose.merge(base, {"services": {"vllm": {"ipc_mode": "host"}}})
    assert not validator.is_valid(broken)


def test_two_gpus_each_service_has_its_own(base: dict[str, Any]) -> None:
    owners = _gpu_owners(base)
    assert set(owners) == {"0", "1"}
    assert sorted(name for names in owners.values() for name in names) == ["gpu-worker", "vllm"]
    shared = {device: names for device, names in owners.items() if len(names) > 1}
    assert not shared, f"GPUs reserved by more than one service: {shared}"
    # vLLM alone on its card may take most of it.
    assert float(_flag(base["services"]["vllm"]["command"], "--gpu-memory-utilization")) <= 0.95


def test_one_gpu_shares_device_0_with_a_memory_split_the_preflight_accepts(
    one_gpu: dict[str, Any],
) -> None:
    owners = _gpu_owners(one_gpu)
    assert owners == {"0": ["gpu-worker", "vllm"]}, owners
    # The split is stated for a card and a base model; check it both ways.
    split = one_gpu["x-memory-split"]
    card_gb, size_b = float(split["card_gb"]), float(split["base_model_size_b"])
    command = one_gpu["services"]["vllm"]["command"]
    utilisation = float(_flag(command, "--gpu-memory-utilization"))
    max_model_len = int(_flag(command, "--max-model-len"))
    vllm_gb = utilisation * card_gb
    # vLLM's share holds the bf16 weights, its activations and at least one full sequence.
    vllm_need_gb = (
        size_b * BF16_BYTES_PER_PARAMETER
        + VLLM_ACTIVATIONS_GB
        + max_model_len * KV_BYTES_PER_TOKEN / 1e9
    )
    assert vllm_gb >= vllm_need_gb, (vllm_gb, vllm_need_gb)
    # The rest passes the GPU worker's own pre-flight for the default recipe.
    recipe = QLoRARecipe()
    need = qlora_memory_need(size_b, batch_tokens=recipe.batch_size * recipe.max_seq_len)
    free_gb = card_gb * (1 - utilisation) - CUDA_CONTEXT_GB
    refusal = qlora_preflight(
        need, free_gb=free_gb, batch_size=recipe.batch_size, max_seq_len=recipe.max_seq_len
    )
    assert refusal is None, refusal


def test_one_gpu_changes_only_vllm(base: dict[str, Any], one_gpu: dict[str, Any]) -> None:
    for name, service in base["services"].items():
        if name != "vllm":
            assert one_gpu["services"][name] == service, name
    changed = {
        key
        for key in base["services"]["vllm"].keys() | one_gpu["services"]["vllm"].keys()
        if base["services"]["vllm"].get(key) != one_gpu["services"]["vllm"].get(key)
    }
    assert changed == {"command", "deploy"}
    base_command = base["services"]["vllm"]["command"]
    one_command = one_gpu["services"]["vllm"]["command"]
    # Only the memory cap differs between the two commands.
    assert _flag(one_command, "--gpu-memory-utilization") != _flag(
        base_command, "--gpu-memory-utilization"
    )
    cap = base_command.index("--gpu-memory-utilization") + 1
    without_cap = base_command[:cap] + base_command[cap + 1 :]
    assert one_command[:cap] + one_command[cap + 1 :] == without_cap


@pytest.mark.parametrize("layout", ["two GPUs", "one GPU"])
def test_vllm_serves_the_base_with_runtime_lora(
    layout: str, base: dict[str, Any], one_gpu: dict[str, Any]
) -> None:
    model = base if layout == "two GPUs" else one_gpu
    vllm = model["services"]["vllm"]
    command = vllm["command"]
    # `vllm serve MODEL`: the image's entrypoint is `vllm serve`; `--model` is deprecated there.
    assert command[0] == "${BASE_MODEL}"
    assert "--model" not in command
    assert "--enable-lora" in command
    assert int(_flag(command, "--max-lora-rank")) >= QLoRARecipe().rank
    assert _flag(command, "--served-model-name") == "${BASE_MODEL_NAME:-base}"
    assert 0 < int(_flag(command, "--max-model-len")) <= 32768
    assert 0 < float(_flag(command, "--gpu-memory-utilization")) < 1
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert vllm["environment"]["HF_HUB_OFFLINE"] == "1"
    assert vllm["ipc"] == "host"
    # The server reads adapters by path: the workers' var volume at the same place.
    app_volumes = model["services"]["gpu-worker"]["volumes"]
    var_mount = next(v for v in app_volumes if v.startswith("pathpilot-var:"))
    assert f"{var_mount}:ro" in vllm["volumes"]
    assert model["services"]["gpu-worker"]["depends_on"]["vllm"] == {"condition": "service_healthy"}


def test_vllm_image_is_pinned_to_the_release_the_tests_serve_with(base: dict[str, Any]) -> None:
    image = base["services"]["vllm"]["image"]
    repository, _, tag = image.partition(":")
    assert repository == "vllm/vllm-openai"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), f"vLLM's image is not pinned: {image}"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    tested = re.search(r"^VLLM_PACKAGE\s*:=\s*vllm(?:-cpu)?==(\S+)$", makefile, re.MULTILINE)
    assert tested is not None, "the Makefile no longer names the vLLM the tests use"
    assert tag == f"v{tested.group(1)}", "bump the compose image and the tested vLLM together"


def test_every_pulled_image_has_a_tag_other_than_latest(base: dict[str, Any]) -> None:
    for name, service in base["services"].items():
        if "build" in service:
            continue
        _, _, tag = service["image"].rpartition(":")
        assert tag and "/" not in tag and tag != "latest", f"{name}: {service['image']}"


def test_images_cpu_for_the_app_and_cuda_for_the_gpu_worker(base: dict[str, Any]) -> None:
    builds: Counter[str] = Counter()
    for name in APP_SERVICES:
        service = base["services"][name]
        torch_build = service["build"]["args"]["TORCH_BUILD"]
        expected = "cuda" if name == "gpu-worker" else "cpu"
        assert torch_build == expected, name
        assert service["image"] == f"pathpilot:{expected}", name
        assert service["build"]["context"] == "."
        builds[torch_build] += 1
    assert builds == {"cpu": 4, "cuda": 1}


def test_app_services_keep_the_shared_egress_policy(base: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        environment = base["services"][name]["environment"]
        assert environment["EGRESS_MODE"] == "shared", name
        assert "ENDPOINT_ALLOWED_HOSTS" in environment, name


def test_merge_follows_the_specification() -> None:
    """The merge used above: mappings merge, lists append, commands and `!override` replace,
    `!reset` removes."""
    first = {"services": {"a": {"command": ["x"], "dns": ["1"], "env": {"A": "1", "B": "2"}}}}
    second = {
        "services": {
            "a": {
                "command": ["y"],
                "dns": ["2"],
                "env": {"B": compose.Reset(None), "C": "3"},
                "ports": ["80"],
            }
        }
    }
    assert compose.merge(first, second) == {
        "services": {
            "a": {"command": ["y"], "dns": ["1", "2"], "env": {"A": "1", "C": "3"}, "ports": ["80"]}
        }
    }
    replaced = compose.merge(first, {"services": {"a": {"dns": compose.Override(["3"])}}})
    assert replaced["services"]["a"]["dns"] == ["3"]
