"""Request-scoped dependencies: the DB session (committed by the request) and the user."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.service import get_user
from app.db import get_sessionmaker


def get_session() -> Iterator[Session]:
    """Only the request owns the transaction: services flush, this commits."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


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


def require_api_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Log in first")
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
    expected = request.session.get("csrf")
    sent: str | None = None
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get("csrf_token")
        sent = value if isinstance(value, str) else None
    sent = sent or request.headers.get("x-csrf-token")
    if not expected or not sent or not secrets.compare_digest(expected, sent):
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
