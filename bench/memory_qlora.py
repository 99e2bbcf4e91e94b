"""Host memory of the QLoRA arms' NF4 base vs the bf16 model every other arm uses (CPU).

What it measures: peak resident set size (getrusage ru_maxrss) of a fresh process that loads
the default LLM with `worker.pilots.arms.qlora.model.load_quantized_base(path, "cpu")`
(bitsandbytes NF4, double quantisation, bf16 compute), as a RATIO against the reference
measured in the same run: a fresh process that loads it with
`worker.pilots.resources.load_model_and_tokenizer(path, "cpu")` (bf16). Each load runs in its own
subprocess so neither inherits the other's peak.

Both children import the same libraries (torch, transformers, bitsandbytes, the worker
modules) before measuring their baseline, so the "load" figure (peak minus the peak after
imports) is the model's own cost; the total peak is what the process really needs. Also
printed: resident set size after loading (steady state) and the parameters' own footprint
(`model.get_memory_footprint()`).

Run from the repository root:  .venv/bin/python -m bench.memory_qlora
"""

from __future__ import annotations

import argparse
import ctypes
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_LLM, REPO_ROOT

# Run as `python -m bench.memory_qlora`: put the repository root on sys.path so the `app`
# and `worker` packages import without installing the project.

MIB = 2**20


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def current_rss_mib() -> float:
    """VmRSS from /proc (Linux); the peak where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


def trimmed_rss_mib() -> float | None:
    """RSS after glibc's malloc_trim(0) returns freed heap pages to the OS (None elsewhere).

    A diagnostic: it tells memory the model still holds from memory the allocator kept.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return current_rss_mib()


def mapped_rss_mib(directory: Path) -> float | None:
    """Resident MiB of file mappings under `directory` (mmapped safetensors); None off Linux.

    Clean file-backed pages count in RSS but the kernel can drop them under pressure, so this
    part of RSS is cheaper than anonymous memory.
    """
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return None
    prefix = str(directory.resolve())
    total_kib = 0
    inside = False
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        if not fields[0].endswith(
            ":"
        ):  # a mapping header: "start-end perms offset dev inode [path]"
            inside = len(fields) > 5 and fields[5].startswith(prefix)
        elif inside and fields[0] == "Rss:":
            total_kib += int(fields[1])
    return total_kib / 1024


def child(kind: str, model_path: str) -> None:
    """Load one way, run one short forward pass, and print one JSON line of memory figures."""
    import bitsandbytes  # noqa: F401  (both children pay for the same imports)
    import torch
    import transformers  # noqa: F401

    from worker.pilots.arms.qlora.model import count_linear4bit, load_quantized_base
    from worker.pilots.resources import load_model_and_tokenizer

    after_imports = peak_rss_mib()
    model: Any
    if kind == "nf4":
        model = load_quantized_base(model_path, "cpu")
    else:
        model, _ = load_model_and_tokenizer(model_path, "cpu")
    peak_load, rss_load = peak_rss_mib(), current_rss_mib()
    # safetensors weights are memory-mapped and paged in lazily: one forward pass touches
    # every layer, so the figures below are those of a model in use, not just "opened".
    with torch.inference_mode():
        model(input_ids=torch.arange(16).unsqueeze(0) + 100)
    report = {
        "kind": kind,
        "after_imports_mib": after_imports,
        "peak_load_mib": peak_load,
        "rss_load_mib": rss_load,
        "peak_mib": peak_rss_mib(),
        "rss_mib": current_rss_mib(),
        "rss_trimmed_mib": trimmed_rss_mib(),
        "mapped_model_mib": mapped_rss_mib(Path(model_path)),
        "footprint_mib": model.get_memory_footprint() / MIB,
        "linear4bit_layers": count_linear4bit(model),
    }
    print(json.dumps(report))


def measure(kind: str, model_path: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.memory_qlora", "--child", kind, "--model", model_path],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"the {kind} child failed:\n{result.stderr}")
    last = result.stdout.strip().splitlines()[-1]
    report: dict[str, Any] = json.loads(last)
    return report


def median_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median of numeric figures (None stays None); other keys from the first run."""
    merged = dict(reports[0])
    for key, value in merged.items():
        if isinstance(value, float):
            merged[key] = statistics.median(r[key] for r in reports)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_LLM, help="local model directory")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per kind")
    parser.add_argument("--child", choices=["nf4", "bf16"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, str(args.model))
        return

    runs: dict[str, list[dict[str, Any]]] = {"bf16": [], "nf4": []}
    for _ in range(args.repeats):  # alternate, so background load falls on both alike
        for kind, reports in runs.items():
            reports.append(measure(kind, str(args.model)))
    bf16, nf4 = median_report(runs["bf16"]), median_report(runs["nf4"])
    print(
        f"model={args.model.name}  (each load in a fresh subprocess, CPU; medians of "
        f"{args.repeats} runs each)"
    )
    for kind, reports in runs.items():
        peaks = ", ".join(f"{r['peak_mib']:.0f}" for r in reports)
        print(f"  {kind} peak RSS per run: {peaks} MiB")
    for r in (bf16, nf4):
        if r["kind"] == "bf16":
            label = "bf16 load_model_and_tokenizer (reference)"
        else:
            label = f"nf4 load_quantized_base ({r['linear4bit_layers']} Linear4bit layers)"
        trimmed = r["rss_trimmed_mib"]
        print(
            f"  {label}:\n"
            f"    after imports {r['after_imports_mib']:.0f} MiB; after load: peak "
            f"{r['peak_load_mib']:.0f}, RSS {r['rss_load_mib']:.0f} MiB; after one forward: "
            f"peak {r['peak_mib']:.0f}, RSS {r['rss_mib']:.0f} MiB"
            + (f" ({trimmed:.0f} MiB after malloc_trim)" if trimmed is not None else "")
            + f"; parameters {r['footprint_mib']:.0f} MiB"
            + (
                f"; model file mapped and resident {r['mapped_model_mib']:.0f} MiB"
                if r["mapped_model_mib"] is not None
                else ""
            )
        )

    def ratio(key: str, *, less_imports: bool = False) -> float:
        base = bf16["after_imports_mib"] if less_imports else 0.0
        quantised = nf4["after_imports_mib"] if less_imports else 0.0
        return (nf4[key] - quantised) / (bf16[key] - base)

    print(f"ratio nf4/bf16 peak RSS (whole process):        {ratio('peak_mib'):.2f}")
    print(
        "ratio nf4/bf16 peak RSS above the import baseline: "
        f"{ratio('peak_mib', less_imports=True):.2f}"
    )
    if nf4["rss_trimmed_mib"] is not None and bf16["rss_trimmed_mib"] is not None:
        print(f"ratio nf4/bf16 RSS after malloc_trim:          {ratio('rss_trimmed_mib'):.2f}")
    print(f"ratio nf4/bf16 parameter bytes:                 {ratio('footprint_mib'):.2f}")


if __name__ == "__main__":
    main()
