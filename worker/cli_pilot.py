"""`pathpilot pilot DATA_FILE`: run the pilot arms in-process, with progress bars."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from app.domain.arms import ARMS
from app.domain.evidence import exploratory_flags
from app.domain.formatting import (
    format_count,
    format_duration,
    format_interval,
    format_points,
    format_quality,
    format_signed_interval,
    format_usd,
)
from app.domain.intake import DEFAULT_MIN_DIFFERENCE_POINTS
from app.domain.judging import JUDGE_AGREEMENT, JUDGE_PASS, JUDGE_SCORE, JUDGED_TASKS
from app.domain.learning_curve import outlook
from app.domain.metric_catalogue import (
    QUALITY_METRICS,
    Unit,
    format_metric_value,
    in_process_metric,
    metric_spec,
)
from app.domain.records import (
    DEFAULT_SEED,
    ArmOutcome,
    ArmStatus,
    PilotOutcome,
    to_json_data,
    unreadable_line,
)
from app.domain.samples.schemas import PilotTask

if TYPE_CHECKING:  # imported when a run needs it: the command starts without the engine
    from app.endpoints.client import EndpointSpec
    from worker.pilots.endpoint_answers import EndpointRuntime
    from worker.pilots.served_adapters import ServingRuntime


@dataclasses.dataclass(frozen=True)
class EndpointFlags:
    """The three flags that name one endpoint, for error messages that point at the flag."""

    url: str
    model: str
    api_key_env: str


PROMPT_FLAGS = EndpointFlags("--endpoint", "--endpoint-model", "--api-key-env")
JUDGE_FLAGS = EndpointFlags("--judge-endpoint", "--judge-model", "--judge-api-key-env")
SERVING_FLAGS = EndpointFlags("--serving-endpoint", "--serving-model", "--serving-api-key-env")

LOG_EVERY_S = 15.0  # progress lines without a terminal: at most one per arm this often


def parse_arms(values: list[str] | None) -> list[str] | None:
    """Arm names from `--arms a,b` and/or repeated `--arms a --arms b` (checked later);
    None: the default arms for the sample's task."""
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _read_documents(docs_dir: Path | None, settings: Any) -> list[Any]:
    from app.domain.samples.documents import parse_documents

    if docs_dir is None:
        return []
    files = [
        (path.name, path.read_bytes())
        for path in sorted(docs_dir.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    ]
    return parse_documents(files, settings.max_documents, settings.max_upload_bytes)


def _format_metric(outcome: ArmOutcome, name: str) -> str:
    """The figures as the report prints them (app.domain.formatting), so the two agree."""
    metric = next((m for m in outcome.metrics if m.name == name), None)
    if metric is None:
        return "-"
    unit = metric_spec(name).unit
    if unit is Unit.fraction:
        interval = format_interval(metric.ci_low, metric.ci_high)
        return f"{format_quality(metric.value)} {interval}".strip()
    if unit is Unit.usd:
        return format_usd(metric.value)
    if unit is Unit.tokens:
        return f"{metric.value:.0f}"
    return f"{metric.value:.1f}"


OPERATIONAL_COLUMNS = (
    ("latency_p50_ms", "p50 ms"),
    ("latency_p95_ms", "p95 ms"),
    ("prompt_tokens_per_query", "prompt tok"),
    ("output_tokens_per_query", "output tok"),
    ("cost_per_1k_usd", "$/1k queries"),
    ("training_seconds", "train s"),
    ("wall_seconds", "wall s"),
)


def print_outcome(outcome: PilotOutcome, console: Any) -> None:
    """Quality (with intervals) and cost tables, differences, warnings and caps.

    Two narrow tables rather than one wide one, so a plain 80-column terminal shows every
    interval in full.
    """
    from rich.table import Table

    present = [
        name
        for name in QUALITY_METRICS
        if name not in (JUDGE_PASS, JUDGE_SCORE)  # the judge's own table, below
        and any(m.name == name for arm in outcome.arms for m in arm.metrics)
    ]
    quality = Table(title=f"Pilot: {outcome.task} (primary metric: {outcome.primary_metric})")
    quality.add_column("arm")
    quality.add_column("status")
    for name in present:
        quality.add_column(f"{name} [95% CI]", no_wrap=True)
    operations = Table(title="Cost and speed per query (latency = batch time / batch size)")
    operations.add_column("arm")
    for _, header in OPERATIONAL_COLUMNS:
        operations.add_column(header, justify="right")
    for arm in outcome.arms:
        if arm.status != ArmStatus.done:
            quality.add_row(arm.arm, f"[red]{arm.status}[/red]", *["-"] * len(present))
            continue
        quality.add_row(arm.arm, "done", *[_format_metric(arm, name) for name in present])
        operations.add_row(arm.arm, *[_format_metric(arm, name) for name, _ in OPERATIONAL_COLUMNS])
    console.print(quality)
    console.print(operations)

    for arm in outcome.arms:
        if arm.error:
            console.print(f"[red]{arm.arm} failed:[/red] {arm.error}")
        if arm.result is not None and arm.result.retrieval_recall_at_k is not None:
            console.print(f"{arm.arm}: retrieval recall@k {arm.result.retrieval_recall_at_k:.3f}")
        in_process = in_process_metric(outcome.primary_metric)
        if any(m.name == in_process for m in arm.metrics):
            console.print(
                f"{arm.arm}: served by its endpoint; {metric_spec(in_process).label} "
                f"{_format_metric(arm, in_process)}"
            )
    if outcome.differences:
        print_differences(outcome, console)
    print_judge(outcome, console)
    print_learning_curve(outcome, console)
    for line in [*outcome.caps, *outcome.warnings]:
        console.print(f"[yellow]! {line}[/yellow]")
    for name, model in outcome.manifest.arm_models.items():
        via = f"{model.via}{', with its adapter' if model.adapter else ''}"
        console.print(f"{name} answered by {model.model_id} ({via})")
    console.print(
        f"Base model: {outcome.manifest.base_model_id}. A pilot on a small proxy model "
        "is evidence about the relative merit of the paths on this data, not a forecast of "
        "production accuracy."
    )


def print_differences(outcome: PilotOutcome, console: Any) -> None:
    """Every pair of arms on the primary metric, read as the report reads it: paired on the
    items both arms were scored on, "clear" only when its Holm-adjusted p-value is under 5% and
    it rests on enough evidence (`app.domain.evidence.exploratory_flags`), else why not."""
    from rich.table import Table

    stored = [d for d in outcome.differences if d.metric == outcome.primary_metric]
    flags = exploratory_flags(stored, outcome.manifest.split_sizes.test or None)
    table = Table(
        title=f"Differences on {outcome.primary_metric} (paired; every pair, exploratory)"
    )
    for header in ("arm A", "minus arm B", "delta", "95% CI", "sample", "Holm p", "clear"):
        table.add_column(header)
    for diff, flag in zip(stored, flags, strict=True):
        verdict = "yes" if flag.clear else "no"
        clear = f"thin: {'; '.join(flag.thin)}" if flag.thin else verdict
        table.add_row(
            diff.arm_a,
            diff.arm_b,
            format_points(diff.delta),
            format_signed_interval(diff.ci_low, diff.ci_high),
            _sample(diff.n_items, diff.n_groups),
            f"{flag.p_adjusted:.3f}" if flag.p_adjusted is not None else "-",
            clear,
        )
    console.print(table)


def _sample(n_items: int | None, n_groups: int | None) -> str:
    """'120 items', or '312 items in 80 groups': what a difference rests on."""
    if n_items is None:
        return "-"
    if n_groups is not None and n_groups < n_items:
        return f"{format_count(n_items)} items in {format_count(n_groups)} groups"
    return f"{format_count(n_items)} items"


def print_learning_curve(outcome: PilotOutcome, console: Any) -> None:
    """The curve's points and its sentence, read as the report reads it without an intake
    (one doubling out, the default minimum difference that matters)."""
    from rich.table import Table

    curve = outcome.learning_curve
    if curve is None:
        return
    table = Table(title=f"Learning curve of qlora ({curve.metric}, 95% CI)")
    for header in ("examples", "trained on", curve.metric, "95% CI", "training"):
        table.add_column(header, justify="right")
    for point in curve.points:
        table.add_row(
            format_count(point.examples),
            format_count(point.trained_on),
            format_quality(point.value),
            format_interval(point.ci_low, point.ci_high),
            "the arm itself" if point.reused else format_duration(point.training_seconds),
        )
    console.print(table)
    if curve.slope is not None and len(curve.points) > 1:
        view = outlook(
            curve, examples_available=None, min_difference_points=DEFAULT_MIN_DIFFERENCE_POINTS
        )
        console.print(f"{view.sentence} {view.detail}")
    console.print(f"The curve added {format_duration(curve.extra_seconds)}.")
    for note in curve.notes:
        console.print(f"[yellow]! {note}[/yellow]")


def print_judge(outcome: PilotOutcome, console: Any) -> None:
    """The judge's grading per arm, the pairwise tallies, its agreement and its cost."""
    from rich.table import Table

    judge = outcome.judge
    if judge is None:
        return
    by_arm = {arm.arm: arm for arm in outcome.arms}
    grading = Table(
        title=f"Judge {judge.model_id}: {unreadable_line(judge.unreadable, judge.verdicts)}"
    )
    # The score's interval is in --out and the report: six columns fit 80 characters.
    for header in ("arm", "pass rate [95% CI]", "score", "unreadable", "rho", "cost"):
        grading.add_column(header, no_wrap=True)
    for record in judge.arms:
        arm = by_arm.get(record.arm)
        score = next((m for m in arm.metrics if m.name == JUDGE_SCORE), None) if arm else None
        grading.add_row(
            record.arm,
            _format_metric(arm, JUDGE_PASS) if arm else "-",
            "-" if score is None else format_metric_value(JUDGE_SCORE, score.value),
            f"{record.unreadable}/{record.verdicts}",
            "-"
            if record.agreement is None
            else format_metric_value(JUDGE_AGREEMENT, record.agreement),
            "-" if record.cost_usd is None else format_usd(record.cost_usd),
        )
    console.print(grading)
    if judge.pairs:
        pairs = Table(title="Judge, pairwise in both orders (a win needs both)")
        for header in ("arm A", "vs arm B", "A wins", "ties", "B wins", "unreadable"):
            pairs.add_column(header)
        for pair in judge.pairs:
            pairs.add_row(
                pair.arm_a,
                pair.arm_b,
                str(pair.wins),
                str(pair.ties),
                str(pair.losses),
                str(pair.unreadable),
            )
        console.print(pairs)
    rho = "undefined" if judge.agreement is None else f"{judge.agreement:+.2f}"
    cost = "not priced" if judge.cost_usd is None else format_usd(judge.cost_usd)
    console.print(
        f"Judge agreement with {judge.reference_metric} (Spearman, all arms): {rho}; "
        f"cost {cost} for {judge.prompt_tokens} prompt + {judge.completion_tokens} output tokens."
    )
    for error in judge.errors:
        console.print(f"[red]Judge: {error}[/red]")


def outcome_json(outcome: PilotOutcome) -> str:
    """The whole outcome as JSON; the manifest as the same typed record SQL stores."""
    payload = dataclasses.asdict(outcome) | {
        "manifest": outcome.manifest.as_json(),
        "judge": outcome.judge.as_json() if outcome.judge is not None else None,
        "learning_curve": (
            outcome.learning_curve.as_json() if outcome.learning_curve is not None else None
        ),
    }
    return json.dumps(to_json_data(payload), indent=2, ensure_ascii=False)


def pilot_command(
    data_file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The data sample"),
    docs_dir: Path | None = typer.Option(
        None, "--docs", exists=True, file_okay=False, help="Folder of RAG documents"
    ),
    task: str = typer.Option("auto", help="auto | classification | qa | extraction | generation"),
    max_train: int | None = typer.Option(None, help="Cap on training examples"),
    arms: list[str] | None = typer.Option(
        None,
        help=f"Arms to run, comma-separated or repeated ({', '.join(ARMS.names)}); "
        "default: the default arms for the sample's task",
    ),
    out: Path | None = typer.Option(None, help="Write the full outcome as JSON here"),
    seed: int = typer.Option(
        DEFAULT_SEED, help="Seed for the split, shots, training and bootstrap"
    ),
    endpoint: str | None = typer.Option(
        None, help="OpenAI-compatible API root for the prompting arms, e.g. http://host:8000/v1"
    ),
    endpoint_model: str | None = typer.Option(
        None, help="The model name the endpoint serves (needed with --endpoint)"
    ),
    api_key_env: str | None = typer.Option(
        None, help="Name of the environment variable holding the endpoint's API key"
    ),
    endpoint_size_b: float | None = typer.Option(
        None, help="The endpoint model's size in billions of parameters, if known"
    ),
    deployment: bool = typer.Option(False, help="The endpoint serves the model you will deploy"),
    judge_endpoint: str | None = typer.Option(
        None, help="OpenAI-compatible API root of a judge for open-ended answers (generation, qa)"
    ),
    judge_model: str | None = typer.Option(
        None, help="The model name the judge endpoint serves (needed with --judge-endpoint)"
    ),
    judge_api_key_env: str | None = typer.Option(
        None, help="Name of the environment variable holding the judge endpoint's API key"
    ),
    serving_endpoint: str | None = typer.Option(
        None,
        help="API root of a vLLM server serving the fine-tuning base with --enable-lora; the "
        "fine-tuned arms are then answered through it with their adapter loaded at runtime",
    ),
    serving_model: str | None = typer.Option(
        None, help="The base model's name on the serving endpoint (needed with it)"
    ),
    serving_api_key_env: str | None = typer.Option(
        None, help="Name of the environment variable holding the serving endpoint's API key"
    ),
    learning_curve: bool | None = typer.Option(
        None,
        help="Train the QLoRA arm on 1/4 and 1/2 of the split too, for a learning curve "
        "(default: PILOT_LEARNING_CURVE)",
    ),
) -> None:
    """Run a pilot on DATA_FILE in this process and print the comparison."""
    from rich.console import Console

    from app.domain.preparation import prepare_pilot_data
    from app.domain.samples.errors import SampleError
    from app.domain.samples.formats import SampleLimits, parse_sample
    from app.pilots.service import PilotNotPossible, arms_for, validate_request
    from app.settings import get_settings
    from worker.pilots.runner import config_from_settings

    console = Console()
    settings = get_settings()
    prompt_endpoint = _endpoint_runtime(
        endpoint, endpoint_model, api_key_env, endpoint_size_b, deployment
    )
    judge = _judge_runtime(judge_endpoint, judge_model, judge_api_key_env)
    serving = _serving_runtime(serving_endpoint, serving_model, serving_api_key_env)
    # The same checks and arm order as a pilot started from the web page or the API.
    try:
        request = validate_request(
            settings, max_train=max_train or settings.pilot_max_train, arms=parse_arms(arms)
        )
    except PilotNotPossible as error:
        field, _, message = str(error).partition(": ")
        hint = "--max-train" if field == "max_train" else "--arms"
        raise typer.BadParameter(message, param_hint=hint) from error
    train_cap = request.max_train
    if task != "auto" and task not in {t.value for t in PilotTask}:
        raise typer.BadParameter(f"unknown task {task!r}", param_hint="--task")
    limits = SampleLimits(
        max_bytes=settings.max_upload_bytes,
        max_rows=settings.max_rows,
        max_line_chars=settings.max_line_chars,
    )
    try:
        parsed = parse_sample(
            data_file.read_bytes(),
            data_file.name,
            limits,
            task=None if task == "auto" else PilotTask(task),
        )
        documents = _read_documents(docs_dir, settings)
        data, data_warnings = prepare_pilot_data(
            parsed, documents, seed=seed, max_train=train_cap, max_test=settings.pilot_max_test
        )
    except SampleError as error:
        for problem in error.errors:
            console.print(f"[red]{data_file.name}: {problem}[/red]")
        raise typer.Exit(2) from error
    try:
        chosen_arms = list(arms_for(request, data.task))
    except PilotNotPossible as error:
        raise typer.BadParameter(str(error).partition(": ")[2], param_hint="--arms") from error
    if judge is not None and data.task not in JUDGED_TASKS:
        raise typer.BadParameter(
            f"the judge grades open-ended answers (generation, qa); a {data.task} sample has "
            "exact metrics",
            param_hint="--judge-endpoint",
        )
    console.print(
        f"{parsed.format} sample, task {data.task}: {len(data.train)} train / "
        f"{len(data.validation)} validation / {len(data.test)} test, "
        f"{len(data.documents)} documents, arms: {', '.join(chosen_arms)}"
    )
    config = config_from_settings(
        settings,
        arms=chosen_arms,
        seed=seed,
        max_train=train_cap,
        adapter_dir=settings.adapters_dir / f"cli-{data_file.stem}-{seed}",
    )
    config.judge = judge
    if learning_curve is not None:
        config.learning_curve = learning_curve
    outcome = _run_with_progress(config, data, settings, console, prompt_endpoint, serving)
    outcome.warnings = [*data_warnings, *outcome.warnings]
    print_outcome(outcome, console)
    if out is not None:
        out.write_text(outcome_json(outcome))
        console.print(f"Wrote {out}")
    if all(arm.status != ArmStatus.done for arm in outcome.arms):
        raise typer.Exit(1)


def _endpoint_runtime(
    base_url: str | None,
    model: str | None,
    api_key_env: str | None,
    size_b: float | None,
    deployment: bool,
) -> EndpointRuntime | None:
    """The prompting endpoint from the command line, or None."""
    from app.domain.records import ArmModel
    from worker.pilots.endpoint_answers import EndpointRuntime, MemoryCache

    if size_b is not None and not 0 < size_b <= 5000:
        raise typer.BadParameter("between 0 and 5,000 billion", param_hint="--endpoint-size-b")
    spec = _endpoint_spec(base_url, model, api_key_env, PROMPT_FLAGS)
    if spec is None:
        return None
    facts = ArmModel(
        model_id=spec.model,
        parameters=round(size_b * 1e9) if size_b else None,
        via="endpoint",
        deployment=deployment,
    )
    return EndpointRuntime(spec=spec, model=facts, cache=MemoryCache())


def _judge_runtime(
    base_url: str | None, model: str | None, api_key_env: str | None
) -> EndpointRuntime | None:
    """The judge endpoint from the command line, or None. Answers are kept for this run."""
    from app.domain.records import ArmModel
    from worker.pilots.endpoint_answers import EndpointRuntime, MemoryCache

    spec = _endpoint_spec(base_url, model, api_key_env, JUDGE_FLAGS)
    if spec is None:
        return None
    return EndpointRuntime(
        spec=spec, model=ArmModel(model_id=spec.model, via="endpoint"), cache=MemoryCache()
    )


def _serving_runtime(
    base_url: str | None, model: str | None, api_key_env: str | None
) -> ServingRuntime | None:
    """The serving endpoint for the fine-tuned arms from the command line, or None."""
    import secrets

    from app.domain.records import ArmModel
    from worker.pilots.endpoint_answers import MemoryCache
    from worker.pilots.served_adapters import ServingRuntime

    spec = _endpoint_spec(base_url, model, api_key_env, SERVING_FLAGS)
    if spec is None:
        return None
    return ServingRuntime(
        spec=spec,
        model=ArmModel(model_id=spec.model, via="endpoint", adapter=True),
        cache=MemoryCache(),
        # Adapter names must not collide with another run's on a shared server.
        scope=f"cli-{secrets.token_hex(4)}",
    )


def _endpoint_spec(
    base_url: str | None, model: str | None, api_key_env: str | None, flags: EndpointFlags
) -> EndpointSpec | None:
    """One endpoint from its three flags, or None when none was given; errors name the flag.
    The key is read from the named environment variable, never from the command line (where
    `ps` and shell history see it)."""
    import os

    from app.endpoints.client import EndpointSpec

    if base_url is None:
        if model or api_key_env:
            raise typer.BadParameter(f"give {flags.url} too", param_hint=flags.model)
        return None
    if not model:
        raise typer.BadParameter("name the served model", param_hint=flags.model)
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise typer.BadParameter(
                f"the environment variable {api_key_env} is not set",
                param_hint=flags.api_key_env,
            )
    try:
        return EndpointSpec(base_url=base_url, model=model, api_key=api_key)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=flags.url) from error


def _run_with_progress(
    config: Any,
    data: Any,
    settings: Any,
    console: Any,
    prompt_endpoint: Any = None,
    serving_endpoint: ServingRuntime | None = None,
) -> PilotOutcome:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
    from transformers.utils import logging as transformers_logging

    from app.domain.records import Progress as ArmProgress
    from worker.pilots.resources import load_resources
    from worker.pilots.runner import run_pilot

    # Our own bars show progress; transformers' weight-loading bars would interleave with them.
    transformers_logging.disable_progress_bar()
    with console.status("Loading models (the first run converts SmolLM2 from its wheel)..."):
        resources = dataclasses.replace(
            load_resources(settings),
            prompt_endpoint=prompt_endpoint,
            serving_endpoint=serving_endpoint,
        )
    columns = (
        TextColumn("[bold]{task.fields[arm]:<9}"),
        TextColumn("{task.fields[stage]:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ETA {task.fields[eta]}"),
    )
    # Without a terminal (a log file, CI) rich draws no bars: print a plain line instead, on
    # each new stage and at most every LOG_EVERY_S seconds per arm.
    plain = not console.is_terminal
    last_line: dict[str, tuple[str, int, float]] = {}  # arm -> (stage, step, when) printed
    with Progress(*columns, console=console, disable=plain) as bars:
        task_ids: dict[str, TaskID] = {}

        def on_progress(arm: str, update: ArmProgress) -> None:
            eta = "-" if update.eta_seconds is None else f"{update.eta_seconds:.0f}s"
            if plain:
                stage, step, at = last_line.get(arm, ("", -1, 0.0))
                now = time.monotonic()
                finished = update.step >= update.total and update.step != step
                if update.stage != stage or finished or now - at >= LOG_EVERY_S:
                    last_line[arm] = (update.stage, update.step, now)
                    console.print(f"{arm} {update.stage} {update.step}/{update.total} ETA {eta}")
                return
            if arm not in task_ids:
                task_ids[arm] = bars.add_task("", total=update.total, arm=arm, stage="", eta="-")
            bars.update(
                task_ids[arm],
                completed=update.step,
                total=max(update.total, 1),
                stage=update.stage,
                eta=eta,
            )

        def on_arm_done(outcome: ArmOutcome) -> None:
            status = "done" if outcome.status == ArmStatus.done else f"failed: {outcome.error}"
            console.print(f"{outcome.arm}: {status}")

        return run_pilot(config, data, resources, on_progress=on_progress, on_arm_done=on_arm_done)
