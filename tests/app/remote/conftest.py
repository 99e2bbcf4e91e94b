"""One real `pathpilot serve` (web app only: no pilot here needs to run) for the remote
client's tests, and an account with an API token made through its pages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.factories.remote import Account, running_server, sign_up_with_token


@pytest.fixture(scope="session")
def remote_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("remote") / "var", "--no-worker") as url:
        yield url


@pytest.fixture(scope="session")
def account(remote_server: str) -> Account:
    return sign_up_with_token(remote_server)
