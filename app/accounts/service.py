"""Accounts: sign-up and authentication. No FastAPI here; callers own the transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.passwords import hash_password, verify_password

# Verifying against a real hash when the email is unknown keeps the response time the same,
# so log-in timing does not reveal which emails have accounts.
_DUMMY_HASH = hash_password("not-a-real-password")


class EmailTaken(Exception):
    pass


def create_user(session: Session, *, email: str, password: str) -> User:
    """Create an account; raises EmailTaken when the email is already registered."""
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise EmailTaken(email)
    user = User(email=email, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, *, email: str, password: str) -> User | None:
    """The user when the password matches, else None."""
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        verify_password(_DUMMY_HASH, password)
        return None
    return user if verify_password(user.password_hash, password) else None


def get_user(session: Session, *, user_id: int) -> User | None:
    """The user with this id, if any."""
    return session.get(User, user_id)


class WrongPassword(Exception):
    pass


def end_other_sessions(session: Session, *, user: User) -> None:
    """Every session cookie issued so far stops working at its next request."""
    user.session_version += 1
    session.flush()


def change_password(
    session: Session, *, user: User, current_password: str, new_password: str
) -> None:
    """Set a new password when `current_password` is right (WrongPassword otherwise), and end
    every other session: whoever changes a password may be locking someone out."""
    if not verify_password(user.password_hash, current_password):
        raise WrongPassword
    user.password_hash = hash_password(new_password)
    end_other_sessions(session, user=user)
