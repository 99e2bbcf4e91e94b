"""A bundle that installs and runs: resolvable pins, valid shell, vLLM's ranks, no server paths."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from app.exports.bundle import TRL_FLOORS, TRL_PIN, ArmFacts, build_bundle, max_lora_rank
from tests.app.exports.helpers import write_adapter
from tests.factories.bundles import QLORA_RECIPE, classification_data, inputs

OLD_WORKER = {"torch": "2.1.0+cu121", "transformers": "4.40.0", "accelerate": "0.28.0"}


def requirements(text: str) -> dict[str, Requirement]:
    found = [Requirement(line) for line in text.splitlines() if line.strip()]
    return {req.name: req for req in found}


def lowest_allowed(req: Requirement) -> Version:
    """The version an `==` pin names, or a `>=` floor."""
    (spec,) = list(req.specifier)
    assert spec.operator in ("==", ">="), req
    return Version(spec.version)


@pytest.mark.parametrize("libraries", [OLD_WORKER, {"transformers": "5.24.0"}])
def test_finetune_requirements_satisfy_trls_own_requirements(libraries: dict[str, str]) -> None:
    """Resolved offline against the installed TRL wheel's metadata: every pin or floor of a
    package TRL depends on lies inside TRL's range (an old worker's transformers 4.40 next to
    trl 1.16 has no solution)."""
    assert metadata.version("trl") == TRL_PIN
    bundle = build_bundle(inputs(classification_data(), manifest={"libraries": libraries}))
    pinned = requirements(bundle.files["finetune/requirements.txt"].decode())
    assert str(pinned["trl"].specifier) == f"=={TRL_PIN}"
    trl_needs = [Requirement(r) for r in metadata.requires("trl") or [] if "extra" not in r]
    checked = 0
    for need in trl_needs:
        if need.name in pinned:
            version = lowest_allowed(pinned[need.name])
            assert need.specifier.contains(version), (need, pinned[need.name])
            checked += 1
    assert checked == 3  # transformers, accelerate, datasets
    for name, floor in TRL_FLOORS.items():  # the floors are TRL's own
        assert any(n.name == name and Version(floor) in n.specifier for n in trl_needs)
        assert any(n.name == name and f">={floor}" in str(n.specifier) for n in trl_needs)


def test_max_lora_rank_is_one_vllm_accepts() -> None:
    assert [max_lora_rank(r) for r in (4, 8, 16, 24, 48, 64, 300, 512)] == [
        16, 16, 16, 32, 64, 64, 320, 512
    ]  # fmt: skip
    with pytest.raises(ValueError, match="512"):
        max_lora_rank(1024)


@pytest.mark.parametrize(
    "base_model_id",
    ["HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)", None, "/srv/models/smollm2"],
)
def test_every_shell_script_parses_and_no_server_path_leaks(
    base_model_id: str | None, tmp_path: Path
) -> None:
    adapter = tmp_path / "adapter"
    write_adapter(adapter)
    manifest: dict[str, object] = {"base_model_id": base_model_id, "libraries": {}}
    arms = {"qlora": ArmFacts("qlora", "done", recipe=QLORA_RECIPE | {"rank": 24})}
    bundle = build_bundle(
        inputs(classification_data(), manifest=manifest, arms=arms, adapter_dir=adapter)
    )
    scripts = [name for name in bundle.files if name.endswith(".sh")]
    assert scripts == ["serve/make_gguf.sh", "serve/serve.sh"]
    sh = shutil.which("sh") or "/bin/sh"
    for name in scripts:
        done = subprocess.run([sh, "-n"], input=bundle.files[name], capture_output=True)
        assert done.returncode == 0, (base_model_id, done.stderr)
    serve = bundle.files["serve/serve.sh"].decode()
    assert "--max-lora-rank 32" in serve
    gguf = bundle.files["serve/make_gguf.sh"].decode()
    assert "serve/Modelfile" not in bundle.files  # make_gguf.sh writes it beside the GGUF
    for name in ("serve/serve.sh", "serve/make_gguf.sh", "serve/README.md"):
        assert "/srv/" not in bundle.files[name].decode(), name
    if base_model_id and base_model_id.startswith("Hugging"):
        assert "'HuggingFaceTB/SmolLM2-135M-Instruct'" in serve
        assert "'HuggingFaceTB/SmolLM2-135M-Instruct'" in gguf
    else:
        assert "BASE_MODEL:?" in serve and "BASE_MODEL:?" in gguf


def test_the_scripts_report_stage_steps_and_eta_on_stderr(tmp_path: Path) -> None:
    """serve/client.py's Progress, which rag/build_index.py and rag/query.py use too."""
    bundle = build_bundle(inputs(classification_data())).write_to(tmp_path / "b")
    script = (
        "import io, client\n"
        "out = io.StringIO()\n"
        "p = client.Progress('answering', 3, every=3600.0, stream=out)\n"
        "for _ in range(3):\n"
        "    p.step()\n"
        "print(out.getvalue(), end='')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=bundle / "serve", capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # At the start, at most once an `every` (an hour here), and at the end.
    assert [line.split(",")[0] for line in lines] == ["[answering] 0/3", "[answering] 3/3"]
    assert lines[0].endswith("ETA unknown") and lines[-1].endswith("ETA 0s")
    for name in ("rag/build_index.py", "rag/query.py"):
        assert "Progress(" in (bundle / name).read_text(), name
