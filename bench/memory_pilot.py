"""Peak host memory (RSS) of a whole 4-arm pilot on the default model, per arm (CPU).

What it measures: a fresh process that does what a worker does for one pilot -- parse
`examples/banking77-sample.csv`, split it with `prepare_pilot_data` (the worker's caps:
PILOT_MAX_TRAIN / PILOT_MAX_TEST unless `--max-train/--max-test` say otherwise), load the
models with `worker.pilots.resources.load_resources`, then run the arms `fewshot, rag, qlora,
qlora_rag` with `worker.pilots.runner.run_pilot` (the QLoRA + RAG arm adopts the QLoRA
arm's adapter, as in a real pilot). Two figures of the process's peak resident set:
`getrusage` ru_maxrss (the kernel's high-water mark) and a thread that samples VmRSS,
RssAnon and RssFile from /proc/self/status every 20 ms, labelled with the arm and the stage
its progress reports (loading, training, evaluating, ...) or a finer one (STAGES below), so
the peak is attributed.

Reference (same run): a fresh process that only imports the same libraries and loads the
same resources (`load_resources`: bf16 LLM + embedder), i.e. the floor every pilot starts
from. With `--compare` the pilot runs a second time, in its own fresh process, with the
memory levers switched off (the bench replaces them with no-ops in that process: LEVERS
below; ENV_LEVERS get the library's default back), for before/after figures and a check that
every arm's predictions and primary metric are the same (the token cap is the one lever that
changes training: the parts round differently and draw other dropout masks, so the QLoRA
arms' answers may differ with it off); `--without LEVER` switches one lever off in the
measured run, to see what it gives. The QLoRA arm plans its recipe from a timed probe and
stops at a time cap, so on a loaded machine two runs may train different steps: `--pinned`
fixes the plan (for the identity check). `--checkpointing` trains with gradient
checkpointing (the arm's own option, slower; not a lever), for comparison.

Printed: peak RSS overall and per arm (with its stage and the anonymous / file-backed split
at that moment), RSS after each arm, the ratio of the pilot's peak to the 2.5 GB goal and to
the load-only reference, and each arm's primary metric with a digest of its predictions.

Run from the repository root:  .venv/bin/python -m bench.memory_pilot
(`--max-train 48 --max-test 24` for a run of a few minutes)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, SAMPLE

ARMS = ["fewshot", "rag", "qlora", "qlora_rag"]
GOAL_MIB = 2.5 * 1000**3 / 2**20  # the 2.5 GB, in MiB
# --pinned: the QLoRA recipe is planned for this step time instead of a timed probe, and the
# time cap is out of reach, so two runs train the same steps whatever the machine's load.
PINNED_SECONDS_PER_STEP = 1.0
PINNED_MINUTES = 120.0
# The memory levers by name, each as the (module, name) places where the code that uses it
# looks it up; switched off, each is replaced by a no-op there (a context manager that does
# nothing, or a function that does nothing).
LEVERS: dict[str, list[tuple[str, str]]] = {
    "contiguous-head": [
        ("worker.pilots.generation", "contiguous_head_input"),
        ("worker.pilots.arms.qlora.loop", "contiguous_head_input"),
    ],
    "mask-dropout": [("worker.pilots.arms.qlora.training", "use_mask_dropout")],
    "silu-gate": [("worker.pilots.arms.qlora.training", "use_silu_gate")],
    "unmap-large-blocks": [("worker.pilots.arms.qlora.training", "large_blocks_unmapped")],
    "trim-after-training": [("worker.pilots.arms.qlora.training", "release_freed_memory")],
    "own-unquantized": [("worker.pilots.arms.qlora.model", "_own_unquantized_tensors")],
    "drop-mapped-pages": [
        ("worker.pilots.arms.qlora.training", "drop_mapped_pages"),
        ("worker.pilots.arms.qlora.evaluation", "drop_mapped_pages"),
    ],
    # No cap: `tokens_per_forward` answering None leaves every micro-batch whole.
    "token-cap": [
        ("worker.pilots.arms.qlora.training", "tokens_per_forward"),
        ("worker.pilots.arms.qlora.loop", "tokens_per_forward"),
    ],
}
# Levers that are environment settings the worker package defaults on import: switched off,
# the bench sets the library's own default back before any torch work in that process.
ENV_LEVERS: dict[str, tuple[str, str]] = {
    "primitive-cache": ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "1024"),
}
CONTEXT_MANAGERS = {"contiguous_head_input", "large_blocks_unmapped"}
# Finer labels than the arms' progress stages: (module, name, label) of functions whose
# duration is labelled as a stage of the running arm.
STAGES: list[tuple[str, str, str]] = [
    ("worker.pilots.arms.qlora.training", "load_quantized_base", "quantise"),
    ("worker.pilots.arms.qlora.training", "_probe_seconds_per_step", "probe"),
    ("worker.pilots.arms.qlora.loop", "validation_loss", "validation"),
    ("worker.pilots.arms.qlora.evaluation", "load_eval_model", "eval-model"),
    ("worker.pilots.arms.rag", "build_retriever", "index"),
    ("worker.pilots.arms.qlora_rag", "build_retriever", "index"),
]


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # Linux: KiB


def status_mib() -> dict[str, float]:
    """VmRSS, RssAnon, RssFile (MiB) from /proc/self/status; empty off Linux."""
    figures: dict[str, float] = {}
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return figures
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            figures[key] = int(rest.split()[0]) / 1024
    return figures


class Sampler:
    """Samples /proc/self/status in a thread; keeps the peak VmRSS per label (arm/stage)."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.label = "start"
        self.peaks: dict[str, dict[str, float]] = {}
        self.highest: dict[str, float] = {}  # each figure's own maximum over the run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        figures = status_mib()
        if not figures:
            return
        for key, value in figures.items():
            self.highest[key] = max(self.highest.get(key, 0.0), value)
        label = self.label
        best = self.peaks.get(label)
        if best is None or figures["VmRSS"] > best["VmRSS"]:
            self.peaks[label] = figures

    def set(self, label: str) -> None:
        self.sample()  # the end of the previous label
        self.label = label
        self.sample()

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def load_data(max_train: int, max_test: int, seed: int) -> Any:
    """The sample parsed and split as the worker does (`worker.step_reads.load_inputs`)."""
    from app.domain.preparation import prepare_pilot_data
    from app.domain.samples.formats import SampleLimits, parse_sample
    from app.settings import get_settings

    settings = get_settings()
    limits = SampleLimits(
        max_bytes=settings.max_upload_bytes,
        max_rows=settings.max_rows,
        max_line_chars=settings.max_line_chars,
    )
    parsed = parse_sample(SAMPLE.read_bytes(), SAMPLE.name, limits)
    data, _ = prepare_pilot_data(parsed, [], seed=seed, max_train=max_train, max_test=max_test)
    return data


def child_reference() -> None:
    """Imports and `load_resources` only: the floor of every pilot's process."""
    import bitsandbytes  # noqa: F401  (the pilot child pays for the same imports)
    import peft  # noqa: F401

    from worker.pilots.resources import load_resources

    after_imports = peak_rss_mib()
    resources = load_resources()
    print(
        json.dumps(
            {
                "after_imports_mib": after_imports,
                "peak_mib": peak_rss_mib(),
                "rss_mib": status_mib().get("VmRSS", 0.0),
                "parameters": resources.model_parameters,
            }
        )
    )


def switch_off(levers: list[str]) -> None:
    import contextlib
    import importlib

    def no_context(*_args: Any, **_kwargs: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def nothing(*_args: Any, **_kwargs: Any) -> None:
        return None

    for lever in levers:
        if lever in ENV_LEVERS:
            variable, default = ENV_LEVERS[lever]
            os.environ[variable] = default
            continue
        for module, name in LEVERS[lever]:
            replacement = no_context if name in CONTEXT_MANAGERS else nothing
            setattr(importlib.import_module(module), name, replacement)


def label_stages(sampler: Sampler) -> None:
    """Label the time inside each function of STAGES as a stage of the running arm."""
    import functools
    import importlib

    for module_name, name, stage in STAGES:
        module = importlib.import_module(module_name)
        function = getattr(module, name)

        @functools.wraps(function)
        def labelled(*args: Any, _function: Any = function, _stage: str = stage, **kw: Any) -> Any:
            previous = sampler.label
            sampler.set(f"{previous.split('/')[0]}/{_stage}")
            try:
                return _function(*args, **kw)
            finally:
                sampler.set(previous)

        setattr(module, name, labelled)


def child_pilot(
    max_train: int,
    max_test: int,
    seed: int,
    minutes: float | None,
    off: list[str],
    checkpointing: bool,
    pinned: bool,
) -> None:
    """One whole pilot in this process; prints one JSON line of memory figures and results."""
    import bitsandbytes  # noqa: F401
    import peft  # noqa: F401
    from transformers.utils import logging as transformers_logging

    from app.domain.records import ArmOutcome, ArmStatus, Progress
    from app.settings import get_settings
    from worker.pilots.resources import load_resources
    from worker.pilots.runner import config_from_settings, run_pilot

    transformers_logging.disable_progress_bar()
    settings = get_settings()
    sampler = Sampler().start()
    switch_off(off)
    label_stages(sampler)
    after_imports = peak_rss_mib()
    sampler.set("load")
    data = load_data(max_train, max_test, seed)
    resources = load_resources(settings)
    sampler.set("loaded")
    loaded_rss = status_mib().get("VmRSS", 0.0)
    with tempfile.TemporaryDirectory(prefix="memory-pilot-") as adapters:
        config = config_from_settings(
            settings, arms=ARMS, seed=seed, max_train=max_train, adapter_dir=Path(adapters)
        )
        config.max_test = max_test
        if minutes is not None:
            config.max_train_minutes = minutes
        if checkpointing or pinned:  # the QLoRA arm's own options, not memory levers
            from app.domain.arms import QLoRAConfig

            config.configs["qlora"] = QLoRAConfig(
                adapter_dir=Path(adapters),
                seed=seed,
                max_train_minutes=PINNED_MINUTES if pinned else config.max_train_minutes,
                gradient_checkpointing=True if checkpointing else None,
                seconds_per_step=PINNED_SECONDS_PER_STEP if pinned else None,
            )
        arm_times: dict[str, float] = {}
        after_arm: dict[str, dict[str, float]] = {}
        current: dict[str, Any] = {"arm": None, "started": 0.0}

        def on_arm_start(arm: str) -> None:
            current.update(arm=arm, started=time.perf_counter())
            sampler.set(f"{arm}/start")

        def on_progress(arm: str, update: Progress) -> None:
            label = f"{arm}/{update.stage}"
            if label != sampler.label:
                sampler.set(label)

        def on_arm_done(outcome: ArmOutcome) -> None:
            arm_times[outcome.arm] = time.perf_counter() - current["started"]
            after_arm[outcome.arm] = status_mib() | {"ru_maxrss": peak_rss_mib()}
            sampler.set(f"{outcome.arm}/after")

        outcome = run_pilot(
            config,
            data,
            resources,
            on_progress=on_progress,
            on_arm_start=on_arm_start,
            on_arm_done=on_arm_done,
        )
    sampler.set("conclusion")
    sampler.stop()
    results = {}
    for arm in outcome.arms:
        metric = next((m for m in arm.metrics if m.name == outcome.primary_metric), None)
        predictions = arm.result.predictions if arm.result is not None else []
        answers = "\x1f".join(f"{p.index}:{p.prediction}" for p in predictions)
        digest = hashlib.sha256(answers.encode()).hexdigest()
        results[arm.arm] = {
            "status": str(arm.status.value if isinstance(arm.status, ArmStatus) else arm.status),
            "error": arm.error,
            "metric": None if metric is None else metric.value,
            "digest": digest[:12],
            "seconds": arm_times.get(arm.arm, 0.0),
            "recorded_peak_mb": arm.result.peak_memory_mb if arm.result is not None else None,
            "steps_run": arm.result.recipe.get("steps_run") if arm.result is not None else None,
            "training_seconds": arm.result.training_seconds if arm.result is not None else None,
        }
    print(
        json.dumps(
            {
                "levers_off": off,
                "checkpointing": checkpointing,
                "pinned": pinned,
                "after_imports_mib": after_imports,
                "loaded_rss_mib": loaded_rss,
                "peak_mib": peak_rss_mib(),
                "peaks": sampler.peaks,
                "highest": sampler.highest,
                "after_arm": after_arm,
                "primary_metric": outcome.primary_metric,
                "results": results,
                "train": len(data.train),
                "test": min(len(data.test), max_test),
            }
        )
    )


def run_child(args: list[str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.memory_pilot", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"the child {args} failed:\n{result.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def arm_peaks(report: dict[str, Any]) -> dict[str, tuple[str, dict[str, float]]]:
    """Per arm: its highest-sampled stage and the figures there."""
    best: dict[str, tuple[str, dict[str, float]]] = {}
    for label, figures in report["peaks"].items():
        arm = label.split("/")[0]
        if arm not in best or figures["VmRSS"] > best[arm][1]["VmRSS"]:
            best[arm] = (label, figures)
    return best


def describe(name: str, report: dict[str, Any]) -> None:
    print(
        f"{name}: {report['train']} train / {report['test']} test; after imports "
        f"{report['after_imports_mib']:.0f} MiB, after load_resources "
        f"{report['loaded_rss_mib']:.0f} MiB; peak (ru_maxrss) {report['peak_mib']:.0f} MiB, "
        f"highest sampled anonymous {report['highest'].get('RssAnon', 0):.0f} MiB and "
        f"file-backed {report['highest'].get('RssFile', 0):.0f} MiB"
    )
    peaks = arm_peaks(report)
    for arm in ["load", *ARMS]:
        if arm not in peaks:
            continue
        label, figures = peaks[arm]
        after = report["after_arm"].get(arm)
        result = report["results"].get(arm, {})
        metric = result.get("metric")
        print(
            f"  {arm:<10} peak {figures['VmRSS']:6.0f} MiB at {label:<22} "
            f"(anon {figures.get('RssAnon', 0):.0f}, file {figures.get('RssFile', 0):.0f})"
            + (f"; after {after['VmRSS']:.0f} MiB" if after else "")
            + (f"; {result.get('seconds', 0):.0f} s" if result else "")
            + (
                f" ({result['steps_run']} steps trained in {result['training_seconds']:.0f} s)"
                if result.get("steps_run")
                else ""
            )
            + (
                f"; {report['primary_metric']} {metric:.3f} [{result['digest']}]"
                if metric is not None
                else (f"; {result.get('status')} {result.get('error') or ''}" if result else "")
            )
        )
    stages = ", ".join(
        f"{label} {figures['VmRSS']:.0f}" for label, figures in report["peaks"].items()
    )
    print(f"  every stage's peak (MiB): {stages}")


def main() -> None:
    from app.settings import Settings

    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-train", type=int, default=defaults.pilot_max_train, help="PILOT_MAX_TRAIN"
    )
    parser.add_argument(
        "--max-test", type=int, default=defaults.pilot_max_test, help="PILOT_MAX_TEST"
    )
    parser.add_argument("--seed", type=int, default=0, help="split, shots, training")
    parser.add_argument(
        "--minutes", type=float, default=None, help="fine-tuning time cap (PILOT_MAX_TRAIN_MINUTES)"
    )
    parser.add_argument(
        "--compare", action="store_true", help="also run the pilot with the levers off"
    )
    parser.add_argument(
        "--checkpointing",
        action="store_true",
        help="train the QLoRA arm with gradient checkpointing (its config option; slower)",
    )
    parser.add_argument(
        "--pinned",
        action="store_true",
        help="plan the QLoRA recipe for a fixed step time, no time cap: both runs of "
        "--compare then train the same steps and their results can be compared",
    )
    parser.add_argument("--child", choices=["pilot", "reference"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=[*LEVERS, *ENV_LEVERS, "all"],
        help="switch a lever off in the measured run (repeatable; to see what each gives)",
    )
    args = parser.parse_args()
    if args.child == "reference":
        child_reference()
        return
    if args.child == "pilot":
        off = [*LEVERS, *ENV_LEVERS] if "all" in args.without else args.without
        child_pilot(
            args.max_train,
            args.max_test,
            args.seed,
            args.minutes,
            off,
            args.checkpointing,
            args.pinned,
        )
        return

    pilot_args = [
        "--child", "pilot", "--max-train", str(args.max_train), "--max-test", str(args.max_test),
        "--seed", str(args.seed),
        *(["--minutes", str(args.minutes)] if args.minutes is not None else []),
        *(["--pinned"] if args.pinned else []),
    ]  # fmt: skip
    reference = run_child(["--child", "reference"])
    before = run_child([*pilot_args, "--without", "all"]) if args.compare else None
    chosen = [*(f"--without={lever}" for lever in args.without)]
    after = run_child([*pilot_args, *chosen, *(["--checkpointing"] if args.checkpointing else [])])

    print(
        f"reference (imports + load_resources only): after imports "
        f"{reference['after_imports_mib']:.0f} MiB, peak {reference['peak_mib']:.0f} MiB, "
        f"RSS {reference['rss_mib']:.0f} MiB"
    )
    if before is not None:
        describe("pilot, levers off", before)
    off = f", without {', '.join(args.without)}" if args.without else ""
    off += ", QLoRA with gradient checkpointing" if args.checkpointing else ""
    off += ", QLoRA recipe pinned" if args.pinned else ""
    describe(("pilot, levers on" if before is not None else "pilot") + off, after)
    peak = after["peak_mib"]
    print(f"ratio pilot peak / 2.5 GB goal:         {peak / GOAL_MIB:.2f}")
    print(f"ratio pilot peak / load-only reference: {peak / reference['peak_mib']:.2f}")
    if before is not None:
        print(f"ratio levers on / off (pilot peak):     {peak / before['peak_mib']:.2f}")
        same = all(
            before["results"][arm]["digest"] == after["results"][arm]["digest"]
            and before["results"][arm]["metric"] == after["results"][arm]["metric"]
            for arm in ARMS
            if arm in before["results"] and arm in after["results"]
        )
        print(f"identical predictions and primary metrics, levers on vs off: {same}")
        print(f"RESULT peak_rss_levers_off_mib={before['peak_mib']:.0f}")
        print(f"RESULT levers_on_over_off={after['peak_mib'] / before['peak_mib']:.2f}")
        print(f"RESULT identical_results={int(same)}")
    peaks = arm_peaks(after)
    print(f"RESULT peak_rss_mib={after['peak_mib']:.0f}")
    for arm in ARMS:
        if arm in peaks:
            print(f"RESULT peak_rss_{arm}_mib={peaks[arm][1]['VmRSS']:.0f}")
    print(f"RESULT reference_peak_rss_mib={reference['peak_mib']:.0f}")
    print(f"RESULT peak_over_goal={after['peak_mib'] / GOAL_MIB:.2f}")
    print(f"RESULT peak_over_reference={after['peak_mib'] / reference['peak_mib']:.2f}")


if __name__ == "__main__":
    main()
