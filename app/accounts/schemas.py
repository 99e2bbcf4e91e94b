from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator

from app.accounts.tokens import MAX_EXPIRY_DAYS

# No whitespace or control characters (a NUL would break PostgreSQL's text type).
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")


class Credentials(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip().lower()
        if not _EMAIL.match(value):
            raise ValueError("Enter an email address like name@example.com")
        return value


MIN_PASSWORD_LENGTH = 10


def _strong_enough(value: str) -> str:
    if len(value) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"Use at least {MIN_PASSWORD_LENGTH} characters")
    return value


class SignUp(Credentials):
    _strong = field_validator("password")(_strong_enough)


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)

    _strong = field_validator("new_password")(_strong_enough)


class TokenName(BaseModel):
    """What the owner calls a token, so they know which one to revoke."""

    name: str = Field(max_length=80)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("Give the token a name, e.g. 'CI pipeline'")
        if not value.isprintable():
            raise ValueError("Use printable characters only")
        return value


class TokenOptions(BaseModel):
    """A new token's expiry in days (blank: never) and whether it may only read."""

    expires_days: int | None = Field(None, ge=1, le=MAX_EXPIRY_DAYS)
    read_only: bool = False

    @field_validator("expires_days", mode="before")
    @classmethod
    def _blank_is_never(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value
