"""Base URLs stored before the egress policy lose their credentials, query and fragment on
upgrade (migration b8e4a1c6d2f0): the secret is gone from the database and from every answer,
and the model says why its check failed."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from tests.app.accounts.helpers import bearer, create_token
from tests.conftest import WebClient

STORED = {
    "userinfo": (
        "http://team:hunter2-secret@models.example.com:8000/v1",
        "http://models.example.com:8000/v1",
    ),
    "query": ("https://api.example.com/v1?key=hunter2-secret", "https://api.example.com/v1"),
    "fragment": ("https://api.example.com/v1/#hunter2-secret", "https://api.example.com/v1"),
    "ipv6": ("http://u:hunter2-secret@[fd00::5]:8000/v1?x=1", "http://[fd00::5]:8000/v1"),
    "clean": ("https://api.example.com/v1", "https://api.example.com/v1"),
}


def test_upgrade_removes_secrets_from_stored_base_urls(var_dir: Path, client: WebClient) -> None:
    from alembic import command

    from app.db import get_engine
    from app.migrate import alembic_config

    client.signup()
    headers = bearer(create_token(client))
    command.downgrade(alembic_config(), "e7b2c9d4f815")
    get_engine().dispose()
    insert = sa.text(
        "INSERT INTO llm_model (id, owner_id, name, kind, base_url, model, max_concurrency, "
        "deployment, created_at) VALUES (:id, 1, :id, 'openai_compatible', :url, 'm', 4, "
        ":no, '2026-12-01 00:00:00')"
    )
    with get_engine().begin() as connection:
        for name, (url, _) in STORED.items():
            connection.execute(insert, {"id": name, "url": url, "no": False})
    command.upgrade(alembic_config(), "head")
    get_engine().dispose()

    with get_engine().connect() as connection:
        rows = {
            row.id: row
            for row in connection.execute(
                sa.text("SELECT id, base_url, check_ok, check_message FROM llm_model")
            )
        }
        dump = repr([tuple(r) for r in connection.execute(sa.text("SELECT * FROM llm_model"))])
    assert {name: row.base_url for name, row in rows.items()} == {
        name: clean for name, (_, clean) in STORED.items()
    }
    assert "hunter2-secret" not in dump
    for name in ("userinfo", "query", "fragment", "ipv6"):
        assert rows[name].check_ok is False or rows[name].check_ok == 0
        assert "removed when PathPilot was upgraded" in rows[name].check_message
    assert rows["clean"].check_ok is None and rows["clean"].check_message is None

    listed = client.http.get("/api/v1/models", headers=headers)
    assert listed.status_code == 200
    assert "hunter2-secret" not in listed.text
    assert "removed when PathPilot was upgraded" in listed.text
    assert "hunter2-secret" not in client.get("/models").text
