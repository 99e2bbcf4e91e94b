"""The Dockerfile's two images and the build context `.dockerignore` leaves them, read as
data: Docker's ignore rules are applied to the files (tests/deploy/dockerignore.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy import dockerignore

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Never in an image: local state, models, secrets, virtualenvs, version control, caches.
NEVER_SENT = ("var", "models", ".env", ".venv", ".venv-vllm", ".git", "test-artifacts")
# What the app reads at run time beside its packages (PROJECT_ROOT / ... in app/).
RUNTIME_TREES = ("app", "worker", "templates", "static", "migrations")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Each named stage's instructions, its FROM first."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, arguments in _instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "FROM":
            parts = re.split(r"\s+as\s+", arguments, flags=re.IGNORECASE)
            assert len(parts) == 2, f"unnamed stage: FROM {arguments}"
            current = stages.setdefault(parts[1], [])
            current.append((keyword, arguments))
        elif current is not None:
            current.append((keyword, arguments))
    return stages


def _torch_pin() -> str:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [d for d in pyproject["project"]["dependencies"] if re.match(r"torch\b", d)]
    assert len(pins) == 1 and pins[0].startswith("torch=="), pins
    return pins[0]


def _runs(stage: list[tuple[str, str]]) -> list[str]:
    return [arguments for keyword, arguments in stage if keyword == "RUN"]


def test_cpu_image_takes_pytorchs_cpu_build_of_the_pinned_torch() -> None:
    (run,) = _runs(_stages()["torch-cpu"])
    assert re.search(rf"pip install {re.escape(_torch_pin())}( |$)", run), run
    assert f"--index-url {CPU_INDEX}" in run


def test_cuda_image_takes_the_default_cuda_build_of_the_pinned_torch() -> None:
    (run,) = _runs(_stages()["torch-cuda"])
    assert re.fullmatch(rf"pip install {re.escape(_torch_pin())}", run), run


def test_the_app_stage_builds_on_the_torch_build_compose_asks_for() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    before_first_stage = text[: text.index("\nFROM ")]
    assert re.search(r"^ARG TORCH_BUILD=cpu$", before_first_stage, re.MULTILINE)
    stages = _stages()
    assert stages["app"][0] == ("FROM", "torch-${TORCH_BUILD} AS app")
    assert {"torch-cpu", "torch-cuda"} <= stages.keys()
    assert list(stages)[-1] == "app", "a plain `docker build` must end at the app"
    # The app's install keeps the torch build below it: pip sees the pin satisfied.
    assert any("pip install -e '.[scaled]'" in run for run in _runs(stages["app"]))


def test_run_instructions_are_valid_shell() -> None:
    runs = [run for stage in _stages().values() for run in _runs(stage)]
    assert runs
    for run in runs:
        checked = subprocess.run(["sh", "-n", "-c", run], capture_output=True, text=True)
        assert checked.returncode == 0, f"{run}: {checked.stderr}"


def test_every_copy_source_is_in_the_build_context() -> None:
    sent = dockerignore.build_context(REPO)
    copies = [args for stage in _stages().values() for keyword, args in stage if keyword == "COPY"]
    assert copies
    for arguments in copies:
        assert not arguments.startswith("--from"), arguments
        *sources, _destination = arguments.split()
        for source in sources:
            if source == ".":
                continue
            assert any(path == source or path.startswith(f"{source}/") for path in sent), (
                f"COPY {source}: not in the build context"
            )
    for tree in RUNTIME_TREES:
        assert any(path.startswith(f"{tree}/") for path in sent), f"{tree}/ is not sent"


def test_the_repository_context_leaves_out_local_state_and_tooling() -> None:
    sent = dockerignore.build_context(REPO)
    leaked = [p for p in sent if p.split("/")[0] in NEVER_SENT or "__pycache__" in p.split("/")]
    assert not leaked, leaked[:10]


def test_a_fresh_var_and_virtualenvs_stay_out_of_the_context(tmp_path: Path) -> None:
    """The repository's .dockerignore on a small tree that has everything it must leave out."""
    shutil.copy(REPO / ".dockerignore", tmp_path / ".dockerignore")
    for relative in (
        "var/pathpilot.db",
        "var/models/base/config.json",
        ".venv/bin/python",
        ".venv-vllm/bin/python",
        ".git/HEAD",
        ".env",
        "models/Llama/config.json",
        "app/main.py",
        "app/__pycache__/main.cpython-311.pyc",
        "app/var/not_local_state.py",
        "static/node_modules/x/index.js",
        "templates/base.html",
        "pyproject.toml",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")
    assert dockerignore.build_context(tmp_path) == [
        ".dockerignore",
        "app/main.py",
        "app/var/not_local_state.py",
        "pyproject.toml",
        "templates/base.html",
    ]


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        # Anchored at the root, and a directory's pattern covers what is under it.
        ("var", "var", True),
        ("var", "var/pathpilot.db", True),
        ("var", "app/var/x.py", False),
        ("/var/", "var/x", True),
        ("./var", "var/x", True),
        # Docker's documented examples.
        ("*/temp*", "somedir/temporary.txt", True),
        ("*/temp*", "temporary.txt", False),
        ("*/*/temp*", "somedir/subdir/temporary.txt", True),
        ("temp?", "tempa", True),
        ("temp?", "temp/a", False),
        ("**/*.go", "a/b/c.go", True),
        ("**/*.go", "c.go", True),
        ("*.md\n!README*.md", "README-secret.md", False),
        ("*.md\n!README*.md", "CHANGES.md", True),
        ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
        # `.venv*` takes the app's virtualenv, vLLM's and a link to a shared one.
        (".venv*", ".venv-vllm", True),
        (".venv*", ".venv/lib/site.py", True),
        ("# var\n", "var/x", False),
        ("**/__pycache__", "__pycache__/a.pyc", True),
        ("**/__pycache__", "app/x/__pycache__/a.pyc", True),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "a/xb", False),
        ("a/**", "a/b/c", True),
        ("a/**", "ab", False),
        ("file[0-9].txt", "file7.txt", True),
        ("file[0-9].txt", "filex.txt", False),
        ("a.b", "axb", False),
    ],
)
def test_docker_pattern_rules(patterns: str, path: str, excluded: bool) -> None:
    assert dockerignore.is_excluded(path, dockerignore.parse(patterns)) is excluded
