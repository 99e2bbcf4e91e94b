"""`pathpilot report ID --pdf FILE`: write an assessment's recommendation PDF from the command line.

Reads the database through the same service the web page uses, so the PDF is identical to the
one the page's button downloads (the latest finished pilot, or the rubric alone). `--json`
prints the verdict instead, exactly as `GET /api/v1/assessments/{id}/report` returns it.
"""

from __future__ import annotations

from pathlib import Path

import typer


def report_command(
    assessment_id: str = typer.Argument(..., help="The assessment's id (from its page's URL)"),
    pdf: Path | None = typer.Option(
        None, "--pdf", dir_okay=False, help="Where to write the PDF; default pathpilot-<slug>.pdf"
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the verdict as JSON (the API's report) instead of a PDF"
    ),
) -> None:
    """Write the recommendation PDF for one assessment and print its path (or, with --json,
    print the verdict)."""
    from app.accounts.models import User
    from app.assessments.models import Assessment
    from app.db import session_scope
    from app.reports import service
    from app.reports.pdf import filename, write_pdf

    with session_scope() as session:
        assessment = session.get(Assessment, assessment_id)
        owner = session.get(User, assessment.owner_id) if assessment is not None else None
        if assessment is None or owner is None:
            typer.echo(f"no assessment with id {assessment_id!r}", err=True)
            raise typer.Exit(1)
        try:
            report = service.build_report(session, assessment=assessment, owner=owner)
        except service.ReportUnavailable as exc:
            typer.echo(f"{assessment_id}: {exc}", err=True)
            raise typer.Exit(1) from exc
    if as_json:
        from app.reports.schemas import verdict_out

        typer.echo(verdict_out(report).model_dump_json(indent=2))
        return
    target = write_pdf(report, pdf if pdf is not None else Path(filename(report)))
    typer.echo(str(target))
