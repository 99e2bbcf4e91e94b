"""The after-commit job list: a job queued in a unit of work is sent once it commits, and
never when it rolls back, so a worker never looks for a row that is not there."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import queue
from app.db import session_scope


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, var_dir: Path) -> list[queue.Job]:
    jobs: list[queue.Job] = []
    monkeypatch.setattr(queue, "send", jobs.append)
    return jobs


def test_a_job_is_sent_after_the_commit_not_before(sent: list[queue.Job]) -> None:
    with session_scope() as session:
        queue.enqueue_after_commit(session, queue.RUN_PILOT, "p1")
        session.flush()
        assert sent == []  # flushed, not committed: nothing may be sent yet
    assert sent == [queue.Job(queue.RUN_PILOT, ("p1",))]


def test_a_rolled_back_unit_of_work_sends_nothing(sent: list[queue.Job]) -> None:
    with pytest.raises(RuntimeError), session_scope() as session:
        queue.enqueue_after_commit(session, queue.RUN_PILOT, "p2")
        raise RuntimeError("the request failed")
    with session_scope():
        pass
    assert sent == []


def test_a_failed_request_queues_no_pilot(client, sent: list[queue.Job]) -> None:  # type: ignore[no-untyped-def]
    from tests.app.reports.factory import scored_assessment

    client.signup()
    aid = scored_assessment(client)
    bad = client.http.post(f"/api/v1/assessments/{aid}/pilots", json={"arms": ["magic"]})
    assert bad.status_code == 422
    assert sent == []
    good = client.http.post(f"/api/v1/assessments/{aid}/pilots", json={"arms": ["fewshot"]})
    assert good.status_code == 202
    assert [(j.task, j.args) for j in sent] == [(queue.RUN_PILOT, (good.json()["id"],))]
    assert sent[0].task_id  # known beforehand, so a cancel can revoke it
    # The preparation goes to the CPU queue even for a pilot that trains: only the training
    # arm's own task goes to the GPU queue (tests/app/pilots/test_execution.py).
    assert sent[0].queue == queue.CPU_QUEUE
    trains = client.http.post(
        f"/api/v1/assessments/{aid}/pilots", json={"arms": ["fewshot", "qlora"]}
    )
    assert trains.status_code == 202
    assert (sent[-1].task, sent[-1].queue) == (queue.RUN_PILOT, queue.CPU_QUEUE)
