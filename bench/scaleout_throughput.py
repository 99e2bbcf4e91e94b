"""Pilots on 1 vs 3 Celery workers sharing Redis and PostgreSQL: throughput, or one pilot's
arms in parallel.

What it measures: the production path of a pilot -- the web API queues it (after commit, by
task name, on Redis), a worker claims its preparation with one conditional UPDATE and stores
the split, each arm is claimed as a task of its own and writes its results under its lease
into PostgreSQL, and the last arm sends the conclusion. `--pilots` pilots
(default 20) on the same small sample (three banking intents, `--max-test` test examples)
are queued at once, once every worker has run one warm-up pilot (each worker process loads
the models once, on its first pilot); the wall time runs from queueing to the last finish
(read from SQL).

Reference, measured in the same run on the same pilots: the same queue drained by 1 worker.
The ratio printed is (1-worker time) / (3-worker time): 3.0 would be perfect scaling. On two
CPU cores, workers that compute at once share the cores, so CPU-bound arms gain little;
the default arm (`majority`, the floor that takes no model time) measures the claim and
write path itself.

`--measure arms`: one 4-arm pilot (fewshot, rag, qlora, qlora_rag; `--max-test` 16) on 3
workers, where its arms run as tasks at the same time (qlora_rag after qlora, whose adapter
it adopts), against the same pilot on 1 worker, where the same tasks run one after another.
The ratio printed is (1-worker wall time) / (3-worker wall time), and the arms' start and end
offsets (from the execution trail in SQL) show what overlapped. The workers warm up on
`majority` pilots, which load the shared models; each QLoRA arm loads its own quantised copy.
With two CPU cores, arms that compute at the same time share them: the gain is bounded by
the cores, not by the scheduling.

It starts its own servers on 127.0.0.1 and stops them at the end: Debian's redis-server and
a private PostgreSQL cluster (initdb), or the server PATHPILOT_TEST_POSTGRES names.

Run from the repository root:  .venv/bin/python -m bench.scaleout_throughput
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench.common import DEFAULT_LLM, reset_caches, signed_up_assessment, tiny_sample
from tests.scaleout.servers import Fleet, Postgres, Redis


def _wait(ids: list[str], timeout_s: float, fleet: Fleet) -> list[str]:
    """The pilots' statuses once all have finished."""
    from app.db import get_sessionmaker
    from app.pilots.models import Pilot

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with get_sessionmaker()() as session:
            statuses = list(session.scalars(sa.select(Pilot.status).where(Pilot.id.in_(ids))))
        if all(status in ("done", "failed", "cancelled") for status in statuses):
            return statuses
        time.sleep(0.2)
    raise SystemExit(f"pilots not finished after {timeout_s}s\n{fleet.logs()}")


def _claimed_by(ids: list[str]) -> list[str]:
    """The workers that ran the pilots' arms."""
    from app.db import get_sessionmaker
    from app.pilots.models import PilotArm

    with get_sessionmaker()() as session:
        return [
            str(c)
            for c in session.scalars(
                sa.select(PilotArm.claimed_by).where(PilotArm.pilot_id.in_(ids))
            )
        ]


def _arm_spans(ids: list[str]) -> list[tuple[str, float, float, str]]:
    """(arm, start, end, worker) of each finished execution, seconds from the first start."""
    from app.db import get_sessionmaker
    from app.pilots.models import ArmExecution

    with get_sessionmaker()() as session:
        rows = session.scalars(
            sa.select(ArmExecution)
            .where(ArmExecution.pilot_id.in_(ids), ArmExecution.finished_at.is_not(None))
            .order_by(ArmExecution.started_at)
        ).all()
    if not rows:
        return []
    first = rows[0].started_at
    return [
        (
            row.arm,
            (row.started_at - first).total_seconds(),
            (row.finished_at - first).total_seconds() if row.finished_at else float("nan"),
            row.worker.rsplit(":", 1)[-1],
        )
        for row in rows
    ]


def _drain(
    workers: int, args: argparse.Namespace, postgres: Postgres, work: Path
) -> tuple[float, list[tuple[str, float, float, str]]]:
    """Start `workers` workers, warm each up with one pilot, then queue the pilots and wait for
    them all; seconds from queueing to the last finish, and the arms' spans."""
    name = f"pathpilot_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    database = make_url(postgres.url).set(database=name).render_as_string(hide_password=False)
    redis = Redis.start(work)
    run_dir = work / f"run-{workers}"
    run_dir.mkdir()
    os.environ.update(
        {
            "VAR_DIR": str(run_dir / "var"),
            "DATABASE_URL": database,
            "BROKER_URL": redis.url,
            "SECRET_KEY": "bench",
            "LLM_MODEL": str(DEFAULT_LLM),
            "PILOT_MAX_TRAIN": "24",
            "PILOT_MAX_TEST": str(args.max_test),
        }
    )
    reset_caches()
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.migrate import upgrade_head
    from app.settings import get_settings
    from worker.celery_app import celery_app, configure

    upgrade_head()
    configure(celery_app, get_settings())
    fleet = Fleet(run_dir, dict(os.environ))
    try:
        with TestClient(create_app(), follow_redirects=False) as http:
            aid = signed_up_assessment(http, tiny_sample())

            def queue(n: int, arms: str = args.arms) -> list[str]:
                return [
                    http.post(
                        f"/api/v1/assessments/{aid}/pilots",
                        json={"max_train": 24, "arms": arms.split(",")},
                    ).json()["id"]
                    for _ in range(n)
                ]

            for index in range(workers):
                fleet.start_worker(f"w{index + 1}")
            deadline = time.monotonic() + args.timeout
            while not all(" ready." in fleet.log(name) for name in fleet.workers):
                if time.monotonic() > deadline:
                    raise SystemExit(f"workers not ready\n{fleet.logs()}")
                time.sleep(0.2)
            # One pilot per worker first: an idle solo worker holds one message at a time.
            warm = queue(workers, args.warm_arms)
            _wait(warm, args.timeout, fleet)
            claimed = set(_claimed_by(warm))
            if len(claimed) != workers:
                print(f"note: warm-up reached {len(claimed)} of {workers} workers")
            started = time.monotonic()
            ids = queue(args.pilots)
            statuses = _wait(ids, args.timeout, fleet)
            queued_for = time.monotonic() - started
        failed = [status for status in statuses if status != "done"]
        if failed:
            raise SystemExit(f"{len(failed)} pilots did not finish as done\n{fleet.logs()}")
        return queued_for, _arm_spans(ids)
    finally:
        fleet.stop()
        redis.stop()
        reset_caches()
        with admin.connect() as connection:
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                )
            )
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", choices=("throughput", "arms"), default="throughput")
    parser.add_argument("--pilots", type=int, default=None, help="default: 20, or 1 for arms")
    parser.add_argument("--arms", default=None, help="comma-separated arms per pilot")
    parser.add_argument("--warm-arms", default="majority", help="the warm-up pilots' arms")
    parser.add_argument("--max-test", type=int, default=None, help="default: 3, or 16 for arms")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    arms_mode = args.measure == "arms"
    args.pilots = args.pilots or (1 if arms_mode else 20)
    args.arms = args.arms or ("fewshot,rag,qlora,qlora_rag" if arms_mode else "majority")
    args.max_test = args.max_test or (16 if arms_mode else 3)

    postgres = Postgres.start()
    try:
        with tempfile.TemporaryDirectory(prefix="pathpilot-bench-") as tmp:
            one, one_spans = _drain(1, args, postgres, Path(tmp))
            three, three_spans = _drain(3, args, postgres, Path(tmp))
    finally:
        postgres.stop()
    if arms_mode:
        print(f"one pilot ({args.arms}), {args.max_test} test examples, queue to finish:")
        for label, wall, spans in (
            ("1 worker ", one, one_spans),
            ("3 workers", three, three_spans),
        ):
            print(f"  {label}: {wall:7.1f} s")
            for arm, start, end, worker in spans:
                print(f"    {arm:10s} {start:7.1f} -> {end:7.1f} s  on worker pid {worker}")
        print(f"RESULT arms_parallel_ratio={one / three:.2f}")
        return
    print(
        f"{args.pilots} pilots ({args.arms}), queued at once on warm workers, to the last finish:"
    )
    print(f"  1 worker : {one:7.1f} s  ({args.pilots / one:.2f} pilots/s)")
    print(f"  3 workers: {three:7.1f} s  ({args.pilots / three:.2f} pilots/s)")
    print(f"RESULT scaleout_throughput_ratio={one / three:.2f}")


if __name__ == "__main__":
    main()
