"""A real Celery worker process on the SQLite transport runs a tiny pilot end to end."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db import get_sessionmaker
from app.pilots.models import LossCurvePoint, MetricRow, PilotArm
from app.serve import worker_command
from tests.conftest import REPO
from tests.factories.assessments import tiny_sample
from tests.factories.pilots import TINY, tiny_pilot, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.server]  # a real Celery worker process


@pytest.fixture
def worker(var_dir: Path, monkeypatch: pytest.MonkeyPatch):
    for key, value in TINY.items():
        monkeypatch.setenv(key, value)
    from app.settings import get_settings

    get_settings.cache_clear()
    env = dict(os.environ)
    log = open(var_dir / "worker.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        worker_command(), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    yield proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    log.close()


def test_worker_runs_pilot_and_stores_metrics(client, worker, var_dir: Path) -> None:
    client.signup()
    aid = client.http.post(
        "/api/v1/assessments",
        json={
            **__import__("json").loads(
                (REPO / "examples" / "intake-banking-intents.json").read_text()
            )
        },
    ).json()["id"]
    upload = client.post(
        f"/assessments/{aid}/sample", files={"file": ("tiny.csv", tiny_sample(), "text/csv")}
    )
    assert upload.status_code == 303
    started = client.http.post(
        f"/api/v1/assessments/{aid}/pilots",
        json={"max_train": 24, "arms": ["fewshot", "rag", "qlora"]},
    )
    assert started.status_code == 202, started.text
    pilot_id = started.json()["id"]

    pilot = wait_for(pilot_id, timeout_s=900)
    log = (var_dir / "worker.log").read_text()
    assert pilot.status == "done", (pilot.error, log[-3000:])

    with get_sessionmaker()() as session:
        arms = session.scalars(select(PilotArm).where(PilotArm.pilot_id == pilot_id)).all()
        metrics = session.scalars(select(MetricRow).where(MetricRow.pilot_id == pilot_id)).all()
        qlora = next(a for a in arms if a.arm == "qlora")
        losses = session.scalars(
            select(LossCurvePoint).where(LossCurvePoint.arm_id == qlora.id)
        ).all()
    assert {a.arm: a.status for a in arms} == {"fewshot": "done", "rag": "done", "qlora": "done"}
    names = {(m.arm, m.name) for m in metrics}
    for arm in ("fewshot", "rag", "qlora"):
        assert (arm, "accuracy") in names
        assert (arm, "macro_f1") in names
        assert (arm, "latency_p50_ms") in names
    accuracy = [m for m in metrics if m.name == "accuracy"]
    assert all(m.ci_low is not None and m.ci_low <= m.value <= m.ci_high for m in accuracy)
    assert qlora.trainable_parameters > 0
    assert qlora.adapter_bytes > 0
    assert losses, "the loss curve was stored"

    api = client.http.get(f"/api/v1/pilots/{pilot_id}").json()
    assert api["status"] == "done"
    assert api["manifest"]["seed"] == pilot.seed
    page = client.get(f"/pilots/{pilot_id}")
    assert "QLoRA fine-tune" in page.text and "95% CI" in page.text


def test_the_embedded_default_runs_a_pilot_under_one_lease(client, worker, var_dir: Path) -> None:
    """SQLite database, SQLite broker, the `pathpilot serve` worker command: the claim, lease
    and execution trail work unchanged there."""
    from app.pilots.models import ArmExecution

    client.signup()
    _, pilot_id = tiny_pilot(client, ["majority"])
    pilot = wait_for(pilot_id, timeout_s=300)
    assert pilot.status == "done", (pilot.error, (var_dir / "worker.log").read_text()[-3000:])
    assert pilot.attempts == 1 and pilot.lease is None
    assert pilot.claimed_by is not None and pilot.claimed_by.endswith(f":{worker.pid}")
    with get_sessionmaker()() as session:
        executions = session.scalars(
            select(ArmExecution).where(ArmExecution.pilot_id == pilot.id)
        ).all()
    assert [(e.arm, e.outcome) for e in executions] == [("majority", "done")]
