"""A worker killed mid-pilot: the pilot is re-run or failed with a reason, never stuck."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db import get_sessionmaker, utcnow
from app.pilots.models import ArmExecution, Pilot, PilotArm
from app.serve import worker_command
from tests.conftest import REPO
from tests.factories.assessments import scored_assessment
from tests.factories.pilots import TINY, tiny_pilot, wait_for


def _orphan(pilot_id: str, *, attempts: int) -> None:
    """Make the pilot look like its worker died ten minutes ago, while preparing it."""
    with get_sessionmaker()() as session, session.begin():
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        pilot.status, pilot.stage = "running", "preparing"
        pilot.attempts = attempts
        pilot.heartbeat_at = utcnow() - timedelta(minutes=10)


def test_stalled_pilot_is_requeued_then_failed_past_the_attempt_limit(client) -> None:
    from app.settings import get_settings
    from worker.recovery import recover_stalled

    client.signup()
    _, pilot_id = tiny_pilot(client, ["fewshot"])
    _orphan(pilot_id, attempts=1)
    requeued, failed = recover_stalled(get_settings())
    assert (requeued, failed) == ([pilot_id], [])
    with get_sessionmaker()() as session:
        pilot = session.get(Pilot, pilot_id)
        arm = session.scalars(select(PilotArm).where(PilotArm.pilot_id == pilot_id)).one()
    assert pilot is not None and pilot.status == "queued" and arm.status == "pending"

    _orphan(pilot_id, attempts=get_settings().pilot_max_attempts)
    requeued, failed = recover_stalled(get_settings())
    assert (requeued, failed) == ([], [pilot_id])
    with get_sessionmaker()() as session:
        pilot = session.get(Pilot, pilot_id)
    assert pilot is not None and pilot.status == "failed"
    assert "worker stopped" in (pilot.error or "")


def test_fresh_running_pilot_is_left_alone(client) -> None:
    from app.settings import get_settings
    from worker.recovery import recover_stalled

    client.signup()
    _, pilot_id = tiny_pilot(client, ["fewshot"])
    with get_sessionmaker()() as session, session.begin():
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        pilot.status, pilot.attempts, pilot.heartbeat_at = "running", 1, utcnow()
    assert recover_stalled(get_settings()) == ([], [])


# A message the broker lost after taking it (kombu's Redis transport between BRPOP and filing
# it as unacknowledged; tests/scaleout loses them from a real Redis): SQL still says queued.


def _take_messages(
    queue_name: str, limit: int | None = None
) -> list[tuple[str, tuple[str, ...], str]]:
    """Take the messages waiting in a queue (every one, or the `limit` oldest), as a worker
    whose broker then lost them would; (task, args, task id) of each, oldest first."""
    from app.queue import celery_app

    taken = []
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        while len(taken) != limit and (message := channel.basic_get(queue_name, no_ack=True)):
            args, _kwargs, _embed = message.decode()
            taken.append((message.headers["task"], tuple(args), message.headers["id"]))
    return taken


def _sent_minutes_ago(pilot_id: str, minutes: int) -> None:
    """Date the pilot's sends back (computed here: SQLite has no date arithmetic)."""
    with get_sessionmaker()() as session, session.begin():
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        pilot.created_at = utcnow() - timedelta(minutes=minutes)
        for arm in session.scalars(select(PilotArm).where(PilotArm.pilot_id == pilot_id)):
            arm.updated_at = utcnow() - timedelta(minutes=minutes)


def test_a_queued_pilot_whose_message_was_lost_is_sent_again_once(client) -> None:
    from app.queue import CPU_QUEUE, PREPARE_PILOT, messages_waiting
    from app.settings import get_settings
    from worker.recovery import recover_stalled

    client.signup()
    _, pilot_id = tiny_pilot(client, ["fewshot"])
    _sent_minutes_ago(pilot_id, 10)
    # Waiting its turn for ten minutes behind long pilots is no loss: its message is there.
    assert recover_stalled(get_settings()) == ([], [])
    [(task, args, task_id)] = _take_messages(CPU_QUEUE)
    assert (task, args) == (PREPARE_PILOT, (pilot_id,))

    # Taken and lost on the way: the sweep sends the same delivery again.
    assert recover_stalled(get_settings()) == ([pilot_id], [])
    assert _take_messages(CPU_QUEUE) == [(PREPARE_PILOT, (pilot_id,), task_id)]
    with get_sessionmaker()() as session:
        pilot = session.get(Pilot, pilot_id)
    assert pilot is not None and (pilot.status, pilot.attempts) == ("queued", 0)
    # Sent just now, it is not lost yet: the next sweeps leave it alone, and ask no broker.
    assert recover_stalled(get_settings()) == ([], [])
    assert messages_waiting([CPU_QUEUE]) == {CPU_QUEUE: 0}


def test_only_the_steps_whose_messages_left_the_queue_are_sent_again(client) -> None:
    """The queue hands out the oldest first: holding one message for two waiting pilots, it
    holds the newer one's."""
    from app.queue import CPU_QUEUE, PREPARE_PILOT
    from app.settings import get_settings
    from worker.recovery import recover_stalled

    client.signup()
    _, older = tiny_pilot(client, ["fewshot"])
    _, newer = tiny_pilot(client, ["fewshot"])
    _sent_minutes_ago(older, 10)
    _sent_minutes_ago(newer, 5)
    assert [args for _, args, _ in _take_messages(CPU_QUEUE, limit=1)] == [(older,)]
    assert recover_stalled(get_settings()) == ([older], [])
    assert [(task, args) for task, args, _ in _take_messages(CPU_QUEUE)] == [
        (PREPARE_PILOT, (newer,)),
        (PREPARE_PILOT, (older,)),
    ]


def test_a_sent_arm_whose_message_was_lost_is_sent_again(client) -> None:
    from app.queue import CPU_QUEUE, RUN_ARM
    from app.settings import get_settings
    from worker.recovery import recover_stalled

    client.signup()
    _, pilot_id = tiny_pilot(client, ["fewshot"])
    _take_messages(CPU_QUEUE)  # the preparation's, as a worker takes it
    with get_sessionmaker()() as session, session.begin():
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        pilot.status, pilot.stage, pilot.attempts = "running", "arms", 0
        arm = session.scalars(select(PilotArm).where(PilotArm.pilot_id == pilot_id)).one()
        arm.task_id = "arm-task"  # sent, and its message lost on the way to a worker
    _sent_minutes_ago(pilot_id, 10)
    assert recover_stalled(get_settings()) == ([f"{pilot_id}/fewshot"], [])
    assert _take_messages(CPU_QUEUE) == [(RUN_ARM, (pilot_id, "fewshot"), "arm-task")]
    assert recover_stalled(get_settings()) == ([], [])


def _spawn_worker(var_dir: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = var_dir / f"{name}.log"
    log = open(log_path, "w")  # noqa: SIM115 - the process owns it until it exits
    proc = subprocess.Popen(
        worker_command(), cwd=REPO, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT
    )
    return proc, log_path


@pytest.mark.slow
@pytest.mark.server  # Celery worker processes
def test_sigkill_during_qlora_then_restart_completes(
    client, var_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {**TINY, "PILOT_STALLED_AFTER_S": "2"}.items():
        monkeypatch.setenv(key, value)
    from app.settings import get_settings

    get_settings.cache_clear()
    client.signup()
    aid, pilot_id = tiny_pilot(client, ["fewshot", "qlora"])
    other_aid = scored_assessment(client)  # unrelated data that must survive

    first, first_log = _spawn_worker(var_dir, "worker-1")
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with get_sessionmaker()() as session:
                arm = session.scalars(
                    select(PilotArm).where(PilotArm.pilot_id == pilot_id, PilotArm.arm == "qlora")
                ).one()
                if arm.status == "running" and arm.stage == "training" and arm.step >= 1:
                    break
            assert first.poll() is None, first_log.read_text()[-3000:]
            time.sleep(1)
        else:
            raise AssertionError("QLoRA never started training:\n" + first_log.read_text()[-3000:])
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()

    with get_sessionmaker()() as session:
        pilot = session.get(Pilot, pilot_id)
        qlora = session.scalars(
            select(PilotArm).where(PilotArm.pilot_id == pilot_id, PilotArm.arm == "qlora")
        ).one()
    assert pilot is not None and pilot.status == "running"  # orphaned, as a dead worker leaves it
    assert qlora.status == "running"

    time.sleep(3)  # let the heartbeat go stale
    second, second_log = _spawn_worker(var_dir, "worker-2")
    try:
        pilot = wait_for(pilot_id, timeout_s=900)
    finally:
        os.kill(second.pid, signal.SIGTERM)
        second.wait(timeout=60)
    assert pilot.status == "done", (pilot.error, second_log.read_text()[-3000:])
    with get_sessionmaker()() as session:
        arms = session.scalars(select(PilotArm).where(PilotArm.pilot_id == pilot_id)).all()
        executions = session.scalars(
            select(ArmExecution).where(ArmExecution.pilot_id == pilot_id).order_by(ArmExecution.id)
        ).all()
    assert {a.arm: a.status for a in arms} == {"fewshot": "done", "qlora": "done"}
    # Only the killed arm ran again: fewshot once, qlora twice (the first never finished).
    assert {a.arm: a.attempts for a in arms} == {"fewshot": 1, "qlora": 2}
    assert [e.outcome for e in executions if e.arm == "fewshot"] == ["done"]
    assert [e.outcome for e in executions if e.arm == "qlora"] == [None, "done"]
    assert client.http.get(f"/api/v1/assessments/{other_aid}").status_code == 200
    assert client.http.get(f"/api/v1/assessments/{aid}").json()["result"] is not None
