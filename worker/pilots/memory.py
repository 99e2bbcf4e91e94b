"""Peak memory during one block of an arm's work, not of the whole process so far.

`ru_maxrss` is the process's high-water mark, so a later arm would inherit an earlier arm's
peak; a thread that samples the resident set while the block runs sees the block's peak only.
On CUDA the allocator's own peak, reset on entry, is exact and is what limits a GPU run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading


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
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.device.startswith("cuda"):
            import torch

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
