"""The vLLM start-up helpers' process handling, with stand-in processes (no vLLM needed)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import vllm_server
from tests.serving import free_port
from tests.vllm_server import group_members, stop_process_group, wait_for_health

# A parent that starts a child which ignores SIGTERM, as a stuck engine process might.
STUBBORN_TREE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
time.sleep(600)
"""


def test_stopping_reaches_every_process_of_the_group() -> None:
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN_TREE], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(group_members(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(group_members(proc.pid)) == 2, "the parent and its child"
        started = time.monotonic()
        stop_process_group(proc, grace_s=1.0)
        assert group_members(proc.pid) == [], "the child that ignored SIGTERM got SIGKILL"
        assert proc.returncode is not None
        assert time.monotonic() - started < 5
    finally:
        with contextlib.suppress(ProcessLookupError):  # leave nothing behind if it failed
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_server_that_dies_while_starting_fails_with_its_log(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        script = (
            "print('loading the model'); print('ValueError: no tokenizer'); raise SystemExit(3)"
        )
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=log, stderr=log)
        with pytest.raises(RuntimeError) as caught:
            wait_for_health(f"http://127.0.0.1:{free_port()}", proc, log_path, timeout_s=30)
    assert "exited with 3 while starting" in str(caught.value)
    assert "ValueError: no tokenizer" in str(caught.value)


def test_a_server_that_never_answers_fails_after_the_timeout(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    log_path.write_text("still compiling kernels\n")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(RuntimeError) as caught:
            wait_for_health(f"http://127.0.0.1:{free_port()}", proc, log_path, timeout_s=1.0)
    finally:
        proc.kill()
        proc.wait()
    assert "did not answer" in str(caught.value)
    assert "still compiling kernels" in str(caught.value)


def test_health_that_answers_200_ends_the_wait(tmp_path: Path) -> None:
    (tmp_path / "health").write_text("ok")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_health(f"http://127.0.0.1:{port}", server, tmp_path / "none.log", timeout_s=30)
        assert server.poll() is None
    finally:
        server.kill()
        server.wait()


def test_without_the_virtualenv_the_reason_names_the_make_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(vllm_server, "VLLM_PYTHON", tmp_path / "absent" / "python")
    reason = vllm_server.vllm_missing()
    assert reason == ".venv-vllm/ is absent: `make vllm` builds vLLM's own virtualenv"
