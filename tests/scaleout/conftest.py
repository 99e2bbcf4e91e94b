"""Fixtures for the scale-out tests: PostgreSQL, Redis, Celery workers and beat, all real."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.scaleout.servers import Fleet, Postgres, Redis

# Small, quick pilots (3 test examples: one short generation batch); a dead worker's pilot is
# stale after 3 s and swept every 2 s.
SCALE_ENV = {
    "PILOT_MAX_TRAIN": "24",
    "PILOT_MAX_TEST": "3",
    "PILOT_MAX_TRAIN_MINUTES": "1.5",
    "PILOT_STALLED_AFTER_S": "3",
    "PILOT_SWEEP_INTERVAL_S": "2",
    # One user starts every pilot here, up to 20 at once: the per-user caps would refuse most.
    "MAX_QUEUED_PILOTS_PER_USER": "100",
    "MAX_RUNNING_PILOTS_PER_USER": "100",
}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    server = Postgres.start()
    yield server
    server.stop()


def _admin(server_url: str, sql: str) -> None:
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(sql))
    finally:
        engine.dispose()


@pytest.fixture
def database_url(postgres_server: Postgres) -> Iterator[str]:
    """Overrides the suite's fixture: these tests always run on PostgreSQL."""
    from tests.conftest import _reset_caches

    name = f"pathpilot_scale_{uuid.uuid4().hex[:12]}"
    _admin(postgres_server.url, f'CREATE DATABASE "{name}"')
    yield make_url(postgres_server.url).set(database=name).render_as_string(hide_password=False)
    _reset_caches()
    for attempt in range(20):
        try:
            _admin(
                postgres_server.url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            )
            _admin(postgres_server.url, f'DROP DATABASE IF EXISTS "{name}"')
            return
        except sa.exc.DBAPIError:
            if attempt == 19:
                raise
            time.sleep(0.25)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    server = Redis.start(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def fleet(
    var_dir: Path, redis_server: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Fleet]:
    """The web side (this test process) and the workers share PostgreSQL and Redis."""
    for key, value in {**SCALE_ENV, "BROKER_URL": redis_server.url}.items():
        monkeypatch.setenv(key, value)
    from app.settings import get_settings
    from worker.celery_app import celery_app, configure

    get_settings.cache_clear()
    configure(celery_app, get_settings())
    running = Fleet(tmp_path, dict(os.environ))
    yield running
    running.stop()
