"""Several real workers on Redis and PostgreSQL: each arm runs once, a dead worker's pilot
recovers without any restart, and a cancelled pilot frees its worker within seconds."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app import queue
from app.db import get_sessionmaker
from app.pilots.models import ArmExecution, MetricRow, Pilot, PilotArm
from app.queue import OutboxJob
from tests.factories.pilots import queue_pilot
from tests.factories.scaleout import (
    FINISHED,
    arm,
    arm_running,
    assessment_with_sample,
    pilot,
    wait_until,
)
from tests.scaleout.servers import Fleet, Redis, stop

pytestmark = pytest.mark.slow


def test_pilots_share_three_workers_and_each_arm_runs_once(client, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    aid = assessment_with_sample(client)
    ids = [queue_pilot(client, aid, max_train=24, arms=["majority"]) for _ in range(20)]
    # A second delivery of every pilot and of its arm, as a broker's redelivery would make:
    # they race for the claims on different workers, and only one may run each step.
    for pilot_id in ids:
        queue.send(queue.Job(queue.PREPARE_PILOT, (pilot_id,), queue=queue.CPU_QUEUE))
        queue.send(queue.Job(queue.RUN_ARM, (pilot_id, "majority"), queue=queue.CPU_QUEUE))
    for name in ("w1", "w2", "w3"):
        fleet.start_worker(name)

    def all_finished() -> bool:
        with get_sessionmaker()() as session:
            statuses = session.scalars(select(Pilot.status).where(Pilot.id.in_(ids))).all()
        return all(s in FINISHED for s in statuses)

    wait_until(all_finished, 240, fleet, "20 pilots finished")
    with get_sessionmaker()() as session:
        pilots = session.scalars(select(Pilot).where(Pilot.id.in_(ids))).all()
        arms = session.scalars(select(PilotArm).where(PilotArm.pilot_id.in_(ids))).all()
        per_lease = session.execute(
            select(ArmExecution.pilot_id, ArmExecution.arm, ArmExecution.lease, func.count())
            .where(ArmExecution.pilot_id.in_(ids))
            .group_by(ArmExecution.pilot_id, ArmExecution.arm, ArmExecution.lease)
        ).all()
        executions = session.scalars(
            select(ArmExecution).where(ArmExecution.pilot_id.in_(ids))
        ).all()
    assert [p.status for p in pilots] == ["done"] * 20, [(p.status, p.error) for p in pilots]
    assert all(p.attempts == 1 for p in pilots) and all(a.attempts == 1 for a in arms)
    # Every arm of every pilot executed exactly once, under the lease of its one attempt.
    assert len(per_lease) == 20 and all(count == 1 for *_, count in per_lease)
    assert Counter((e.pilot_id, e.arm) for e in executions) == {(i, "majority"): 1 for i in ids}
    assert all(e.outcome == "done" and e.finished_at is not None for e in executions)
    # Several workers shared the load.
    assert len({a.claimed_by for a in arms}) >= 2, Counter(a.claimed_by for a in arms)


def test_one_pilots_arms_run_at_the_same_time_on_two_workers(client, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    aid = assessment_with_sample(client)
    pilot_id = queue_pilot(client, aid, max_train=24, arms=["fewshot", "rag"])
    fleet.start_worker("w1")
    fleet.start_worker("w2")

    def both_running() -> bool:
        return arm_running(pilot_id, "fewshot") and arm_running(pilot_id, "rag")

    wait_until(both_running, 180, fleet, "both arms running at once")
    # The pilot page shows them running side by side.
    page = client.get(f"/pilots/{pilot_id}").text
    assert page.count('data-arm-status="running"') == 2, page
    wait_until(lambda: pilot(pilot_id).status in FINISHED, 240, fleet, "the pilot finished")
    final = pilot(pilot_id)
    assert final.status == "done", (final.error, fleet.logs())
    executions = _executions(pilot_id)
    assert sorted(e.arm for e in executions) == ["fewshot", "rag"]
    first, second = executions
    assert first.worker != second.worker
    assert first.finished_at is not None and second.finished_at is not None
    assert first.started_at < second.finished_at and second.started_at < first.finished_at


def test_a_killed_workers_pilot_is_finished_by_another_without_a_restart(
    client,  # type: ignore[no-untyped-def]
    fleet: Fleet,
) -> None:
    aid = assessment_with_sample(client)
    pilot_id = queue_pilot(client, aid, max_train=24, arms=["fewshot"])
    fleet.start_worker("w1")
    fleet.start_worker("w2")
    fleet.start_beat()
    wait_until(lambda: arm_running(pilot_id, "fewshot"), 120, fleet, "the arm running")

    first = arm(pilot_id, "fewshot")
    assert first.attempts == 1 and first.claimed_by is not None
    victim_pid = int(first.claimed_by.rsplit(":", 1)[1])
    victim = fleet.by_pid(victim_pid)
    survivor = next(name for name in fleet.workers if name != victim)
    os.kill(victim_pid, signal.SIGKILL)
    killed_at = time.monotonic()

    # Stale after 3 s, swept every 2 s: claimed again within the threshold plus two sweeps.
    def reclaimed() -> bool:
        row = arm(pilot_id, "fewshot")
        return row.attempts == 2 and row.status == "running"

    wait_until(reclaimed, 3 + 2 * 2 + 3, fleet, "the pilot reclaimed")
    reclaim_s = time.monotonic() - killed_at
    wait_until(lambda: pilot(pilot_id).status in FINISHED, 240, fleet, "the pilot finished")

    final = pilot(pilot_id)
    assert final.status == "done", (final.error, fleet.logs())
    rerun = arm(pilot_id, "fewshot")
    assert rerun.claimed_by is not None
    assert rerun.claimed_by.endswith(f":{fleet.workers[survivor].pid}")
    assert fleet.workers[survivor].poll() is None  # never restarted
    with get_sessionmaker()() as session:
        executions = session.scalars(
            select(ArmExecution).where(ArmExecution.pilot_id == pilot_id).order_by(ArmExecution.id)
        ).all()
    # The dead attempt's execution never finished; the new lease ran the arm once, to the end.
    assert [(e.lease == first.lease, e.outcome) for e in executions] == [
        (True, None),
        (False, "done"),
    ], reclaim_s
    assert executions[1].worker.endswith(f":{fleet.workers[survivor].pid}")


def test_a_cancelled_pilot_frees_its_worker_within_seconds(client, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    aid = assessment_with_sample(client)
    pilot_id = queue_pilot(client, aid, max_train=24, arms=["fewshot", "rag"])
    fleet.start_worker("w1")
    wait_until(lambda: arm_running(pilot_id, "fewshot"), 120, fleet, "the arm running")
    worker_pid = fleet.workers["w1"].pid

    response = client.http.post(f"/api/v1/pilots/{pilot_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    cancelled_at = time.monotonic()

    def stopped() -> ArmExecution | None:
        with get_sessionmaker()() as session:
            execution = session.scalars(
                select(ArmExecution).where(ArmExecution.pilot_id == pilot_id)
            ).one()
            return execution if execution.outcome == "stopped" else None

    # A running attempt stops at its next progress point: one decoding step, or the prefill
    # of the batch under way (a few seconds for this pilot's small batch on two CPU cores).
    execution = wait_until(stopped, 10, fleet, "the worker stopping the cancelled arm")
    stop_s = time.monotonic() - cancelled_at
    assert execution.arm == "fewshot"
    final = pilot(pilot_id)
    assert final.status == "cancelled" and final.error == "Cancelled by its owner."
    with get_sessionmaker()() as session:
        arms = session.scalars(select(PilotArm).where(PilotArm.pilot_id == pilot_id)).all()
    assert sorted((a.arm, a.status) for a in arms) == [("fewshot", "failed"), ("rag", "failed")]

    # The same worker takes new work at once.
    next_id = queue_pilot(client, aid, max_train=24, arms=["majority"])
    wait_until(lambda: pilot(next_id).status in FINISHED, 60, fleet, "the next pilot finished")
    after = pilot(next_id)
    assert after.status == "done" and after.claimed_by is not None
    assert after.claimed_by.endswith(f":{worker_pid}"), stop_s
    assert "rag" not in {e.arm for e in _executions(pilot_id)}  # never started


def _executions(pilot_id: str) -> list[ArmExecution]:
    with get_sessionmaker()() as session:
        return list(
            session.scalars(select(ArmExecution).where(ArmExecution.pilot_id == pilot_id)).all()
        )


def test_training_pilots_go_only_to_workers_that_take_the_gpu_queue(client, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    aid = assessment_with_sample(client)
    trains = queue_pilot(client, aid, max_train=24, arms=["majority", "qlora"])
    light = queue_pilot(client, aid, max_train=24, arms=["majority"])
    cpu = fleet.start_worker("cpu-only", queues="cpu")
    wait_until(lambda: pilot(light).status in FINISHED, 120, fleet, "the cpu pilot finished")
    assert pilot(light).status == "done"
    # The training pilot is prepared and its CPU arm runs there; its training arm waits.
    wait_until(lambda: arm(trains, "majority").status == "done", 60, fleet, "the cpu arm")
    time.sleep(2)  # the cpu worker is idle, and still never takes the training arm
    assert (arm(trains, "qlora").status, arm(trains, "qlora").attempts) == ("pending", 0)
    assert (pilot(trains).status, pilot(trains).stage) == ("running", "arms")
    assert pilot(trains).claimed_by is not None
    assert pilot(trains).claimed_by.endswith(f":{cpu.pid}")  # the preparation

    gpu = fleet.start_worker("gpu", queues="gpu")
    wait_until(lambda: arm(trains, "qlora").status == "running", 60, fleet, "the gpu claiming")
    claimed = arm(trains, "qlora").claimed_by
    assert claimed is not None and claimed.endswith(f":{gpu.pid}")
    stop(gpu, signal.SIGKILL)  # no need to train here


def test_no_pilot_is_lost_when_redis_restarts_during_a_run(  # type: ignore[no-untyped-def]
    client, fleet: Fleet, redis_server: Redis, tmp_path: Path
) -> None:
    aid = assessment_with_sample(client)
    ids = [queue_pilot(client, aid, max_train=24, arms=["majority"]) for _ in range(10)]

    def statuses() -> list[str]:
        with get_sessionmaker()() as session:
            return list(session.scalars(select(Pilot.status).where(Pilot.id.in_(ids))).all())

    # First with no worker yet: every pilot is a message that only Redis holds.
    redis_server.restart(tmp_path)
    fleet.start_worker("w1")
    fleet.start_beat()
    # Then down for seconds, as a real restart is, from the worker's first claim, with the rest
    # still queued: what the worker sends meanwhile (the claimed pilot's arm) cannot reach
    # Redis. (A fast machine runs one of these pilots in tens of milliseconds: a tight poll.)
    deadline = time.monotonic() + 180
    while set(statuses()) == {"queued"}:
        assert time.monotonic() < deadline, fleet.logs()
        time.sleep(0.02)
    redis_server.stop()
    # A pilot started while Redis is down: the request still succeeds, its job waits in the
    # outbox (committed with the pilot) until a sweep can send it.
    ids.append(queue_pilot(client, aid, max_train=24, arms=["majority"]))
    with get_sessionmaker()() as session:
        assert session.scalar(select(func.count()).select_from(OutboxJob)) >= 1
    time.sleep(3)
    redis_server.start_again(tmp_path)
    wait_until(lambda: all(s in FINISHED for s in statuses()), 240, fleet, "every pilot finished")
    assert statuses() == ["done"] * len(ids), fleet.logs()
    with get_sessionmaker()() as session:
        assert session.scalar(select(func.count()).select_from(OutboxJob)) == 0


def test_pilots_whose_messages_redis_lost_are_sent_again(  # type: ignore[no-untyped-def]
    client, fleet: Fleet, redis_server: Redis
) -> None:
    """Kombu's Redis transport takes a message in two commands: BRPOP removes it from the
    queue, then it is filed as unacknowledged. Redis stopping between the two loses it; its
    answer to the second one lost, it stays filed, out of reach for the visibility timeout
    (an hour). Both, made here by hand, must cost their pilots no more than a sweep."""
    aid = assessment_with_sample(client)
    ids = [queue_pilot(client, aid, max_train=24, arms=["majority"]) for _ in range(3)]
    broker = redis.Redis.from_url(redis_server.url)
    lost = broker.rpop(queue.CPU_QUEUE)  # the oldest first, as a worker takes them
    filed = broker.rpop(queue.CPU_QUEUE)
    assert isinstance(lost, bytes) and isinstance(filed, bytes)
    message = json.loads(filed)
    tag = message["properties"]["delivery_tag"]
    broker.zadd("unacked_index", {tag: time.time()})
    broker.hset("unacked", tag, json.dumps([message, queue.CPU_QUEUE, queue.CPU_QUEUE]))
    assert broker.llen(queue.CPU_QUEUE) == 1  # the third pilot's, untouched
    fleet.start_worker("w1")
    fleet.start_beat()

    def statuses() -> list[str]:
        with get_sessionmaker()() as session:
            return list(session.scalars(select(Pilot.status).where(Pilot.id.in_(ids))).all())

    # Stale after 3 s, swept every 2 s, and a few seconds to start the worker and run them.
    wait_until(lambda: all(s in FINISHED for s in statuses()), 60, fleet, "every pilot finished")
    assert statuses() == ["done"] * 3, fleet.logs()
    assert all(pilot(pilot_id).attempts == 1 for pilot_id in ids)
    assert sorted(e.pilot_id for i in ids for e in _executions(i)) == sorted(ids)


WORKER_APP = "pathpilot-scale-worker"


def _drop_worker_connections(admin_url: str, database: str) -> int:
    """Terminate the workers' connections that are inside a statement or a transaction now,
    as a PostgreSQL restart or fail-over would; how many."""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            return len(
                connection.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND application_name = :app "
                        "AND state IN ('active', 'idle in transaction')"
                    ),
                    {"db": database, "app": WORKER_APP},
                ).all()
            )
    finally:
        engine.dispose()


def test_writes_retry_when_database_connections_drop_and_nothing_is_lost(  # type: ignore[no-untyped-def]
    client, fleet: Fleet, postgres_server, database_url: str
) -> None:
    aid = assessment_with_sample(client)
    ids = [queue_pilot(client, aid, max_train=24, arms=["majority", "fewshot"]) for _ in range(3)]
    fleet.env["PGAPPNAME"] = WORKER_APP  # only the workers' connections are dropped
    fleet.start_worker("w1")
    fleet.start_worker("w2")
    database = make_url(database_url).database
    assert database is not None

    def all_finished() -> bool:
        with get_sessionmaker()() as session:
            statuses = session.scalars(select(Pilot.status).where(Pilot.id.in_(ids))).all()
        return all(s in FINISHED for s in statuses)

    dropped = 0
    deadline = time.monotonic() + 300
    while not all_finished():
        assert time.monotonic() < deadline, f"pilots not finished\n{fleet.logs()}"
        dropped += _drop_worker_connections(postgres_server.url, database)
        time.sleep(0.05)

    retried = sum(fleet.log(name).count("connection lost on attempt") for name in fleet.workers)
    with get_sessionmaker()() as session:
        pilots = session.scalars(select(Pilot).where(Pilot.id.in_(ids))).all()
        arms = session.scalars(select(PilotArm).where(PilotArm.pilot_id.in_(ids))).all()
        executions = session.scalars(
            select(ArmExecution).where(ArmExecution.pilot_id.in_(ids))
        ).all()
        metrics = session.scalars(select(MetricRow).where(MetricRow.pilot_id.in_(ids))).all()
    assert [p.status for p in pilots] == ["done"] * 3, [(p.status, p.error) for p in pilots]
    assert {a.status for a in arms} == {"done"}, [(a.arm, a.error) for a in arms]
    # Every arm finished exactly once, and its figures are stored.
    done = Counter((e.pilot_id, e.arm) for e in executions if e.outcome == "done")
    assert done == {(p, a): 1 for p in ids for a in ("majority", "fewshot")}
    assert {(m.pilot_id, m.arm) for m in metrics if m.name == "accuracy"} == set(done)
    assert dropped > 0 and retried > 0, (dropped, retried)
