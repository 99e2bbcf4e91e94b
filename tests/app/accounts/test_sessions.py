"""Sessions can be ended: "log out everywhere" and a password change end every copy of a
session cookie, through the server-side session version the cookie carries."""

from __future__ import annotations

import base64
import copy
import json

import itsdangerous
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.accounts.models import User
from app.db import get_sessionmaker
from app.settings import get_settings
from tests.app.accounts.helpers import bearer, create_token

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple battery horse correct"


def copy_of(client) -> TestClient:  # type: ignore[no-untyped-def]
    """Another browser holding a copy of the client's session cookie (a stolen cookie)."""
    thief = TestClient(client.http.app, follow_redirects=False)
    # The cookie as the jar holds it (domain and path too), so the server can clear it.
    for cookie in client.http.cookies.jar:
        thief.cookies.jar.set_cookie(copy.copy(cookie))
    return thief


def signed_in(http: TestClient) -> bool:
    response = http.get("/account")
    if response.status_code == 303:
        assert response.headers["location"] == "/login?next=/account"
        return False
    assert response.status_code == 200, response.text
    return True


def session_version() -> int:
    with get_sessionmaker()() as session:
        return session.scalars(select(User.session_version)).one()


def log_in(client, password: str) -> int:  # type: ignore[no-untyped-def]
    response = client.post("/login", {"email": "lead@example.com", "password": password})
    return response.status_code


def test_account_page_needs_login_and_is_not_cached(client) -> None:  # type: ignore[no-untyped-def]
    assert not signed_in(client.http)
    client.signup()
    page = client.get("/account")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "lead@example.com" in page.text
    assert 'action="/account/password"' in page.text
    assert 'action="/account/logout-everywhere"' in page.text


def test_log_out_everywhere_ends_every_copy_of_the_cookie(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    thief = copy_of(client)
    assert signed_in(thief)
    # A plain log-out ends only the browser that asks: the copy was signed, not stored.
    other = copy_of(client)
    assert other.post("/logout", data={"csrf_token": client.csrf()}).status_code == 303
    assert not signed_in(other)
    assert signed_in(thief)

    before = session_version()
    response = client.post("/account/logout-everywhere")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert session_version() == before + 1
    assert not signed_in(client.http)
    assert not signed_in(thief)
    # The JSON API refuses the copy too (it falls back to the cookie without a token).
    assert thief.get("/api/v1/models").status_code == 401
    # Logging in again starts a session of the new version.
    assert log_in(client, PASSWORD) == 303
    assert signed_in(client.http)
    assert not signed_in(thief)


def test_the_stale_cookie_is_cleared_on_its_next_request(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    thief = copy_of(client)
    client.post("/account/logout-everywhere")
    response = thief.get("/account")
    assert response.status_code == 303
    [cookie] = [
        c for c in response.headers.get_list("set-cookie") if c.startswith("pathpilot_session=")
    ]
    assert "user_id" not in _session_data(cookie.split(";")[0].split("=", 1)[1])


def test_log_out_everywhere_leaves_api_tokens_working(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    secret = create_token(client)
    client.post("/account/logout-everywhere")
    anonymous = TestClient(client.http.app)
    assert anonymous.get("/api/v1/models", headers=bearer(secret)).status_code == 200


def test_password_change_needs_the_current_password(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    before = session_version()
    wrong = client.post(
        "/account/password",
        {"current_password": "not my password", "new_password": NEW_PASSWORD},
    )
    assert wrong.status_code == 403
    assert "The current password is wrong." in wrong.text
    short = client.post(
        "/account/password", {"current_password": PASSWORD, "new_password": "short"}
    )
    assert short.status_code == 422
    assert "Use at least 10 characters" in short.text
    assert session_version() == before
    client.logout()
    assert log_in(client, PASSWORD) == 303
    assert log_in(client, NEW_PASSWORD) == 401


def test_password_change_ends_other_sessions_and_keeps_this_one(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    thief = copy_of(client)
    changed = client.post(
        "/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert changed.status_code == 200, changed.text
    assert 'id="password-changed"' in changed.text
    assert changed.headers["cache-control"] == "no-store"
    assert signed_in(client.http)
    assert not signed_in(thief)
    client.logout()
    assert log_in(client, PASSWORD) == 401
    assert log_in(client, NEW_PASSWORD) == 303


def test_wrong_current_passwords_are_throttled_like_log_ins(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    form = {"current_password": "guess", "new_password": NEW_PASSWORD}
    answers = [client.post("/account/password", form).status_code for _ in range(6)]
    assert answers == [403] * 5 + [429]
    # Throttled before the password is checked: even the right one waits.
    right = client.post(
        "/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0


def test_password_and_log_out_everywhere_need_csrf(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    before = session_version()
    for url, form in (
        ("/account/logout-everywhere", {}),
        ("/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    ):
        response = client.http.post(url, data={**form, "csrf_token": "forged"})
        assert response.status_code == 403, url
    assert session_version() == before
    assert signed_in(client.http)


def _session_data(cookie_value: str) -> dict[str, object]:
    signer = itsdangerous.TimestampSigner(get_settings().resolved_secret_key())
    return json.loads(base64.b64decode(signer.unsign(cookie_value.encode())))  # type: ignore[no-any-return]


def test_a_cookie_from_before_session_versions_is_logged_out(client) -> None:  # type: ignore[no-untyped-def]
    """A cookie signed before the upgrade carries no version: it logs in once more."""
    client.signup()
    data = _session_data(client.http.cookies["pathpilot_session"])
    assert data["session_version"] == 1
    del data["session_version"]
    signer = itsdangerous.TimestampSigner(get_settings().resolved_secret_key())
    old = signer.sign(base64.b64encode(json.dumps(data).encode())).decode()
    browser = TestClient(client.http.app, follow_redirects=False)
    browser.cookies.set("pathpilot_session", old)
    assert not signed_in(browser)
