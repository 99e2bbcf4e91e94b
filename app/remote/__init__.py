"""A thin client of a PathPilot server's JSON API: `app.remote.client.Client` for Python and
`pathpilot remote ...` for scripts and CI. Only httpx, typer, pydantic and pure domain code:
it runs where the server's database, queue and ML stack are not installed."""
