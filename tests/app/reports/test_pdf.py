"""The PDF renderer stays offline, and the CLI writes the same PDF as the page's button."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.reports.pdf import BASE_URL, RefusedFetch, StaticOnlyFetcher, html_to_pdf, static_path
from tests.app.reports.factory import finished_pilot
from tests.factories.assessments import scored_assessment
from tests.factories.cli import run_cli


def test_fetcher_serves_static_files_only() -> None:
    css = StaticOnlyFetcher().fetch(BASE_URL + "static/css/print.css")
    assert b"@page" in css.read() and css.content_type == "text/css"
    for url in (
        "https://example.com/tracker.png",
        "http://127.0.0.1:8000/static/css/app.css",
        "file:///etc/passwd",
        BASE_URL + "static/../app/settings.py",
        BASE_URL + "static/%2e%2e/app/settings.py",
        BASE_URL + "static/css/missing.css",
        BASE_URL + "assessments/x/report",
    ):
        with pytest.raises(RefusedFetch):
            static_path(url)


def test_remote_resources_are_refused_not_fetched(caplog: pytest.LogCaptureFixture) -> None:
    html = (
        '<html><head><link rel="stylesheet" href="https://example.com/x.css"></head>'
        '<body><p>offline</p><img src="http://169.254.169.254/latest/meta-data"></body></html>'
    )
    with caplog.at_level("WARNING", logger="weasyprint"):
        pdf = html_to_pdf(html)
    assert pdf.startswith(b"%PDF")
    refused = [r.getMessage() for r in caplog.records if "refused to fetch" in r.getMessage()]
    assert len(refused) == 2, refused


def test_cli_writes_the_report_pdf(client, tmp_path: Path) -> None:
    client.signup()
    aid = scored_assessment(client)
    finished_pilot(aid)
    target = tmp_path / "out" / "report.pdf"
    # The installed command, in its own process, on this test's database (VAR_DIR is set).
    done = run_cli("report", aid, "--pdf", str(target))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target)
    assert target.read_bytes().startswith(b"%PDF")


def test_cli_unknown_assessment_exits_1(var_dir: Path, capsys) -> None:
    import typer

    from app.cli_report import report_command

    with pytest.raises(typer.Exit) as exc:
        report_command("0" * 32, pdf=None, as_json=False)
    assert exc.value.exit_code == 1
    assert "no assessment" in capsys.readouterr().err
