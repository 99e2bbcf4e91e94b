"""docs/scripting.md, run as written: its curl walkthrough, its Python walkthrough and its CI
recipe, each against a real `pathpilot serve` (web app and Celery worker) on 127.0.0.1 with a
real two-arm pilot. The code blocks are read from the page itself, so it cannot drift from
what is tested. Each walkthrough's verdict must be the one the report page shows, and its PDF a
real PDF that carries it."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, shared_models_dir
from tests.factories.assessments import tiny_sample
from tests.factories.pages import pdf_text
from tests.factories.remote import EXAMPLE_INTAKE, Account, running_server, sign_up_with_token
from tests.serving import free_port

pytestmark = [pytest.mark.server, pytest.mark.slow]  # a worker that loads the default model

DOC = REPO / "docs" / "scripting.md"
# Small caps: the walkthroughs' majority and few-shot arms then take seconds on two CPU cores.
QUICK_PILOTS = {"PILOT_MAX_TRAIN": "12", "PILOT_MAX_TEST": "6"}
IDS = re.compile(r"^ids ([0-9a-f]{32}) ([0-9a-f]{32})$", re.MULTILINE)

for tool in ("curl", "jq", "pdftotext"):
    if shutil.which(tool) is None:
        pytest.skip(f"the walkthrough needs {tool}", allow_module_level=True)


def section(title: str) -> str:
    """The text under the `## title` heading, up to the next `## ` heading."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def code_blocks(text: str, language: str) -> list[str]:
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)
    assert blocks, f"no {language} block"
    return blocks


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    var = tmp_path_factory.mktemp("scripting") / "var"
    model = str(shared_models_dir() / "SmolLM2-135M-Instruct")
    with running_server(var, LLM_MODEL=model, **QUICK_PILOTS) as url:
        yield sign_up_with_token(url)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The three files the page's examples name, in the current directory."""
    shutil.copy(EXAMPLE_INTAKE, tmp_path / "intake.json")
    (tmp_path / "sample.csv").write_text(tiny_sample())
    (tmp_path / "handbook.md").write_text(
        "# Cards\n\nA PIN is blocked after three wrong tries; any cash machine unblocks it.\n"
    )
    return tmp_path


def _run(command: list[str], account: Account, workdir: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command,
        cwd=workdir,
        env=account.env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert account.token not in done.stdout + done.stderr
    return done


def _check_outcome(account: Account, workdir: Path, output: str, verdict: dict) -> None:
    """The verdict the page shows, its line in the output, a real PDF and a real bundle."""
    ids = IDS.search(output)
    assert ids, output
    assessment_id, pilot_id = ids.groups()
    assert verdict["assessment_id"] == assessment_id
    assert verdict["pilot_id"] == pilot_id
    assert f"{verdict['path']}: {verdict['label']}, {verdict['confidence']} confidence" in output

    page = account.browser.get(f"/assessments/{assessment_id}/report")
    assert page.status_code == 200
    headline = re.search(r'<h2 id="rec-h">(.*?)</h2>', page.text, re.DOTALL)
    assert headline and html.unescape(headline.group(1).strip()) == verdict["label"]

    pdf = (workdir / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    assert " ".join(verdict["why"].split()) in pdf_text(pdf, workdir)
    with zipfile.ZipFile(workdir / "bundle.zip") as bundle:
        assert bundle.testzip() is None
        assert bundle.namelist()


def test_the_curl_walkthrough(account: Account, workdir: Path) -> None:
    script = "\n".join(
        [
            "set -euo pipefail",
            *code_blocks(section("With curl"), "bash"),
            'echo "ids $ASSESSMENT $PILOT"',
        ]
    )
    done = _run(["bash", "-c", script], account, workdir)
    verdict = json.loads((workdir / "verdict.json").read_text())
    _check_outcome(account, workdir, done.stdout, verdict)
    assert "done" in done.stdout.splitlines(), "the polling loop saw the pilot finish"


def test_the_python_walkthrough(account: Account, workdir: Path) -> None:
    (code,) = code_blocks(section("With Python"), "python")
    done = _run(
        [sys.executable, "-c", code + '\nprint("ids", assessment.id, pilot.id)\n'], account, workdir
    )
    assessment_id = IDS.search(done.stdout)
    assert assessment_id, done.stdout
    verdict = account.browser.get(
        f"/api/v1/assessments/{assessment_id.group(1)}/report",
        headers={"Authorization": f"Bearer {account.token}"},
    ).json()
    _check_outcome(account, workdir, done.stdout, verdict)


def test_the_ci_recipe_passes_and_its_github_job_runs_the_same_command(
    account: Account, workdir: Path
) -> None:
    ci = section("In CI: `pathpilot remote`")
    (recipe,) = code_blocks(ci, "bash")
    done = _run(["bash", "-c", recipe], account, workdir)
    expected = re.search(r"--expect (\S+)", recipe)
    assert expected
    assert f"path: {expected.group(1)} (" in done.stdout
    assert (workdir / "report.pdf").read_bytes().startswith(b"%PDF")
    assert re.search(r"^pilot [0-9a-f]{32}: done$", done.stderr, re.MULTILINE), done.stderr

    # The GitHub job: its `run` step is the recipe through `python -m app.remote`, which
    # starts and parses it (here it finds no server: exit 3 naming the address it tried).
    (job,) = code_blocks(ci, "yaml")
    steps = yaml.safe_load(job)["pathpilot"]["steps"]
    command = next(s["run"] for s in steps if "app.remote" in s.get("run", ""))
    assert command.startswith("python -m app.remote run intake.json --sample sample.csv")
    assert f"--expect {expected.group(1)}" in command
    nowhere = f"http://127.0.0.1:{free_port()}"
    refused = subprocess.run(
        [sys.executable, *command.split()[1:]],
        cwd=workdir,
        env=account.env(PATHPILOT_SERVER=nowhere),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 3, refused.stderr
    assert f"cannot connect to {nowhere}" in refused.stderr
