"""Who is calling: the logged-in user (pages) or the API token's owner (JSON API)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.accounts.models import TokenScope, User
from app.accounts.service import get_user
from app.accounts.tokens import TokenExpired, authenticate_token
from app.db import session_scope
from app.deps import SAFE_METHODS, SessionDep, check_csrf
from app.settings import get_settings

T = TypeVar("T")


@dataclass(frozen=True)
class SignedIn:
    """Who is logged in, detached from the DB session."""

    id: int
    email: str


class LoginRequired(Exception):
    """Raised for HTML routes; the app turns it into a redirect to the log-in page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def optional_user(request: Request, session: SessionDep) -> User | None:
    user_id = request.session.get("user_id")
    user = get_user(session, user_id=user_id) if isinstance(user_id, int) else None
    if user is not None and request.session.get("session_version") != user.session_version:
        # A session from before "log out everywhere" or a password change (or from before
        # session versions existed): it ends here, and the cleared cookie goes back with this
        # response.
        end_session(request)
        user = None
    # Templates (error pages too, rendered after the DB session closed) need only these two.
    request.state.user = SignedIn(id=user.id, email=user.email) if user else None
    return user


async def require_user(
    request: Request, user: Annotated[User | None, Depends(optional_user)]
) -> User:
    # Async: no I/O here, so it runs on the event loop instead of a trip to the thread pool.
    if user is None:
        raise LoginRequired(request.url.path)
    return user


async def run_signed_in(request: Request, page: Callable[[Session, User], T]) -> T:
    """A page's synchronous work -- its DB session, who is logged in, its reads and its
    rendering, the commit -- in one trip to the thread pool.

    The same work as a sync endpoint with `SessionDep` and `CurrentUser` costs four trips
    (the session dependency's enter and exit, `optional_user`, the endpoint), each a hand-off
    to a worker thread and back: under load, about a third of a kept page's CPU time. The
    pages read most often (a report, a pilot's page and its live panel) go through here.
    """

    def trip() -> T:
        with session_scope() as session:
            user = optional_user(request, session)
            if user is None:
                raise LoginRequired(request.url.path)
            return page(session, user)

    return await anyio.to_thread.run_sync(trip, limiter=_page_limiter())


# One limiter per event loop (a limiter belongs to the loop it was first used on; tests run
# several loops in one process).
_PAGE_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def _page_limiter() -> anyio.CapacityLimiter:
    """At most `WEB_PAGE_THREADS` page trips run at once in this process; the rest wait their
    turn on the event loop.

    A kept page's trip is CPU work under the GIL. With the thread pool's default 40 threads,
    every concurrent request's thread competes for the GIL with the event loop's thread, which
    then gets it about once per switch interval (5 ms) per runnable thread to read requests
    and write answers: under load that convoy, not the pages' work, set the latency
    (`bench/report_load.py`: at 32 connections on one process, p95 197 -> 122 ms with 4
    threads, 108 ms with 2; server CPU per request -25%). A few threads still overlap one
    page's database waits with another's work, and a slow first render does not hold up every
    kept page behind it."""
    loop = asyncio.get_running_loop()
    limiter = _PAGE_LIMITERS.get(loop)
    if limiter is None:
        limiter = _PAGE_LIMITERS[loop] = anyio.CapacityLimiter(get_settings().web_page_threads)
    return limiter


# The JSON API's security scheme, declared in /openapi.json on every route that depends on it.
# auto_error=False: without a token the session cookie is tried instead.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    bearerFormat="pp_…",
    description="A personal API token from /account/tokens, sent as `Authorization: Bearer pp_…`.",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def require_api_user(request: Request, session: SessionDep, credentials: BearerCredentials) -> User:
    """The API caller: a bearer token, else the session cookie (plus CSRF for writes).

    A token cannot be attached by another site, so token requests need no CSRF token; a
    cookie can, so a cookie-authenticated write must send the page's X-CSRF-Token header.
    """
    if credentials is not None:
        try:
            token = authenticate_token(session, secret=credentials.credentials)
        except TokenExpired as expired:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"The API token '{expired}' has expired. Create a new one at /account/tokens.",
                headers={
                    "WWW-Authenticate": 'Bearer error="invalid_token", '
                    'error_description="The token has expired"'
                },
            ) from None
        user = get_user(session, user_id=token.user_id) if token is not None else None
        if token is None or user is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "The API token is not valid: it was revoked or mistyped.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if token.scope == TokenScope.read_only and request.method not in SAFE_METHODS:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"The API token '{token.name}' has the read-only scope: it may only read "
                f"(GET), not {request.method}. Use a read-write token for changes.",
                headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
            )
        request.state.user = SignedIn(id=user.id, email=user.email)
        return user
    if request.headers.get("authorization"):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Send the token as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    user = optional_user(request, session)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Log in first, or send 'Authorization: Bearer <token>' (create one at "
            "/account/tokens).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in SAFE_METHODS:
        check_csrf(request, request.headers.get("x-csrf-token"))
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]
CurrentUser = Annotated[User, Depends(require_user)]
ApiUser = Annotated[User, Depends(require_api_user)]


def start_session(request: Request, user: User) -> None:
    """A fresh session for a log-in; the CSRF token survives so open pages keep working."""
    end_session(request)
    request.session["user_id"] = user.id
    request.session["session_version"] = user.session_version


def end_session(request: Request) -> None:
    """Log this browser out; the CSRF token survives so the log-in page's form works."""
    token = request.session.get("csrf")
    request.session.clear()
    if isinstance(token, str):
        request.session["csrf"] = token
