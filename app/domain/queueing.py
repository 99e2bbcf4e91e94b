"""How long a queued pilot will wait: a rough figure from recent run times (pure)."""

from __future__ import annotations

import statistics


def queue_eta_seconds(ahead: int, recent_run_s: list[float], *, busy_workers: int) -> float | None:
    """Seconds until a pilot with `ahead` pilots before it finishes: the pilots before it and
    itself, each taking the median recent run time, shared by the workers busy now (at least
    one). None without any recent run to go by."""
    if not recent_run_s:
        return None
    typical = statistics.median(recent_run_s)
    return (ahead + 1) * typical / max(1, busy_workers)
