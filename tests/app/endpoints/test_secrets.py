"""Endpoint API keys at rest: ENCRYPTION_KEYS (the first encrypts, all decrypt), the key
derived from SECRET_KEY still reading what it stored, and `pathpilot rotate-keys`."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import ValidationError
from sqlalchemy import select

from app.db import get_sessionmaker
from app.endpoints.models import LlmModel
from app.endpoints.secrets import KeyUnreadable, decrypt_api_key
from app.endpoints.service import endpoint_spec
from app.settings import Settings, get_settings
from tests.app.accounts.helpers import bearer, create_token
from tests.conftest import REPO

# Fixed, so every test process collects the same parametrized tests.
K1 = base64.urlsafe_b64encode(bytes(range(32))).decode()
K2 = base64.urlsafe_b64encode(bytes(range(32, 64))).decode()


def configure(monkeypatch: pytest.MonkeyPatch, **env: str | None) -> None:
    """Restart with these variables, as an operator would (the app reads settings per use)."""
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def register(client, headers: dict[str, str], key: str) -> str:  # type: ignore[no-untyped-def]
    created = client.http.post(
        "/api/v1/models",
        json={
            "name": f"model {key[-4:]}",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "served",
            "api_key": key,
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    assert key not in created.text
    return created.json()["id"]  # type: ignore[no-any-return]


def stored(model_id: str) -> str:
    with get_sessionmaker()() as session:
        value = session.scalar(select(LlmModel.api_key_ciphertext).where(LlmModel.id == model_id))
    assert value is not None
    return value


def key_sent(model_id: str) -> str | None:
    """The key as it is decrypted to send a request to the endpoint."""
    with get_sessionmaker()() as session:
        model = session.get(LlmModel, model_id)
        assert model is not None
        return endpoint_spec(model, get_settings()).api_key


def rotate_keys() -> subprocess.CompletedProcess[str]:
    """The real command, in its own process, with this test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "rotate-keys"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


@pytest.fixture
def headers(client, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    configure(monkeypatch, ENCRYPTION_KEYS=None, SECRET_KEY="the first secret key")
    client.signup()
    return bearer(create_token(client))


def test_the_first_encryption_key_encrypts(client, headers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    configure(monkeypatch, ENCRYPTION_KEYS=f"{K1},{K2}")
    model_id = register(client, headers, "sk-first-key-encrypts")
    assert Fernet(K1.encode()).decrypt(stored(model_id).encode()) == b"sk-first-key-encrypts"
    with pytest.raises(InvalidToken):
        Fernet(K2.encode()).decrypt(stored(model_id).encode())
    # SECRET_KEY plays no part: rotating it keeps the key readable.
    configure(monkeypatch, SECRET_KEY="a rotated secret key")
    assert key_sent(model_id) == "sk-first-key-encrypts"


def test_keys_stored_before_encryption_keys_stay_readable(client, headers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model_id = register(client, headers, "sk-stored-under-secret-key")
    configure(monkeypatch, ENCRYPTION_KEYS=K1)
    assert key_sent(model_id) == "sk-stored-under-secret-key"
    # Until it is rotated it still depends on SECRET_KEY, as it did before.
    configure(monkeypatch, SECRET_KEY="a rotated secret key")
    with pytest.raises(KeyUnreadable, match=r"cannot be read.*Enter the key again"):
        key_sent(model_id)


def test_rotate_keys_moves_every_key_to_the_first_key(client, headers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    old = register(client, headers, "sk-legacy-value")
    without = client.http.post(
        "/api/v1/models",
        json={"name": "no key", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        headers=headers,
    )
    assert without.status_code == 201
    configure(monkeypatch, ENCRYPTION_KEYS=K1)
    newer = register(client, headers, "sk-newer-value")

    # K2 goes first; K1 stays until the stored values have moved.
    configure(monkeypatch, ENCRYPTION_KEYS=f"{K2},{K1}")
    done = rotate_keys()
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 2 API key(s)" in done.stdout
    for value in ("sk-legacy-value", "sk-newer-value", K1, K2, "the first secret key"):
        assert value not in done.stdout + done.stderr

    # Now only K2 is needed: K1 and SECRET_KEY can both change.
    configure(monkeypatch, ENCRYPTION_KEYS=K2, SECRET_KEY="a rotated secret key")
    assert key_sent(old) == "sk-legacy-value"
    assert key_sent(newer) == "sk-newer-value"
    assert Fernet(K2.encode()).decrypt(stored(old).encode()) == b"sk-legacy-value"


def test_rotate_keys_reports_keys_it_cannot_read(client, headers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    lost = register(client, headers, "sk-under-a-lost-key")
    # SECRET_KEY changed before the values were rotated: the SECRET_KEY-derived key is gone.
    configure(monkeypatch, ENCRYPTION_KEYS=K1, SECRET_KEY="a rotated secret key")
    kept = register(client, headers, "sk-readable")
    before = stored(lost)
    done = rotate_keys()
    assert done.returncode == 1
    assert "re-encrypted 1 API key(s)" in done.stdout
    assert f"models {lost}" in done.stderr and "enter them again" in done.stderr
    assert stored(lost) == before  # left as it was, for a key that may yet be found
    assert key_sent(kept) == "sk-readable"


def test_rotate_keys_needs_encryption_keys(var_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    configure(monkeypatch, ENCRYPTION_KEYS=None)
    done = rotate_keys()
    assert done.returncode == 2
    assert "ENCRYPTION_KEYS is not set" in done.stderr


@pytest.mark.parametrize(
    "value", ["not-a-fernet-key-but-secret", f"{K1},{K2[:-8]}"], ids=["garbage", "truncated"]
)
def test_a_malformed_key_stops_the_start_without_showing_it(
    var_dir, monkeypatch, value: str
) -> None:  # type: ignore[no-untyped-def]
    position = 1 if "," not in value else 2
    with pytest.raises(ValidationError) as raised:
        Settings(encryption_keys=value)
    message = str(raised.value)
    assert f"ENCRYPTION_KEYS: key {position} is not a Fernet key" in message
    for part in value.split(","):
        assert part not in message
    # The command line says so in one line, without the value either.
    configure(monkeypatch, ENCRYPTION_KEYS=value)
    done = rotate_keys()
    assert done.returncode == 2
    assert "pathpilot: configuration error: ENCRYPTION_KEYS:" in done.stderr
    assert f"key {position} is not a Fernet key" in done.stderr
    for part in value.split(","):
        assert part not in done.stdout + done.stderr


def test_decrypting_with_no_matching_key_names_the_model(var_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    foreign = Fernet(Fernet.generate_key()).encrypt(b"sk-elsewhere").decode()
    configure(monkeypatch, ENCRYPTION_KEYS=K1)
    with pytest.raises(KeyUnreadable, match="model 'mine'"):
        decrypt_api_key(get_settings(), foreign, model_name="mine")
