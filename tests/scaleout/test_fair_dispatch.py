"""The dispatcher on a real Celery worker, Redis and PostgreSQL: a second user's pilot is not
served after all of a first user's, and a worker that takes both queues runs a pilot's quick
arms before its training arm."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import select

from app.db import get_sessionmaker
from app.pilots.models import Pilot, PilotArm
from tests.factories.assessments import scored_assessment, tiny_sample
from tests.factories.pilots import queue_pilot
from tests.factories.scaleout import FINISHED, arm, assessment_with_sample, wait_until
from tests.scaleout.servers import Fleet, stop

pytestmark = pytest.mark.slow


def _statuses(ids: list[str]) -> list[str]:
    with get_sessionmaker()() as session:
        return list(session.scalars(select(Pilot.status).where(Pilot.id.in_(ids))).all())


def test_a_second_users_pilot_is_not_run_after_all_of_the_first_users(
    make_client,  # type: ignore[no-untyped-def]
    fleet: Fleet,
) -> None:
    first, second = make_client(), make_client()
    first.signup(email="a@example.com")
    second.signup(email="b@example.com")
    a_aid = scored_assessment(first, sample=tiny_sample())
    b_aid = scored_assessment(second, sample=tiny_sample())
    mine = [queue_pilot(first, a_aid, max_train=24, arms=["majority"]) for _ in range(3)]
    theirs = queue_pilot(second, b_aid, max_train=24, arms=["majority"])
    fleet.start_worker("w1")  # one worker, both queues
    ids = [*mine, theirs]
    wait_until(lambda: set(_statuses(ids)) <= set(FINISHED), 180, fleet, "every pilot finished")
    assert _statuses(ids) == ["done"] * 4, fleet.logs()
    with get_sessionmaker()() as session:
        rows = session.execute(
            select(PilotArm.pilot_id, PilotArm.started_at).where(PilotArm.pilot_id.in_(ids))
        ).all()
    started = {pilot_id: at for pilot_id, at in rows if at is not None}
    assert len(started) == 4, rows
    order = sorted(ids, key=started.__getitem__)
    # First come, first served would run B's last: its arm takes the first slot that frees.
    assert order.index(theirs) < order.index(mine[2]), order
    assert order[:2] == mine[:2]  # the two slots of the cpu queue, taken before B came


def test_one_worker_runs_a_pilots_quick_arms_before_its_training_arm(client, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    aid = assessment_with_sample(client)
    pilot_id = queue_pilot(client, aid, max_train=24, arms=["majority", "fewshot", "qlora"])
    worker = fleet.start_worker("w1")  # both queues, one arm at a time

    def training_started() -> bool:
        return arm(pilot_id, "qlora").status != "pending"

    wait_until(training_started, 240, fleet, "the training arm started")
    qlora = arm(pilot_id, "qlora")
    stop(worker, signal.SIGKILL)  # no need to train here
    quick = [arm(pilot_id, name) for name in ("majority", "fewshot")]
    assert [a.status for a in quick] == ["done", "done"], [(a.arm, a.error) for a in quick]
    assert qlora.started_at is not None
    assert all(a.finished_at is not None and a.finished_at <= qlora.started_at for a in quick)
