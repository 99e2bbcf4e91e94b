"""Start-up helpers for tests that run real server processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx

from tests.conftest import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(
    url: str, proc: subprocess.Popen, output: Callable[[], str], timeout_s: float = 90
) -> None:
    """Poll `url`/healthz until it answers 200; fail with the process's output if it dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{output()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"no answer from {url}/healthz within {timeout_s:.0f} s:\n{output()}")


def start_serve(var: Path, log: IO[str], *args: str, **env: str) -> tuple[subprocess.Popen, str]:
    """`pathpilot serve` (web app + worker) on a free port with its own `var`, with `args`
    added; returns (process, base URL). The database and broker are the embedded defaults
    under `var`."""
    environment = {**os.environ, "VAR_DIR": str(var), **env}
    environment.pop("DATABASE_URL", None)
    environment.pop("BROKER_URL", None)
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("pathpilot")), "serve", "--port", str(port), *args],
        cwd=REPO,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Ctrl-C as in a terminal, even when this run was started in the background, where
        # the shell set SIGINT to be ignored and children inherit that.
        preexec_fn=_default_sigint,
    )
    return proc, f"http://127.0.0.1:{port}"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
