"""The GGUF hand-off for real: serve/make_gguf.sh merges the session's trained adapter and
converts it with llama.cpp's own converters, llama.cpp (llama-cpp-python's OpenAI-compatible
server) serves the GGUF, and serve/client.py reproduces the pilot's accuracy from it.

Needs `.venv-llamacpp` (`make llamacpp`: llama-cpp-python built from source for this CPU, the
llama.cpp tree it vendors, and what make_gguf.sh runs with); skipped without it.
`make test-llamacpp` builds it and runs these.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.exports.pilot_runs import run_script
from tests.conftest import REPO
from tests.serving import free_port
from tests.vllm_server import log_tail, stop_process_group

LLAMACPP_VENV = REPO / ".venv-llamacpp"
LLAMACPP_PYTHON = LLAMACPP_VENV / "bin" / "python"
LLAMA_CPP = LLAMACPP_VENV / "llama.cpp"
START_TIMEOUT_S = 120
# make_gguf.sh's default; PATHPILOT_TEST_GGUF_OUTTYPE=f16 checks the unquantised conversion.
OUTTYPE = os.environ.get("PATHPILOT_TEST_GGUF_OUTTYPE", "q8_0")

pytestmark = [
    pytest.mark.llamacpp,
    pytest.mark.server,
    pytest.mark.skipif(
        not (LLAMACPP_PYTHON.exists() and LLAMA_CPP.is_dir()),
        reason=".venv-llamacpp/ is absent: `make llamacpp` builds llama.cpp's virtualenv",
    ),
]


@pytest.fixture(scope="module")
def gguf_bundle(qlora_pilot: tuple, llm_dir: Path) -> tuple[Any, Any, Path, str]:
    """The session's QLoRA bundle after `sh serve/make_gguf.sh`, as a team runs it."""
    outcome, data, bundle = qlora_pilot
    environment = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
    } | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "LLAMA_CPP": str(LLAMA_CPP),
        "BASE_MODEL": str(llm_dir),
        # llama.cpp's virtualenv has serve/requirements-gguf.txt's packages (`make llamacpp`)
        "PYTHON": str(LLAMACPP_PYTHON),
        "OUTTYPE": OUTTYPE,
    }
    started = time.monotonic()
    done = subprocess.run(
        ["sh", "serve/make_gguf.sh"],
        cwd=bundle,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    seconds = time.monotonic() - started
    print(f"make_gguf.sh (merge, convert to {OUTTYPE}, LoRA, Modelfile): {seconds:.1f} s")
    return outcome, data, bundle, done.stderr


def gguf_metadata(path: Path) -> dict[str, Any]:
    """A GGUF's string and number fields, read by llama.cpp's own gguf-py."""
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(LLAMA_CPP / 'gguf-py')!r})\n"
        "from gguf import GGUFReader\n"
        "reader = GGUFReader(sys.argv[1])\n"
        "out = {}\n"
        "for name, field in reader.fields.items():\n"
        "    try:\n"
        "        value = field.contents()\n"
        "    except Exception:\n"
        "        continue\n"
        "    if isinstance(value, (str, int, float)):\n"
        "        out[name] = value\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_make_gguf_writes_the_gguf_its_lora_and_a_modelfile_from_the_chat_template(
    gguf_bundle: tuple,
) -> None:
    _, _, bundle, progress = gguf_bundle
    out = bundle / "serve" / "gguf"
    for step in range(1, 6):
        assert f"[make_gguf {step}/5" in progress, progress
    model = gguf_metadata(out / "model.gguf")
    assert model["general.architecture"] == "llama"
    assert "<|im_start|>" in model["tokenizer.chat_template"]
    lora = gguf_metadata(out / "adapter.gguf")
    assert lora["general.type"] == "adapter" and lora["adapter.type"] == "lora"
    modelfile = (out / "Modelfile").read_text()
    lines = modelfile.splitlines()
    assert "FROM ./model.gguf" in lines  # beside the Modelfile
    assert 'PARAMETER stop "<|im_end|>"' in lines
    assert 'PARAMETER stop """\n"""' in modelfile  # the pilot's newline stop, a real newline
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in modelfile
    assert not (out / "merged").exists()  # the merged weights are not left behind


@pytest.fixture
def llama_cpp_server(gguf_bundle: tuple, tmp_path: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the GGUF, on 127.0.0.1; stopped by PID."""
    _, _, bundle, _ = gguf_bundle
    port = free_port()
    log_path = tmp_path / "llama_cpp.log"
    command = [
        str(LLAMACPP_PYTHON), "-m", "llama_cpp.server",
        "--model", str(bundle / "serve" / "gguf" / "model.gguf"),
        "--model_alias", "pilot",
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", str(os.cpu_count() or 2),
    ]  # fmt: skip
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n"
                                   + log_tail(log_path))  # fmt: skip
            try:
                if httpx.get(f"{root}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start:\n{log_tail(log_path)}")
            time.sleep(0.5)
        yield f"{root}/v1"
    finally:
        stop_process_group(proc)  # type: ignore[arg-type]


def test_llama_cpp_serves_the_gguf_and_reproduces_the_pilots_accuracy(
    gguf_bundle: tuple, llama_cpp_server: str
) -> None:
    outcome, data, bundle, _ = gguf_bundle
    started = time.monotonic()
    served = run_script(
        "serve/client.py",
        "--endpoint", llama_cpp_server,
        "--model", "pilot",
        "--concurrency", "1",
        "--timeout", "120",
        "--out", str(bundle / "answers-gguf.jsonl"),
        cwd=bundle,
    )  # fmt: skip
    pilot = next(m for m in outcome.arms[0].metrics if m.name == "accuracy")
    measured = served["metrics"]["accuracy"]
    n = len(data.test)
    print(f"client.py against llama.cpp: {time.monotonic() - started:.1f} s for {n} questions")
    for who, value, low, high in (
        ("pilot, in-process", pilot.value, pilot.ci_low, pilot.ci_high),
        (f"GGUF {OUTTYPE} on llama.cpp + client.py", measured["value"], measured["ci_low"],
         measured["ci_high"]),
    ):  # fmt: skip
        print(f"{who}: accuracy {value:.3f} [{low:.3f}, {high:.3f}]")
    assert pilot.value >= 0.25, pilot  # the pilot learned something: the check means something
    assert pilot.ci_low <= measured["value"] <= pilot.ci_high, (measured, pilot)
    answers = [
        json.loads(line) for line in (bundle / "answers-gguf.jsonl").read_text().splitlines()
    ]
    assert len(answers) == n and all("\n" not in a["prediction"] for a in answers)
