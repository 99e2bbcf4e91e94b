"""Peak memory while a block runs: what one arm used, not what the process ever used.

`ru_maxrss` is the peak over the whole process life, so in a long-lived worker a prompting arm
would report an earlier pilot's QLoRA peak. A sampling thread bounds the window instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import torch


class PeakMemory:
    """Peak memory while the block runs: RSS sampled by a thread; CUDA allocator peak."""

    def __init__(self, device: str, interval_s: float = 0.2) -> None:
        self.device = device
        self.interval_s = interval_s
        self.peak_rss_mb = 0.0
        self.peak_cuda_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        import psutil

        process = psutil.Process()
        while True:
            self.peak_rss_mb = max(self.peak_rss_mb, process.memory_info().rss / 2**20)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.device.startswith("cuda"):
            self.peak_cuda_mb = torch.cuda.max_memory_allocated() / 2**20

    @property
    def peak_mb(self) -> float:
        """GPU memory on CUDA (what limits a GPU run), process RSS on CPU."""
        return self.peak_cuda_mb if self.device.startswith("cuda") else self.peak_rss_mb


def release_freed_memory() -> None:
    """Hand memory freed by Python back to the OS (glibc keeps it otherwise), so the next
    arm's resident-set peak starts from what is really in use."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
