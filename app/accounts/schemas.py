from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator

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


class SignUp(Credentials):
    @field_validator("password")
    @classmethod
    def _strong_enough(cls, value: str) -> str:
        if len(value) < 10:
            raise ValueError("Use at least 10 characters")
        return value


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
