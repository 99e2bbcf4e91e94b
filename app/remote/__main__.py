"""`python -m app.remote ...`: the remote commands alone, for a CI machine that has only
httpx, typer and pydantic installed (the `pathpilot` command also loads the server's and the
worker's commands, and with them WeasyPrint and SQLAlchemy)."""

from app.remote.cli import remote_app

remote_app(prog_name="python -m app.remote")
