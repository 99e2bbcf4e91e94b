"""Report and pilot pages under concurrent load, and PDF generation, against `pathpilot serve`.

Stores N finished pilots (default 200) in a fresh database the way the worker leaves them:
the sample is `examples/banking77-sample.csv`, uploaded and split by the app's own services
(`store_sample`, `prepare_pilot_data`); each arm's answers are synthetic (a seeded share of the
test items right, realistic latencies and token counts), and everything after them is the
production path: bootstrap intervals and paired differences from `app.domain`, then
`start_pilot`, then the worker's steps, each under its own lease: `claim` and `store_split`,
`claim_arm` and `record_arm` per arm, `claim_conclusion` and `finish_pilot`.

Then it starts `pathpilot serve --no-worker` on 127.0.0.1 (its own process; `--web-workers N`
passes N web processes), logs in over HTTP, and drives it with a closed-loop load generator:
C connections (default 32), each sending its next request as soon as the previous answer has
arrived (no think time, as `locust --headless` with `wait_time = constant(0)` would). The
generator is raw HTTP/1.1 over asyncio streams, parsed by httptools, at ~0.1-0.2 ms of CPU a
request; the first version used httpx (`--client httpx`), whose ~3 ms a request on the same
two cores was more than the server spent on a kept page. The CPU time of the server's
processes and of the generator is read around each phase and reported per request.

Measured (production path): GET /assessments/{id}/report?pilot={pid} and GET /pilots/{pid}
for pilots drawn at random from all N. Reference (same run, same load): the assessment page
GET /assessments/{id}, which draws no chart; and GET /healthz, the cheapest route, as the
floor that the framework, the machine and the generator allow at this concurrency. Phases
alternate so that background load falls on all. A first pass over every pilot's report (cold:
one request at a time) comes before them and is reported on its own, then a warm-up under
load that asks for every page 4 times per web process (each process keeps its own pages).
Last, the reports again with the ETag the first pass got (`If-None-Match`, as a browser
revalidates): 304s.

PDFs: GET /assessments/{id}/report.pdf?pilot={pid} one at a time, p50/p95: each report's
first PDF (laid out by WeasyPrint), then the same PDFs again (kept: the same bytes).

Prints p50/p95/p99 and requests/s per page, the ratio of the measured pages' p95 to the
reference's, and `RESULT` lines. The server is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import INTAKE, REPO_ROOT, SAMPLE

EMAIL = "bench@example.com"
PASSWORD = "bench-password-1234"
# (arm, share of test items right, base latency ms, prompt tokens, output tokens, trains)
ARM_PROFILES = (
    ("majority", 0.08, 0.0, 0, 0, False),
    ("fewshot", 0.41, 180.0, 620, 4, False),
    ("rag", 0.66, 520.0, 1400, 4, False),
    ("qlora", 0.78, 95.0, 48, 4, True),
    ("qlora_rag", 0.74, 430.0, 1380, 4, True),
)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


# --------------------------------------------------------------------------- seeding


def seed_database(n_pilots: int, n_assessments: int, seed: int) -> dict[str, list[str]]:
    """N finished pilots over `n_assessments` assessments; returns assessment -> pilot ids."""
    import json
    from datetime import timedelta

    from app.accounts.service import create_user
    from app.assessments import service as assessments
    from app.db import session_scope
    from app.domain.bootstrap import bootstrap_difference, bootstrap_metric, resample_indices
    from app.domain.intake import Intake
    from app.domain.metrics import PriceRow, operational_metrics, quality_statistics
    from app.domain.preparation import prepare_pilot_data
    from app.domain.records import (
        ArmModel,
        ArmOutcome,
        ArmResult,
        ArmStatus,
        Difference,
        LossPoint,
        Manifest,
        MetricValue,
        PilotOutcome,
        Prediction,
        SplitSizes,
    )
    from app.domain.samples.formats import parse_sample
    from app.domain.samples.schemas import PilotTask
    from app.pilots import execution
    from app.pilots import service as pilots
    from app.settings import get_settings

    settings = get_settings()
    raw = SAMPLE.read_bytes()
    rng = random.Random(seed)
    layout: dict[str, list[str]] = {}
    with session_scope() as session:
        owner = create_user(session, email=EMAIL, password=PASSWORD)
        intake = Intake.model_validate(json.loads(INTAKE.read_text()))
        for i in range(n_assessments):
            assessment, _ = assessments.create_scored(
                session, owner=owner, intake=intake, settings=settings
            )
            assessment.title = f"{intake.title} #{i + 1}"
            assessments.store_sample(
                session, assessment=assessment, data=raw, filename=SAMPLE.name, settings=settings
            )
            assessments.apply_score(
                session,
                assessment=assessment,
                intake=intake,
                summary=assessments.sample_summary(session, assessment=assessment),
                settings=settings,
            )
            layout[assessment.id] = []
    parsed = parse_sample(raw, SAMPLE.name, assessments.sample_limits(settings))
    assessment_ids = list(layout)
    for k in range(n_pilots):
        aid = assessment_ids[k % len(assessment_ids)]
        pilot_seed = 13 + k
        with session_scope() as session:
            from app.assessments.models import Assessment

            assessment = session.get(Assessment, aid)
            assert assessment is not None
            pilot = pilots.start_pilot(
                session, assessment=assessment, settings=settings, max_train=None, arms=None
            )
            pilot.seed = pilot_seed
            session.flush()
            pid, max_train, arms = pilot.id, pilot.max_train, list(pilot.arms)
        data, warnings = prepare_pilot_data(
            parsed, [], seed=pilot_seed, max_train=max_train, max_test=settings.pilot_max_test
        )
        n_test = len(data.test)
        indices = resample_indices(n_test, seed=pilot_seed)
        targets = [e.target for e in data.test]
        outcomes, stats_by_arm = [], {}
        for arm, right, latency, prompt_tokens, output_tokens, trains in ARM_PROFILES:
            if arm not in arms:
                continue
            answers = []
            for target in targets:
                if arm == "majority":
                    answers.append(data.train[0].target)
                elif rng.random() < right:
                    answers.append(target)
                else:
                    answers.append(rng.choice(data.labels))
            predictions = [
                Prediction(
                    index=i,
                    prediction=answer,
                    latency_ms=0.0 if arm == "majority" else latency * rng.uniform(0.7, 1.6),
                    prompt_tokens=prompt_tokens + rng.randint(-20, 20) if prompt_tokens else 0,
                    output_tokens=output_tokens,
                )
                for i, answer in enumerate(answers)
            ]
            stats = quality_statistics(
                PilotTask.classification, answers, targets, labels=data.labels
            )
            stats_by_arm[arm] = stats
            metrics = [
                MetricValue(name, iv.value, iv.low, iv.high)
                for name, st in stats.items()
                for iv in [bootstrap_metric(st, n_test, indices=indices)]
            ]
            if arm != "majority":
                metrics += operational_metrics(predictions, PriceRow("pilot", 0.5, 1.5))
            steps = 60
            curve = (
                [
                    LossPoint(
                        step=s,
                        epoch=s / steps * 2,
                        train_loss=2.6 * 0.97**s + rng.uniform(0, 0.1),
                        validation_loss=None,
                    )
                    for s in range(1, steps + 1)
                ]
                + [
                    LossPoint(
                        step=s, epoch=s / steps * 2, train_loss=None, validation_loss=2.4 * 0.98**s
                    )
                    for s in range(10, steps + 1, 10)
                ]
                if trains
                else []
            )
            result = ArmResult(
                arm=arm,
                predictions=predictions,
                training_seconds=rng.uniform(200, 300) if trains else 0.0,
                peak_memory_mb=rng.uniform(1500, 2200),
                trainable_parameters=1_843_200 if trains else 0,
                adapter_bytes=7_372_800 if trains else 0,
                loss_curve=curve,
                recipe={"r": 16, "alpha": 32, "learning_rate": 2e-4} if trains else {},
            )
            outcomes.append(
                ArmOutcome(arm=arm, status=ArmStatus.done, metrics=metrics, result=result)
            )
        order = [o.arm for o in outcomes]
        differences = [
            Difference("accuracy", later, earlier, iv.value, iv.low, iv.high)
            for p, earlier in enumerate(order)
            for later in order[p + 1 :]
            for iv in [
                bootstrap_difference(
                    stats_by_arm[later]["accuracy"],
                    stats_by_arm[earlier]["accuracy"],
                    n_test,
                    indices=indices,
                )
            ]
        ]
        model = ArmModel(model_id="SmolLM2-135M-Instruct", parameters=134_515_008)
        manifest = Manifest(
            seed=pilot_seed,
            base_model_id=model.model_id,
            base_model_parameters=model.parameters,
            arm_models={arm: model for arm in order},
            dataset_sha256=f"{k:064x}",
            task="classification",
            split_sizes=SplitSizes(
                train=len(data.train),
                validation=len(data.validation),
                test=n_test,
                labels=len(data.labels),
            ),
            arms=order,
            hyperparameters={"qlora": {"r": 16, "alpha": 32, "learning_rate": 2e-4}},
            libraries={"torch": "2.13.0", "transformers": "5.24.0"},
            device="cpu (x86_64, 2 threads)",
        )
        # As the worker's tasks store it: prepare (claim, store the split, send the arms),
        # each arm under its own lease, then the conclusion under its own.
        claim_options = {"worker": "bench", "max_attempts": 1, "stalled_after": timedelta(hours=1)}
        with session_scope() as session:
            held = pilots.claim(session, pilot_id=pid, **claim_options)
            assert held is not None
            execution.store_split(
                session, pilot_id=pid, lease=held.lease, data=data, caps=[], warnings=warnings
            )
            execution.start_arms(session, pilot_id=pid, lease=held.lease)
        for outcome in outcomes:
            with session_scope() as session:
                arm = execution.claim_arm(session, pilot_id=pid, arm=outcome.arm, **claim_options)
                assert arm is not None
                execution.record_arm(
                    session, pilot_id=pid, lease=arm.lease, outcome=outcome, data=data
                )
        with session_scope() as session:
            assert execution.begin_conclusion(session, pilot_id=pid)
        with session_scope() as session:
            concluding = execution.claim_conclusion(session, pilot_id=pid, **claim_options)
            assert concluding is not None
            pilots.finish_pilot(
                session,
                pilot_id=pid,
                lease=concluding.lease,
                outcome=PilotOutcome(
                    task=PilotTask.classification,
                    primary_metric="accuracy",
                    arms=outcomes,
                    differences=differences,
                    warnings=warnings,
                    caps=[],
                    manifest=manifest,
                ),
            )
        layout[aid].append(pid)
    return layout


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    port: int, env: dict[str, str], log: Path, web_workers: int = 1
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "app.cli", "serve", "--no-worker", "--port", str(port)]
    if web_workers > 1:
        command += ["--web-workers", str(web_workers)]
    return subprocess.Popen(
        command, env=env, cwd=REPO_ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(base + "/login", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not answer in time")


def log_in(base: str) -> dict[str, str]:
    import httpx

    with httpx.Client(base_url=base) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, "no CSRF token on the log-in page"
        answer = client.post(
            "/login",
            data={"email": EMAIL, "password": PASSWORD, "csrf_token": token.group(1)},
        )
        assert answer.status_code == 303, answer.status_code
        return dict(client.cookies)


# --------------------------------------------------------------------------- load


@dataclass
class PageStats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    bytes: dict[str, list[int]] = field(default_factory=dict)
    errors: int = 0
    seconds: float = 0.0
    client_cpu_s: float = 0.0  # this process (the load generator)
    server_cpu_s: float = 0.0  # the server's process tree

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())


class _Answer:
    """httptools callbacks for one response."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.headers: dict[bytes, bytes] = {}
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


async def _load_raw(
    host: str,
    port: int,
    cookies: dict[str, str],
    urls: dict[str, list[str]],
    *,
    connections: int,
    duration: float,
    seed: int,
    etags: dict[str, str] | None = None,
    sweep: int = 0,
) -> PageStats:
    """The default client: one keep-alive HTTP/1.1 connection per simulated user over asyncio
    streams, responses parsed by httptools (the parser uvicorn itself uses). ~0.1-0.2 ms of
    CPU a request, so on a shared two-core machine the server, not the client, is measured.
    With `etags`, requests carry `If-None-Match` and a 304 counts as an answer. With `sweep`,
    every URL is requested that many times (shuffled) instead of for `duration`."""
    import httptools

    stats = PageStats()
    kinds = list(urls)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    stop = time.monotonic() + duration
    pending = [(kind, url) for kind in kinds for url in urls[kind]] * sweep
    random.Random(seed).shuffle(pending)

    def more() -> bool:
        return bool(pending) if sweep else time.monotonic() < stop

    async def user(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        # A sweep opens a connection per request, so that the kernel hands each to whichever
        # web process accepts next; otherwise one keep-alive connection per user.
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        close = "Connection: close\r\n" if sweep else ""
        try:
            while more():
                if sweep:
                    kind, url = pending.pop()
                else:
                    kind = kinds[rng.randrange(len(kinds))]
                    url = rng.choice(urls[kind])
                extra = f"If-None-Match: {etags[url]}\r\n" if etags and url in etags else ""
                request = (
                    f"GET {url} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n"
                    f"Accept: text/html\r\n{extra}{close}\r\n"
                ).encode()
                started = time.perf_counter()
                if connection is None:
                    connection = await asyncio.open_connection(host, port)
                reader, writer = connection
                writer.write(request)
                answer = _Answer()
                parser = httptools.HttpResponseParser(answer)
                while not answer.complete:
                    data = await reader.read(1 << 18)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    parser.feed_data(data)
                elapsed = (time.perf_counter() - started) * 1000
                if sweep:
                    writer.close()
                    connection = None
                if parser.get_status_code() not in ((200, 304) if etags else (200,)):
                    stats.errors += 1
                    continue
                stats.latencies.setdefault(kind, []).append(elapsed)
                stats.bytes.setdefault(kind, []).append(len(answer.body))
        finally:
            if connection is not None:
                connection[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(user(n) for n in range(connections)))
    stats.seconds = time.perf_counter() - started
    return stats


async def _load_httpx(
    base: str,
    cookies: dict[str, str],
    urls: dict[str, list[str]],
    *,
    connections: int,
    duration: float,
    seed: int,
) -> PageStats:
    """The first version's client (`--client httpx`): ~3 ms of CPU a request in this process,
    more than the server spends on a kept page, so it measured itself as much as the server."""
    import httpx

    stats = PageStats()
    kinds = list(urls)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=base, cookies=cookies, limits=limits, timeout=120
    ) as client:
        stop = time.monotonic() + duration

        async def user(n: int) -> None:
            rng = random.Random(seed * 1000 + n)
            while time.monotonic() < stop:
                kind = kinds[rng.randrange(len(kinds))]
                url = rng.choice(urls[kind])
                started = time.perf_counter()
                try:
                    response = await client.get(url)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - started) * 1000
                if not ok:
                    stats.errors += 1
                    continue
                stats.latencies.setdefault(kind, []).append(elapsed)
                stats.bytes.setdefault(kind, []).append(len(response.content))

        started = time.perf_counter()
        await asyncio.gather(*(user(n) for n in range(connections)))
        stats.seconds = time.perf_counter() - started
    return stats


def _process_tree(pid: int) -> list[int]:
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        children = Path(f"/proc/{current}/task/{current}/children")
        if children.exists():
            pending += [int(c) for c in children.read_text().split()]
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (Linux /proc; NaN elsewhere)."""
    total = 0.0
    try:
        for member in _process_tree(pid):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return float("nan")
    return total


def run_load(
    base: str,
    cookies: dict[str, str],
    urls: dict[str, list[str]],
    *,
    server_pid: int,
    client: str = "raw",
    etags: dict[str, str] | None = None,
    **kw,
) -> PageStats:
    own_before, server_before = resource.getrusage(resource.RUSAGE_SELF), cpu_seconds(server_pid)
    if client == "httpx":
        assert etags is None, "the httpx client does not revalidate"
        stats = asyncio.run(_load_httpx(base, cookies, urls, **kw))
    else:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        stats = asyncio.run(_load_raw(host, int(port), cookies, urls, etags=etags, **kw))
    own = resource.getrusage(resource.RUSAGE_SELF)
    stats.client_cpu_s = (own.ru_utime + own.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
    stats.server_cpu_s = cpu_seconds(server_pid) - server_before
    return stats


def merge(into: PageStats, more: PageStats) -> None:
    for kind, values in more.latencies.items():
        into.latencies.setdefault(kind, []).extend(values)
    for kind, values in more.bytes.items():
        into.bytes.setdefault(kind, []).extend(values)
    into.errors += more.errors
    into.seconds += more.seconds
    into.client_cpu_s += more.client_cpu_s
    into.server_cpu_s += more.server_cpu_s


def one_at_a_time(
    base: str, cookies: dict[str, str], urls: list[str], etags: dict[str, str] | None = None
) -> list[float]:
    """Each URL once, in order; with `etags`, each page's ETag is kept there."""
    import httpx

    times = []
    with httpx.Client(base_url=base, cookies=cookies, timeout=300) as client:
        for url in urls:
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
            if etags is not None and "etag" in response.headers:
                etags[url] = response.headers["etag"]
    return times


def warm_up(
    base: str, cookies: dict[str, str], urls: dict[str, list[str]], *, times: int, **kw
) -> float:
    """Every URL `times` times, shuffled, over all connections; returns the seconds taken.
    Each web process draws a report's charts and keeps its body on its own first view of it,
    and the one-at-a-time pass reached one process only. uvicorn's processes take connections
    as they come and a sweep opens one per request, so with N processes, 4 x N visits per URL
    leave about (1 - 1/N)^(4N) of the (URL, process) pairs unvisited: 0.4% for two."""
    if kw.get("client") == "httpx":  # no sweep mode: a fixed stretch under load instead
        return run_load(base, cookies, urls, duration=10, seed=900, **kw).seconds
    return run_load(base, cookies, urls, duration=0, seed=900, sweep=times, **kw).seconds


# --------------------------------------------------------------------------- main


def _row(kind: str, values: list[float], stats: PageStats) -> str:
    kb = statistics.mean(stats.bytes[kind]) / 1024
    rate = len(values) / stats.seconds
    p50, p95, p99 = (_percentile(values, q) for q in (50, 95, 99))
    return f"{kind:<14}{len(values):>9}{rate:>8.1f}{p50:>9.0f}{p95:>9.0f}{p99:>9.0f}{kb:>7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pilots", type=int, default=200, help="finished pilots to store")
    parser.add_argument("--assessments", type=int, default=40, help="assessments they belong to")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load phase")
    parser.add_argument("--rounds", type=int, default=2, help="measured/reference phase pairs")
    parser.add_argument("--pdfs", type=int, default=12, help="PDFs rendered one at a time")
    parser.add_argument(
        "--cold", type=int, default=None, help="reports requested once before the load (all)"
    )
    parser.add_argument("--goal-ms", type=float, default=100.0, help="p95 goal, ms")
    parser.add_argument(
        "--web-workers", type=int, default=1, help="`pathpilot serve --web-workers` (default 1)"
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: raw asyncio + httptools (default) or httpx (the first version's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pathpilot-bench-") as tmp:
        env = dict(os.environ)
        env.update({"VAR_DIR": tmp, "SECRET_KEY": "bench-" + "x" * 40, "DATABASE_URL": ""})
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        os.environ.update({k: env[k] for k in ("VAR_DIR", "SECRET_KEY", "DATABASE_URL")})

        from app.migrate import upgrade_head

        upgrade_head()
        started = time.perf_counter()
        layout = seed_database(args.pilots, args.assessments, args.seed)
        print(
            f"stored {args.pilots} finished pilots over {len(layout)} assessments "
            f"in {time.perf_counter() - started:.1f} s"
        )
        from app.db import get_engine

        get_engine().dispose()

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(port, env, Path(tmp) / "serve.log", args.web_workers)
        try:
            wait_ready(base, proc)
            cookies = log_in(base)
            pairs = [(aid, pid) for aid, pids in layout.items() for pid in pids]
            urls = {
                "report": [f"/assessments/{aid}/report?pilot={pid}" for aid, pid in pairs],
                "pilot": [f"/pilots/{pid}" for _, pid in pairs],
            }
            reference = {"assessment": [f"/assessments/{aid}" for aid in layout]}
            floor = {"healthz": ["/healthz"]}

            etags: dict[str, str] = {}
            cold = one_at_a_time(base, cookies, urls["report"][: args.cold], etags)
            print(
                f"first request per report, one at a time ({len(cold)}): "
                f"p50 {_percentile(cold, 50):.0f} ms, p95 {_percentile(cold, 95):.0f} ms"
            )
            load = {
                "connections": args.connections,
                "server_pid": proc.pid,
                "client": args.client,
            }
            times = 4 * args.web_workers
            took = warm_up(base, cookies, urls, times=times, **load)
            print(f"warm-up: every report and pilot page {times} times under load, {took:.0f} s")

            measured, ref, low = PageStats(), PageStats(), PageStats()
            for r in range(args.rounds):
                kw = {**load, "duration": args.duration, "seed": r}
                merge(measured, run_load(base, cookies, urls, **kw))
                merge(ref, run_load(base, cookies, reference, **kw))
                merge(low, run_load(base, cookies, floor, **{**kw, "duration": 5}))
            revalidated = PageStats()
            if args.client == "raw" and etags:
                kw = {**load, "duration": args.duration / 2, "seed": 77}
                kept = {"report 304": [u for u in urls["report"] if u in etags]}
                merge(revalidated, run_load(base, cookies, kept, etags=etags, **kw))

            pdf_urls = [
                f"/assessments/{aid}/report.pdf?pilot={pid}"
                for aid, pid in random.Random(args.seed).sample(
                    pairs, min(args.pdfs + 1, len(pairs))
                )
            ]
            # WeasyPrint's first-use cost, on a report not measured (its PDF is kept after).
            one_at_a_time(base, cookies, pdf_urls[:1])
            pdf_times = one_at_a_time(base, cookies, pdf_urls[1:])
            kept_pdf_times = one_at_a_time(base, cookies, pdf_urls[1:])
        finally:
            stop_server(proc)

    print(
        f"\n{args.connections} connections, {args.rounds} x {args.duration:.0f} s per side, "
        f"{args.pilots} pilots, {args.web_workers} web process(es), {args.client} client"
    )
    print(
        f"{'page':<14}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'KB':>7}"
    )
    results: dict[str, float] = {}
    for stats in (measured, ref, low, revalidated):
        for kind, values in stats.latencies.items():
            print(_row(kind, values, stats))
            name = kind.replace(" ", "_")
            results[f"{name}_p50_ms"] = _percentile(values, 50)
            results[f"{name}_p95_ms"] = _percentile(values, 95)
            results[f"{name}_rps"] = len(values) / stats.seconds
    errors = measured.errors + ref.errors + low.errors + revalidated.errors
    print(f"errors: {errors}")
    server_ms = measured.server_cpu_s / measured.requests * 1000
    client_ms = measured.client_cpu_s / measured.requests * 1000
    rate = measured.requests / measured.seconds
    print(
        f"report + pilot: {rate:.0f} requests/s; CPU per request: server {server_ms:.2f} ms "
        f"({measured.server_cpu_s / measured.seconds:.2f} cores), load generator "
        f"{client_ms:.2f} ms; machine load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    worst = max(results["report_p95_ms"], results["pilot_p95_ms"])
    ratio_ref = worst / results["assessment_p95_ms"]
    # Little's law: C connections in a closed loop wait C / throughput on average.
    needed = args.connections / (args.goal_ms / 1000)
    print(
        f"\nworst p95 (report, pilot) {worst:.0f} ms = {ratio_ref:.2f}x the assessment page's "
        f"p95 under the same load; {worst / args.goal_ms:.2f}x the {args.goal_ms:.0f} ms goal "
        f"(/healthz, the cheapest route, p95 {results['healthz_p95_ms']:.0f} ms). A mean "
        f"wait of {args.goal_ms:.0f} ms at {args.connections} connections needs "
        f"{needed:.0f} requests/s; the p95 goal needs more."
    )
    pdf50, pdf95 = _percentile(pdf_times, 50), _percentile(pdf_times, 95)
    kept50, kept95 = _percentile(kept_pdf_times, 50), _percentile(kept_pdf_times, 95)
    print(f"PDF one at a time ({len(pdf_times)}): p50 {pdf50:.0f} ms, p95 {pdf95:.0f} ms")
    print(f"the same PDFs again (kept): p50 {kept50:.0f} ms, p95 {kept95:.0f} ms")
    print(f"RESULT report_p95_ms={results['report_p95_ms']:.1f}")
    print(f"RESULT pilot_p95_ms={results['pilot_p95_ms']:.1f}")
    print(f"RESULT assessment_p95_ms={results['assessment_p95_ms']:.1f}")
    print(f"RESULT healthz_p95_ms={results['healthz_p95_ms']:.1f}")
    if "report_304_p95_ms" in results:
        print(f"RESULT report_304_p95_ms={results['report_304_p95_ms']:.1f}")
    print(f"RESULT report_rps={results['report_rps']:.1f}")
    print(f"RESULT pilot_rps={results['pilot_rps']:.1f}")
    print(f"RESULT server_cpu_ms_per_request={server_ms:.2f}")
    print(f"RESULT client_cpu_ms_per_request={client_ms:.2f}")
    print(f"RESULT worst_p95_vs_reference={ratio_ref:.2f}")
    print(f"RESULT worst_p95_vs_goal={worst / args.goal_ms:.2f}")
    print(f"RESULT report_cold_p50_ms={_percentile(cold, 50):.1f}")
    print(f"RESULT pdf_p50_ms={pdf50:.1f}")
    print(f"RESULT pdf_p95_ms={pdf95:.1f}")
    print(f"RESULT pdf_kept_p50_ms={kept50:.1f}")
    print(f"RESULT pdf_kept_p95_ms={kept95:.1f}")
    print(f"RESULT errors={errors}")


if __name__ == "__main__":
    main()
