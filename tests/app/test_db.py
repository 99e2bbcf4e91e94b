"""`write_retrying`: a write whose database connection drops is run again from the start and
lands once; any other error is raised at once. The PostgreSQL tests drop real connections
(`pg_terminate_backend`, a database refusing connections) and run when PATHPILOT_TEST_POSTGRES
names a server."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.db import get_engine, write_retrying
from tests.conftest import POSTGRES_SERVER, postgres_admin

needs_postgres = pytest.mark.skipif(
    not POSTGRES_SERVER, reason="needs PostgreSQL: set PATHPILOT_TEST_POSTGRES to a server URL"
)


@pytest.fixture
def probe(var_dir: Path) -> None:
    """A scratch table in this test's own database."""
    with get_engine().begin() as connection:
        connection.execute(
            sa.text("CREATE TABLE retry_probe (id VARCHAR(20) PRIMARY KEY, runs INTEGER NOT NULL)")
        )


def rows() -> list[tuple[str, int]]:
    with get_engine().connect() as connection:
        result = connection.execute(sa.text("SELECT id, runs FROM retry_probe ORDER BY id"))
        return [(row.id, row.runs) for row in result]


def put(session: Session, key: str, runs: int) -> None:
    """Delete-then-insert: the idempotent write `write_retrying` asks for."""
    session.execute(sa.text("DELETE FROM retry_probe WHERE id = :id"), {"id": key})
    session.execute(
        sa.text("INSERT INTO retry_probe (id, runs) VALUES (:id, :runs)"), {"id": key, "runs": runs}
    )


def test_the_write_s_return_value_is_passed_through_and_committed(probe: None) -> None:
    def write(session: Session) -> tuple[str, int]:
        put(session, "a", 1)
        return ("written", 7)

    assert write_retrying(write) == ("written", 7)
    assert rows() == [("a", 1)]


def test_an_error_that_is_not_a_lost_connection_is_raised_at_once(probe: None) -> None:
    with get_engine().begin() as connection:
        connection.execute(sa.text("INSERT INTO retry_probe (id, runs) VALUES ('dup', 0)"))
    calls = 0

    def write(session: Session) -> None:
        nonlocal calls
        calls += 1
        session.execute(sa.text("INSERT INTO retry_probe (id, runs) VALUES ('dup', 1)"))

    with pytest.raises(IntegrityError):
        write_retrying(write, first_delay_s=0)
    assert calls == 1
    assert rows() == [("dup", 0)]


def test_the_caller_s_own_exception_is_raised_at_once_and_rolls_back(probe: None) -> None:
    calls = 0

    def write(session: Session) -> None:
        nonlocal calls
        calls += 1
        put(session, "b", 1)
        raise RuntimeError("the caller's own failure")

    with pytest.raises(RuntimeError, match="own failure"):
        write_retrying(write, first_delay_s=0)
    assert calls == 1
    assert rows() == []


def test_sqlite_database_is_locked_is_not_retried(
    probe: None, var_dir: Path, database_url: str | None
) -> None:
    if database_url is not None:
        pytest.skip("SQLite only")
    # Another process holds the write lock; this write's busy timeout is cut to 50 ms.
    holder = sqlite3.connect(var_dir / "pathpilot.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    calls = 0

    def write(session: Session) -> None:
        nonlocal calls
        calls += 1
        session.execute(sa.text("PRAGMA busy_timeout=50"))
        put(session, "c", calls)

    try:
        with pytest.raises(OperationalError, match="database is locked") as raised:
            write_retrying(write, first_delay_s=0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not raised.value.connection_invalidated
    assert calls == 1
    assert rows() == []


def test_attempts_must_be_positive(probe: None) -> None:
    with pytest.raises(ValueError):
        write_retrying(lambda session: None, attempts=0)


# --- PostgreSQL: real dropped connections ---------------------------------------------------


@pytest.fixture
def admin(database_url: str | None) -> Iterator[Engine]:
    """A second connection to the test's database, outside any unit of work."""
    assert database_url is not None
    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def kill_backend_of(session: Session, admin: Engine) -> None:
    """Terminate the session's own server process from another connection, and wait (up to
    5 s) until it is gone."""
    pid = session.scalar(sa.text("SELECT pg_backend_pid()"))
    with admin.connect() as connection:
        ended = connection.scalar(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    assert ended, f"backend {pid} was not terminated"


@needs_postgres
@pytest.mark.parametrize("dropped", ["mid-transaction", "at commit"])
def test_a_write_whose_connection_is_killed_runs_again_and_lands_once(
    probe: None, admin: Engine, dropped: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def write(session: Session) -> str:
        nonlocal calls
        calls += 1
        put(session, "p", calls)
        if calls == 1:
            kill_backend_of(session, admin)
            if dropped == "mid-transaction":
                put(session, "q", calls)  # the next statement finds the connection gone
        return f"run {calls}"

    with caplog.at_level(logging.WARNING, logger="app.db"):
        assert write_retrying(write, first_delay_s=0.05) == "run 2"
    assert calls == 2
    assert rows() == [("p", 2)]  # the first run's row was rolled back with its connection
    assert "connection lost on attempt 1 of 5" in caplog.text


@needs_postgres
def test_after_the_last_attempt_the_lost_connection_is_raised(
    probe: None, admin: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def write(session: Session) -> None:
        nonlocal calls
        calls += 1
        put(session, "r", calls)
        kill_backend_of(session, admin)
        put(session, "s", calls)

    with (
        caplog.at_level(logging.WARNING, logger="app.db"),
        pytest.raises(DBAPIError) as raised,
    ):
        write_retrying(write, attempts=3, first_delay_s=0.01)
    assert raised.value.connection_invalidated
    assert calls == 3
    assert rows() == []
    assert "connection lost on attempt 2 of 3" in caplog.text
    assert "attempt 3 of 3" not in caplog.text  # the last attempt's error is raised, not retried


@needs_postgres
def test_a_write_waits_for_a_database_that_refuses_connections(
    probe: None, database_url: str
) -> None:
    """The server side of a restart: new connections are refused for a while. Nothing was
    sent, so the write itself runs once, when the database takes connections again."""
    name = make_url(database_url).database
    get_engine().dispose()  # pooled connections would outlive the refusal
    postgres_admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    reopen = threading.Timer(
        0.5, postgres_admin, [f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true']
    )
    reopen.start()
    calls = 0

    def write(session: Session) -> None:
        nonlocal calls
        calls += 1
        put(session, "t", calls)

    try:
        write_retrying(write, attempts=6, first_delay_s=0.1)
    finally:
        reopen.join()
    assert calls == 1
    assert rows() == [("t", 1)]
