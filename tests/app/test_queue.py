"""The after-commit job list: a job queued in a unit of work is sent once it commits, and
never when it rolls back, so a worker never looks for a row that is not there; and the outbox
that keeps a job the broker could not take until a sweep sends it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select

from app import queue
from app.db import get_engine, session_scope


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, var_dir: Path) -> list[queue.Job]:
    jobs: list[queue.Job] = []
    monkeypatch.setattr(queue, "send", jobs.append)
    return jobs


def test_a_job_is_sent_after_the_commit_not_before(sent: list[queue.Job]) -> None:
    with session_scope() as session:
        queue.enqueue_after_commit(session, queue.PREPARE_PILOT, "p1")
        session.flush()
        assert sent == []  # flushed, not committed: nothing may be sent yet
    assert sent == [queue.Job(queue.PREPARE_PILOT, ("p1",))]


def test_a_rolled_back_unit_of_work_sends_nothing(sent: list[queue.Job]) -> None:
    with pytest.raises(RuntimeError), session_scope() as session:
        queue.enqueue_after_commit(session, queue.PREPARE_PILOT, "p2")
        raise RuntimeError("the request failed")
    with session_scope():
        pass
    assert sent == []


def test_a_failed_request_queues_no_pilot(client, sent: list[queue.Job]) -> None:  # type: ignore[no-untyped-def]
    from tests.factories.assessments import scored_assessment

    client.signup()
    aid = scored_assessment(client)
    bad = client.http.post(f"/api/v1/assessments/{aid}/pilots", json={"arms": ["magic"]})
    assert bad.status_code == 422
    assert sent == []
    good = client.http.post(f"/api/v1/assessments/{aid}/pilots", json={"arms": ["fewshot"]})
    assert good.status_code == 202
    assert [(j.task, j.args) for j in sent] == [(queue.PREPARE_PILOT, (good.json()["id"],))]
    assert sent[0].task_id  # known beforehand, so a cancel can revoke it
    # The preparation goes to the CPU queue even for a pilot that trains: only the training
    # arm's own task goes to the GPU queue (tests/app/pilots/test_execution.py).
    assert sent[0].queue == queue.CPU_QUEUE
    trains = client.http.post(
        f"/api/v1/assessments/{aid}/pilots", json={"arms": ["fewshot", "qlora"]}
    )
    assert trains.status_code == 202
    assert (sent[-1].task, sent[-1].queue) == (queue.PREPARE_PILOT, queue.CPU_QUEUE)


# The outbox: a job is committed with its unit of work and kept until the broker has taken it.


def outbox() -> list[queue.Job]:
    with session_scope() as session:
        rows = session.scalars(select(queue.OutboxJob).order_by(queue.OutboxJob.created_at))
        return [row.job() for row in rows]


def age_outbox(by: timedelta, column: str = "created_at") -> None:
    """Move the outbox's timestamps back by `by` (computed here: SQLite has no date arithmetic)."""
    with session_scope() as session:
        for row in session.scalars(select(queue.OutboxJob)):
            setattr(row, column, getattr(row, column) - by)


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch, var_dir: Path) -> list[queue.Job]:
    """The broker refuses every send (Redis restarting); the jobs it was offered."""
    offered: list[queue.Job] = []

    def refuse(job: queue.Job) -> None:
        offered.append(job)
        raise ConnectionRefusedError("Error 111 connecting to the broker. Connection refused.")

    monkeypatch.setattr(queue, "send", refuse)
    return offered


def test_a_sent_job_leaves_nothing_in_the_outbox(sent: list[queue.Job]) -> None:
    with session_scope() as session:
        queue.enqueue_after_commit(session, queue.RUN_ARM, "p1", "rag", task_id="t1")
    assert sent == [queue.Job(queue.RUN_ARM, ("p1", "rag"), "t1")]
    assert outbox() == []


def test_a_rolled_back_unit_of_work_leaves_nothing_in_the_outbox(sent: list[queue.Job]) -> None:
    with pytest.raises(RuntimeError), session_scope() as session:
        queue.enqueue_after_commit(session, queue.PREPARE_PILOT, "p2")
        session.flush()  # the row is written, then rolled back with the rest
        raise RuntimeError("the request failed")
    assert outbox() == []


def test_a_job_the_broker_cannot_take_stays_in_the_outbox_and_the_commit_stands(
    broker_down: list[queue.Job],
) -> None:
    job = queue.Job(queue.CONCLUDE_PILOT, ("p3",), "t3", queue.CPU_QUEUE)
    with session_scope() as session:  # no error: the state it commits is not undone
        queue.enqueue_after_commit(session, job.task, *job.args, task_id="t3", queue="cpu")
    assert broker_down == [job]
    assert outbox() == [job]


def test_the_sweep_sends_what_stayed_once_it_is_due_and_only_once(
    broker_down: list[queue.Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope() as session:
        queue.enqueue_after_commit(session, queue.PREPARE_PILOT, "p4", task_id="t4")
    sent: list[queue.Job] = []
    monkeypatch.setattr(queue, "send", sent.append)  # the broker is back
    assert queue.send_unsent() == []  # committed just now: its own send may be under way
    assert sent == []
    age_outbox(queue.RESEND_AFTER + timedelta(seconds=1))
    assert queue.send_unsent() == [queue.Job(queue.PREPARE_PILOT, ("p4",), "t4")]
    assert sent == [queue.Job(queue.PREPARE_PILOT, ("p4",), "t4")]
    assert outbox() == []
    assert queue.send_unsent() == []
    assert len(sent) == 1


def test_a_sweep_that_cannot_send_keeps_the_job_and_others_wait_their_turn(
    broker_down: list[queue.Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope() as session:
        queue.enqueue_after_commit(session, queue.PREPARE_PILOT, "p5")
    age_outbox(queue.RESEND_AFTER + timedelta(seconds=1))
    assert queue.send_unsent() == []  # still down: tried, kept
    assert len(broker_down) == 2
    assert outbox() == [queue.Job(queue.PREPARE_PILOT, ("p5",))]
    # Another sweep right after (another worker's) leaves it to the one that took it...
    sent: list[queue.Job] = []
    monkeypatch.setattr(queue, "send", sent.append)
    assert queue.send_unsent() == []
    # ...until that one has had its time.
    age_outbox(queue.RESEND_AFTER + timedelta(seconds=1), column="resent_at")
    assert queue.send_unsent() == [queue.Job(queue.PREPARE_PILOT, ("p5",))]
    assert outbox() == []


def test_two_sweeps_at_once_take_a_job_once(
    broker_down: list[queue.Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sweep A has listed the job; before it takes it, sweep B (another worker) lists, takes
    and tries it (the broker still refuses). A's conditional UPDATE must then leave it alone."""
    with session_scope() as session:
        queue.enqueue_after_commit(session, queue.PREPARE_PILOT, "p6")
    age_outbox(queue.RESEND_AFTER + timedelta(seconds=1))
    engine = get_engine()
    interleaved: list[bool] = []

    def sweep_b_first(conn, cursor, statement: str, *args: object) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("UPDATE outbox_job") and not interleaved:
            interleaved.append(True)
            with ThreadPoolExecutor(1) as other_worker:  # its own connection and transaction
                assert other_worker.submit(queue.send_unsent).result() == []

    event.listen(engine, "before_cursor_execute", sweep_b_first)
    try:
        sent: list[queue.Job] = []
        with monkeypatch.context() as patch:
            patch.setattr(queue, "send", lambda job: (sent.append(job), queue_refuse(job)))
            assert queue.send_unsent() == []
    finally:
        event.remove(engine, "before_cursor_execute", sweep_b_first)
    assert interleaved == [True]
    assert len(sent) == 1  # B's try only: A found the job taken
    assert outbox() == [queue.Job(queue.PREPARE_PILOT, ("p6",))]


def queue_refuse(job: queue.Job) -> None:
    raise ConnectionRefusedError(f"the broker refused {job.task}")


def test_the_queues_count_their_waiting_messages_not_those_a_worker_took(var_dir: Path) -> None:
    """What the sweep compares with the steps SQL says were sent (worker.recovery)."""
    for pilot_id in ("p7", "p8"):
        queue.send(queue.Job(queue.PREPARE_PILOT, (pilot_id,), queue=queue.CPU_QUEUE))
    assert queue.messages_waiting([queue.CPU_QUEUE, queue.GPU_QUEUE]) == {"cpu": 2, "gpu": 0}
    with queue.celery_app.connection_for_write() as worker:
        # Taken and not acknowledged yet, as by a worker running it.
        assert worker.default_channel.basic_get(queue.CPU_QUEUE) is not None
        assert queue.messages_waiting([queue.CPU_QUEUE]) == {"cpu": 1}
