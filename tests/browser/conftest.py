"""A real server process and Debian's Chromium, driven by pytest-playwright."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import shared_models_dir
from tests.serving import start_serve, wait_until_healthy

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    # Background networking off: this machine has no internet, and Chromium retries forever.
    return {
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


# Small caps so a real four-arm pilot finishes in a few minutes on two CPU cores.
TINY_PILOTS = {"PILOT_MAX_TRAIN": "24", "PILOT_MAX_TEST": "16", "PILOT_MAX_TRAIN_MINUTES": "1.5"}


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`pathpilot serve` (web app + one Celery worker) on 127.0.0.1 with its own var/.

    The same command the README's first command ends in; stopped by PID with SIGTERM, which
    `serve` passes on to the web app and the worker.
    """
    var = tmp_path_factory.mktemp("live") / "var"
    var.mkdir()
    log = open(var / "server.log", "w")  # noqa: SIM115 - closed below
    proc, url = start_serve(
        var, log, LLM_MODEL=str(shared_models_dir() / "SmolLM2-135M-Instruct"), **TINY_PILOTS
    )
    try:
        wait_until_healthy(url, proc, (var / "server.log").read_text)
        yield url
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            log.close()
