"""Personal API tokens: create (the secret is returned once), list, revoke, authenticate.

A token may expire (after a number of days chosen at creation) and may be read-only
(`TokenScope`); both are checked when it authenticates (`app.accounts.dependencies`).

A token is `pp_` + `secrets.token_urlsafe(32)` (256 random bits). Only its SHA-256 is
stored: a fast hash is right for a secret this long (nobody brute-forces 2^256), and it keeps
every API request cheap, unlike a password hash. A request's token is looked up by its
prefix and its hash compared with `secrets.compare_digest`. No FastAPI here; callers commit.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.models import ApiToken, TokenScope, User
from app.db import utcnow

TOKEN_MARKER = "pp_"
# "pp_" + 9 random characters: shown in the list, and the lookup key (54 bits; collisions
# are harmless, every candidate's hash is compared).
PREFIX_LENGTH = 12
MAX_ACTIVE_TOKENS = 20
# `last_used_at` is written at most this often per token, so reads do not all become writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


# The longest expiry offered: a token that must outlive it can be made without one.
MAX_EXPIRY_DAYS = 3650


class TooManyTokens(Exception):
    """The user already has MAX_ACTIVE_TOKENS active tokens."""


class TokenExpired(Exception):
    """A real token of a real user, past its expiry: told apart from a wrong one, so its owner
    knows to make a new token rather than look for a typo."""


def hash_secret(secret: str) -> str:
    """SHA-256 hex digest of a high-entropy secret (tokens and share links)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def is_expired(token: ApiToken, now: datetime | None = None) -> bool:
    return token.expires_at is not None and as_utc(token.expires_at) <= (now or utcnow())


def create_token(
    session: Session,
    *,
    owner: User,
    name: str,
    expires_in_days: int | None = None,
    scope: TokenScope = TokenScope.read_write,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new active token for `owner`; returns (row, secret). The secret is never stored.

    `expires_in_days`: None, never; else it stops working that many days from now."""
    moment = now or utcnow()
    # Expired tokens stay listed (so their owner sees why a script stopped) but do not count.
    active = [t for t in list_tokens(session, owner=owner) if not is_expired(t, moment)]
    if len(active) >= MAX_ACTIVE_TOKENS:
        raise TooManyTokens(f"You have {MAX_ACTIVE_TOKENS} active tokens; revoke one first.")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise ValueError(f"expires_in_days must be 1 to {MAX_EXPIRY_DAYS}")
    secret = TOKEN_MARKER + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=owner.id,
        name=name,
        prefix=secret[:PREFIX_LENGTH],
        token_hash=hash_secret(secret),
        created_at=moment,
        expires_at=moment + timedelta(days=expires_in_days) if expires_in_days else None,
        scope=scope.value,
    )
    session.add(token)
    session.flush()
    return token, secret


def list_tokens(session: Session, *, owner: User) -> list[ApiToken]:
    """The owner's tokens not revoked (expired ones too), newest first."""
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
) -> ApiToken | None:
    """The active token this secret is, else None; records when the token was used.

    Raises TokenExpired for a matching token past its expiry (checked only after the hash
    matched, so nothing is revealed about secrets that are not a token)."""
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
            if is_expired(token, moment):
                raise TokenExpired(token.name)
            last = token.last_used_at
            if last is None or moment - as_utc(last) >= LAST_USED_RESOLUTION:
                token.last_used_at = moment
                session.flush()
            return token
    return None
