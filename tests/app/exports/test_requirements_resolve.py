"""Every requirements file of a bundle resolves with pip's own resolver against the package
index, as `pip install -r` would on a team's machine (nothing is installed: --dry-run).

The index is PyPI as pip is configured here. Where it cannot be reached the test is skipped
and says so: resolving against a folder of local wheels instead would only show that the
wheels this machine happens to have fit together, not that the team's install works.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from app.exports.bundle import ArmFacts, build_bundle
from tests.app.exports.helpers import write_adapter
from tests.factories.bundles import QLORA_RECIPE, classification_data, inputs

pytestmark = pytest.mark.slow  # network: pip reads the index's metadata of every pin

PIP = [sys.executable, "-m", "pip"]


def index_unreachable() -> str | None:
    """Why pip cannot reach its index, or None when it can."""
    done = subprocess.run(
        [*PIP, "index", "versions", "packaging", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode == 0 and "Available versions" in done.stdout:
        return None
    return f"pip's package index is unreachable from here: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def requirement_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A bundle with every part that has requirements: fine-tuning, adapter, serving, RAG."""
    folder = tmp_path_factory.mktemp("bundle")
    adapter = folder / "saved-adapter"
    write_adapter(adapter)
    arms = {
        "qlora": ArmFacts("qlora", "done", recipe=QLORA_RECIPE),
        "rag": ArmFacts("rag", "done", recipe={"top_k": 4}),
    }
    # No recorded libraries: the pins are this installation's versions, as for a pilot run
    # on this worker.
    bundle = build_bundle(
        inputs(classification_data(), manifest={}, arms=arms, adapter_dir=adapter)
    ).write_to(folder / "b")
    files = {p.relative_to(bundle).as_posix(): p for p in bundle.rglob("requirements*.txt")}
    assert set(files) == {
        "finetune/requirements.txt",
        "serve/requirements.txt",
        "serve/requirements-gguf.txt",
        "rag/requirements.txt",
    }
    return files


def test_every_requirements_file_resolves_with_pips_resolver(
    requirement_files: dict[str, Path],
) -> None:
    unreachable = index_unreachable()
    if unreachable:
        pytest.skip(unreachable)
    for name, path in sorted(requirement_files.items()):
        done = subprocess.run(
            [*PIP, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
             "--disable-pip-version-check", "-r", str(path)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, f"{name} does not resolve:\n{done.stderr[-3000:]}"
        report = json.loads(done.stdout)
        chosen = {
            canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
            for item in report["install"]
        }
        for line in path.read_text().splitlines():
            wanted = Requirement(line)
            version = chosen.get(canonicalize_name(wanted.name))
            assert version is not None, (name, wanted.name)
            assert wanted.specifier.contains(version, prereleases=True), (name, wanted, version)
        print(f"{name}: {len(chosen)} packages resolved")


def test_an_unsatisfiable_pin_is_caught(tmp_path: Path) -> None:
    """The check can fail: a pin that does not exist makes pip's resolver refuse."""
    unreachable = index_unreachable()
    if unreachable:
        pytest.skip(unreachable)
    path = tmp_path / "requirements.txt"
    path.write_text("numpy==0.0.1\n")
    done = subprocess.run(
        [*PIP, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
         "-r", str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0 and "numpy==0.0.1" in done.stderr
