"""API keys at rest: Fernet-encrypted with a key derived from the app's secret.

Write-only: a key is encrypted when registered and decrypted only where a request is sent
(the worker, or the connection check). It is never rendered, logged, put in a manifest, a
report, a PDF, CLI JSON or a share link.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from app.errors import Conflict
from app.settings import Settings

# Domain separation: the same SECRET_KEY also signs session cookies.
_PURPOSE = b"pathpilot/endpoint-api-keys/v1\x00"


class KeyUnreadable(Conflict):
    """The stored key was encrypted under another SECRET_KEY."""


def _fernet(settings: Settings) -> Fernet:
    digest = hashlib.sha256(_PURPOSE + settings.resolved_secret_key().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_api_key(settings: Settings, api_key: str) -> str:
    return _fernet(settings).encrypt(api_key.encode()).decode("ascii")


def decrypt_api_key(settings: Settings, ciphertext: str, *, model_name: str) -> str:
    try:
        return _fernet(settings).decrypt(ciphertext.encode("ascii")).decode()
    except InvalidToken as error:
        raise KeyUnreadable(
            f"The API key of model '{model_name}' cannot be read: SECRET_KEY changed since it "
            "was saved. Enter the key again."
        ) from error
