"""API keys at rest: Fernet-encrypted, under ENCRYPTION_KEYS (or a key derived from SECRET_KEY).

Write-only: a key is encrypted when registered and decrypted only where a request is sent
(the worker, or the connection check). It is never rendered, logged, put in a manifest, a
report, a PDF, CLI JSON or a share link.

The encryption keys are separate from SECRET_KEY, so rotating the cookie-signing key does not
make every stored API key unreadable. ENCRYPTION_KEYS lists Fernet keys: the first encrypts,
every one decrypts (`MultiFernet`), so a new key can be put first while values stored under the
old one stay readable until `pathpilot rotate-keys` re-encrypts them. The key derived from
SECRET_KEY (what encrypted every value before ENCRYPTION_KEYS existed) always decrypts too, and
encrypts only while ENCRYPTION_KEYS is unset.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.endpoints.models import LlmModel
from app.errors import Conflict
from app.settings import Settings

# Domain separation: the same SECRET_KEY also signs session cookies.
_PURPOSE = b"pathpilot/endpoint-api-keys/v1\x00"


class KeyUnreadable(Conflict):
    """The stored key was encrypted under a key this server no longer has."""


def _derived_fernet(settings: Settings) -> Fernet:
    digest = hashlib.sha256(_PURPOSE + settings.resolved_secret_key().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _fernet(settings: Settings) -> MultiFernet:
    configured = [Fernet(key.encode("ascii")) for key in settings.resolved_encryption_keys()]
    # Last: values stored before ENCRYPTION_KEYS was set stay readable.
    return MultiFernet([*configured, _derived_fernet(settings)])


def encrypt_api_key(settings: Settings, api_key: str) -> str:
    return _fernet(settings).encrypt(api_key.encode()).decode("ascii")


def decrypt_api_key(settings: Settings, ciphertext: str, *, model_name: str) -> str:
    try:
        return _fernet(settings).decrypt(ciphertext.encode("ascii")).decode()
    except InvalidToken as error:
        raise KeyUnreadable(
            f"The API key of model '{model_name}' cannot be read: it was saved under an "
            "encryption key this server no longer has (ENCRYPTION_KEYS, or SECRET_KEY when it "
            "was saved before ENCRYPTION_KEYS was set). Enter the key again."
        ) from error


@dataclass
class Rotation:
    """What `rotate_api_keys` did: counts, and the ids of models whose key no key reads."""

    rotated: int = 0
    unreadable: list[str] = field(default_factory=list)


def rotate_api_keys(session: Session, settings: Settings) -> Rotation:
    """Re-encrypt every stored API key under the first ENCRYPTION_KEYS key; the caller commits.

    A value no configured key reads is left as it is and reported by model id (its owner must
    enter the key again); the keys themselves are never returned."""
    fernet = _fernet(settings)
    result = Rotation()
    stmt = select(LlmModel).where(LlmModel.api_key_ciphertext.is_not(None)).order_by(LlmModel.id)
    for model in session.scalars(stmt):
        stored = (model.api_key_ciphertext or "").encode("ascii")
        try:
            model.api_key_ciphertext = fernet.rotate(stored).decode("ascii")
        except InvalidToken:
            result.unreadable.append(model.id)
            continue
        result.rotated += 1
    session.flush()
    return result
