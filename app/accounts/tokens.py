"""Personal API tokens: create (the secret is returned once), list, revoke, authenticate.

A token is `pp_` + `secrets.token_urlsafe(32)` (256 random bits). Only its SHA-256 is
stored: a fast hash is right for a secret this long (nobody brute-forces 2^256), and it keeps
every API request cheap, unlike a password hash. A request's token is looked up by its
prefix and its hash compared with `secrets.compare_digest`. No FastAPI here; callers commit.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts.models import ApiToken, User
from app.db import utcnow

TOKEN_MARKER = "pp_"
# "pp_" + 9 random characters: shown in the list, and the lookup key (54 bits; collisions
# are harmless, every candidate's hash is compared).
PREFIX_LENGTH = 12
MAX_ACTIVE_TOKENS = 20
# `last_used_at` is written at most this often per token, so reads do not all become writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TooManyTokens(Exception):
    """The user already has MAX_ACTIVE_TOKENS active tokens."""


def hash_secret(secret: str) -> str:
    """SHA-256 hex digest of a high-entropy secret (tokens and share links)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def create_token(session: Session, *, owner: User, name: str) -> tuple[ApiToken, str]:
    """A new active token for `owner`; returns (row, secret). The secret is never stored."""
    active = session.scalar(
        select(func.count(ApiToken.id)).where(
            ApiToken.user_id == owner.id, ApiToken.revoked_at.is_(None)
        )
    )
    if (active or 0) >= MAX_ACTIVE_TOKENS:
        raise TooManyTokens(f"You have {MAX_ACTIVE_TOKENS} active tokens; revoke one first.")
    secret = TOKEN_MARKER + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=owner.id,
        name=name,
        prefix=secret[:PREFIX_LENGTH],
        token_hash=hash_secret(secret),
    )
    session.add(token)
    session.flush()
    return token, secret


def list_tokens(session: Session, *, owner: User) -> list[ApiToken]:
    """The owner's active tokens, newest first."""
    stmt = (
        select(ApiToken)
        .where(ApiToken.user_id == owner.id, ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    )
    return list(session.scalars(stmt))


def revoke_token(session: Session, *, owner: User, token_id: int) -> bool:
    """Revoke one of the owner's tokens; False when there is no such active token of theirs."""
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != owner.id or token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    session.flush()
    return True


def authenticate_token(
    session: Session, *, secret: str, now: datetime | None = None
) -> User | None:
    """The user an active token belongs to, else None; records when the token was used."""
    if not secret.startswith(TOKEN_MARKER) or len(secret) > 128:
        return None
    digest = hash_secret(secret)
    candidates = session.scalars(
        select(ApiToken).where(
            ApiToken.prefix == secret[:PREFIX_LENGTH], ApiToken.revoked_at.is_(None)
        )
    )
    for token in candidates:
        if secrets.compare_digest(token.token_hash, digest):
            moment = now or utcnow()
            last = token.last_used_at
            if last is None or moment - as_utc(last) >= LAST_USED_RESOLUTION:
                token.last_used_at = moment
                session.flush()
            return session.get(User, token.user_id)
    return None
