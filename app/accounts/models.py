from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class User(Base):
    __tablename__ = "user_account"  # "user" is reserved in PostgreSQL

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The session cookie is signed, not stored, so logging out cannot recall a copy of it. The
    # cookie carries this number; bumping it ("log out everywhere", a password change) ends
    # every session that carries an older one.
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class TokenScope(StrEnum):
    read_write = "read-write"
    # GET, HEAD and OPTIONS only: for dashboards and scripts that only read.
    read_only = "read-only"


class ApiToken(Base):
    """A personal API token. Only its SHA-256 is stored; the token is shown once, at creation.

    `prefix` (the token's first characters) is what the owner sees in the list and what a
    request's token is looked up by; the hash is then compared in constant time.
    """

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # None: never expires. Tokens made before expiry and scopes existed are read-write.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    scope: Mapped[str] = mapped_column(
        String(16), default=TokenScope.read_write.value, server_default=TokenScope.read_write.value
    )
