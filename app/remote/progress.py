"""A waiting pilot's progress on stderr: one line rewritten in place on a terminal, one line
per change in a CI log (where carriage returns pile up into one unreadable line)."""

from __future__ import annotations

from typing import TextIO

from app.domain.formatting import format_duration
from app.domain.records import ArmStatus, PilotStatus
from app.remote.client import ArmProgress, Pilot

# A running pilot's `stage` (app.domain.records.PilotStage) as the line says it.
STAGE_WORDS = {
    "preparing": "preparing the split",
    "arms": "running arms",
    "concluding": "concluding",
}


def _eta(seconds: float | None) -> str:
    return f", ETA {format_duration(seconds)}" if seconds is not None and seconds > 0 else ""


def _arm_line(arm: ArmProgress) -> str:
    steps = f" {arm.step}/{arm.total}" if arm.total else ""
    return f"{arm.arm} {arm.stage or 'starting'}{steps}{_eta(arm.eta_seconds)}"


def progress_line(pilot: Pilot) -> str:
    """Where the pilot stands, in one line: its status, stage, arms finished, and each running
    arm's stage, step/total and ETA from the progress the server reports."""
    if pilot.status == PilotStatus.queued:
        place = pilot.queue
        if place is None:
            return f"pilot {pilot.id}: queued"
        return f"pilot {pilot.id}: queued, {place.ahead} ahead{_eta(place.eta_seconds)}"
    if pilot.status != PilotStatus.running:
        line = f"pilot {pilot.id}: {pilot.status}"
        return f"{line}: {pilot.error}" if pilot.error else line
    finished = sum(arm.status in (ArmStatus.done, ArmStatus.failed) for arm in pilot.arms)
    stage = STAGE_WORDS.get(pilot.stage or "", pilot.stage or "running")
    parts = [f"pilot {pilot.id}: {stage}"]
    if pilot.arms:
        parts.append(f"{finished}/{len(pilot.arms)} arms finished")
    parts.extend(_arm_line(arm) for arm in pilot.arms if arm.status == ArmStatus.running)
    return " | ".join(parts)


class ProgressPrinter:
    """Writes `progress_line` to `stream` whenever it changes."""

    def __init__(self, stream: TextIO, *, in_place: bool | None = None) -> None:
        self.stream = stream
        self.in_place = stream.isatty() if in_place is None else in_place
        self._last: str | None = None

    def __call__(self, pilot: Pilot) -> None:
        line = progress_line(pilot)
        if line == self._last:
            return
        self._last = line
        if self.in_place:
            # Back to the line's start, the new text, then clear what a longer line left.
            self.stream.write(f"\r{line}\x1b[K")
        else:
            self.stream.write(f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the in-place line, so what is printed next starts on a line of its own."""
        if self.in_place and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._last = None
