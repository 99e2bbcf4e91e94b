"""Start and stop vLLM's OpenAI-compatible server, for tests and benchmarks.

vLLM needs other transformers releases than the app, so it lives in its own virtualenv,
`.venv-vllm/` (`make vllm`, part of `make test`). The server runs as a module: the `vllm`
console script of the CPU build looks up package metadata under the wrong name and fails.
It starts with runtime LoRA loading on (`--enable-lora`, VLLM_ALLOW_RUNTIME_LORA_UPDATING)
so that pilots can evaluate adapters through the same server. Start-up takes one to a few
minutes on two CPU cores, so tests share one server per session (`tests/vllm_fixtures.py`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import REPO, shared_models_dir
from tests.serving import free_port

VLLM_VENV = REPO / ".venv-vllm"
VLLM_PYTHON = VLLM_VENV / "bin" / "python"
DEFAULT_MODEL_DIR = shared_models_dir() / "SmolLM2-135M-Instruct"
SERVED_NAME = "smollm2"
MAX_MODEL_LEN = 2048
MAX_LORA_RANK = 16  # the QLoRA arms train rank 16 adapters
START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class VLLMServer:
    base_url: str  # the API root, http://127.0.0.1:PORT/v1
    model: str  # the served model name
    model_dir: Path
    log_path: Path
    pid: int
    startup_s: float


def vllm_missing() -> str | None:
    """Why the vLLM server cannot start here, or None when it can."""
    if not VLLM_PYTHON.exists():
        return f"{VLLM_VENV.name}/ is absent: `make vllm` builds vLLM's own virtualenv"
    return None


def server_command(model_dir: Path, served_name: str, port: int) -> list[str]:
    return [
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "bfloat16",
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--enable-lora",
        "--max-lora-rank",
        str(MAX_LORA_RANK),
    ]


def server_environment() -> dict[str, str]:
    environment = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache; the default takes far more memory
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        # The model is a local directory; nothing may be fetched from a hub or reported home.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    # The app's import path and virtualenv must not leak into vLLM's interpreter.
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        environment.pop(name, None)
    return environment


@contextlib.contextmanager
def running_vllm(
    work_dir: Path,
    model_dir: Path = DEFAULT_MODEL_DIR,
    served_name: str = SERVED_NAME,
    timeout_s: float = START_TIMEOUT_S,
) -> Iterator[VLLMServer]:
    """A vLLM server on a free port of 127.0.0.1, logging to `work_dir/vllm.log`; stopped,
    with every process it started, on exit."""
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"no model directory at {model_dir} (`make models` makes it)")
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "vllm.log"
    port = free_port()
    started = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            server_command(model_dir.resolve(), served_name, port),
            # Not the repository: `python -m` puts the working directory on sys.path, and the
            # repository's packages must not shadow anything vLLM imports.
            cwd=work_dir,
            env=server_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group, so stopping it reaches the engine and worker processes.
            start_new_session=True,
        )
        try:
            wait_for_health(f"http://127.0.0.1:{port}", proc, log_path, timeout_s)
            yield VLLMServer(
                base_url=f"http://127.0.0.1:{port}/v1",
                model=served_name,
                model_dir=model_dir,
                log_path=log_path,
                pid=proc.pid,
                startup_s=time.monotonic() - started,
            )
        finally:
            stop_process_group(proc)


def wait_for_health(
    root: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float
) -> None:
    """Poll `root`/health until it answers 200; fail with the log's tail if the server dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the vLLM server exited with {proc.returncode} while starting; the end of "
                f"{log_path}:\n{log_tail(log_path)}"
            )
        try:
            if httpx.get(f"{root}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"the vLLM server did not answer {root}/health within {timeout_s:.0f} s; the end of "
        f"{log_path}:\n{log_tail(log_path)}"
    )


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(log unreadable: {exc})"


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after `grace_s`."""
    group = proc.pid  # start_new_session: the server leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_members(group):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    # SIGKILL is delivered asynchronously: wait until the processes are really gone.
    deadline = time.monotonic() + 10
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)


def group_members(group: int) -> list[int]:
    """Live processes (not zombies) of a process group, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces; the fields after its closing ')' do not.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, process_group = fields[0], int(fields[2])
        if process_group == group and state != "Z":
            members.append(int(stat.parent.name))
    return members
