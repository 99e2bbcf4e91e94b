"""Personal API tokens: shown once, hashed at rest, bearer auth, last used, revocation."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.accounts import tokens
from app.accounts.models import ApiToken, User
from app.db import get_sessionmaker, utcnow
from tests.app.accounts.helpers import bearer, create_token, shown_once
from tests.factories.assessments import intake


def token_rows() -> list[ApiToken]:
    with get_sessionmaker()() as session:
        return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


@pytest.fixture
def anonymous(client) -> TestClient:  # type: ignore[no-untyped-def]
    """A second client on the same app with no cookies: only the token authenticates."""
    return TestClient(client.http.app, follow_redirects=False)


def test_tokens_page_needs_login(client) -> None:
    response = client.get("/account/tokens")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/account/tokens"


def test_token_is_shown_once_and_stored_only_as_a_hash(client) -> None:
    client.signup()
    response = client.post("/account/tokens", {"name": "CI pipeline"})
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    assert "shown only once" in response.text
    secret = shown_once(response.text, "new-token-value")
    assert secret.startswith("pp_") and len(secret) == 3 + 43
    [row] = token_rows()
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.prefix == secret[:12]
    assert secret not in {row.name, row.prefix, row.token_hash}
    listing = client.get("/account/tokens")
    assert secret not in listing.text
    assert f"{row.prefix}…" in listing.text
    assert "CI pipeline" in listing.text
    assert '<td class="token-last-used">never</td>' in listing.text


def test_bearer_token_authenticates_the_api_without_cookie_or_csrf(client, anonymous) -> None:
    client.signup()
    secret = create_token(client)
    created = anonymous.post("/api/v1/assessments", json=intake(), headers=bearer(secret))
    assert created.status_code == 201, created.text
    aid = created.json()["id"]
    fetched = anonymous.get(f"/api/v1/assessments/{aid}", headers=bearer(secret))
    assert fetched.status_code == 200
    # The same assessment is the cookie user's: the token acts as its owner.
    assert client.http.get(f"/api/v1/assessments/{aid}").status_code == 200


def test_last_used_is_recorded(client, anonymous) -> None:
    client.signup()
    secret = create_token(client)
    assert token_rows()[0].last_used_at is None
    before = utcnow()
    assert anonymous.post("/api/v1/assessments", json=intake(), headers=bearer(secret)).is_success
    used = token_rows()[0].last_used_at
    assert used is not None and tokens.as_utc(used) >= before - timedelta(seconds=1)
    assert '<td class="token-last-used">never</td>' not in client.get("/account/tokens").text


def test_last_used_is_written_at_most_once_a_minute(client) -> None:
    client.signup()
    secret = create_token(client)
    start = utcnow()
    with get_sessionmaker()() as session:
        for offset, expected in ((0, 0), (30, 0), (61, 61)):
            token = tokens.authenticate_token(
                session, secret=secret, now=start + timedelta(seconds=offset)
            )
            assert token is not None
            row = session.scalars(select(ApiToken)).one()
            assert row.last_used_at is not None
            assert tokens.as_utc(row.last_used_at) == start + timedelta(seconds=expected)


def test_revoked_token_is_refused_with_401(client, anonymous) -> None:
    client.signup()
    secret = create_token(client)
    [row] = token_rows()
    assert anonymous.get("/api/v1/pilots/none", headers=bearer(secret)).status_code == 404
    revoked = client.post(f"/account/tokens/{row.id}/revoke")
    assert revoked.status_code == 303 and revoked.headers["location"] == "/account/tokens"
    response = anonymous.get("/api/v1/pilots/none", headers=bearer(secret))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert token_rows()[0].revoked_at is not None
    assert "No active tokens" in client.get("/account/tokens").text
    # Revoking twice, or a token id that does not exist, is a 404.
    assert client.post(f"/account/tokens/{row.id}/revoke").status_code == 404
    assert client.post("/account/tokens/999999/revoke").status_code == 404


def test_cannot_revoke_another_users_token(make_client) -> None:
    owner, other = make_client(), make_client()
    owner.signup("owner@example.com")
    secret = create_token(owner)
    other.signup("other@example.com")
    [row] = token_rows()
    assert other.post(f"/account/tokens/{row.id}/revoke").status_code == 404
    assert token_rows()[0].revoked_at is None
    assert owner.http.get("/api/v1/pilots/none", headers=bearer(secret)).status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer pp_not-a-real-token",
        "Bearer not-even-our-format",
        "Bearer " + "pp_" + "a" * 500,
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "pp_missing-scheme",
    ],
)
def test_bad_authorization_headers_are_401(client, anonymous, authorization: str) -> None:
    client.signup()
    create_token(client)
    response = anonymous.get("/api/v1/pilots/none", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"] or "token" in response.json()["detail"]


def test_an_invalid_token_is_not_rescued_by_a_valid_cookie(client) -> None:
    client.signup()
    response = client.http.get("/api/v1/pilots/none", headers=bearer("pp_wrong"))
    assert response.status_code == 401


def test_cookie_api_writes_need_the_csrf_header(client) -> None:
    client.signup()
    token = client.http.headers.pop("X-CSRF-Token")
    refused = client.http.post("/api/v1/assessments", json=intake())
    assert refused.status_code == 403
    assert "another site" in refused.json()["detail"]
    with_token = {"X-CSRF-Token": token}
    created = client.http.post("/api/v1/assessments", json=intake(), headers=with_token)
    assert created.status_code == 201
    # Reads need no token.
    assert client.http.get(f"/api/v1/assessments/{created.json()['id']}").status_code == 200


def test_anonymous_api_is_401_naming_both_ways_in(client) -> None:
    response = client.http.get("/api/v1/pilots/none")
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"] and "/account/tokens" in response.json()["detail"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Give the token a name"),
        ("   ", "Give the token a name"),
        ("x" * 81, "under 80 characters"),
        ("bad\x00name", "printable"),
    ],
)
def test_token_name_is_validated(client, name: str, message: str) -> None:
    client.signup()
    response = client.post("/account/tokens", {"name": name})
    assert response.status_code == 422
    assert message in response.text
    assert token_rows() == []


def test_token_name_is_escaped(client) -> None:
    client.signup()
    create_token(client, "<script>alert(1)</script>")
    page = client.get("/account/tokens").text
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_active_tokens_are_capped(client) -> None:
    client.signup()
    with get_sessionmaker()() as session:
        user = session.scalars(select(User)).one()
        for i in range(tokens.MAX_ACTIVE_TOKENS):
            tokens.create_token(session, owner=user, name=f"t{i}")
        session.commit()
    response = client.post("/account/tokens", {"name": "one too many"})
    assert response.status_code == 409
    assert "revoke one first" in response.text


def test_openapi_declares_bearer_auth_on_every_api_operation(client) -> None:
    spec = client.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["ApiToken"]
    assert scheme == scheme | {"type": "http", "scheme": "bearer"}
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if path.startswith("/api/v1/")
    ]
    assert operations
    for path, method, op in operations:
        assert op.get("security") == [{"ApiToken": []}], (method, path)
    # HTML pages are not part of the API document.
    assert all(path.startswith("/api/v1/") for path in spec["paths"])
