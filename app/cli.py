"""The `pathpilot` command: serve, score, models, pilot, db."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(
    help="PathPilot: choose between prompting, RAG and fine-tuning, with evidence.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="Database schema.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations up to head."""
    from app.migrate import upgrade_head
    from app.settings import get_settings

    upgrade_head()
    typer.echo(f"database at head: {get_settings().resolved_database_url}")


@app.command("rotate-keys")
def rotate_keys() -> None:
    """Re-encrypt every stored endpoint API key under the first ENCRYPTION_KEYS key.

    Run it after putting a new key first in ENCRYPTION_KEYS (and restarting the web app and
    workers); then the old keys can be removed. Prints counts and model ids, never a key.
    """
    # Every model mapped: LlmModel's foreign keys name the others' tables.
    from app import orm  # noqa: F401
    from app.db import session_scope
    from app.endpoints.secrets import rotate_api_keys
    from app.settings import get_settings

    settings = get_settings()
    if not settings.resolved_encryption_keys():
        # Without it the values would only move to the SECRET_KEY-derived key they are under.
        typer.echo(
            "pathpilot: ENCRYPTION_KEYS is not set: set it to a new Fernet key first "
            "(README, 'Rotating keys').",
            err=True,
        )
        raise typer.Exit(2)
    with session_scope() as session:
        result = rotate_api_keys(session, settings)
    typer.echo(f"re-encrypted {result.rotated} API key(s) under the first ENCRYPTION_KEYS key")
    if result.unreadable:
        typer.echo(
            f"{len(result.unreadable)} API key(s) no configured key reads, left as they were "
            f"(their owners must enter them again): models {', '.join(result.unreadable)}",
            err=True,
        )
        raise typer.Exit(1)


@app.command()
def score(intake_file: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Score an intake JSON file (the same body POST /api/v1/assessments takes); prints JSON."""
    from pydantic import ValidationError

    from app.domain.intake import Intake
    from app.domain.scoring.engine import score as score_intake
    from app.settings import get_settings

    try:
        intake = Intake.model_validate_json(intake_file.read_bytes())
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(file)"
            typer.echo(f"{intake_file}: {where}: {err['msg']}", err=True)
        raise typer.Exit(2) from exc
    # The configured price table, as the web app uses: the same intake scores the same.
    result = score_intake(intake, price_table=get_settings().price_table)
    typer.echo(result.model_dump_json(indent=2))


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind"),
    port: int = typer.Option(8000, help="Port to bind"),
    worker: bool = typer.Option(True, help="Also start one Celery worker"),
    web_workers: int = typer.Option(
        1,
        min=1,
        help="Web server processes (uvicorn workers). More use more cores for pages under "
        "load; each keeps its own kept pages and its own failed-log-in counts, so N processes "
        "allow N times the log-in attempts (see app/accounts/ratelimit.py).",
    ),
) -> None:
    """Migrate, then run the web app and one Celery worker until Ctrl-C."""
    from app.serve import run_services

    sys.exit(run_services(host=host, port=port, with_worker=worker, web_workers=web_workers))


def _register_report() -> None:
    # WeasyPrint loads Pango: only when the command table is built, not on import.
    from app.cli_report import report_command

    app.command("report")(report_command)


def _register_remote() -> None:
    # httpx and the client load only when the command table is built, as the report's do.
    from app.remote.cli import remote_app

    app.add_typer(remote_app, name="remote", help="Drive a PathPilot server's JSON API.")


def settings_problems() -> list[str]:
    """What is wrong with the settings from the environment, one line each, by variable name."""
    import re

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from app.settings import get_settings

    try:
        get_settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name, *inner = (str(part) for part in err["loc"])
            where = f" ({'.'.join(inner)})" if inner else ""
            problems.append(f"{name.upper()}{where}: {err['msg']}")
        return problems
    except SettingsError as exc:
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1).upper() if field else "settings"
        return [f"{name}: not valid JSON ({exc.__cause__ or exc})"]
    return []


def main() -> None:
    """The web side's commands (score, serve, db, report, remote). The installed `pathpilot` command
    is `worker.cli:main`, which adds the commands that run the worker's code in-process."""
    # Every command reads the settings: a bad variable is reported once, plainly, not as a
    # traceback from whichever command touched it first.
    problems = settings_problems()
    if problems:
        for problem in problems:
            typer.echo(f"pathpilot: configuration error: {problem}", err=True)
        sys.exit(2)
    _register_report()
    _register_remote()
    app()


if __name__ == "__main__":
    main()
