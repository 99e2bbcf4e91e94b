"""The database going away gives a 503 with a message (page and API), and loses nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.assessments.models import Assessment
from app.db import get_engine, get_sessionmaker
from tests.conftest import postgres_admin
from tests.factories.assessments import intake


@contextmanager
def database_unavailable(var_dir: Path, database_url: str | None) -> Iterator[None]:
    """Make the database refuse connections for a while, then bring it back."""
    get_engine().dispose()  # pooled connections would outlive the outage
    if database_url is None:
        # SQLite: take the file away; a directory in its place cannot be opened.
        db, aside = var_dir / "pathpilot.db", var_dir / "pathpilot.db.aside"
        db.rename(aside)
        db.mkdir()
        try:
            yield
        finally:
            get_engine().dispose()
            db.rmdir()
            aside.rename(db)
        return
    # PostgreSQL: the server refuses new connections to this database.
    name = make_url(database_url).database
    postgres_admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    try:
        yield
    finally:
        get_engine().dispose()
        postgres_admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def test_outage_is_a_503_with_a_message_and_no_data_is_lost(
    client, var_dir: Path, database_url: str | None
) -> None:
    client.signup()
    created = client.http.post("/api/v1/assessments", json=intake())
    assert created.status_code == 201
    aid = created.json()["id"]

    with database_unavailable(var_dir, database_url):
        page = client.http.get(f"/assessments/{aid}")
        assert page.status_code == 503
        assert "The database is unavailable right now" in page.text
        assert "Traceback" not in page.text and "sqlite" not in page.text.lower()
        api = client.http.get(f"/api/v1/assessments/{aid}")
        assert api.status_code == 503
        assert api.json() == {
            "detail": "The database is unavailable right now. Your data is safe; try again shortly."
        }
        write = client.http.post("/api/v1/assessments", json=intake())
        assert write.status_code == 503

    back = client.http.get(f"/api/v1/assessments/{aid}")
    assert back.status_code == 200
    assert back.json()["id"] == aid
    assert client.get(f"/assessments/{aid}").status_code == 200
    with get_sessionmaker()() as session:
        assert session.scalar(select(func.count()).select_from(Assessment)) == 1
