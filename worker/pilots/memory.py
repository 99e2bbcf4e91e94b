"""Host memory of the arms: measuring an arm's peak, and keeping it down.

`ru_maxrss` is the process's high-water mark, so a later arm would inherit an earlier arm's
peak; a thread that samples the resident set while the block runs sees the block's peak only.
On CUDA the allocator's own peak, reset on entry, is exact and is what limits a GPU run.

Keeping it down: `release_freed_memory` where a large working set has just been freed,
`contiguous_head_input` around every forward pass that asks for the logits of the last
positions only, and `drop_mapped_pages` for a memory-mapped model that sits idle while
another copy works (bench/memory_pilot.py measures them on a whole pilot).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_MADV_DONTNEED = 4  # Linux
_M_MMAP_THRESHOLD = -3  # glibc mallopt
# glibc's own ceiling for its dynamic threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): where
# the threshold sits once a process has freed a large mapped block, as loading a model does.
_GLIBC_MMAP_THRESHOLD_MAX = 32 * 2**20
LARGE_BLOCK_BYTES = 2**20


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


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name is not None else None


def release_freed_memory() -> None:
    """Hand memory freed by Python back to the OS (glibc keeps it otherwise), so the next
    arm's resident-set peak starts from what is really in use."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@contextlib.contextmanager
def large_blocks_unmapped(threshold: int = LARGE_BLOCK_BYTES) -> Iterator[None]:
    """While the block runs, glibc maps every allocation of `threshold` bytes or more on its
    own and unmaps it when freed.

    By default glibc raises its mmap threshold to the size of the largest mapped block freed
    so far (up to 32 MiB), so a training step's activations (~1-6 MiB tensors) come from the
    heap, and steps of different sequence lengths leave freed blocks there that do not fit
    the next step's tensors: the heap grows well past what one step uses. Unmapped on free,
    each step's activations go back to the OS at once; the cost is page faults on the next
    step's. glibc cannot restore its dynamic threshold, so on exit it is fixed at the
    dynamic threshold's ceiling. A no-op without glibc.
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        yield
        return
    mallopt(_M_MMAP_THRESHOLD, threshold)
    try:
        yield
    finally:
        mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD_MAX)


def drop_mapped_pages(directory: str | Path) -> int:
    """Drop this process's resident pages of the file mappings of the files in `directory`
    that nothing has written to; returns the bytes of address space advised (0 off Linux).

    The bf16 model (`Resources.model`) is a set of views into its memory-mapped safetensors
    file, and every page a forward pass has read counts in the resident set (257 MiB for the
    default model) even while another arm works with a copy of its own. Those pages are
    clean: dropped, they stay in the page cache and come back on the next read, with the same
    bytes. A mapping with a page written to (copy-on-write, "Anonymous" in smaps) is left
    alone, so nothing a process changed can be lost.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "madvise"):
        return 0
    try:
        # Real paths: smaps names the file a link (a hub cache's snapshot) points to.
        files = {os.path.realpath(path) for path in Path(directory).iterdir() if path.is_file()}
        smaps = Path("/proc/self/smaps").read_text()
    except OSError:
        return 0
    dropped = 0
    for start, end, written in _file_mappings(smaps, files):
        if written:
            continue
        if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED) == 0:
            dropped += end - start
    return dropped


def _file_mappings(smaps: str, files: set[str]) -> Iterator[tuple[int, int, bool]]:
    """(start, end, written to) of every mapping of one of `files` in /proc/self/smaps text."""
    current: list[Any] | None = None
    for line in smaps.splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header
            if current is not None:
                yield current[0], current[1], current[2]
            path = line.split(maxsplit=5)[5] if len(fields) >= 6 else ""
            start, end = (int(address, 16) for address in fields[0].split("-"))
            current = [start, end, False] if path in files else None
        elif current is not None and fields[:1] == ["Anonymous:"] and int(fields[1]) > 0:
            current[2] = True
    if current is not None:
        yield current[0], current[1], current[2]


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
