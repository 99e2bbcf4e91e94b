"""A real server process and Debian's Chromium, driven by pytest-playwright."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, shared_models_dir

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """uvicorn + one Celery worker on 127.0.0.1, own var/, stopped by PID at the end."""
    var = tmp_path_factory.mktemp("live") / "var"
    env = dict(
        os.environ, VAR_DIR=str(var), LLM_MODEL=str(shared_models_dir() / "SmolLM2-135M-Instruct")
    )
    env.pop("DATABASE_URL", None)
    env.pop("BROKER_URL", None)
    subprocess.run(
        [sys.executable, "-c", "from app.migrate import upgrade_head; upgrade_head()"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    port = _free_port()
    log = open(var / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "app.main:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError((var / "server.log").read_text())
        yield url
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
