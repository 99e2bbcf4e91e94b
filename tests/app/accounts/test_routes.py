from __future__ import annotations

from sqlalchemy import select

from app.accounts.models import User
from app.db import get_sessionmaker


def test_signup_stores_an_argon2_hash_and_logs_in(client) -> None:
    client.signup("ana@example.com", "a long enough password")
    with get_sessionmaker()() as session:
        user = session.scalar(select(User).where(User.email == "ana@example.com"))
    assert user is not None
    assert user.password_hash.startswith("$argon2")
    assert "a long enough password" not in user.password_hash
    home = client.get("/")
    assert home.status_code == 200
    assert "ana@example.com" in home.text


def test_signup_rejects_short_password_with_field_message(client) -> None:
    response = client.post("/signup", {"email": "ana@example.com", "password": "short"})
    assert response.status_code == 422
    assert "at least 10 characters" in response.text


def test_signup_rejects_bad_email(client) -> None:
    response = client.post("/signup", {"email": "not-an-email", "password": "long enough pass"})
    assert response.status_code == 422
    assert "Enter an email address" in response.text


def test_duplicate_email_is_a_conflict(make_client) -> None:
    first, second = make_client(), make_client()
    first.signup("ana@example.com", "a long enough password")
    response = second.post("/signup", {"email": "ANA@example.com", "password": "other password 1"})
    assert response.status_code == 409
    assert "exists" in response.text


def test_login_wrong_password_is_401_and_right_one_redirects(make_client) -> None:
    make_client().signup("ana@example.com", "a long enough password")
    browser = make_client()
    bad = browser.post("/login", {"email": "ana@example.com", "password": "wrong password"})
    assert bad.status_code == 401
    assert "Email or password is wrong" in bad.text
    good = browser.post(
        "/login",
        {"email": "ana@example.com", "password": "a long enough password", "next": "/x"},
    )
    assert good.status_code == 303
    assert good.headers["location"] == "/x"


def test_login_never_redirects_off_site(make_client) -> None:
    make_client().signup("ana@example.com", "a long enough password")
    browser = make_client()
    response = browser.post(
        "/login",
        {
            "email": "ana@example.com",
            "password": "a long enough password",
            "next": "//evil.example/",
        },
    )
    assert response.headers["location"] == "/"


def test_form_without_csrf_token_is_refused(client) -> None:
    response = client.http.post(
        "/signup", data={"email": "ana@example.com", "password": "a long enough password"}
    )
    assert response.status_code == 403
    assert "Reload the page" in response.text


def test_pages_need_login(client) -> None:
    response = client.get("/")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_session_cookie_is_httponly_and_samesite_lax(client) -> None:
    response = client.post(
        "/signup", {"email": "ana@example.com", "password": "a long enough password"}
    )
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie


def test_security_headers_present(client) -> None:
    response = client.get("/login")
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["x-content-type-options"] == "nosniff"
