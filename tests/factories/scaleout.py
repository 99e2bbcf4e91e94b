"""Pilots on a fleet of real workers (tests/scaleout): reading their state and waiting for it."""

from __future__ import annotations

import time

from sqlalchemy import select

from app.db import get_sessionmaker
from app.pilots.models import Pilot, PilotArm
from tests.factories.assessments import scored_assessment, tiny_sample
from tests.scaleout.servers import Fleet

FINISHED = ("done", "failed", "cancelled")


def assessment_with_sample(client) -> str:  # type: ignore[no-untyped-def]
    client.signup()
    return scored_assessment(client, sample=tiny_sample())


def pilot(pilot_id: str) -> Pilot:
    with get_sessionmaker()() as session:
        row = session.get(Pilot, pilot_id)
        assert row is not None
        return row


def wait_until(condition, timeout_s: float, fleet: Fleet, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {timeout_s}s\n{fleet.logs()}")


def arm(pilot_id: str, name: str) -> PilotArm:
    with get_sessionmaker()() as session:
        return session.scalars(
            select(PilotArm).where(PilotArm.pilot_id == pilot_id, PilotArm.arm == name)
        ).one()


def arm_running(pilot_id: str, name: str) -> bool:
    row = arm(pilot_id, name)
    return row.status == "running" and row.stage not in (None, "starting")
