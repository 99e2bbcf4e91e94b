"""The generated secret key (SECRET_KEY unset): created exclusively with mode 0600, and the
same key for every process that starts at once (a web server and a worker, or several)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app import settings as settings_module
from app.settings import Settings
from tests.conftest import REPO

# Each process prints a digest of the key it got, never the key.
RACER = """
import hashlib, sys, time
from pathlib import Path
from app.settings import Settings
var, go = Path(sys.argv[1]), Path(sys.argv[2])
settings = Settings(var_dir=var, secret_key="")
print("ready", flush=True)
while not go.exists():
    time.sleep(0.0002)
print(hashlib.sha256(settings.resolved_secret_key().encode()).hexdigest(), flush=True)
"""

RACERS = 6


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("round_", range(3))
def test_processes_starting_together_get_one_key(tmp_path: Path, round_: int) -> None:
    var, go = tmp_path / "var", tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(var), str(go)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RACERS)
    ]
    try:
        for racer in racers:  # every one imported and waiting: then all start at once
            assert racer.stdout is not None
            assert racer.stdout.readline().strip() == "ready"
        go.touch()
        outcomes = [racer.communicate(timeout=60) for racer in racers]
    finally:
        for racer in racers:
            racer.kill()
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in outcomes]
    path = var / "secret_key"
    stored = path.read_text()
    assert len(stored) == 64  # one key, written once: token_urlsafe(48)
    assert {out.strip() for out, _ in outcomes} == {digest(stored)}
    assert mode(path) == 0o600


def test_the_file_is_never_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0)  # a umask that would leave a plain write world-readable
    try:
        key = Settings(var_dir=tmp_path, secret_key="").resolved_secret_key()
    finally:
        os.umask(old)
    path = tmp_path / "secret_key"
    assert mode(path) == 0o600
    assert path.read_text() == key


def test_an_existing_key_is_kept(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("the key from last time\n")
    assert Settings(var_dir=tmp_path, secret_key="").resolved_secret_key() == (
        "the key from last time"
    )


def test_a_key_still_being_written_is_waited_for(tmp_path: Path) -> None:
    """Another process has created the file but not yet written its key."""
    path = tmp_path / "secret_key"
    path.touch(mode=0o600)

    def other_process_writes() -> None:
        time.sleep(0.2)
        path.write_text("written a moment later")

    writer = threading.Thread(target=other_process_writes)
    writer.start()
    try:
        key = Settings(var_dir=tmp_path, secret_key="").resolved_secret_key()
    finally:
        writer.join()
    assert key == "written a moment later"


def test_a_file_left_empty_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "KEY_FILE_WAIT_S", 0.1)
    path = tmp_path / "secret_key"
    path.touch(mode=0o600)
    with pytest.raises(RuntimeError, match=r"is empty.*Delete the file"):
        Settings(var_dir=tmp_path, secret_key="").resolved_secret_key()


def test_a_configured_key_writes_no_file(tmp_path: Path) -> None:
    assert Settings(var_dir=tmp_path, secret_key="configured").resolved_secret_key() == (
        "configured"
    )
    assert not (tmp_path / "secret_key").exists()
