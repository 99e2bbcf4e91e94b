"""The Celery app publishes to the broker the current settings name, even after a change."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from app.settings import Settings
from worker.celery_app import celery_app, configure
from worker.tasks import prepare_pilot_task


def _queued_messages(broker_db: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{broker_db}")
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM kombu_message")).scalar())
    finally:
        engine.dispose()


def test_repointing_the_broker_sends_new_messages_to_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for var in (first, second):
        var.mkdir()
    monkeypatch.delenv("BROKER_URL", raising=False)
    try:
        configure(celery_app, Settings(var_dir=first))
        prepare_pilot_task.delay("pilot-one")
        configure(celery_app, Settings(var_dir=second))
        prepare_pilot_task.delay("pilot-two")
        prepare_pilot_task.delay("pilot-three")
    finally:
        configure(celery_app, Settings())
    assert _queued_messages(first / "broker.db") == 1
    assert _queued_messages(second / "broker.db") == 2
