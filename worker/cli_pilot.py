"""`pathpilot pilot DATA_FILE`: run the pilot arms in-process, with progress bars."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from app.domain.arm_figures import scored_sample
from app.domain.arms import ARMS
from app.domain.judging import JUDGED_TASKS
from app.domain.records import DEFAULT_SEED, ArmOutcome, ArmStatus, PilotOutcome
from app.domain.samples.schemas import PilotTask
from worker.cli_pilot_output import arm_done_line, outcome_json, print_outcome

if TYPE_CHECKING:  # imported when a run needs it: the command starts without the engine
    from app.integrations.openai_compatible.schemas import EndpointSpec
    from worker.runtime import Endpoint, RuntimeInputs


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
    from worker.runtime import RuntimeInputs

    console = Console()
    settings = get_settings()
    prompt = _prompt_endpoint(endpoint, endpoint_model, api_key_env, endpoint_size_b, deployment)
    judge = _judge_endpoint(judge_endpoint, judge_model, judge_api_key_env)
    serving = _serving_endpoint(serving_endpoint, serving_model, serving_api_key_env)
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
    given = RuntimeInputs(
        arms=tuple(chosen_arms),
        seed=seed,
        max_train=train_cap,
        adapter_dir=settings.adapters_dir / f"cli-{data_file.stem}-{seed}",
        learning_curve=learning_curve,
        prompt=prompt,
        judge=judge,
        serving=serving,
        serving_scope=run_scope(),
    )
    outcome = _run_with_progress(given, data, settings, console, data_warnings)
    print_outcome(outcome, console, scored_sample(data.task, data.test))
    if out is not None:
        out.write_text(outcome_json(outcome))
        console.print(f"Wrote {out}")
    if all(arm.status != ArmStatus.done for arm in outcome.arms):
        raise typer.Exit(1)


def run_scope() -> str:
    """Served adapter names must not collide with another run's on a shared server."""
    import secrets

    return f"cli-{secrets.token_hex(4)}"


def _prompt_endpoint(
    base_url: str | None,
    model: str | None,
    api_key_env: str | None,
    size_b: float | None,
    deployment: bool,
) -> Endpoint | None:
    """The prompting endpoint from the command line, or None."""
    from app.domain.records import ArmModel
    from worker.runtime import Endpoint

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
    return Endpoint(spec=spec, model=facts)


def _judge_endpoint(
    base_url: str | None, model: str | None, api_key_env: str | None
) -> Endpoint | None:
    """The judge endpoint from the command line, or None. Answers are kept for this run."""
    from app.domain.records import ArmModel
    from worker.runtime import Endpoint

    spec = _endpoint_spec(base_url, model, api_key_env, JUDGE_FLAGS)
    if spec is None:
        return None
    return Endpoint(spec=spec, model=ArmModel(model_id=spec.model, via="endpoint"))


def _serving_endpoint(
    base_url: str | None, model: str | None, api_key_env: str | None
) -> Endpoint | None:
    """The serving endpoint for the fine-tuned arms from the command line, or None."""
    from app.domain.records import ArmModel
    from worker.runtime import Endpoint

    spec = _endpoint_spec(base_url, model, api_key_env, SERVING_FLAGS)
    if spec is None:
        return None
    return Endpoint(spec=spec, model=ArmModel(model_id=spec.model, via="endpoint", adapter=True))


def _endpoint_spec(
    base_url: str | None, model: str | None, api_key_env: str | None, flags: EndpointFlags
) -> EndpointSpec | None:
    """One endpoint from its three flags, or None when none was given; errors name the flag.
    The key is read from the named environment variable, never from the command line (where
    `ps` and shell history see it)."""
    import os

    from app.integrations.openai_compatible.schemas import EndpointSpec

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
    given: RuntimeInputs, data: Any, settings: Any, console: Any, data_warnings: list[str]
) -> PilotOutcome:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
    from transformers.utils import logging as transformers_logging

    from app.domain.records import Progress as ArmProgress
    from worker import runtime
    from worker.pilots.endpoint_answers import MemoryCache
    from worker.pilots.runner import run_pilot

    # Our own bars show progress; transformers' weight-loading bars would interleave with them.
    transformers_logging.disable_progress_bar()
    # Answers asked of endpoints are kept for this run only, one cache per endpoint.
    config = runtime.pilot_config(settings, given, MemoryCache)
    with console.status("Loading models (the first run converts SmolLM2 from its wheel)..."):
        resources = runtime.resources(settings, given, MemoryCache)
    # The split is prepared under the pilot's caps already, so the plan scores this test set.
    sample = scored_sample(data.task, data.test)
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
            console.print(arm_done_line(outcome, sample))

        return run_pilot(
            config,
            data,
            resources,
            on_progress=on_progress,
            on_arm_done=on_arm_done,
            data_warnings=data_warnings,
        )
