"""Ask any OpenAI-compatible endpoint exactly what the pilot asked, and score the answers.

The prompt (instruction, label list, shots, stop rule, output budget) is the pilot's, from
serve/prompt.json; the messages are built by pilot_prompts.py and the answers scored by
pilot_metrics.py, both generated from PathPilot's own source when the bundle was exported.
Greedy decoding (temperature 0), as in the pilot. --fold-system puts the system message at the
head of the user message, for chat templates without a system role (Gemma), as
finetune/train_trl.py did when it trained on such a model (it says so).

    python serve/client.py --endpoint http://127.0.0.1:8000/v1 --model pilot-adapter \\
        --input data/test/test.jsonl --out predictions.jsonl

Input: instruction JSONL ({"instruction", "input", "output"}); rows without "output" are
answered but not scored. Prints one JSON object: the metrics with 95% bootstrap intervals;
progress (answered/total, ETA) goes to stderr. Needs Python 3.11+ and numpy; nothing else.
A pilot whose prompt retrieved its shots per query (prompt.json "retrieved_examples") is
asked through rag/query.py, which retrieves them; this client says so and stops.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from pilot_metrics import PilotTask as MetricTask
from pilot_metrics import percentile_interval, quality_statistics, resample_indices
from pilot_prompts import Example, PilotTask, build_messages, fold_system

HERE = Path(__file__).resolve().parent
RETRIED = {429, 500, 502, 503, 504}


class Progress:
    """Stage, step/total, elapsed time and ETA on stderr (stdout keeps the JSON summary): at
    the start, then at most every `every` seconds, and at the end. Thread-safe."""

    def __init__(
        self, stage: str, total: int, *, every: float = 2.0, stream: TextIO | None = None
    ) -> None:
        self.stage, self.total, self.every = stage, total, every
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.last = self.started
        self.done = 0
        self.lock = threading.Lock()
        self.show()

    def step(self, n: int = 1) -> None:
        with self.lock:
            self.done += n
            now = time.monotonic()
            if now - self.last >= self.every or self.done >= self.total:
                self.last = now
                self.show()

    def show(self) -> None:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 and self.done else 0.0
        eta = f"{(self.total - self.done) / rate:.0f}s" if rate else "unknown"
        print(
            f"[{self.stage}] {self.done}/{self.total}, {elapsed:.0f}s elapsed, ETA {eta}",
            file=self.stream,
            flush=True,
        )


def load_prompt(path: Path | None = None) -> dict[str, Any]:
    return json.loads((path or HERE / "prompt.json").read_text(encoding="utf-8"))


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def example_of(row: dict[str, Any]) -> Example:
    return Example(
        input=row["input"], target=row.get("output", ""), instruction=row.get("instruction", "")
    )


def messages_for(prompt: dict[str, Any], row: dict[str, Any]) -> list[dict[str, str]]:
    """The pilot's messages for one input: its instruction, listed labels and shots."""
    task = PilotTask(prompt["task"])
    shots = [example_of(shot) for shot in prompt.get("shots", [])]
    return build_messages(task, example_of(row), shots=shots, labels=prompt.get("labels", []))


def chat(
    endpoint: str,
    model: str,
    messages: Sequence[dict[str, str]],
    *,
    max_tokens: int,
    stop: Sequence[str],
    api_key: str | None = None,
    timeout: float = 60.0,
    attempts: int = 4,
) -> str:
    """One greedy chat completion; retries 429, 5xx and dropped connections with backoff."""
    body: dict[str, Any] = {
        "model": model,
        "messages": list(messages),
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    if stop:
        body["stop"] = list(stop)
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    url = endpoint.rstrip("/") + "/chat/completions"
    for attempt in range(attempts):
        request = urllib.request.Request(
            url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read().decode("utf-8"))
            return str(answer["choices"][0]["message"].get("content") or "")
        except urllib.error.HTTPError as error:
            if error.code not in RETRIED or attempt == attempts - 1:
                detail = error.read().decode("utf-8", "replace")[:500]
                raise RuntimeError(f"{url} answered {error.code}: {detail}") from error
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            if attempt == attempts - 1:
                raise
        time.sleep(min(8.0, 0.5 * 2**attempt))
    raise AssertionError("unreachable")


def answer_all(
    endpoint: str,
    model: str,
    conversations: Sequence[Sequence[dict[str, str]]],
    *,
    max_tokens: int,
    stop: Sequence[str],
    api_key: str | None = None,
    concurrency: int = 4,
    timeout: float = 60.0,
) -> list[str]:
    progress = Progress("answering", len(conversations))

    def one(messages: Sequence[dict[str, str]]) -> str:
        answer = chat(
            endpoint,
            model,
            messages,
            max_tokens=max_tokens,
            stop=stop,
            api_key=api_key,
            timeout=timeout,
        )
        progress.step()
        return answer

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, conversations))


def score(
    task: str,
    predictions: Sequence[str],
    targets: Sequence[str],
    *,
    labels: Sequence[str] = (),
    seed: int = 0,
    resamples: int = 1000,
) -> dict[str, dict[str, float]]:
    """Each quality metric with its 95% percentile-bootstrap interval, as the pilot reports."""
    statistics = quality_statistics(MetricTask(task), predictions, targets, labels=labels)
    n = len(targets)
    indices = resample_indices(n, n_resamples=resamples, seed=seed)
    scored = {}
    for name, statistic in statistics.items():
        value = float(statistic(np.arange(n)[None, :])[0])
        low, high = percentile_interval(statistic(indices))
        scored[name] = {"value": value, "ci_low": low, "ci_high": high}
    return scored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="API root, e.g. http://host:8000/v1")
    parser.add_argument("--model", required=True, help="the served model (or adapter) name")
    parser.add_argument("--api-key-env", help="environment variable holding the API key")
    parser.add_argument("--input", type=Path, default=HERE.parent / "data" / "test" / "test.jsonl")
    parser.add_argument("--prompt", type=Path, default=HERE / "prompt.json")
    parser.add_argument("--out", type=Path, help="write one JSON line per answer here")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument(
        "--fold-system",
        action="store_true",
        help="send the system message inside the first user message (Gemma's template)",
    )
    args = parser.parse_args(argv)

    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not api_key:
        parser.error(f"the environment variable {args.api_key_env} is not set")
    prompt = load_prompt(args.prompt)
    if prompt.get("retrieved_examples"):
        parser.error(
            "the pilot's prompt puts the nearest training examples in as shots, retrieved per "
            f"query: run {prompt['retrieved_examples']['run']} (same options) instead"
        )
    rows = read_rows(args.input)
    answers = answer_all(
        args.endpoint,
        args.model,
        [
            fold_system(messages) if args.fold_system else messages
            for messages in (messages_for(prompt, row) for row in rows)
        ],
        max_tokens=prompt["max_tokens"],
        stop=prompt["stop"],
        api_key=api_key,
        concurrency=args.concurrency,
        timeout=args.timeout,
    )
    if args.out:
        with args.out.open("w", encoding="utf-8") as handle:
            for row, answer in zip(rows, answers, strict=True):
                handle.write(json.dumps({**row, "prediction": answer}, ensure_ascii=False) + "\n")
    summary: dict[str, Any] = {"model": args.model, "answered": len(answers)}
    if rows and all("output" in row for row in rows):
        metrics = score(
            prompt["task"],
            answers,
            [row["output"] for row in rows],
            labels=prompt.get("all_labels", []),
            seed=prompt.get("seed", 0),
        )
        summary |= {"primary_metric": prompt["primary_metric"], "metrics": metrics}
        summary["pilot"] = prompt.get("pilot")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
