"""A pilot as tasks in SQL: the stored split, each arm's own claim and lease, the arm that
waits for another's adapter, the one conclusion, and the sweep of a silent arm."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app import queue
from app.db import session_scope, utcnow
from app.domain.records import ArmOutcome, ArmResult, ArmStatus, PilotData, Prediction, Progress
from app.domain.samples.schemas import Example, PilotTask
from app.pilots import execution, service
from app.pilots.models import Pilot, PilotArm, PilotSplit, SamplePrediction
from app.settings import get_settings
from tests.app.reports.factory import pilot_data
from tests.factories.pilots import signed_up_pilot

MAX_ATTEMPTS = 2
STALE = timedelta(seconds=60)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[queue.Job]:
    """The jobs the services send (after their commit), kept here instead of a broker."""
    jobs: list[queue.Job] = []
    monkeypatch.setattr("app.queue.send", jobs.append)
    return jobs


def _prepared(pilot_id: str) -> list[str]:
    """Claim and prepare the pilot as the preparation task does; the arms it sent."""
    with session_scope() as session:
        held = service.claim(
            session,
            pilot_id=pilot_id,
            worker="prep",
            max_attempts=MAX_ATTEMPTS,
            stalled_after=STALE,
        )
        assert held is not None
        execution.store_split(
            session, pilot_id=pilot_id, lease=held.lease, data=pilot_data(), caps=[], warnings=[]
        )
        return execution.start_arms(session, pilot_id=pilot_id, lease=held.lease)


def _claim_arm(pilot_id: str, arm: str, worker: str = "w1") -> service.Claim | None:
    with session_scope() as session:
        return execution.claim_arm(
            session,
            pilot_id=pilot_id,
            arm=arm,
            worker=worker,
            max_attempts=MAX_ATTEMPTS,
            stalled_after=STALE,
        )


def _finish_arm(pilot_id: str, arm: str, lease: str) -> list[str]:
    with session_scope() as session:
        return execution.record_arm(
            session,
            pilot_id=pilot_id,
            lease=lease,
            outcome=ArmOutcome(arm=arm, status=ArmStatus.done),
            data=pilot_data(),
        )


def _arm(pilot_id: str, arm: str) -> PilotArm:
    with session_scope() as session:
        row = session.scalars(
            select(PilotArm).where(PilotArm.pilot_id == pilot_id, PilotArm.arm == arm)
        ).one()
        session.expunge(row)
        return row


def test_the_split_is_stored_once_and_read_back_the_same(client, sent) -> None:  # type: ignore[no-untyped-def]
    pilot_id = signed_up_pilot(client, arms=["majority"])
    _prepared(pilot_id)
    with session_scope() as session:
        stored = execution.read_split(session, pilot_id=pilot_id)
    assert stored.data == pilot_data()
    # A split changed behind the pilot's back is refused, not run on.
    with session_scope() as session:
        row = session.get(PilotSplit, pilot_id)
        assert row is not None
        row.data = {**row.data, "labels": ["other"]}
    with pytest.raises(execution.SplitChanged), session_scope() as session:
        execution.read_split(session, pilot_id=pilot_id)


def test_arms_go_to_their_queues_and_the_adopting_arm_waits_for_its_adapter(client, sent) -> None:  # type: ignore[no-untyped-def]
    pilot_id = signed_up_pilot(client, arms=["fewshot", "qlora", "qlora_rag"])
    sent.clear()
    # One worker takes both queues (the default): the training arm is held back until the
    # quicker arm has started, so the broker cannot hand the worker the training first.
    assert _prepared(pilot_id) == ["fewshot"]
    assert _claim_arm(pilot_id, "fewshot") is not None
    arm_jobs = {job.args[1]: job.queue for job in sent if job.task == queue.RUN_ARM}
    assert arm_jobs == {"fewshot": queue.CPU_QUEUE, "qlora": queue.GPU_QUEUE}
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None and (pilot.status, pilot.stage, pilot.lease) == (
            "running",
            "arms",
            None,
        )

    # The adopting arm is not sent before its upstream arm has finished.
    waiting = _arm(pilot_id, "qlora_rag")
    assert (waiting.status, waiting.task_id) == ("pending", None)


def test_the_adopting_arm_is_sent_when_its_upstream_arm_finishes(client, sent) -> None:  # type: ignore[no-untyped-def]
    pilot_id = signed_up_pilot(client, arms=["fewshot", "qlora", "qlora_rag"])
    _prepared(pilot_id)
    assert _claim_arm(pilot_id, "fewshot") is not None  # the quicker arm started
    qlora = _claim_arm(pilot_id, "qlora", "gpu-1")
    assert qlora is not None
    sent.clear()
    assert _finish_arm(pilot_id, "qlora", qlora.lease) == ["qlora_rag"]
    assert [(job.args, job.queue) for job in sent] == [((pilot_id, "qlora_rag"), queue.GPU_QUEUE)]


def test_one_delivery_claims_an_arm_and_a_superseded_attempt_cannot_write(client, sent) -> None:  # type: ignore[no-untyped-def]
    pilot_id = signed_up_pilot(client, arms=["fewshot", "rag"])
    _prepared(pilot_id)
    first = _claim_arm(pilot_id, "fewshot", "w1")
    assert first is not None and first.attempt == 1
    assert _claim_arm(pilot_id, "fewshot", "w2") is None  # live elsewhere: dropped
    # Both arms run at the same time, each under its own lease.
    other = _claim_arm(pilot_id, "rag", "w2")
    assert other is not None and other.lease != first.lease

    with session_scope() as session:  # the first worker goes silent
        session.execute(
            PilotArm.__table__.update()
            .where(PilotArm.pilot_id == pilot_id, PilotArm.arm == "fewshot")
            .values(heartbeat_at=utcnow() - timedelta(minutes=5))
        )
    second = _claim_arm(pilot_id, "fewshot", "w3")
    assert second is not None and second.attempt == 2
    progress = Progress(stage="predicting", step=1, total=2)
    with pytest.raises(service.LeaseLost), session_scope() as session:
        execution.record_progress(
            session, pilot_id=pilot_id, arm="fewshot", lease=first.lease, progress=progress
        )
    with session_scope() as session:
        execution.record_progress(
            session, pilot_id=pilot_id, arm="fewshot", lease=second.lease, progress=progress
        )
    row = _arm(pilot_id, "fewshot")
    assert (row.status, row.stage, row.claimed_by, row.attempts) == (
        "running",
        "predicting",
        "w3",
        2,
    )


def test_a_cancelled_pilot_refuses_its_arms_writes_and_claims(client, sent) -> None:  # type: ignore[no-untyped-def]
    pilot_id = signed_up_pilot(client, arms=["fewshot", "rag"])
    _prepared(pilot_id)
    running = _claim_arm(pilot_id, "fewshot")
    assert running is not None
    sent.clear()
    response = client.http.post(f"/api/v1/pilots/{pilot_id}/cancel")
    assert response.status_code == 200, response.text
    with pytest.raises(service.LeaseLost), session_scope() as session:
        execution.hold_arm(session, pilot_id=pilot_id, arm="fewshot", lease=running.lease)
    assert _claim_arm(pilot_id, "rag") is None
    assert [(_arm(pilot_id, a).status, _arm(pilot_id, a).error) for a in ("fewshot", "rag")] == [
        ("failed", "not run: cancelled")
    ] * 2


def test_the_last_arm_to_finish_begins_the_conclusion_once(client, sent) -> None:  # type: ignore[no-untyped-def]
    pilot_id = signed_up_pilot(client, arms=["fewshot", "rag"])
    _prepared(pilot_id)
    fewshot, rag = _claim_arm(pilot_id, "fewshot"), _claim_arm(pilot_id, "rag", "w2")
    assert fewshot is not None and rag is not None
    _finish_arm(pilot_id, "fewshot", fewshot.lease)
    with session_scope() as session:
        assert not execution.begin_conclusion(session, pilot_id=pilot_id)  # rag still runs
    _finish_arm(pilot_id, "rag", rag.lease)
    sent.clear()
    with session_scope() as session:
        assert execution.begin_conclusion(session, pilot_id=pilot_id)
    with session_scope() as session:
        assert not execution.begin_conclusion(session, pilot_id=pilot_id)  # once only
    assert [(job.task, job.args) for job in sent] == [(queue.CONCLUDE_PILOT, (pilot_id,))]

    def claim(worker: str) -> service.Claim | None:
        with session_scope() as session:
            return execution.claim_conclusion(
                session,
                pilot_id=pilot_id,
                worker=worker,
                max_attempts=MAX_ATTEMPTS,
                stalled_after=STALE,
            )

    held = claim("w1")
    assert held is not None and claim("w2") is None


def test_a_silent_arm_is_sent_again_then_failed_and_the_pilot_still_concludes(client, sent) -> None:  # type: ignore[no-untyped-def]
    from worker.recovery import recover_stalled

    pilot_id = signed_up_pilot(client, arms=["fewshot", "rag"])
    _prepared(pilot_id)
    rag = _claim_arm(pilot_id, "rag")
    assert rag is not None
    _finish_arm(pilot_id, "rag", rag.lease)

    def orphan() -> None:
        assert _claim_arm(pilot_id, "fewshot") is not None
        with session_scope() as session:
            session.execute(
                PilotArm.__table__.update()
                .where(PilotArm.pilot_id == pilot_id, PilotArm.arm == "fewshot")
                .values(heartbeat_at=utcnow() - timedelta(minutes=10))
            )

    orphan()
    sent.clear()
    assert recover_stalled(get_settings()) == ([f"{pilot_id}/fewshot"], [])
    assert [(job.task, job.args) for job in sent] == [(queue.RUN_ARM, (pilot_id, "fewshot"))]
    assert _arm(pilot_id, "fewshot").status == "pending"

    orphan()  # the second attempt dies too: the arm fails with the reason, the pilot concludes
    sent.clear()
    requeued, failed = recover_stalled(get_settings())
    assert (requeued, failed) == ([pilot_id], [f"{pilot_id}/fewshot"])
    assert "worker stopped" in (_arm(pilot_id, "fewshot").error or "")
    assert [(job.task, job.args) for job in sent] == [(queue.CONCLUDE_PILOT, (pilot_id,))]
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None and pilot.stage == "concluding"


def test_the_page_and_the_api_show_arms_running_at_the_same_time(client, sent) -> None:  # type: ignore[no-untyped-def]
    pilot_id = signed_up_pilot(client, arms=["fewshot", "rag", "qlora", "qlora_rag"])
    _prepared(pilot_id)
    page = client.get(f"/pilots/{pilot_id}").text
    assert "running the arms" in page and "arms running at the same time" not in page
    assert 'id="queue-place"' in page  # sent, and nothing of it on a worker yet
    row = page.split('data-arm="qlora_rag"', 1)[1].split("</tr>", 1)[0]
    assert "waits for QLoRA" in row
    assert "queued" in page.split('data-arm="fewshot"', 1)[1].split("</tr>", 1)[0]

    fewshot, qlora = _claim_arm(pilot_id, "fewshot", "w1"), _claim_arm(pilot_id, "qlora", "w2")
    assert fewshot is not None and qlora is not None
    page = client.get(f"/pilots/{pilot_id}").text
    assert page.count('data-arm-status="running"') == 2
    assert "2 arms running at the same time" in page
    assert 'id="queue-place"' not in page
    api = client.http.get(f"/api/v1/pilots/{pilot_id}").json()
    assert api["stage"] == "arms" and api["queue"] is None
    assert [(a["arm"], a["status"], a["attempts"]) for a in api["arms"]] == [
        ("fewshot", "running", 1),
        ("rag", "pending", 0),
        ("qlora", "running", 1),
        ("qlora_rag", "pending", 0),
    ]


def test_a_stored_qa_answer_is_right_when_it_matches_any_gold_answer(client, sent) -> None:  # type: ignore[no-untyped-def]
    pilot_id = signed_up_pilot(client, arms=["majority"])
    golds = Example(input="Who ruled?", target="The Normans of France", alternatives=("Normans",))
    data = PilotData(PilotTask.qa, [], [], [golds, Example(input="Who came?", target="Rollo")])
    answers = [
        Prediction(index=i, prediction=text, latency_ms=1.0, prompt_tokens=1, output_tokens=1)
        for i, text in enumerate(["the Normans", "Normans"])
    ]
    outcome = ArmOutcome(
        arm="majority", status=ArmStatus.done, result=ArmResult("majority", answers)
    )
    with session_scope() as session:
        row = session.scalars(select(PilotArm).where(PilotArm.pilot_id == pilot_id)).one()
        execution.store_outcome(session, row=row, outcome=outcome, data=data)
        stored = session.scalars(
            select(SamplePrediction)
            .where(SamplePrediction.arm_id == row.id)
            .order_by(SamplePrediction.test_index)
        ).all()
        # The first matches only its second gold answer, as exact match scores it.
        assert [p.correct for p in stored] == [True, False]
