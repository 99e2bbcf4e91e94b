"""The `pathpilot` command: the web side's commands (`app.cli`) plus those that run the
worker's code in this process (`pilot`, `models`), and `export`.

A composition root: the one place where the command line meets both halves, so that `app`
itself never imports the worker.
"""

from __future__ import annotations

from app import cli


def main() -> None:
    # The pilot commands need the ML stack; it is imported when they run, not here.
    from worker.cli_export import export_command
    from worker.cli_models import models_app
    from worker.cli_pilot import pilot_command

    cli.app.add_typer(models_app, name="models", help="Default offline models.")
    cli.app.command("pilot")(pilot_command)
    cli.app.command("export")(export_command)
    cli.main()


if __name__ == "__main__":
    main()
