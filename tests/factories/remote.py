"""A real `pathpilot serve` for the remote client's tests, and an account with an API token
made through its pages over HTTP, as a person makes one (sign up, then API tokens)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.app.accounts.helpers import shown_once
from tests.conftest import REPO
from tests.serving import start_serve, wait_until_healthy

PATHPILOT = Path(sys.executable).with_name("pathpilot")
EXAMPLE_INTAKE = REPO / "examples" / "intake-banking-intents.json"


@dataclass
class Account:
    server: str
    token: str
    browser: httpx.Client  # signed in with the session cookie, for the pages

    def env(self, **extra: str) -> dict[str, str]:
        """The environment `pathpilot remote` and the docs' examples read."""
        return {
            **os.environ,
            "PATHPILOT_SERVER": self.server,
            "PATHPILOT_TOKEN": self.token,
            **extra,
        }


@contextmanager
def running_server(var: Path, *args: str, **env: str) -> Iterator[str]:
    """`pathpilot serve` with `args` on a free port, its own `var`; stopped by its PID."""
    var.mkdir(parents=True, exist_ok=True)
    log_path = var / "serve.log"
    with log_path.open("w") as log:
        proc, url = start_serve(var, log, *args, **env)
        try:
            wait_until_healthy(url, proc, log_path.read_text)
            yield url
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise


def _csrf(browser: httpx.Client, page: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', browser.get(page).text)
    assert match, f"{page} has no CSRF token"
    return match.group(1)


def sign_up_with_token(server: str, email: str = "ci@example.com") -> Account:
    """A new account on `server` and one API token, both through the real pages."""
    browser = httpx.Client(base_url=server, timeout=30)
    signed_up = browser.post(
        "/signup",
        data={
            "email": email,
            "password": "a long enough password",
            "csrf_token": _csrf(browser, "/signup"),
        },
    )
    assert signed_up.status_code == 303, signed_up.text
    created = browser.post(
        "/account/tokens",
        data={"name": "CI pipeline", "csrf_token": _csrf(browser, "/account/tokens")},
    )
    assert created.status_code == 201, created.text
    return Account(server, shown_once(created.text, "new-token-value"), browser)


# `python -m app.remote`: the same commands as `pathpilot remote` without loading the server's
# and the worker's (a fifth of the start-up time, which adds up over many runs).
REMOTE_MODULE = (sys.executable, "-m", "app.remote")
PATHPILOT_REMOTE = (str(PATHPILOT), "remote")


def remote(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    command: tuple[str, ...] = REMOTE_MODULE,
) -> subprocess.CompletedProcess[str]:
    """The remote commands as a CI job runs them: a pipe, no terminal."""
    return subprocess.run(
        [*command, *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
