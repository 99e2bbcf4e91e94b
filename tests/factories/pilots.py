"""Pilots queued through the API (one way for every test), and waiting for a worker's result."""

from __future__ import annotations

import time

import httpx

from app.db import get_sessionmaker
from app.pilots.models import Pilot
from tests.factories.assessments import scored_assessment, tiny_sample

# Settings that keep a real worker's pilot small: a few examples, one short epoch.
TINY = {"PILOT_MAX_TRAIN": "24", "PILOT_MAX_TEST": "16", "PILOT_MAX_TRAIN_MINUTES": "1.5"}


def post_pilot(
    client, aid: str, *, headers: dict[str, str] | None = None, **body: object
) -> httpx.Response:  # type: ignore[no-untyped-def]
    """POST /api/v1/assessments/{aid}/pilots with `body`: the answer, for tests of refusals."""
    return client.http.post(f"/api/v1/assessments/{aid}/pilots", json=body, headers=headers)


def queue_pilot(client, aid: str, **body: object) -> str:  # type: ignore[no-untyped-def]
    """A pilot queued through the API (202); its id."""
    response = post_pilot(client, aid, **body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def signed_up_pilot(client, **body: object) -> str:  # type: ignore[no-untyped-def]
    """Sign up, score the banking assessment with its sample, and queue a pilot of it."""
    client.signup()
    return queue_pilot(client, scored_assessment(client), **body)


def tiny_pilot(client, arms: list[str]) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """An assessment of `tiny_sample` and a pilot of it a real worker runs in seconds (24
    training examples): (assessment id, pilot id)."""
    aid = scored_assessment(client, sample=tiny_sample())
    return aid, queue_pilot(client, aid, max_train=24, arms=arms)


def wait_for(pilot_id: str, timeout_s: float) -> Pilot:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with get_sessionmaker()() as session:
            pilot = session.get(Pilot, pilot_id)
            assert pilot is not None
            if pilot.status in ("done", "failed"):
                return pilot
        time.sleep(2)
    raise AssertionError(f"pilot {pilot_id} still not finished after {timeout_s}s")
