"""`pathpilot serve`: migrates, serves, starts a worker, and stops both on SIGTERM or Ctrl-C."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.serving import start_serve, wait_until_healthy

pytestmark = pytest.mark.server  # each test starts `pathpilot serve` (web app + worker)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        pytest.skip("needs Linux /proc to list child processes")
    return [int(p) for p in path.read_text().split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    # A zombie is dead; it only waits for its parent to read the exit status.
    return not (status.exists() and status.read_text().split()[2] == "Z")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_web_and_worker_and_stops_both(tmp_path: Path, stop_signal: int) -> None:
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    proc, url = start_serve(tmp_path / "var", log)
    try:
        wait_until_healthy(url, proc, log_path.read_text)
        children = _children(proc.pid)
        assert len(children) == 2, "the web app and one worker"
        assert (tmp_path / "var" / "pathpilot.db").exists(), "serve migrated the database"

        proc.send_signal(stop_signal)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = log_path.read_text()
    assert proc.returncode == 0, output
    assert f"PathPilot is running at {url}/" in output
    deadline = time.monotonic() + 10
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(c) for c in children), "no orphaned web app or worker"


def test_web_workers_run_several_web_processes_and_stop_with_serve(tmp_path: Path) -> None:
    from app.serve import web_command

    assert "--workers" not in web_command("127.0.0.1", 8000)
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    proc, url = start_serve(tmp_path / "var", log, "--no-worker", "--web-workers", "2")
    try:
        wait_until_healthy(url, proc, log_path.read_text)
        [supervisor] = _children(proc.pid)

        def web_processes() -> list[int]:
            # uvicorn spawns its workers with multiprocessing (beside a resource tracker).
            return [
                child
                for child in _children(supervisor)
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
            ]

        deadline = time.monotonic() + 30
        while len(web_processes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        web = web_processes()
        assert len(web) == 2, "uvicorn runs two web processes"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == 0, log_path.read_text()
    deadline = time.monotonic() + 10
    processes = [supervisor, *web]  # and the tracker, which leaves with its parent
    while any(_alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in processes), "no orphaned web process"
