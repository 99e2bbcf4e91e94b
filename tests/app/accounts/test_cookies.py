"""The session cookie: HttpOnly and SameSite=Lax always, Secure when configured."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


def session_cookie(client: TestClient) -> str:
    response = client.get("/login")
    cookies = response.headers.get_list("set-cookie")
    [cookie] = [c for c in cookies if c.startswith("pathpilot_session=")]
    return cookie.lower()


def test_cookie_is_httponly_lax_and_not_secure_by_default(client) -> None:
    cookie = session_cookie(client.http)
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie.split("; ")


def test_cookie_is_secure_when_configured(var_dir: Path) -> None:
    settings = Settings(var_dir=var_dir, secure_cookies=True)
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        cookie = session_cookie(client)
    attributes = cookie.split("; ")
    assert "secure" in attributes and "httponly" in attributes and "samesite=lax" in attributes


def test_secure_cookies_come_from_the_environment(var_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("SECURE_COOKIES", "true")
    with TestClient(create_app(Settings()), base_url="https://testserver") as client:
        assert "secure" in session_cookie(client).split("; ")


def test_the_compose_deployment_sends_the_cookie_over_https_only(
    var_dir: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """docker-compose.yml's web service, with its default SECURE_COOKIES, marks it Secure."""
    import re

    import yaml

    from tests.conftest import REPO

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    value = str(compose["services"]["web"]["environment"]["SECURE_COOKIES"])
    default = re.fullmatch(r"\$\{SECURE_COOKIES:-(\w+)\}", value)
    assert default, f"SECURE_COOKIES should be overridable with a default: {value}"
    monkeypatch.setenv("SECURE_COOKIES", default.group(1))
    with TestClient(create_app(Settings()), base_url="https://testserver") as client:
        assert "secure" in session_cookie(client).split("; ")
