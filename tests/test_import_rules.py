"""The rule `make lint` runs: no module imports a test module; bench/ no fixture of the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.import_rules import problems


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_each_way_of_importing_a_test_module_is_flagged_with_its_line(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "tests/__init__.py": "",
            "tests/app/test_pages.py": "X = 1\n",
            "tests/app/test_uses.py": (
                "import os\n"
                "from tests.app.test_pages import X\n"
                "import tests.app.test_pages\n"
                "from tests.app import test_pages\n"
                "from .test_pages import X as Y\n"
                "def f():\n"
                "    from tests.app.test_pages import X\n"
            ),
            "tests/factories/__init__.py": "from tests.app.conftest_like import helper\n",
            "bench/__init__.py": "",
            "bench/run.py": (
                "from tests.vllm_server import running_vllm\n"
                "from tests.conftest import WebClient\n"
                "from tests.scaleout.servers import _private\n"
            ),
        },
    )
    found = problems(root)
    # By file, then each file's nodes breadth-first: the import inside f() comes last.
    assert [line.split(": ", 1)[0] for line in found] == [
        "tests/app/test_uses.py:2",
        "tests/app/test_uses.py:3",
        "tests/app/test_uses.py:4",
        "tests/app/test_uses.py:5",
        "tests/app/test_uses.py:7",
        "bench/run.py:2",
        "bench/run.py:3",
    ]
    assert "tests.app.test_pages" in found[0] and "tests/factories" in found[0]


def test_the_command_fails_on_a_planted_import_and_passes_on_this_repository(
    tmp_path: Path,
) -> None:
    _tree(tmp_path, {"tests/test_a.py": "", "tests/test_b.py": "from tests.test_a import *\n"})
    (tmp_path / "bench").mkdir()
    planted = subprocess.run(
        [sys.executable, "-m", "tests.import_rules", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert planted.returncode == 1
    assert planted.stdout.startswith("tests/test_b.py:1: imports the test module tests.test_a")
    here = subprocess.run(
        [sys.executable, "-m", "tests.import_rules"], cwd=REPO, capture_output=True, text=True
    )
    assert (here.returncode, here.stdout) == (0, "")
