"""Request-scoped dependencies: the DB session (committed by the request), CSRF, strict JSON.

Who is logged in lives in `app.accounts.dependencies`."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from app.db import session_scope
from app.domain.samples.strict_json import JsonProblem, load_json


def get_session() -> Iterator[Session]:
    """Only the request owns the transaction: services flush, this commits (and then sends
    the jobs they queued with `app.queue.enqueue_after_commit`)."""
    with session_scope() as session:
        yield session


# scope="function": commit when the endpoint returns, before the response is sent; otherwise
# a browser following a redirect can arrive before the data it expects is committed.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def verify_csrf(request: Request) -> None:
    """Every state-changing form carries the session's token (form field or X-CSRF-Token)."""
    sent: str | None = None
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get("csrf_token")
        sent = value if isinstance(value, str) else None
    check_csrf(request, sent or request.headers.get("x-csrf-token"))


def check_csrf(request: Request, sent: str | None) -> None:
    expected = request.session.get("csrf")
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError,
    # so a 500, for a hostile token) and a header may carry any Latin-1 character.
    if (
        not isinstance(expected, str)
        or not sent
        or not secrets.compare_digest(expected.encode(), sent.encode("utf-8", "surrogatepass"))
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "The form expired or came from another site. Reload the page and try again.",
        )


CsrfChecked = Depends(verify_csrf)


# The JSON API's request size cap (an intake is a few KB); larger bodies get a 413.
API_MAX_BODY_BYTES = 1024 * 1024


async def strict_json_body(request: Request) -> None:
    """Refuse JSON bodies that `json.loads` accepts but that hide mistakes.

    FastAPI parses with `json.loads`, which keeps the last of two duplicate keys and accepts
    NaN/Infinity; the first lets two parsers read one body differently, the second slips a
    non-number past numeric checks. Re-parsed strictly here, with the problem named.
    """
    if request.method in SAFE_METHODS:
        return
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    # The same rule FastAPI uses to decide whether a body is JSON.
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        return
    body = await request.body()
    if not body.strip():
        return
    try:
        load_json(body.decode("utf-8"))
    except UnicodeDecodeError:
        return  # FastAPI already reported what it could not read
    except JsonProblem as problem:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": problem.reason, "input": None}]
        ) from None


StrictJsonBody = Depends(strict_json_body)
