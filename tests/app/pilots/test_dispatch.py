"""Arms released to their queues a few at a time, on a real database: a queue's slots go round
the users, a freed slot (an arm finished, a pilot cancelled, or found by the sweep) is filled
at once, a held-back arm reads as queued, and a shared worker gets the quick arms first."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app import queue
from app.db import session_scope
from app.domain.records import ArmOutcome, ArmStatus
from app.pilots import dispatch, execution, service
from app.pilots.models import PilotArm
from app.settings import get_settings
from tests.app.reports.factory import pilot_data
from tests.factories.assessments import scored_assessment
from tests.factories.pilots import queue_pilot

STALE = timedelta(seconds=60)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[queue.Job]:
    """The jobs sent after each commit, kept here instead of a broker."""
    jobs: list[queue.Job] = []
    monkeypatch.setattr("app.queue.send", jobs.append)
    return jobs


def _arm_jobs(jobs: list[queue.Job]) -> list[tuple[str, str]]:
    return [(job.args[0], job.args[1]) for job in jobs if job.task == queue.RUN_ARM]


def _pilots(client, email: str, count: int, arms: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    client.signup(email=email)
    aid = scored_assessment(client)
    return [queue_pilot(client, aid, arms=arms) for _ in range(count)]


def _prepare(pilot_id: str) -> list[str]:
    """Prepare the pilot as its preparation task does; its arms released at once."""
    with session_scope() as session:
        held = service.claim(
            session, pilot_id=pilot_id, worker="prep", max_attempts=2, stalled_after=STALE
        )
        assert held is not None
        execution.store_split(
            session, pilot_id=pilot_id, lease=held.lease, data=pilot_data(), caps=[], warnings=[]
        )
        return execution.start_arms(session, pilot_id=pilot_id, lease=held.lease)


def _claim(pilot_id: str, arm: str) -> str:
    with session_scope() as session:
        claim = execution.claim_arm(
            session, pilot_id=pilot_id, arm=arm, worker="w", max_attempts=2, stalled_after=STALE
        )
    assert claim is not None
    return claim.lease


def _finish(pilot_id: str, arm: str) -> None:
    lease = _claim(pilot_id, arm)
    with session_scope() as session:
        execution.record_arm(
            session,
            pilot_id=pilot_id,
            lease=lease,
            outcome=ArmOutcome(arm=arm, status=ArmStatus.done),
            data=pilot_data(),
        )


def _row(pilot_id: str, arm: str = "majority") -> PilotArm:
    with session_scope() as session:
        row = session.scalars(
            select(PilotArm).where(PilotArm.pilot_id == pilot_id, PilotArm.arm == arm)
        ).one()
        session.expunge(row)
        return row


def _held(pilot_id: str, arm: str = "majority") -> bool:
    row = _row(pilot_id, arm)
    return (row.status, row.task_id, row.stage) == ("pending", None, "queued")


def test_a_queues_slots_go_round_the_users_and_a_freed_slot_is_filled(make_client, sent) -> None:  # type: ignore[no-untyped-def]
    first, second = make_client(), make_client()
    a1, a2, a3 = _pilots(first, "a@example.com", 3, ["majority"])
    (b1,) = _pilots(second, "b@example.com", 1, ["majority"])
    sent.clear()
    assert [_prepare(p) for p in (a1, a2, a3, b1)] == [["majority"], ["majority"], [], []]
    assert _arm_jobs(sent) == [(a1, "majority"), (a2, "majority")]  # the cpu queue's 2 slots
    assert _held(a3) and _held(b1)

    # Held back, the arm reads as queued, with its place: the other user's comes first.
    with session_scope() as session:
        assert dispatch.waiting_positions(session, pilot_id=b1) == {"majority": 1}
        assert dispatch.waiting_positions(session, pilot_id=a3) == {"majority": 2}
        assert dispatch.waiting_positions(session, pilot_id=a1) == {}
    api = second.http.get(f"/api/v1/pilots/{b1}").json()
    assert [(a["status"], a["stage"]) for a in api["arms"]] == [("pending", "queued")]
    page = second.get(f"/pilots/{b1}").text
    assert 'data-arm-status="pending"' in page and "queued (next)" in page

    # A's first arm finishes: its slot goes to B, whose pilot came after all of A's.
    sent.clear()
    _finish(a1, "majority")
    assert _arm_jobs(sent) == [(b1, "majority")]
    assert _held(a3)
    # Nothing is released twice, however often the dispatcher runs.
    sent.clear()
    with session_scope() as session:
        assert dispatch.dispatch(session) == []
    _finish(a2, "majority")
    assert _arm_jobs(sent) == [(a3, "majority")]


def test_a_cancelled_pilot_gives_its_slots_to_the_waiting_arms(make_client, sent) -> None:  # type: ignore[no-untyped-def]
    first, second = make_client(), make_client()
    a1, a2 = _pilots(first, "a@example.com", 2, ["majority"])
    (b1,) = _pilots(second, "b@example.com", 1, ["majority"])
    for pilot_id in (a1, a2, b1):
        _prepare(pilot_id)
    assert _held(b1)
    sent.clear()
    response = first.http.post(f"/api/v1/pilots/{a1}/cancel")
    assert response.status_code == 200, response.text
    assert _arm_jobs(sent) == [(b1, "majority")]


def test_the_sweep_releases_an_arm_whose_slot_freed_without_a_release(client, sent) -> None:  # type: ignore[no-untyped-def]
    from worker.recovery import recover_stalled

    a1, a2, a3 = _pilots(client, "a@example.com", 3, ["majority"])
    for pilot_id in (a1, a2, a3):
        _prepare(pilot_id)
    assert _held(a3)
    # A slot freed in a transaction that released nothing (as if its release rolled back).
    with session_scope() as session:
        session.execute(
            update(PilotArm)
            .where(PilotArm.pilot_id == a1)
            .values(status=ArmStatus.failed, task_id=None)
        )
    sent.clear()
    recover_stalled(get_settings())
    assert _arm_jobs(sent) == [(a3, "majority")]
    assert _row(a3).task_id is not None


def test_a_shared_worker_gets_the_quick_arms_before_the_training_arm(
    client,  # type: ignore[no-untyped-def]
    sent,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (pilot_id,) = _pilots(client, "a@example.com", 1, ["majority", "fewshot", "qlora"])
    sent.clear()
    assert sorted(_prepare(pilot_id)) == ["fewshot", "majority"]
    assert _held(pilot_id, "qlora")
    _claim(pilot_id, "majority")
    assert _held(pilot_id, "qlora")  # the few-shot arm is still in the broker
    sent.clear()
    _claim(pilot_id, "fewshot")
    assert [(job.args[1], job.queue) for job in sent] == [("qlora", queue.GPU_QUEUE)]


def test_separate_workers_get_the_training_arm_at_once(client, sent, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QUEUES_SHARE_A_WORKER", "false")
    get_settings.cache_clear()
    (pilot_id,) = _pilots(client, "a@example.com", 1, ["majority", "fewshot", "qlora"])
    sent.clear()
    assert _prepare(pilot_id) == ["majority", "fewshot", "qlora"]
    queues = {job.args[1]: job.queue for job in sent}
    assert queues == {"majority": "cpu", "fewshot": "cpu", "qlora": "gpu"}
