"""The web side's command line, run as the `pathpilot` command runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
