"""Host memory of the arms: measuring an arm's peak, and keeping it down.

`ru_maxrss` is the process's high-water mark, so a later arm would inherit an earlier arm's
peak; a thread that samples the resident set while the block runs sees the block's peak only.
On CUDA the allocator's own peak, reset on entry, is exact and is what limits a GPU run.

Keeping it down: `release_freed_memory` between arms, and `contiguous_head_input` around
every forward pass that asks for the logits of the last positions only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from typing import Any


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


@contextlib.contextmanager
def contiguous_head_input(model: Any) -> Iterator[None]:
    """While the block runs, the LM head gets a contiguous copy of its input.

    With `logits_to_keep` (generation's prefill keeps 1 position, the QLoRA loss the
    completion's), transformers hands the head a slice of the hidden states that is not
    contiguous. For such a 3-d input torch's `matmul` folds the batch into one matrix only
    when something requires a gradient; with frozen weights under no_grad or inference mode
    (the fine-tuned model being evaluated, validation loss) it broadcasts the weight over the
    batch instead and materialises one copy of it per sequence: 16 x the 49k x 576 head of
    the default model is ~0.9 GB, and ~3 s on a CPU, for every batch's prefill. A contiguous
    input takes the folded path, which computes the same logits (one matrix product of the
    same rows); the copy is a few KB.
    """
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        yield
        return

    def make_contiguous(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(arg.contiguous() if isinstance(arg, torch.Tensor) else arg for arg in args)

    handle = head.register_forward_pre_hook(make_contiguous)
    try:
        yield
    finally:
        handle.remove()
