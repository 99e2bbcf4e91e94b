"""Real servers for the scale-out tests, started on 127.0.0.1 and stopped by PID: Debian's
redis-server, a private PostgreSQL cluster (initdb + postgres, or the server CI already runs,
named by PATHPILOT_TEST_POSTGRES), Celery workers and Celery beat."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO
from tests.serving import free_port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout_s}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 30) -> None:
    """Stop one process we started, by its PID; SIGKILL if it does not go in time."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _logged(cmd: list[str], log: Path, **kw: object) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - the child owns it until it exits
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload, no-any-return]
    finally:
        out.close()


@dataclass
class Redis:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, directory: Path, port: int | None = None) -> Redis:
        """A private server that keeps an append-only file in `directory`, as the compose
        file's Redis does, so a restart on the same port finds the queue again."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        port = port or free_port()
        log = directory / "redis.log"
        proc = _logged(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(directory),
            ],
            log,
            cwd=directory,
        )
        wait_for_port(port, proc, log, 20)
        return cls(port, proc, log)

    def stop(self) -> None:
        stop(self.proc)

    def restart(self, directory: Path) -> None:
        """Stop the server and start it again on the same port, from its append-only file."""
        self.stop()
        self.start_again(directory)

    def start_again(self, directory: Path) -> None:
        """Start a stopped server again on the same port, from its append-only file."""
        self.proc = Redis.start(directory, port=self.port).proc


def postgres_binary(name: str) -> str:
    """initdb/postgres from PATH, else from Debian's versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not versions:
        raise FileNotFoundError(f"{name} not found: install PostgreSQL (Debian: postgresql)")
    return str(versions[-1])


@dataclass
class Postgres:
    """A server URL whose role may create databases: the one CI runs, or a private cluster."""

    url: str
    proc: subprocess.Popen[bytes] | None = None
    directory: Path | None = None

    @classmethod
    def start(cls) -> Postgres:
        configured = os.environ.get("PATHPILOT_TEST_POSTGRES")
        if configured:
            return cls(configured)
        # The server refuses to run as root: as root, the cluster belongs to `postgres`.
        as_user: dict[str, object] = {}
        directory = Path(tempfile.mkdtemp(prefix="pathpilot-pg-"))
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(directory, account.pw_uid, account.pw_gid)
            as_user = {"user": account.pw_uid, "group": account.pw_gid}
        data, log = directory / "data", directory / "postgres.log"
        subprocess.run(
            [
                postgres_binary("initdb"),
                "-D",
                str(data),
                "-U",
                "pathpilot",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **as_user,  # type: ignore[arg-type]
        )
        port = free_port()
        proc = _logged(
            [
                postgres_binary("postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(directory),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            log,
            **as_user,
        )
        wait_for_port(port, proc, log, 30)
        return cls(f"postgresql+psycopg://pathpilot@127.0.0.1:{port}/postgres", proc, directory)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGINT)  # the server's "fast" shutdown
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


CELERY = [sys.executable, "-m", "celery", "-A", "worker.celery_app:celery_app"]


@dataclass
class Fleet:
    """Celery worker processes and one beat, all with the test's environment."""

    directory: Path
    env: dict[str, str]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    beat: subprocess.Popen[bytes] | None = None

    def start_worker(self, name: str, queues: str = "cpu,gpu") -> subprocess.Popen[bytes]:
        cmd = [*CELERY, "worker", "--pool", "solo", "--concurrency", "1", "-n", f"{name}@%h"]
        proc = _logged(
            [*cmd, "-Q", queues, "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            self.directory / f"{name}.log",
            cwd=REPO,
            env=self.env,
        )
        self.workers[name] = proc
        return proc

    def start_beat(self) -> None:
        self.beat = _logged(
            [*CELERY, "beat", "-s", str(self.directory / "beat-schedule"), "--loglevel", "INFO"],
            self.directory / "beat.log",
            cwd=REPO,
            env=self.env,
        )

    def by_pid(self, pid: int) -> str:
        return next(name for name, proc in self.workers.items() if proc.pid == pid)

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        """The workers' logs without beat's routine sweeps, for a failing test's message."""
        parts = []
        for name in self.workers:
            lines = [line for line in self.log(name).splitlines() if "recover_stalled" not in line]
            parts.append(f"--- {name}\n" + "\n".join(lines)[-2500:])
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in [*self.workers.values(), *([self.beat] if self.beat else [])]:
            stop(proc)
