"""PeakMemory sees memory that a block held only while it ran; the levers that keep it down
compute the same thing (bench/memory_pilot.py measures what they save)."""

from __future__ import annotations

import ctypes
import mmap
import time
from pathlib import Path

import psutil
import pytest
import torch

from worker.pilots import memory
from worker.pilots.memory import PeakMemory, contiguous_head_input, drop_mapped_pages


def test_peak_covers_a_transient_allocation() -> None:
    with PeakMemory("cpu", interval_s=0.02) as memory:
        # The baseline right before the block, not from a window of its own: memory an
        # earlier test freed may still be going back to the OS meanwhile.
        before_mb = psutil.Process().memory_info().rss / 2**20
        block = b"\x01" * (64 * 2**20)  # written, so resident
        time.sleep(0.2)
        del block
    assert memory.peak_mb == memory.peak_rss_mb
    assert memory.peak_rss_mb > before_mb + 48
    assert memory.peak_cuda_mb == 0.0


class _Head(torch.nn.Linear):
    """A frozen bf16 LM head that records whether its input was contiguous."""

    def __init__(self) -> None:
        super().__init__(8, 32, bias=False, dtype=torch.bfloat16)
        self.weight.requires_grad_(False)
        self.seen: list[bool] = []

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        self.seen.append(hidden.is_contiguous())
        return super().forward(hidden)


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = _Head()

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden[:, -1:, :])  # what `logits_to_keep=1` hands the head


def test_the_head_gets_a_contiguous_input_inside_the_block_only() -> None:
    model = _Model()
    hidden = torch.randn(4, 6, 8, dtype=torch.bfloat16)
    with torch.inference_mode():
        plain = model(hidden)
        with contiguous_head_input(model):
            folded = model(hidden)
        after = model(hidden)
    assert model.head.seen == [False, True, False]
    assert torch.equal(plain, folded) and torch.equal(plain, after)


class _Headless(_Model):
    """A model whose `get_output_embeddings` finds no head, as transformers answers for some."""

    def get_output_embeddings(self) -> None:  # type: ignore[override]
        return None


def test_a_model_without_a_head_is_left_alone() -> None:
    model = _Headless()
    with torch.inference_mode(), contiguous_head_input(model):
        assert not model.head._forward_pre_hooks
        model(torch.randn(4, 6, 8, dtype=torch.bfloat16))
    assert model.head.seen == [False]  # its input was not copied
    ran = []
    with contiguous_head_input(object()):  # not even a torch module
        ran.append(True)
    assert ran == [True]


needs_smaps = pytest.mark.skipif(
    not Path("/proc/self/smaps").exists(), reason="reads Linux's /proc/self/smaps"
)


def _resident_kib(address: int) -> int:
    """Rss of the mapping that starts at `address`, from /proc/self/smaps."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            inside = int(fields[0].split("-")[0], 16) == address
        elif inside and fields[0] == "Rss:":
            return int(fields[1])
    raise AssertionError("no such mapping")


@needs_smaps
def test_drop_mapped_pages_drops_clean_pages_and_keeps_written_ones(tmp_path: Path) -> None:
    size = 1 << 20
    content = bytes(range(256)) * (size // 256)
    (tmp_path / "weights.bin").write_bytes(content)
    with (tmp_path / "weights.bin").open("rb") as handle:
        # Copy-on-write mappings, as safetensors maps a checkpoint.
        clean = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY)
        written = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY)
    try:
        assert clean[:] == content  # every page read, so resident
        written[5] = 0  # one page copied on write
        address = ctypes.addressof(ctypes.c_char.from_buffer(clean))
        assert _resident_kib(address) >= size // 1024

        assert drop_mapped_pages(tmp_path) == size  # the clean mapping only
        assert _resident_kib(address) == 0
        assert clean[:] == content  # read back from the file, unchanged
        assert written[5] == 0 and written[6] == content[6]
    finally:
        clean.close()
        written.close()


def test_drop_mapped_pages_of_a_missing_directory_is_nothing(tmp_path: Path) -> None:
    assert drop_mapped_pages(tmp_path / "absent") == 0


class _RecordingLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return 1


def test_large_blocks_are_unmapped_inside_the_block_only(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _RecordingLibc()
    monkeypatch.setattr(memory, "_libc", lambda: libc)
    with pytest.raises(RuntimeError), memory.large_blocks_unmapped():
        assert libc.calls == [(-3, 2**20)]  # M_MMAP_THRESHOLD, 1 MiB
        raise RuntimeError
    assert libc.calls == [(-3, 2**20), (-3, 32 * 2**20)]  # set back even on an error


def test_large_blocks_unmapped_without_mallopt_does_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No libc, or one without mallopt (musl's): the block runs as it is, errors and all."""
    runs = 0
    for libc in (None, object()):
        monkeypatch.setattr(memory, "_libc", lambda libc=libc: libc)
        with memory.large_blocks_unmapped():
            runs += 1
        with pytest.raises(RuntimeError, match="from the block"), memory.large_blocks_unmapped():
            raise RuntimeError("from the block")
    assert runs == 2
