"""What importing the worker package sets up before any torch work."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def _capacity_after_import(environment: dict[str, str]) -> str:
    """The variable as a fresh process sees it once `worker` is imported."""
    code = f"import os, worker; print(os.environ[{VARIABLE!r}])"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_importing_the_worker_caps_the_onednn_primitive_cache() -> None:
    environment = {k: v for k, v in os.environ.items() if k != VARIABLE}
    assert _capacity_after_import(environment) == "128"


def test_a_capacity_given_in_the_environment_wins() -> None:
    assert _capacity_after_import(os.environ | {VARIABLE: "512"}) == "512"
