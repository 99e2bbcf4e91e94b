"""The worker registers every task name the web app sends, and still takes the preparation's
old name, which messages sent before an upgrade carry."""

from __future__ import annotations

from app import queue
from app.db import get_sessionmaker
from app.domain.records import PilotStage
from app.pilots.models import Pilot
from tests.conftest import WebClient
from tests.factories.pilots import signed_up_pilot


def test_every_name_the_app_sends_is_registered() -> None:
    import worker.tasks  # noqa: F401 - registers the task names
    from worker.celery_app import celery_app

    for name in (queue.PREPARE_PILOT, queue.RUN_ARM, queue.CONCLUDE_PILOT, queue.RECOVER_STALLED):
        assert name in celery_app.tasks, name


def test_a_message_under_the_old_name_prepares_the_pilot(client: WebClient) -> None:
    import worker.tasks  # noqa: F401 - registers the task names
    from worker.celery_app import celery_app

    pilot_id = signed_up_pilot(client, arms=["majority"])
    assert queue.LEGACY_PREPARE_PILOT != queue.PREPARE_PILOT
    # The task a worker runs for an old message, run here as the worker would.
    celery_app.tasks[queue.LEGACY_PREPARE_PILOT].run(pilot_id)
    with get_sessionmaker()() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        assert (pilot.status, pilot.stage) == ("running", PilotStage.arms)
