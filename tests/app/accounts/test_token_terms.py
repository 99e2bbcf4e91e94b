"""API tokens' expiry and read-only scope: chosen at creation, shown in the list, enforced
on every API request (expired: 401 saying so; read-only on a write: 403 naming the scope)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from app.accounts import tokens
from app.accounts.models import ApiToken, TokenScope, User
from app.assessments.models import Assessment
from app.db import get_sessionmaker, utcnow
from tests.app.accounts.helpers import bearer, shown_once
from tests.factories.assessments import intake


@pytest.fixture
def anonymous(client) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(client.http.app, follow_redirects=False)


def make_token(client, **form: str) -> str:  # type: ignore[no-untyped-def]
    response = client.post("/account/tokens", {"name": "script", **form})
    assert response.status_code == 201, response.text
    return shown_once(response.text, "new-token-value")


def the_token() -> ApiToken:
    with get_sessionmaker()() as session:
        return session.scalars(select(ApiToken)).one()


def expire_it() -> None:
    with get_sessionmaker()() as session, session.begin():
        session.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))


def assessments() -> int:
    with get_sessionmaker()() as session:
        return session.scalar(select(func.count(Assessment.id))) or 0


def test_a_token_without_terms_never_expires_and_may_write(client, anonymous) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    response = client.post("/account/tokens", {"name": "script"})
    assert "Read-write, never expires." in response.text
    row = the_token()
    assert row.expires_at is None and row.scope == TokenScope.read_write
    secret = shown_once(response.text, "new-token-value")
    done = anonymous.post("/api/v1/assessments", json=intake(), headers=bearer(secret))
    assert done.status_code == 201, done.text


def test_an_expiring_token_works_until_it_expires(client, anonymous) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    created = client.post("/account/tokens", {"name": "nightly", "expires_days": "30"})
    assert created.status_code == 201
    secret = shown_once(created.text, "new-token-value")
    row = the_token()
    assert row.expires_at is not None
    expected = tokens.as_utc(row.created_at) + timedelta(days=30)
    assert tokens.as_utc(row.expires_at) == expected
    assert "Read-write, expires " in created.text
    assert anonymous.get("/api/v1/models", headers=bearer(secret)).status_code == 200

    expire_it()
    refused = anonymous.get("/api/v1/models", headers=bearer(secret))
    assert refused.status_code == 401
    assert refused.json()["detail"] == (
        "The API token 'nightly' has expired. Create a new one at /account/tokens."
    )
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert "expired" in refused.headers["www-authenticate"]
    listing = client.get("/account/tokens").text
    assert '<td class="token-expires"><strong>expired</strong>' in listing
    # A secret that is no token is still told apart from an expired one.
    wrong = anonymous.get("/api/v1/models", headers=bearer(secret[:-4] + "AAAA"))
    assert wrong.status_code == 401 and "expired" not in wrong.json()["detail"]


@pytest.mark.parametrize("days", ["0", "-3", "3651", "soon", "1.5"])
def test_a_bad_expiry_is_refused_and_creates_nothing(client, days: str) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    response = client.post("/account/tokens", {"name": "script", "expires_days": days})
    assert response.status_code == 422
    assert "Expires after (days):" in response.text
    assert f'value="{days}"' in response.text  # the form keeps what was typed
    with get_sessionmaker()() as session:
        assert session.scalar(select(func.count(ApiToken.id))) == 0


def test_a_read_only_token_reads_but_may_not_write(client, anonymous) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    created = client.post("/account/tokens", {"name": "dashboard", "read_only": "true"})
    assert created.status_code == 201
    assert "Read-only, never expires." in created.text
    secret = shown_once(created.text, "new-token-value")
    assert the_token().scope == TokenScope.read_only
    assert '<td class="token-scope">read-only</td>' in client.get("/account/tokens").text

    assert anonymous.get("/api/v1/models", headers=bearer(secret)).status_code == 200
    refused = anonymous.post("/api/v1/assessments", json=intake(), headers=bearer(secret))
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "The API token 'dashboard' has the read-only scope: it may only read (GET), not POST. "
        "Use a read-write token for changes."
    )
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert assessments() == 0
    deleted = anonymous.delete("/api/v1/models/nothing", headers=bearer(secret))
    assert deleted.status_code == 403 and "read-only" in deleted.json()["detail"]

    # The same user's read-write token may write.
    writer = make_token(client)
    done = anonymous.post("/api/v1/assessments", json=intake(), headers=bearer(writer))
    assert done.status_code == 201 and assessments() == 1


def test_expired_tokens_do_not_count_against_the_limit(var_dir) -> None:  # type: ignore[no-untyped-def]
    with get_sessionmaker()() as session, session.begin():
        owner = User(email="a@example.com", password_hash="x")
        session.add(owner)
        session.flush()
        start = utcnow()
        for n in range(tokens.MAX_ACTIVE_TOKENS):
            tokens.create_token(session, owner=owner, name=f"t{n}", expires_in_days=1, now=start)
        with pytest.raises(tokens.TooManyTokens):
            tokens.create_token(session, owner=owner, name="one more", now=start)
        later = start + timedelta(days=1)
        tokens.create_token(session, owner=owner, name="one more", now=later)
        assert len(tokens.list_tokens(session, owner=owner)) == tokens.MAX_ACTIVE_TOKENS + 1


def test_tokens_made_before_terms_existed_stay_read_write(client, anonymous) -> None:  # type: ignore[no-untyped-def]
    """A row as the previous schema wrote it (no expiry, no scope): the migration's defaults."""
    client.signup()
    secret = "pp_" + "b" * 43
    with get_sessionmaker()() as session, session.begin():
        user_id = session.scalars(select(User.id)).one()
        session.execute(
            text(
                "INSERT INTO api_token (user_id, name, prefix, token_hash, created_at) "
                "VALUES (:user_id, 'old', :prefix, :hash, :created)"
            ),
            {
                "user_id": user_id,
                "prefix": secret[: tokens.PREFIX_LENGTH],
                "hash": tokens.hash_secret(secret),
                "created": utcnow(),
            },
        )
    row = the_token()
    assert row.expires_at is None and row.scope == TokenScope.read_write
    done = anonymous.post("/api/v1/assessments", json=intake(), headers=bearer(secret))
    assert done.status_code == 201, done.text
