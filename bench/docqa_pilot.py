"""A document-QA pilot end to end: the four arms on a SQuAD-format sample, against a 10-minute goal.

What it measures: `worker.pilots.runner.run_pilot` -- exactly what the worker runs -- with
the arms `fewshot, rag, qlora, qlora_rag` and the worker's caps from the app settings
(`pilot_max_train`, `pilot_max_test`, `pilot_max_train_minutes`), on a SQuAD-format sample
of about 400 questions over about 80 passages, parsed and split by the app's own code
(`parse_sample`, `prepare_pilot_data`: 20% test, so ~80 test questions). It prints each
arm's wall time, the pilot's, the ratio to the 10-minute goal, the prompt tokens and
per-query latency of each arm, and each arm's quality (exact match, token F1).

Reference, in the same run: `--compare REF` runs the same script on the code at git ref REF
(checked out into a temporary worktree) in a fresh process, on the same sample and models,
and prints the before/after wall-time ratio per arm, the quality of both, and how many
answers are identical (each differing answer is listed with `--show-diffs`). The two runs
follow each other, so background load can differ between them: `uptime` is printed before
and after each, and absolute times are context only.

The sample is built deterministically from COVID-QA (deepset, Moeller et al., "COVID-QA: A
Question Answering Dataset for COVID-19", ACL 2020 NLP-COVID workshop; Apache License 2.0;
the passages are CORD-19 papers, each under the licence named in its own header, such as
cc-by). Its 98 contexts are whole papers (6-45k characters), far longer than a SQuAD
paragraph, so each paper is cut at paragraph boundaries into passages of at most
`--passage-chars` characters (a paragraph longer than that is cut at sentence ends); a
question belongs to the passage that holds its whole answer (questions whose answer spans
two passages are dropped). The passages with the most questions are kept (`--passages`),
each with at most `--per-passage` questions, in the file's order. Pass the dataset file
with `--covid-qa PATH` (the JSON release of 2020-04-23, `200423_covidQA.json`).

Run from the repository root:
  .venv/bin/python -m bench.docqa_pilot --covid-qa PATH                # ~10-20 min
  .venv/bin/python -m bench.docqa_pilot --covid-qa PATH --questions 60 # a short run
  .venv/bin/python -m bench.docqa_pilot --covid-qa PATH --compare REF  # before/after
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT

GOAL_SECONDS = 600.0
ARMS = ["fewshot", "rag", "qlora", "qlora_rag"]
QUALITY = ("exact_match", "token_f1")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class ForwardTimes:
    """Where inference time goes, per arm and phase: global module hooks time every forward
    pass of a causal LM without gradients (a batch's prefill, one decoding step, a validation
    loss) and, inside it, its attention blocks (projections and attention), its MLP blocks and
    its LM head; "other" is embeddings, norms, cache bookkeeping and Python. The phase is read
    from the tokens per row a decoder layer gets: one is a decoding step. Forward passes with
    gradients (training) are left out: training has its own figure. The hooks cost a few
    microseconds per module call."""

    PARTS = ("attention", "mlp", "lm_head")

    def __init__(self) -> None:
        self.arm = "-"
        self.seconds: dict[tuple[str, str, str], float] = {}
        self.passes: dict[tuple[str, str], int] = {}
        self._stack: list[tuple[str, float]] = []
        self._heads: weakref.WeakSet[Any] = weakref.WeakSet()  # ids could be reused
        self._phase = "prefill"

    def _kind(self, module: Any) -> str | None:
        name = type(module).__name__
        if name.endswith("ForCausalLM"):
            return "model"
        if name.endswith("Attention"):
            return "attention"
        if name.endswith("MLP"):
            return "mlp"
        return "lm_head" if module in self._heads else None

    def _pre(self, module: Any, args: Any) -> None:
        import torch

        layer_input = args[0] if args else None
        if type(module).__name__.endswith("DecoderLayer") and getattr(layer_input, "ndim", 0) == 3:
            # The hidden states a layer gets: one token a row is a decoding step.
            self._phase = "decode" if layer_input.shape[1] == 1 else "prefill"
        kind = self._kind(module)
        if kind is None or torch.is_grad_enabled():
            return
        if kind != "model" and not self._stack:
            return  # outside a causal LM's pass: the retriever's embedder has "Attention" too
        if kind == "model":
            if any(k == "model" for k, _ in self._stack):
                return  # a wrapper's inner model (PEFT): the outer pass is timed
            head = module.get_output_embeddings()
            if head is not None:
                self._heads.add(head)
        self._stack.append((kind, time.perf_counter()))

    def _post(self, module: Any, args: Any, output: Any) -> None:
        kind = self._kind(module)
        if not self._stack or self._stack[-1][0] != kind:
            return
        _, started = self._stack.pop()
        key = (self.arm, self._phase, kind)
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - started
        if kind == "model":
            self.passes[key[:2]] = self.passes.get(key[:2], 0) + 1

    def install(self) -> list[Any]:
        from torch.nn.modules.module import (
            register_module_forward_hook,
            register_module_forward_pre_hook,
        )

        return [
            register_module_forward_pre_hook(self._pre),
            register_module_forward_hook(self._post),
        ]

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for (arm, phase), passes in self.passes.items():
            total = self.seconds.get((arm, phase, "model"), 0.0)
            parts = {part: self.seconds.get((arm, phase, part), 0.0) for part in self.PARTS}
            other = total - sum(parts.values())
            rows.append(
                {
                    "arm": arm,
                    "phase": phase,
                    "passes": passes,
                    "total_s": total,
                    **{f"{part}_s": value for part, value in parts.items()},
                    "other_s": other,
                }
            )
        return rows


def _pieces(paragraph: str, limit: int) -> list[str]:
    """A paragraph cut at sentence ends into pieces of at most `limit` characters (a single
    longer sentence stays whole: cutting inside it would cut answers)."""
    if len(paragraph) <= limit:
        return [paragraph]
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return pieces


def _passages(context: str, limit: int) -> list[tuple[int, str]]:
    """(start offset, text) of passages: consecutive paragraphs joined up to `limit` chars."""
    spans: list[tuple[int, str]] = []
    position = 0
    for line in context.split("\n"):
        start = context.find(line, position) if line else position
        position = start + len(line)
        if not line.strip():
            continue
        offset = start
        for piece in _pieces(line, limit):
            offset = context.find(piece, offset)
            spans.append((offset, piece))
            offset += len(piece)
    passages: list[tuple[int, str]] = []
    begin, end = -1, -1
    for start, text in spans:
        if begin >= 0 and start + len(text) - begin <= limit:
            end = start + len(text)
            continue
        if begin >= 0:
            passages.append((begin, context[begin:end]))
        begin, end = start, start + len(text)
    if begin >= 0:
        passages.append((begin, context[begin:end]))
    return passages


def _answer_span(context: str, answer: dict[str, Any]) -> tuple[int, int] | None:
    text = str(answer["text"]).strip()
    start = int(answer.get("answer_start", -1))
    found = context.find(text, max(start - 10, 0))
    if found < 0:
        found = context.find(text)
    return (found, found + len(text)) if found >= 0 and text else None


def build_sample(
    source: dict[str, Any], *, questions: int, passages: int, per_passage: int, passage_chars: int
) -> dict[str, Any]:
    """The SQuAD-format sample (see the module docstring); deterministic."""
    candidates: list[tuple[int, int, str, str, list[dict[str, Any]]]] = []
    for a, article in enumerate(source["data"]):
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            title = context.split("\n", 1)[0].strip() or f"paper {a + 1}"
            cut = _passages(context, passage_chars)
            owned: list[list[dict[str, Any]]] = [[] for _ in cut]
            for qa in paragraph["qas"]:
                if qa.get("is_impossible") or not qa.get("answers"):
                    continue
                span = _answer_span(context, qa["answers"][0])
                if span is None:
                    continue
                for p, (start, text) in enumerate(cut):
                    if start <= span[0] and span[1] <= start + len(text):
                        owned[p].append({
                            "id": str(qa["id"]),
                            "question": qa["question"].strip(),
                            "answers": [{
                                "text": context[span[0] : span[1]],
                                "answer_start": span[0] - start,
                            }],
                        })  # fmt: skip
                        break
            for p, (_, text) in enumerate(cut):
                if owned[p]:
                    candidates.append((a, p, title, text, owned[p][:per_passage]))
    ranked = sorted(candidates, key=lambda c: (-len(c[4]), c[0], c[1]))
    # A smaller sample keeps ~per_passage questions a passage, so fewer passages.
    wanted = min(passages, max(1, math.ceil(questions / per_passage)))
    chosen = sorted(ranked[:wanted], key=lambda c: (c[0], c[1]))
    articles: dict[str, dict[str, Any]] = {}
    left = questions
    for _, _, title, text, qas in chosen:
        if left <= 0:
            break
        kept = qas[:left]
        left -= len(kept)
        article = articles.setdefault(title, {"title": title, "paragraphs": []})
        article["paragraphs"].append({"context": text, "qas": kept})
    return {"version": "covid-qa-sample", "data": list(articles.values())}


# --------------------------------------------------------------------------- one run


def _uptime() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def sample_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The sample the flags describe, built from the COVID-QA file they name."""
    source = json.loads(Path(args.covid_qa).read_text(encoding="utf-8"))
    return build_sample(
        source,
        questions=args.questions,
        passages=args.passages,
        per_passage=args.per_passage,
        passage_chars=args.passage_chars,
    )


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    """Run the pilot as the worker would; return timings, quality and answers per arm."""
    import torch

    from app.domain.preparation import prepare_pilot_data
    from app.domain.samples.formats import SampleLimits, parse_sample
    from app.settings import get_settings
    from worker.pilots.resources import load_resources
    from worker.pilots.runner import config_from_settings, run_pilot

    sample = sample_from_args(args)
    n_passages = sum(len(a["paragraphs"]) for a in sample["data"])
    n_questions = sum(len(p["qas"]) for a in sample["data"] for p in a["paragraphs"])
    settings = get_settings()
    limits = SampleLimits(
        max_bytes=settings.max_upload_bytes,
        max_rows=settings.max_rows,
        max_line_chars=settings.max_line_chars,
    )
    parsed = parse_sample(json.dumps(sample).encode(), "covid-qa-sample.json", limits)
    data, _ = prepare_pilot_data(
        parsed,
        [],
        seed=0,
        max_train=settings.pilot_max_train,
        max_test=settings.pilot_max_test,
    )
    load_started = time.perf_counter()
    resources = load_resources(settings)
    load_seconds = time.perf_counter() - load_started
    with tempfile.TemporaryDirectory(prefix="docqa-bench-") as adapters:
        config = config_from_settings(
            settings,
            arms=list(args.arms),
            seed=0,
            max_train=settings.pilot_max_train,
            adapter_dir=Path(adapters),
        )
        starts: dict[str, float] = {}
        walls: dict[str, float] = {}

        def on_start(arm: str) -> None:
            starts[arm] = time.perf_counter()
            times.arm = arm
            print(f"  {arm} started (load {_uptime()})", flush=True)

        def on_done(outcome: Any) -> None:
            walls[outcome.arm] = time.perf_counter() - starts[outcome.arm]
            print(f"  {outcome.arm} {outcome.status} in {walls[outcome.arm]:.1f} s", flush=True)

        times = ForwardTimes()
        hooks = times.install()
        started = time.perf_counter()
        try:
            outcome = run_pilot(config, data, resources, on_arm_start=on_start, on_arm_done=on_done)
        finally:
            total = time.perf_counter() - started
            for hook in hooks:
                hook.remove()
    arms: dict[str, Any] = {}
    for arm in outcome.arms:
        metrics = {m.name: m.value for m in arm.metrics}
        result = arm.result
        predictions = sorted(result.predictions, key=lambda p: p.index) if result else []
        prompt_tokens = sorted(p.prompt_tokens for p in predictions)
        latencies = sorted(p.latency_ms for p in predictions)
        recipe = result.recipe if result else {}
        arms[arm.arm] = {
            "status": str(arm.status),
            "error": arm.error,
            "wall_s": walls.get(arm.arm, 0.0),
            "training_s": metrics.get("training_seconds", 0.0),
            "quality": {name: metrics.get(name) for name in QUALITY},
            "prompt_tokens_p50": prompt_tokens[len(prompt_tokens) // 2] if prompt_tokens else 0,
            "output_tokens_mean": (
                sum(p.output_tokens for p in predictions) / len(predictions) if predictions else 0
            ),
            "latency_ms_p50": latencies[len(latencies) // 2] if latencies else 0.0,
            "items_used": recipe.get("mean_items_used"),
            "answers": [p.prediction for p in predictions],
        }
    return {
        "questions": n_questions,
        "passages": n_passages,
        "split": [len(data.train), len(data.validation), len(data.test)],
        "targets": [e.target for e in data.test],
        "inputs": [e.input for e in data.test],
        "load_s": load_seconds,
        "total_s": total,
        "arms": arms,
        "threads": torch.get_num_threads(),
        "loadavg": _uptime(),
        "forward_times": times.rows(),
    }


def _print_run(label: str, run: dict[str, Any]) -> None:
    print(
        f"\n{label}: {run['questions']} questions over {run['passages']} passages; split "
        f"train/validation/test {run['split']}; torch threads {run['threads']}; "
        f"load average at the end {run['loadavg']}"
    )
    print(
        f"{'arm':<10} {'wall s':>8} {'train s':>8} {'prompt tok p50':>15} {'out tok':>8} "
        f"{'ms/query p50':>13} {'items':>6} {'EM':>6} {'F1':>6}"
    )
    for name, arm in run["arms"].items():
        quality = arm["quality"]
        em, f1 = quality.get("exact_match"), quality.get("token_f1")
        items = arm["items_used"]
        print(
            f"{name:<10} {arm['wall_s']:>8.1f} {arm['training_s']:>8.1f} "
            f"{arm['prompt_tokens_p50']:>15} {arm['output_tokens_mean']:>8.1f} "
            f"{arm['latency_ms_p50']:>13.0f} {'' if items is None else f'{items:.1f}':>6} "
            f"{'-' if em is None else f'{em:.3f}':>6} {'-' if f1 is None else f'{f1:.3f}':>6}"
            + (f"  {arm['status']}: {arm['error']}" if arm["error"] else "")
        )
    print(
        f"pilot wall time {run['total_s']:.1f} s (models loaded before, {run['load_s']:.1f} s); "
        f"goal {GOAL_SECONDS:.0f} s; ratio to the goal {run['total_s'] / GOAL_SECONDS:.2f}"
    )
    if run.get("forward_times"):
        print(
            "\nwhere the time went: forward passes without gradients (prefill: many tokens a "
            "row, incl. validation loss; decode: one), seconds"
        )
        print(
            f"{'arm':<10} {'phase':<8} {'passes':>7} {'total':>8} {'attention':>10} "
            f"{'MLP':>8} {'LM head':>8} {'other':>8}"
        )
        for row in run["forward_times"]:
            print(
                f"{row['arm']:<10} {row['phase']:<8} {row['passes']:>7} {row['total_s']:>8.1f} "
                f"{row['attention_s']:>10.1f} {row['mlp_s']:>8.1f} {row['lm_head_s']:>8.1f} "
                f"{row['other_s']:>8.1f}"
            )


def _reference(args: argparse.Namespace) -> dict[str, Any]:
    """This script on the code at `args.compare`, in a fresh process; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="docqa-ref-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(tree), args.compare],
            check=True,
            capture_output=True,
        )
        try:
            out = Path(scratch) / "reference.json"
            command = [
                sys.executable,
                "-m",
                "bench.docqa_pilot",
                "--code-root",
                str(tree),
                "--json-out",
                str(out),
                "--covid-qa",
                str(args.covid_qa),
                "--questions",
                str(args.questions),
                "--passages",
                str(args.passages),
                "--per-passage",
                str(args.per_passage),
                "--passage-chars",
                str(args.passage_chars),
                "--arms",
                ",".join(args.arms),
            ]
            # The same settings and models: this checkout's var/ (settings would otherwise
            # look for it beside the reference's code).
            env = {"VAR_DIR": str(REPO_ROOT / "var"), **os.environ}
            subprocess.run(command, check=True, cwd=REPO_ROOT, env=env)
            return dict(json.loads(out.read_text()))
        finally:
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )


def _compare(before: dict[str, Any], after: dict[str, Any], show_diffs: bool) -> list[str]:
    results = [f"total_ratio_before_after={before['total_s'] / after['total_s']:.3f}"]
    print(
        f"\nbefore / after wall time: pilot {before['total_s']:.1f} / {after['total_s']:.1f} s "
        f"= {before['total_s'] / after['total_s']:.2f}x"
    )
    for name, arm in after["arms"].items():
        ref = before["arms"].get(name)
        if ref is None or not arm["wall_s"]:
            continue
        same = sum(a == b for a, b in zip(ref["answers"], arm["answers"], strict=False))
        ratio = ref["wall_s"] / arm["wall_s"]
        q_before, q_after = ref["quality"], arm["quality"]
        changes = ", ".join(
            f"{m} {q_before.get(m) or 0:.3f} -> {q_after.get(m) or 0:.3f}" for m in QUALITY
        )
        print(
            f"  {name:<10} {ref['wall_s']:.1f} / {arm['wall_s']:.1f} s = {ratio:.2f}x; "
            f"identical answers {same}/{len(arm['answers'])}; {changes}"
        )
        results += [
            f"{name}_ratio_before_after={ratio:.3f}",
            f"{name}_identical_answers={same}/{len(arm['answers'])}",
        ]
        results += [f"{name}_{m}_before={q_before.get(m) or 0:.4f}" for m in QUALITY]
        if show_diffs:
            for i, (a, b) in enumerate(zip(ref["answers"], arm["answers"], strict=False)):
                if a != b:
                    print(f"    [{i}] Q: {after['inputs'][i]!r}")
                    print(f"        gold:   {after['targets'][i]!r}")
                    print(f"        before: {a!r}\n        after:  {b!r}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--covid-qa", required=True, help="COVID-QA JSON (200423_covidQA.json)")
    parser.add_argument("--questions", type=int, default=400, help="questions in the sample")
    parser.add_argument("--passages", type=int, default=80, help="passages at full size")
    parser.add_argument("--per-passage", type=int, default=5, help="questions kept per passage")
    parser.add_argument("--passage-chars", type=int, default=1500, help="passage length cap")
    parser.add_argument("--arms", type=lambda s: s.split(","), default=ARMS)
    parser.add_argument("--compare", metavar="REF", help="also run the code at git REF first")
    parser.add_argument(
        "--before-json", type=Path, help="a reference's saved result, instead of --compare"
    )
    parser.add_argument("--show-diffs", action="store_true", help="list differing answers")
    parser.add_argument("--dump-sample", type=Path, help="write the sample's JSON here and stop")
    parser.add_argument("--code-root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # The code measured: this checkout, or the reference's worktree (`--compare`).
    sys.path.insert(0, str(args.code_root or REPO_ROOT))
    if args.dump_sample:
        sample = sample_from_args(args)
        args.dump_sample.write_text(json.dumps(sample, indent=1))
        return
    if args.json_out:  # the reference's process
        args.json_out.write_text(json.dumps(run_once(args)))
        return

    before = None
    if args.before_json:
        before = json.loads(args.before_json.read_text())
        _print_run(f"before ({args.before_json.name})", before)
    elif args.compare:
        print(f"reference: the code at {args.compare}, fresh process (load {_uptime()})")
        before = _reference(args)
        _print_run(f"before ({args.compare})", before)
    print(f"\nmeasured: this checkout (load {_uptime()})", flush=True)
    after = run_once(args)
    _print_run("after (this checkout)", after)
    results = [
        f"questions={after['questions']}",
        f"passages={after['passages']}",
        f"test_questions={after['split'][2]}",
        f"total_seconds={after['total_s']:.1f}",
        f"ratio_to_goal={after['total_s'] / GOAL_SECONDS:.3f}",
    ]
    for name, arm in after["arms"].items():
        results.append(f"{name}_seconds={arm['wall_s']:.1f}")
        results += [f"{name}_{m}={arm['quality'].get(m) or 0:.4f}" for m in QUALITY]
    if before is not None:
        results += _compare(before, after, args.show_diffs)
    for line in results:
        print(f"RESULT {line}")


if __name__ == "__main__":
    main()
