"""`run_signed_in`: the most-read pages do their synchronous work in one thread-pool trip,
at most `WEB_PAGE_THREADS` at once, and still send anonymous callers to log in and show
nobody another user's pages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from sqlalchemy.orm import Session
from starlette.requests import Request

from app.accounts.dependencies import run_signed_in
from app.accounts.models import User
from app.accounts.service import create_user
from app.db import session_scope
from app.settings import get_settings
from app.web import PAGE_BODIES
from tests.app.reports.factory import finished_pilot
from tests.factories.assessments import scored_assessment


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function a request hands to a worker thread."""
    seen: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(func, "__qualname__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return seen


@pytest.mark.parametrize("kept", [False, True], ids=["first view", "kept body"])
def test_report_pilot_page_and_live_panel_take_one_trip_each(client, trips, kept: bool) -> None:  # type: ignore[no-untyped-def]
    PAGE_BODIES.clear()
    client.signup()
    aid = scored_assessment(client)
    pid = finished_pilot(aid)
    pages = [f"/assessments/{aid}/report?pilot={pid}", f"/pilots/{pid}"]
    if kept:
        for url in pages:
            client.get(url)
    for url, headers in [
        *((url, {}) for url in pages),
        (f"/pilots/{pid}/progress", {"HX-Request": "true"}),
    ]:
        trips.clear()
        response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        assert len(trips) == 1, (url, trips)


def test_a_signed_in_page_sends_an_anonymous_caller_to_log_in(client, trips) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/pilots/p-1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    assert len(trips) == 1


def test_another_users_pilot_is_not_found_through_the_one_trip(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    aid = scored_assessment(client)
    pid = finished_pilot(aid)
    client.logout()
    client.signup(email="other@example.com")
    assert client.get(f"/pilots/{pid}").status_code == 404
    assert client.get(f"/assessments/{aid}/report?pilot={pid}").status_code == 404


def test_at_most_web_page_threads_page_trips_run_at_once(
    var_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More threads than this only make them fight the event loop for the GIL."""
    monkeypatch.setenv("WEB_PAGE_THREADS", "3")
    get_settings.cache_clear()
    with session_scope() as session:
        user_id = create_user(session, email="reader@example.com", password="a long passphrase").id
    running = peak = 0
    lock = threading.Lock()

    def page(session: Session, user: User) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)  # a read that waits on the database: the GIL is free meanwhile
        with lock:
            running -= 1
        return user.id

    async def ten_requests_at_once() -> list[int]:
        answers: list[int] = []

        async def one() -> None:
            scope = {"type": "http", "method": "GET", "path": "/p", "headers": []}
            request = Request({**scope, "session": {"user_id": user_id, "session_version": 1}})
            answers.append(await run_signed_in(request, page))

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(one)
        return answers

    assert anyio.run(ten_requests_at_once) == [user_id] * 10
    assert peak == 3
