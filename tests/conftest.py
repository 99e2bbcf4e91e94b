"""Shared fixtures: an isolated var/ dir and a real database built by Alembic.

The database is a fresh SQLite file per test. With PATHPILOT_TEST_POSTGRES set to a
PostgreSQL server URL (e.g. postgresql+psycopg://user:pw@127.0.0.1/postgres, a role that may
create databases), each test gets a fresh PostgreSQL database on that server instead, so the
same suite checks that the code runs unchanged on PostgreSQL.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Session-wide model fixtures (llm_dir, tokenizer, embedder, resources) for any test package.
pytest_plugins = ["tests.model_fixtures", "tests.vllm_fixtures"]

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"

# Fixtures that imply a marker: a test that uses one (directly or through another fixture) gets
# the marker at collection, so the tiers (`make test-fast`, the PostgreSQL pass) stay right
# without anyone remembering to mark it. Markers set by hand (pytestmark, decorators) add to
# these for what no fixture shows, such as a test that starts `pathpilot serve` itself.
MARKER_FIXTURES: dict[str, frozenset[str]] = {
    # Real models: the converted LLM in var/models, the embedder, an adapter made from them.
    "slow": frozenset({"llm_dir", "tokenizer", "embedder", "resources", "tiny_lora_adapter"}),
    # Real server processes: vLLM, `pathpilot serve`, Redis, PostgreSQL, Celery workers.
    "server": frozenset(
        {"vllm_server", "live_server", "postgres_server", "redis_server", "fleet", "remote_server"}
    ),
    "vllm": frozenset({"vllm_server"}),
    "browser": frozenset({"playwright"}),  # pytest-playwright's root fixture
    # The suite's database, SQLite or PostgreSQL (PATHPILOT_TEST_POSTGRES): the PostgreSQL pass
    # runs these. Not the scale-out tests' own `database_url`, which is PostgreSQL every time.
    "db": frozenset({"database_url"}),
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for marker, implied_by in MARKER_FIXTURES.items():
            if fixtures & implied_by and not (marker == "db" and "postgres_server" in fixtures):
                item.add_marker(marker)


def _reset_caches() -> None:
    from app.db import get_engine, get_sessionmaker
    from app.settings import get_settings

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    get_settings.cache_clear()


POSTGRES_SERVER = os.environ.get("PATHPILOT_TEST_POSTGRES")


def postgres_admin(sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
    import sqlalchemy as sa

    # Timeouts, so a database something still holds fails the test instead of hanging it.
    options = "-c lock_timeout=5000 -c statement_timeout=15000"
    engine = sa.create_engine(
        str(POSTGRES_SERVER), isolation_level="AUTOCOMMIT", connect_args={"options": options}
    )
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(sql))
    finally:
        engine.dispose()


@pytest.fixture
def database_url() -> Iterator[str | None]:
    """None for the default SQLite file; a fresh PostgreSQL database when configured."""
    if not POSTGRES_SERVER:
        yield None
        return
    from sqlalchemy.engine import make_url

    name = f"pathpilot_test_{uuid.uuid4().hex[:12]}"
    postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_SERVER).set(database=name).render_as_string(hide_password=False)
    finally:
        _reset_caches()  # close this test's connections before the drop
        _drop_database(name)


def _drop_database(name: str) -> None:
    """DROP, retried briefly: a worker process or autovacuum may still be leaving it."""
    import time

    from sqlalchemy.exc import DBAPIError

    for attempt in range(20):
        try:
            # Our own role's leftover connections (a worker process, a pooled session) may be
            # ended without extra privileges; then the database can go.
            postgres_admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND usename = current_user AND pid <> pg_backend_pid()"
            )
            postgres_admin(f'DROP DATABASE IF EXISTS "{name}"')
            return
        except DBAPIError:
            if attempt == 19:
                raise
            time.sleep(0.25)


@pytest.fixture
def var_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None
) -> Iterator[Path]:
    """A fresh var/ (database, broker, uploads) for one test; models stay shared."""
    var = tmp_path / "var"
    monkeypatch.setenv("VAR_DIR", str(var))
    monkeypatch.setenv("LLM_MODEL", str(shared_models_dir() / "SmolLM2-135M-Instruct"))
    if database_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("BROKER_URL", raising=False)
    _reset_caches()
    from app.migrate import upgrade_head
    from app.settings import get_settings
    from worker.celery_app import celery_app, configure

    upgrade_head()
    configure(celery_app, get_settings())  # publish to this test's own broker file
    yield var
    _reset_caches()


def shared_models_dir() -> Path:
    """Default models live in the project's var/models, fetched once by `make test`."""
    return REPO / "var" / "models"


@pytest.fixture
def client(var_dir: Path) -> Iterator[WebClient]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(), follow_redirects=False) as test_client:
        yield WebClient(test_client)


class WebClient:
    """A TestClient that reads the CSRF token from pages, as a browser form would send it."""

    def __init__(self, http) -> None:  # type: ignore[no-untyped-def]
        self.http = http

    def csrf(self) -> str:
        page = self.http.get("/login")
        match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert match, "page has no CSRF token"
        # As the pages do (hx-headers): cookie-authenticated JSON API writes need the header.
        self.http.headers["X-CSRF-Token"] = match.group(1)
        return match.group(1)

    def get(self, url: str, **kw):  # type: ignore[no-untyped-def]
        return self.http.get(url, **kw)

    def post(self, url: str, data: dict | None = None, files=None, **kw):  # type: ignore[no-untyped-def]
        payload = dict(data or {})
        payload.setdefault("csrf_token", self.csrf())
        return self.http.post(url, data=payload, files=files, **kw)

    def signup(
        self, email: str = "lead@example.com", password: str = "correct horse battery"
    ) -> None:
        response = self.post("/signup", {"email": email, "password": password})
        assert response.status_code == 303, response.text

    def logout(self) -> None:
        self.post("/logout")


@pytest.fixture
def make_client(var_dir: Path) -> Iterator:  # type: ignore[type-arg]
    """Several independent browsers (cookie jars) against one app and database."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    app = create_app()
    opened: list[TestClient] = []

    def factory() -> WebClient:
        tc = TestClient(app, follow_redirects=False)
        tc.__enter__()
        opened.append(tc)
        return WebClient(tc)

    yield factory
    for tc in opened:
        tc.__exit__(None, None, None)
