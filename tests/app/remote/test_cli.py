"""`pathpilot remote` against a real server: what it prints and the exit status a CI job reads
(0 ok, 1 the verdict differs from --expect, 2 the pilot failed or was cancelled, 3 usage, HTTP
or connection errors, with the server's reason and never a traceback or the token)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import typer
from typer.core import TyperGroup

from app.remote.cli import EXIT_ERROR, EXIT_EXPECT_MISMATCH, EXIT_PILOT_FAILED, remote_app
from tests.app.accounts.helpers import bearer
from tests.conftest import REPO
from tests.factories.assessments import tiny_sample
from tests.factories.pages import pdf_text
from tests.factories.remote import EXAMPLE_INTAKE, PATHPILOT_REMOTE, REMOTE_MODULE, Account, remote
from tests.serving import free_port

ASSESSMENT_ID = re.compile(r"^[0-9a-f]{32}$")


def _clean(done: subprocess.CompletedProcess[str], account: Account) -> None:
    """No traceback and no token, whatever the outcome."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert account.token not in output


def _created(account: Account) -> str:
    done = remote("create", str(EXAMPLE_INTAKE), env=account.env())
    assert done.returncode == 0, done.stderr
    assessment_id = done.stdout.strip()
    assert ASSESSMENT_ID.match(assessment_id), done.stdout
    return assessment_id


def test_report_prints_the_servers_verdict_and_expect_sets_the_exit_status(
    account: Account, tmp_path: Path
) -> None:
    assessment_id = _created(account)
    api = httpx.get(
        f"{account.server}/api/v1/assessments/{assessment_id}/report",
        headers=bearer(account.token),
    ).json()

    as_json = remote("report", assessment_id, "--json", env=account.env())
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == api

    # The installed command, as the docs show it; the other tests run `python -m app.remote`.
    same = remote(
        "report",
        assessment_id,
        "--expect",
        api["path"],
        env=account.env(),
        command=PATHPILOT_REMOTE,
    )
    assert same.returncode == 0, same.stderr
    assert f"path: {api['path']} ({api['label']})" in same.stdout
    _clean(same, account)

    other = next(p for p in ("prompting", "rag") if p != api["path"])
    differs = remote(
        "report", assessment_id, "--expect", other, env=account.env(), command=PATHPILOT_REMOTE
    )
    assert differs.returncode == 1, differs.stderr
    assert f"expected path {other}, got {api['path']}" in differs.stderr
    _clean(differs, account)

    listed = remote("list", "assessments", env=account.env())
    assert listed.returncode == 0, listed.stderr
    assert assessment_id in listed.stdout.split()


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_report_pdf_is_the_reports_pdf(account: Account, tmp_path: Path) -> None:
    assessment_id = _created(account)
    out = tmp_path / "ci" / "report.pdf"
    done = remote("report", assessment_id, "--pdf", str(out), env=account.env())
    assert done.returncode == 0, done.stderr
    verdict = httpx.get(
        f"{account.server}/api/v1/assessments/{assessment_id}/report",
        headers=bearer(account.token),
    ).json()
    assert out.read_bytes().startswith(b"%PDF")
    assert " ".join(verdict["why"].split()) in pdf_text(out.read_bytes(), tmp_path)
    assert [p.name for p in out.parent.iterdir()] == ["report.pdf"], "no partial file left"


def test_a_cancelled_pilot_exits_2_after_live_progress(account: Account, tmp_path: Path) -> None:
    assessment_id = _created(account)
    sample = tmp_path / "sample.csv"
    sample.write_text(tiny_sample())
    uploaded = remote("upload-sample", assessment_id, str(sample), env=account.env())
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout)["task"] == "classification"

    # This server runs no worker: the pilot stays queued until it is cancelled.
    command = ["pilot", assessment_id, "--arm", "majority", "--wait", "--poll", "0.3"]
    waiting = subprocess.Popen(
        [*REMOTE_MODULE, *command],
        env=account.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pilot_id = _first_pilot(account, assessment_id)
        cancelled = remote("cancel", pilot_id, env=account.env())
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == "cancelled"
        stdout, stderr = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 2, stderr
    assert f"pilot {pilot_id}: queued" in stderr  # the progress, one line per change
    assert f"pathpilot remote: pilot {pilot_id} cancelled" in stderr
    assert stdout == ""

    # Nothing to hand off: the server's 409 and its reason, and no file, whole or partial.
    bundle = tmp_path / "out" / "bundle.zip"
    refused = remote("export", pilot_id, "--out", str(bundle), env=account.env())
    assert refused.returncode == 3
    assert f"GET /api/v1/pilots/{pilot_id}/export failed with 409 Conflict" in refused.stderr
    assert list(bundle.parent.iterdir()) == []


def test_upload_documents_prints_what_was_stored(account: Account, tmp_path: Path) -> None:
    assessment_id = _created(account)
    handbook = tmp_path / "handbook.md"
    handbook.write_text("# Cards\n\nA blocked PIN is unblocked at any cash machine.\n")
    done = remote("upload-documents", assessment_id, str(handbook), env=account.env())
    assert done.returncode == 0, done.stderr
    stored = json.loads(done.stdout)["documents"]
    assert [d["file_name"] for d in stored] == ["handbook.md"]


def _first_pilot(account: Account, assessment_id: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pilots = httpx.get(
            f"{account.server}/api/v1/assessments/{assessment_id}/pilots",
            headers=bearer(account.token),
        ).json()
        if pilots:
            return str(pilots[0]["id"])
        time.sleep(0.2)
    raise AssertionError("the pilot was not started")


def test_a_wrong_token_exits_3_saying_it_was_refused(account: Account, tmp_path: Path) -> None:
    wrong = "pp_" + "x" * 43
    done = remote("list", "assessments", env=account.env(PATHPILOT_TOKEN=wrong))
    assert done.returncode == 3
    assert f"the server at {account.server} refused the API token" in done.stderr
    assert wrong not in done.stdout + done.stderr

    token_file = tmp_path / "token"
    token_file.write_text(wrong + "\n")
    from_file = remote(
        "report", "x" * 32, "--token-file", str(token_file), env=account.env(PATHPILOT_TOKEN="")
    )
    assert from_file.returncode == 3
    assert "refused the API token" in from_file.stderr
    assert wrong not in from_file.stdout + from_file.stderr


def test_no_server_running_exits_3_naming_the_url(account: Account) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = remote("report", "x" * 32, env=account.env(PATHPILOT_SERVER=url))
    assert done.returncode == 3
    assert f"cannot connect to {url}" in done.stderr
    _clean(done, account)


def test_a_refused_intake_exits_3_with_each_fields_location_and_message(
    account: Account, tmp_path: Path
) -> None:
    partial = tmp_path / "intake.json"
    partial.write_text(json.dumps({"title": "Routing", "use_case": "x" * 5}))
    done = remote("create", str(partial), env=account.env())
    assert done.returncode == 3
    assert "POST /api/v1/assessments failed with 422" in done.stderr
    assert "body.task_type: Field required" in done.stderr
    _clean(done, account)

    broken = tmp_path / "broken.json"
    broken.write_text('{"title":\n')
    done = remote("create", str(broken), env=account.env())
    assert done.returncode == 3
    assert f"{broken}: not valid JSON at line 2 column 1" in done.stderr


def test_a_refused_sample_exits_3_naming_the_row(account: Account, tmp_path: Path) -> None:
    assessment_id = _created(account)
    notes = tmp_path / "notes.csv"
    notes.write_text("# not a sample\nhello\n")
    done = remote("upload-sample", assessment_id, str(notes), env=account.env())
    assert done.returncode == 3
    assert "failed with 422" in done.stderr
    assert "body.file: row 1:" in done.stderr
    _clean(done, account)


def test_usage_errors_exit_3_not_2(account: Account) -> None:
    typo = remote("report", "x" * 32, "--expect", "finetuning", env=account.env())
    assert typo.returncode == 3
    assert "'finetuning' is not a path" in typo.stderr
    unknown = remote("nonsense", env=account.env(), command=PATHPILOT_REMOTE)
    assert unknown.returncode == 3
    no_server = remote("list", "models", env=account.env(PATHPILOT_SERVER=""))
    assert no_server.returncode == 3
    assert "no server: pass --server URL or set PATHPILOT_SERVER" in no_server.stderr
    no_token = remote("list", "models", env=account.env(PATHPILOT_TOKEN=""))
    assert no_token.returncode == 3
    assert "no API token: set PATHPILOT_TOKEN or pass --token-file FILE" in no_token.stderr


def test_help_documents_the_exit_statuses() -> None:
    done = subprocess.run(
        [*PATHPILOT_REMOTE, "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "Exit status: 0 ok; 1 the verdict's path differs from --expect; 2 the pilot" in text
    assert "PATHPILOT_SERVER" in text and "--token-file" in text
    assert "--token " not in text, "a token is never taken on the command line"


def test_the_docs_list_every_command_and_exit_status() -> None:
    doc = (REPO / "docs" / "scripting.md").read_text(encoding="utf-8")
    group = typer.main.get_command(remote_app)
    assert isinstance(group, TyperGroup)
    for name, command in group.commands.items():
        subcommands = getattr(command, "commands", {})
        for full in [f"{name} {sub}" for sub in subcommands] or [name]:
            assert f"`pathpilot remote {full}" in doc or f"`{full}" in doc, full
    rows = dict(re.findall(r"^\| (\d) \| (.+?) \|$", doc, flags=re.MULTILINE))
    assert set(rows) == {"0", str(EXIT_EXPECT_MISMATCH), str(EXIT_PILOT_FAILED), str(EXIT_ERROR)}
    assert "--expect" in rows[str(EXIT_EXPECT_MISMATCH)]
    assert "failed or was cancelled" in rows[str(EXIT_PILOT_FAILED)]
