"""`app.remote.client.Client` and the progress lines: the parts a script leans on."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import httpx
import pytest

from app.domain.scoring.paths import HYBRID_FT_RAG, PATHS
from app.remote.client import (
    VERDICT_PATHS,
    ApiError,
    Client,
    Pilot,
    RemoteError,
    check_token,
    normalise_server,
)
from app.remote.progress import ProgressPrinter, progress_line
from tests.factories.remote import EXAMPLE_INTAKE, Account


def test_the_verdict_paths_are_the_domains() -> None:
    assert (*PATHS, HYBRID_FT_RAG) == VERDICT_PATHS


def test_the_client_loads_nothing_of_the_server() -> None:
    # What a CI job with only httpx, typer and pydantic installed needs; the import contract
    # cannot see a package's __init__ run by importing a module under it, this can.
    probe = (
        "import sys, json, app.remote.cli\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'sqlalchemy', 'celery', 'weasyprint', 'torch', "
        "'pydantic_settings', 'numpy') or m in ('app.settings', 'app.db', 'app.main'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == []


def test_server_addresses_are_checked() -> None:
    assert normalise_server(" https://pathpilot.example.com/ ") == "https://pathpilot.example.com"
    with pytest.raises(RemoteError, match="http:// or https://"):
        normalise_server("pathpilot.example.com")
    with pytest.raises(RemoteError, match="no user name or password"):
        normalise_server("https://ci:hunter2@pathpilot.example.com")


def test_a_malformed_token_is_refused_without_quoting_it() -> None:
    assert check_token("pp_abc\n") == "pp_abc"
    with pytest.raises(RemoteError) as caught:
        check_token("pp_secret value")
    assert "secret" not in str(caught.value)
    with pytest.raises(RemoteError, match="empty"):
        check_token(" \n")


def _pilot(status: str, **fields: object) -> Pilot:
    return Pilot.model_validate({"id": "p1", "status": status, **fields})


def test_progress_lines_say_stage_step_total_and_eta() -> None:
    assert progress_line(_pilot("queued", queue={"ahead": 2, "eta_seconds": 330})) == (
        "pilot p1: queued, 2 ahead, ETA 5 min 30 s"
    )
    running = _pilot(
        "running",
        stage="arms",
        arms=[
            {"arm": "majority", "status": "done"},
            {"arm": "fewshot", "status": "running", "stage": "generating", "step": 3, "total": 12}
            | {"eta_seconds": 42},
            {"arm": "rag", "status": "pending"},
        ],
    )
    assert progress_line(running) == (
        "pilot p1: running arms | 1/3 arms finished | fewshot generating 3/12, ETA 42 s"
    )
    assert progress_line(_pilot("failed", error="out of memory")) == (
        "pilot p1: failed: out of memory"
    )


def test_progress_is_a_line_per_change_in_a_log_and_one_line_on_a_terminal() -> None:
    log = io.StringIO()
    printer = ProgressPrinter(log, in_place=False)
    for status in ("queued", "queued", "running", "done"):
        printer(_pilot(status))
    printer.close()
    assert log.getvalue().splitlines() == [
        "pilot p1: queued",
        "pilot p1: running",
        "pilot p1: done",
    ]

    terminal = io.StringIO()
    printer = ProgressPrinter(terminal, in_place=True)
    printer(_pilot("queued"))
    printer(_pilot("done"))
    printer.close()
    assert terminal.getvalue() == "\rpilot p1: queued\x1b[K\rpilot p1: done\x1b[K\n"


def test_lists_follow_the_link_header_through_every_page(account: Account) -> None:
    intake = json.loads(EXAMPLE_INTAKE.read_text())
    with Client(account.server, account.token) as api:
        made = [api.create_assessment(intake | {"title": f"Paged {n}"}).id for n in range(3)]
        listed = [row["id"] for row in api.list_assessments(page_size=2)]
        total = httpx.get(
            f"{account.server}/api/v1/assessments",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {account.token}"},
        ).headers["x-total-count"]
    assert listed[:3] == made[::-1], "newest first, across the page boundary"
    assert len(listed) == len(set(listed)) == int(total)


def test_api_errors_carry_the_status_and_each_problem(account: Account) -> None:
    with Client(account.server, account.token) as api, pytest.raises(ApiError) as caught:
        api.get_pilot("no-such-pilot")
    assert caught.value.status_code == 404
    assert caught.value.problems == ["No such pilot"]
    # An id cannot reach another route: it is refused before any request.
    for wrong in ("x/cancel", "x%2Fcancel", "..", ""):
        with (
            Client(account.server, account.token) as api,
            pytest.raises(RemoteError, match="is not an id"),
        ):
            api.cancel_pilot(wrong)
    assert (
        str(caught.value)
        == "GET /api/v1/pilots/no-such-pilot failed with 404 Not Found\n  No such pilot"
    )
