"""Shared fixtures: an isolated var/ dir and a real SQLite database built by Alembic."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"


def _reset_caches() -> None:
    from app.db import get_engine, get_sessionmaker
    from app.settings import get_settings

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    get_settings.cache_clear()


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh var/ (database, broker, uploads) for one test; models stay shared."""
    var = tmp_path / "var"
    monkeypatch.setenv("VAR_DIR", str(var))
    monkeypatch.setenv("LLM_MODEL", str(shared_models_dir() / "SmolLM2-135M-Instruct"))
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
