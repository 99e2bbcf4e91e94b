"""The heartbeat a claimed step beats under its lease while it runs (`worker.jobs`)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session

from app.db import session_scope
from app.pilots.service import LeaseLost
from app.settings import Settings
from worker.pilots.runner import PilotStopped

log = logging.getLogger(__name__)


def worker_name() -> str:
    """Which worker process holds a claim: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Beats a claimed step's heartbeat under its lease from a background thread, so a long
    step with no progress (loading a model) never looks stalled, and notices within one beat
    when the lease is gone (cancelled, or superseded): the step then stops at its next
    progress point."""

    def __init__(self, what: str, beat: Callable[[Session], None], interval_s: float) -> None:
        self.what, self.beat, self.interval_s = what, beat, interval_s
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{what}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=self.interval_s + 5)

    def _run(self) -> None:
        while not self._done.wait(self.interval_s):
            try:
                with session_scope() as session:
                    self.beat(session)
            except LeaseLost:
                log.warning("%s: lease lost (cancelled or superseded)", self.what)
                self.lost.set()
                return
            except Exception:  # a database blip: the next beat tries again
                log.exception("%s: heartbeat failed", self.what)

    def check(self) -> None:
        if self.lost.is_set():
            raise PilotStopped(f"{self.what}: cancelled or superseded")


def heartbeat_interval(settings: Settings) -> float:
    """Several beats within the stall threshold, and never more than a few seconds apart, so
    a cancel is noticed quickly."""
    return max(0.2, min(3.0, settings.pilot_stalled_after_s / 4))
