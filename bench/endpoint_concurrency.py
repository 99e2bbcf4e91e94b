"""Concurrent requests to a vLLM server vs one at a time, through the endpoint client.

What it measures: `OpenAICompatibleClient.chat_many` (`app.integrations.openai_compatible.client`)
-- the client the pilot arms use for OpenAI-compatible endpoints -- sending `--n` short chat
requests with `max_concurrency=--concurrency`, so that vLLM can batch them
(continuous batching). The requests are classification prompts rendered from
`examples/banking77-sample.csv` by the arms' own prompt code (`short_messages`: instruction +
input), greedy, at most `--max-tokens` new tokens, stopping at a newline as the arms do.

Reference, measured in the same run on the same requests: the same call with
`max_concurrency=1` (one request at a time). The two alternate for `--rounds` rounds, the
order swapping each round, so that load from other work falls on both alike. The script
prints the wall time of each, the ratio sequential / concurrent, the mean per-request
latency of each (concurrency trades latency for throughput), and how many greedy answers
are identical between the two (batched bf16 arithmetic may change a few).

By default it starts its own vLLM server (from `.venv-vllm/`, as the tests do; `make vllm`
builds it) on the default model and stops it at the end; `--base-url` and `--model` point it
at a server that is already running instead.

Run from the repository root:  .venv/bin/python -m bench.endpoint_concurrency
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.domain.prompts import short_messages
from app.domain.samples.schemas import Example, PilotTask
from app.integrations.openai_compatible.client import OpenAICompatibleClient
from app.integrations.openai_compatible.schemas import (
    ChatAnswer,
    ChatRequest,
    EndpointSpec,
)
from bench.common import SAMPLE
from tests.vllm_server import running_vllm, vllm_missing


def read_requests(path: Path, n: int, max_tokens: int) -> list[ChatRequest]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:n]
    if len(rows) < n:
        raise SystemExit(f"the sample has {len(rows)} rows, {n} asked for")
    examples = [
        Example(input=row["text"], target=row["label"], line=i + 2) for i, row in enumerate(rows)
    ]
    return [
        ChatRequest(
            [
                {"role": m["role"], "content": m["content"]}
                for m in short_messages(PilotTask.classification, e)
            ],
            max_tokens=max_tokens,
            stop=["\n"],
        )
        for e in examples
    ]


@contextmanager
def endpoint(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(base URL, model): the given server, or one started here for the run."""
    if args.base_url:
        yield args.base_url, args.model
        return
    missing = vllm_missing()
    if missing:
        raise SystemExit(missing)
    with (
        tempfile.TemporaryDirectory(prefix="vllm-bench-") as work,
        running_vllm(Path(work)) as server,
    ):
        print(f"vLLM server started in {server.startup_s:.1f} s (log {server.log_path})")
        yield server.base_url, server.model


def run(
    base_url: str, model: str, requests: list[ChatRequest], concurrency: int
) -> tuple[list[ChatAnswer], float]:
    spec = EndpointSpec(base_url, model, max_concurrency=concurrency, timeout_s=300.0)
    with OpenAICompatibleClient(spec) as client:
        started = time.perf_counter()
        answers = client.chat_many(requests)
        return answers, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="requests (rows of the sample)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    parser.add_argument("--max-tokens", type=int, default=12, help="output budget per request")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds of both modes")
    parser.add_argument("--base-url", help="a running server's API root (default: start vLLM)")
    parser.add_argument("--model", default="smollm2", help="served model name with --base-url")
    parser.add_argument("--show", type=int, default=5, help="answer mismatches to print at most")
    args = parser.parse_args()
    requests = read_requests(SAMPLE, args.n, args.max_tokens)

    with endpoint(args) as (base_url, model):
        # Warm-up (not timed): vLLM's first requests pay for graph and cache set-up, and a
        # full batch of `concurrency` requests may take another path than a single one.
        run(base_url, model, requests[: args.concurrency], args.concurrency)
        run(base_url, model, requests[:2], 1)

        seq_s = con_s = 0.0
        ratios: list[float] = []
        sequential: list[ChatAnswer] = []
        concurrent: list[ChatAnswer] = []
        for number in range(args.rounds):
            elapsed: dict[int, float] = {}
            for level in sorted({1, args.concurrency}, reverse=number % 2 == 1):
                answers, elapsed[level] = run(base_url, model, requests, level)
                if level == 1:
                    sequential = answers
                else:
                    concurrent = answers
            seq_s += elapsed[1]
            con_s += elapsed[args.concurrency]
            ratios.append(elapsed[1] / elapsed[args.concurrency])

    tokens = sum(a.completion_tokens or 0 for a in concurrent)
    prompt_tokens = [a.prompt_tokens or 0 for a in concurrent]
    print(
        f"model={model} n={len(requests)} concurrency={args.concurrency} "
        f"max_tokens={args.max_tokens} rounds={args.rounds} "
        f"prompt_tokens min/mean/max={min(prompt_tokens)}/"
        f"{statistics.mean(prompt_tokens):.0f}/{max(prompt_tokens)} "
        f"completion_tokens per round={tokens}"
    )
    seq_lat = statistics.mean(a.latency_ms for a in sequential)
    con_lat = statistics.mean(a.latency_ms for a in concurrent)
    total = args.rounds * len(requests)
    print(
        f"sequential (max_concurrency=1): {seq_s:7.2f} s  {total / seq_s:6.2f} requests/s  "
        f"mean latency {seq_lat:6.0f} ms  (reference)"
    )
    print(
        f"concurrent (max_concurrency={args.concurrency}): {con_s:7.2f} s  "
        f"{total / con_s:6.2f} requests/s  mean latency {con_lat:6.0f} ms"
    )
    print(f"per round sequential/concurrent: {', '.join(f'{r:.2f}' for r in ratios)}")
    mismatches = [
        i for i, (s, c) in enumerate(zip(sequential, concurrent, strict=True)) if s.text != c.text
    ]
    print(f"identical answers: {len(requests) - len(mismatches)}/{len(requests)}")
    for i in mismatches[: args.show]:
        print(
            f"  mismatch #{i}: sequential={sequential[i].text!r} concurrent={concurrent[i].text!r}"
        )
    print(f"RESULT endpoint_concurrency_speedup={seq_s / con_s:.2f}")


if __name__ == "__main__":
    main()
