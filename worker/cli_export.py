"""`pathpilot export PILOT_ID --out DIR_OR_ZIP`: a finished pilot's hand-off bundle.

Reads the pilot from the database as the web does (the same `app.exports` code), so the
bundle is the one the report's Export button downloads. A command for whoever runs the
server: it reads any pilot in this installation's database.
"""

from __future__ import annotations

from pathlib import Path

import typer


def export_command(
    pilot_id: str = typer.Argument(..., help="The pilot's id (its page is /pilots/ID)"),
    out: Path = typer.Option(
        ..., "--out", help="A folder (new or empty) or a file name ending in .zip"
    ),
    pdf: bool = typer.Option(True, help="Include the report PDF (rendering takes a second)"),
    path: str | None = typer.Option(
        None,
        "--path",
        help="The path to hand off (prompting, rag, fine_tuning, fine_tuning+rag) when not "
        "the recommended one; its arm must have run",
    ),
) -> None:
    """Export a finished pilot's chosen path as a runnable bundle (data, scripts, adapter)."""
    from rich.console import Console

    from app.db import session_scope
    from app.exports import service
    from app.pilots.models import Pilot
    from app.reports.pdf import render_pdf
    from app.settings import get_settings

    console = Console()
    if path is not None and path not in service.EXPORT_PATHS:
        raise typer.BadParameter(
            f"{path!r} is not a path: one of {', '.join(service.EXPORT_PATHS)}", param_hint="--path"
        )
    if out.exists() and out.suffix.lower() != ".zip" and (not out.is_dir() or any(out.iterdir())):
        raise typer.BadParameter(f"{out} exists and is not an empty folder", param_hint="--out")
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        if pilot is None:
            console.print(f"[red]No pilot {pilot_id!r} in this database.[/red]")
            raise typer.Exit(2)
        try:
            export = service.export_pilot(
                session,
                pilot=pilot,
                settings=get_settings(),
                render_pdf=render_pdf if pdf else None,
                path=path,
            )
        except service.ExportNotPossible as error:
            console.print(f"[red]Cannot export: {error}[/red]")
            raise typer.Exit(1) from error
    target = export.bundle.write_to(out)
    console.print(f"Wrote {len(export.bundle.files)} files to {target}")
    for line in export.bundle.missing:
        console.print(f"[yellow]! {line}[/yellow]")
