"""Registered models through the real API."""

from __future__ import annotations

from tests.app.accounts.helpers import bearer, create_token


def in_models_dir(name: str) -> str:
    """A local model path under the test's own var/models, the default LOCAL_MODEL_ROOTS."""
    from app.settings import get_settings

    return str(get_settings().models_dir / name)


def register(client, **fields: object):  # type: ignore[no-untyped-def]
    body = {
        "name": "Team 8B",
        "kind": "openai_compatible",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "llama-8b",
        **fields,
    }
    return client.http.post("/api/v1/models", json=body, headers=bearer(create_token(client)))
