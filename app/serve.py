"""Run the web app and a worker side by side (the embedded, one-machine mode)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from app.migrate import upgrade_head
from app.settings import get_settings


def worker_command() -> list[str]:
    # solo pool: one pilot at a time in the worker's own process, so models load once.
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app:celery_app",
        "worker",
        "--pool",
        "solo",
        "--concurrency",
        "1",
        "--loglevel",
        "INFO",
        "-Q",
        get_settings().worker_queues,
    ]


def web_command(host: str, port: int, workers: int = 1) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "app.main:create_app",
        "--host",
        host,
        "--port",
        str(port),
    ]
    # Several processes share the listening socket; uvicorn supervises them and stops them
    # all on SIGTERM.
    return [*command, "--workers", str(workers)] if workers > 1 else command


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_services(*, host: str, port: int, with_worker: bool, web_workers: int = 1) -> int:
    settings = get_settings()
    upgrade_head()
    env = dict(os.environ)
    # SIGTERM (docker stop, kill, a test's teardown) must stop the children too, like Ctrl-C;
    # the default action would end this process at once and orphan the web app and worker.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    procs = [subprocess.Popen(web_command(host, port, web_workers), env=env)]
    if with_worker:
        procs.append(subprocess.Popen(worker_command(), env=env))
    print(
        f"\nPathPilot is running at http://{host}:{port}/  (data in {settings.var_dir})", flush=True
    )
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    failed = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM, None)]
    return 1 if failed else 0
