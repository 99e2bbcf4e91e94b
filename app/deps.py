"""Request-scoped dependencies: the DB session (committed by the request) and the user."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.service import get_user
from app.accounts.tokens import authenticate_token
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
    # Templates (error pages too, rendered after the DB session closed) need only these two.
    request.state.user = SignedIn(id=user.id, email=user.email) if user else None
    return user


def require_user(request: Request, user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        raise LoginRequired(request.url.path)
    return user


# The JSON API's security scheme, declared in /openapi.json on every route that depends on it.
# auto_error=False: without a token the session cookie is tried instead.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    bearerFormat="pp_…",
    description="A personal API token from /account/tokens, sent as `Authorization: Bearer pp_…`.",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def require_api_user(request: Request, session: SessionDep, credentials: BearerCredentials) -> User:
    """The API caller: a bearer token, else the session cookie (plus CSRF for writes).

    A token cannot be attached by another site, so token requests need no CSRF token; a
    cookie can, so a cookie-authenticated write must send the page's X-CSRF-Token header.
    """
    if credentials is not None:
        user = authenticate_token(session, secret=credentials.credentials)
        if user is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "The API token is not valid: it was revoked or mistyped.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
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
        _check_csrf(request, request.headers.get("x-csrf-token"))
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]
CurrentUser = Annotated[User, Depends(require_user)]
ApiUser = Annotated[User, Depends(require_api_user)]


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
    _check_csrf(request, sent or request.headers.get("x-csrf-token"))


def _check_csrf(request: Request, sent: str | None) -> None:
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


def start_session(request: Request, user_id: int) -> None:
    """A fresh session for a log-in; the CSRF token survives so open pages keep working."""
    token = request.session.get("csrf")
    request.session.clear()
    request.session["user_id"] = user_id
    if isinstance(token, str):
        request.session["csrf"] = token


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
