"""PeakMemory sees memory that a block held only while it ran."""

from __future__ import annotations

import time

from worker.pilots.memory import PeakMemory


def test_peak_covers_a_transient_allocation() -> None:
    with PeakMemory("cpu", interval_s=0.02) as before:
        time.sleep(0.1)
    with PeakMemory("cpu", interval_s=0.02) as memory:
        block = b"\x01" * (64 * 2**20)  # written, so resident
        time.sleep(0.2)
        del block
    assert memory.peak_mb == memory.peak_rss_mb
    assert memory.peak_rss_mb > before.peak_rss_mb + 48
    assert memory.peak_cuda_mb == 0.0
