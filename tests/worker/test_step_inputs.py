"""One arm step reads what it needs of its pilot in one transaction (app.pilots.step_inputs),
counted on the real engine while the worker's own step runs."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from sqlalchemy import event

from tests.app.accounts.helpers import bearer, create_token
from tests.factories.assessments import scored_assessment
from tests.factories.models import register

# The tables an arm step's inputs come from: the stored split and the chosen models.
INPUT_TABLES = ("pilot_split", "llm_model")


class Transactions:
    """The statements this thread sent, grouped by the transaction they ran in."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.thread = threading.get_ident()  # not the heartbeat's own beats
        self.runs: list[list[str]] = []

    def __enter__(self) -> Transactions:
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "before_cursor_execute", self._statement)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "before_cursor_execute", self._statement)

    def _begin(self, _connection: Any) -> None:
        if threading.get_ident() == self.thread:
            self.runs.append([])

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if threading.get_ident() == self.thread and self.runs:
            self.runs[-1].append(statement)

    def reading(self, table: str) -> list[int]:
        """The transactions that selected from `table`."""
        pattern = re.compile(rf"^\s*SELECT\b.*\bFROM\b.*\b{table}\b", re.S | re.I)
        return [n for n, run in enumerate(self.runs) if any(pattern.match(s) for s in run)]


def test_an_arm_step_reads_its_inputs_in_one_transaction(
    client, resources: Any, llm_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from app.db import get_engine, session_scope
    from app.pilots.models import PilotArm
    from worker.jobs import execute_arm, prepare_pilot

    # The session's models, not a second copy loaded by the step.
    monkeypatch.setattr("worker.pilots.resources.load_resources", lambda settings=None: resources)
    client.signup()
    aid = scored_assessment(client)
    prompt = register(client, name="Team 8B", model="llama-8b").json()["id"]
    serving = register(client, name="vLLM", base_url="http://127.0.0.1:9/v1", model="base")
    base = register(client, name="Base", kind="local", base_url=None, model=str(llm_dir))
    started = client.http.post(
        f"/api/v1/assessments/{aid}/pilots",
        json={
            "arms": ["majority"],
            "max_train": 30,
            "prompt_model_id": prompt,
            "serving_model_id": serving.json()["id"],
            "base_model_id": base.json()["id"],
        },
        headers=bearer(create_token(client)),
    )
    assert started.status_code == 202, started.text
    pilot_id = started.json()["id"]
    prepare_pilot(pilot_id)

    with Transactions(get_engine()) as seen:
        execute_arm(pilot_id, "majority")

    with session_scope() as session:
        arm = session.query(PilotArm).filter_by(pilot_id=pilot_id, arm="majority").one()
        assert arm.status == "done", arm.error
    # Before, each chosen model, the split, the pilot's params and the upstream adapter were
    # each read in a transaction of their own.
    inputs = {n for table in INPUT_TABLES for n in seen.reading(table)}
    assert len(inputs) == 1, [seen.runs[n] for n in sorted(inputs)]
    (read,) = inputs
    chosen = [s for s in seen.runs[read] if re.search(r"\bFROM llm_model\b", s)]
    # Prompting, serving and base model, one query each (a classification sample takes no
    # judge).
    assert len(chosen) == 3
    assert any(re.search(r"\bFROM pilot_arm\b", s) for s in seen.runs[read])  # the adapters
    # The step's other transactions are its claim, its execution record, its progress and
    # result writes and the conclusion's check: none of them reads the pilot's inputs again.
    assert len(seen.runs) <= 12, [run[:1] for run in seen.runs]
