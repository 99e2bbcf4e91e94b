"""A test arm that holds a large block of memory while it runs, then lets it go."""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.domain.records import ArmResult, PilotData, ProgressCallback


@dataclass
class MemoryHogConfig:
    megabytes: int
    seed: int = 0


def run(
    config: MemoryHogConfig, resources: object, data: PilotData, progress: ProgressCallback
) -> ArmResult:
    block = bytearray(config.megabytes * 2**20)
    block[::4096] = b"\x01" * len(block[::4096])  # touch every page so it is resident
    time.sleep(0.5)  # long enough for the sampler to see it
    del block
    return ArmResult(arm="hog", predictions=[])
