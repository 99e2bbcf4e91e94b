"""Engine, session factory and the declarative base with an explicit naming convention."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.settings import get_settings

log = logging.getLogger(__name__)

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # The web app and the worker share the file: WAL lets readers proceed during writes,
        # and the busy timeout makes a writer wait instead of failing at once.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().resolved_database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def changed_rows(session: Session, statement: Any) -> int:
    """Run one conditional UPDATE or DELETE; how many rows it changed (0: its condition did
    not hold, e.g. another worker got there first)."""
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commit on success, else roll back. Requests (`app.deps.get_session`),
    the worker and the CLI all use it; jobs queued in it are sent after the commit."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


def _lost_connection(error: DBAPIError, *, connected: bool) -> bool:
    """Whether `error` means the write's connection was lost (or never made), as SQLAlchemy
    itself detects it: the flag it sets when it invalidated the connection, else the dialect's
    verdict on the driver's error."""
    if error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError | InterfaceError):
        return False
    dialect = get_engine().dialect
    if not connected:
        # A server that refused the connection (restarting, not accepting connections yet).
        # SQLite has no server: a file that cannot be opened is not a dropped connection.
        return dialect.name != "sqlite"
    orig = error.orig
    return isinstance(orig, dialect.loaded_dbapi.Error) and dialect.is_disconnect(orig, None, None)


def write_retrying(
    write: Callable[[Session], T], *, attempts: int = 5, first_delay_s: float = 0.2
) -> T:
    """Run `write(session)` as one unit of work (`session_scope`) and return what it returns;
    when the database connection is lost, run the whole unit of work again from the start.

    Retried, after `first_delay_s`, then twice as long each time, up to `attempts` runs in
    all, after which the last error is raised:
      - a lost connection: SQLAlchemy invalidated it (`DBAPIError.connection_invalidated`:
        PostgreSQL restarted, or the backend was terminated mid-transaction), or the dialect's
        disconnect detection recognises the driver's error;
      - on a database server (not SQLite), a connection that could not be opened before
        `write` ran (`OperationalError`/`InterfaceError`: the server is restarting). Nothing
        was sent then; a refusal that lasts (a wrong password) is raised after the attempts.
    Anything else is raised at once, unretried: integrity and data errors, the caller's own
    exceptions, and SQLite's "database is locked" (its busy timeout has already waited).

    Idempotency: `write` must be safe to run again. A connection lost during COMMIT may have
    lost only the acknowledgement, so an earlier run may have applied. Pass writes that state
    the end result, not a change: conditional UPDATEs (`... WHERE status = 'running'`,
    absolute values, never `n = n + 1`) or delete-then-insert of the rows the write owns,
    never a plain INSERT of a new row. Each run gets a fresh session, so `write` must not
    carry ORM objects or other state from one run to the next, and it must not be called
    inside another session's open transaction: only this unit of work is retried.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        connected = False
        try:
            with session_scope() as session:
                session.connection()  # connect (or pre-ping a pooled connection) first
                connected = True
                return write(session)
        except DBAPIError as error:
            if attempt == attempts or not _lost_connection(error, connected=connected):
                raise
            delay_s = first_delay_s * 2 ** (attempt - 1)
            log.warning(
                "database write: connection %s on attempt %d of %d, retrying in %.2f s: %s",
                "lost" if connected else "refused",
                attempt,
                attempts,
                delay_s,
                str(error.orig if error.orig is not None else error).strip(),
            )
        time.sleep(delay_s)
    raise AssertionError("unreachable")
