"""The preparation's claim is one conditional UPDATE with a lease; a superseded attempt cannot
write. (Arms and the conclusion: tests/app/pilots/test_execution.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db import session_scope, utcnow
from app.pilots import execution, service
from app.pilots.models import Pilot
from app.settings import get_settings
from tests.app.reports.factory import pilot_data
from tests.factories.pilots import signed_up_pilot


def _claim(pilot_id: str, worker: str) -> service.Claim | None:
    with session_scope() as session:
        return service.claim(
            session,
            pilot_id=pilot_id,
            worker=worker,
            max_attempts=get_settings().pilot_max_attempts,
            stalled_after=timedelta(seconds=60),
        )


def test_two_deliveries_one_claim_and_the_old_lease_is_refused(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("app.queue.send", lambda job: None)
    pilot_id = signed_up_pilot(client, arms=["majority"])
    first = _claim(pilot_id, "w1")
    assert first is not None and first.attempt == 1
    assert _claim(pilot_id, "w2") is None  # live: the second delivery is dropped

    # The first worker goes silent; the pilot is claimable again, by a new attempt.
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        pilot.heartbeat_at = utcnow() - timedelta(minutes=5)
    second = _claim(pilot_id, "w2")
    assert second is not None and second.attempt == 2 and second.lease != first.lease

    # The first attempt wakes up: none of its writes go through.
    data = pilot_data()
    with pytest.raises(service.LeaseLost), session_scope() as session:
        execution.store_split(
            session, pilot_id=pilot_id, lease=first.lease, data=data, caps=[], warnings=[]
        )
    with pytest.raises(service.LeaseLost), session_scope() as session:
        service.fail_pilot(session, pilot_id=pilot_id, lease=first.lease, message="late")
    with session_scope() as session:
        execution.store_split(
            session, pilot_id=pilot_id, lease=second.lease, data=data, caps=[], warnings=[]
        )
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        assert (pilot.status, pilot.stage, pilot.claimed_by, pilot.attempts) == (
            "running",
            "preparing",
            "w2",
            2,
        )


def test_a_pilot_out_of_attempts_is_failed_not_claimed(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("app.queue.send", lambda job: None)
    pilot_id = signed_up_pilot(client, arms=["majority"])
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        pilot.attempts = get_settings().pilot_max_attempts
    assert _claim(pilot_id, "w1") is None
    with session_scope() as session:
        assert service.give_up_if_exhausted(
            session,
            pilot_id=pilot_id,
            max_attempts=get_settings().pilot_max_attempts,
            stalled_after=timedelta(seconds=60),
        )
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None and pilot.status == "failed"
