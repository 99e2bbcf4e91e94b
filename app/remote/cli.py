"""`pathpilot remote ...`: drive a PathPilot server's JSON API from a shell or a CI job.

The server comes from --server or PATHPILOT_SERVER; the token from PATHPILOT_TOKEN or
--token-file, never from an argument, which any user of the machine could read in `ps`.
Results go to stdout (ids, JSON, the verdict) and everything else to stderr, so
`ID=$(pathpilot remote create intake.json)` works. Exit statuses: see `EXIT_STATUS`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from typer.core import TyperGroup

from app.remote.client import VERDICT_PATHS, Client, Pilot, RemoteError, Verdict
from app.remote.progress import ProgressPrinter

EXIT_OK = 0
EXIT_EXPECT_MISMATCH = 1
EXIT_PILOT_FAILED = 2
EXIT_ERROR = 3
EXIT_STATUS = (
    "Exit status: 0 ok; 1 the verdict's path differs from --expect; 2 the pilot failed or was "
    "cancelled; 3 a usage, HTTP or connection error (the server's reason is printed)."
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class RemoteGroup(TyperGroup):
    """Maps every failure to exit status 3 with one line on stderr, not a traceback. Click would
    give usage errors 2, which here means a failed pilot; `TyperException` is the base of its
    usage and file errors. (`ctx` is typed Any: typer's Context is its vendored click's.)"""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except typer.TyperException as exc:
            exc.exit_code = EXIT_ERROR
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.TyperException as exc:
            exc.exit_code = EXIT_ERROR
            raise
        except RemoteError as exc:
            _fail(str(exc))
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}")


remote_app = typer.Typer(
    cls=RemoteGroup,
    help="Drive a PathPilot server's JSON API: create, upload, pilot, verdict, PDF, export.",
    epilog=EXIT_STATUS,
    no_args_is_help=True,
)
list_app = typer.Typer(cls=RemoteGroup, help="List your assessments, pilots or models.")
remote_app.add_typer(list_app, name="list")

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="PATHPILOT_SERVER",
        show_envvar=True,
        help="The server's address, e.g. https://pathpilot.example.com",
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        exists=True,
        dir_okay=False,
        help="A file holding the API token; default: the PATHPILOT_TOKEN variable",
    ),
]
ArmsOption = Annotated[
    list[str] | None,
    typer.Option("--arm", help="An arm to run (repeat it); default: every default arm"),
]
MaxTrainOption = Annotated[
    int | None, typer.Option(min=1, help="Training examples; default: the server's cap")
]
ModelOption = Annotated[str | None, typer.Option(help="A registered model's id")]
CurveOption = Annotated[
    bool | None,
    typer.Option(
        "--learning-curve/--no-learning-curve",
        help="Also train on 1/4 and 1/2 of the split; default: the server's setting",
    ),
]
PollOption = Annotated[float, typer.Option(min=0.2, help="Seconds between progress polls")]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout", min=1, help="Stop waiting after this many seconds (exit 3; the pilot goes on)"
    ),
]
ExpectOption = Annotated[
    str | None,
    typer.Option(
        help=f"The path the verdict must recommend ({', '.join(VERDICT_PATHS)}); exit 1 if not"
    ),
]
PdfOption = Annotated[
    Path | None, typer.Option("--pdf", dir_okay=False, help="Save the report's PDF here")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the server's JSON")]
FormatOption = Annotated[
    str, typer.Option("--format", help="auto, text_label_csv, chat_jsonl, instruction_jsonl, …")
]
TaskOption = Annotated[
    str, typer.Option("--task", help="auto, classification, qa, extraction or generation")
]


def _fail(message: str, status: int = EXIT_ERROR) -> NoReturn:
    typer.echo(f"pathpilot remote: {message}", err=True)
    raise typer.Exit(status)


def _note(message: str) -> None:
    typer.echo(message, err=True)


def _connect(server: str | None, token_file: Path | None) -> Client:
    if not server:
        _fail("no server: pass --server URL or set PATHPILOT_SERVER")
    if token_file is not None:
        # Undecodable bytes become U+FFFD, which check_token refuses without quoting them.
        token = token_file.read_text(encoding="utf-8", errors="replace")
        if not token.strip():
            _fail(f"{token_file} is empty: it should hold an API token")
    else:
        token = os.environ.get("PATHPILOT_TOKEN", "")
        if not token.strip():
            _fail(
                "no API token: set PATHPILOT_TOKEN or pass --token-file FILE "
                "(create a token under API tokens in the web app)"
            )
    client = Client(server, token)
    url = httpx.URL(client.server)
    if url.scheme == "http" and url.host not in LOOPBACK_HOSTS:
        _note(f"warning: the API token goes to {url.host} over plain HTTP, unencrypted")
    return client


def _read_json(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        _fail(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
    except UnicodeDecodeError:
        _fail(f"{path}: not UTF-8 text")
    if not isinstance(body, dict):
        _fail(f"{path}: the intake must be a JSON object")
    return body


def _check_expect(expect: str | None) -> None:
    if expect is not None and expect not in VERDICT_PATHS:
        raise typer.BadParameter(
            f"{expect!r} is not a path; use one of {', '.join(VERDICT_PATHS)}",
            param_hint="--expect",
        )


def _pilot_body(
    arms: list[str] | None,
    max_train: int | None,
    prompt_model: str | None,
    base_model: str | None,
    judge_model: str | None,
    serving_model: str | None,
    learning_curve: bool | None,
) -> dict[str, Any]:
    return {
        "arms": arms or None,
        "max_train": max_train,
        "prompt_model_id": prompt_model,
        "base_model_id": base_model,
        "judge_model_id": judge_model,
        "serving_model_id": serving_model,
        "learning_curve": learning_curve,
    }


def _wait(api: Client, pilot_id: str, poll: float, timeout: float | None) -> Pilot:
    """Wait with live progress on stderr; exit 2 unless the pilot finished as done."""
    printer = ProgressPrinter(sys.stderr)
    try:
        pilot = api.wait_for_pilot(
            pilot_id, on_update=printer, poll_seconds=poll, timeout_seconds=timeout
        )
    except KeyboardInterrupt:
        printer.close()
        _fail(
            f"stopped waiting; pilot {pilot_id} goes on running on the server "
            f"(`pathpilot remote cancel {pilot_id}` stops it)",
            130,
        )
    finally:
        printer.close()
    if not pilot.succeeded:
        reason = f": {pilot.error}" if pilot.error else ""
        failed = [f"{arm.arm}: {arm.error}" for arm in pilot.arms if arm.error]
        _fail(
            f"pilot {pilot.id} {pilot.status}{reason}" + "".join(f"\n  {f}" for f in failed),
            EXIT_PILOT_FAILED,
        )
    return pilot


def _print_verdict(verdict: Verdict, raw: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(raw, indent=2))
        return
    decided = "the pilot" if verdict.decided_by == "pilot" else "the rubric"
    typer.echo(f"path: {verdict.path} ({verdict.label})")
    typer.echo(f"confidence: {verdict.confidence}, decided by {decided}")
    if verdict.pilot_id:
        typer.echo(f"pilot: {verdict.pilot_id}")
    typer.echo(f"why: {verdict.why}")


def _verdict_step(
    api: Client,
    assessment_id: str,
    *,
    pilot_id: str | None,
    as_json: bool,
    pdf: Path | None,
    expect: str | None,
) -> None:
    """Print the verdict, save its PDF, then hold it to --expect (exit 1 when it differs)."""
    raw = api.report_json(assessment_id, pilot_id=pilot_id)
    verdict = Verdict.model_validate(raw)
    _print_verdict(verdict, raw, as_json)
    if pdf is not None:
        api.download_report_pdf(assessment_id, pdf, pilot_id=pilot_id)
        _note(f"saved the report's PDF to {pdf}")
    if expect is not None and verdict.path != expect:
        _fail(
            f"expected path {expect}, got {verdict.path} ({verdict.label}, "
            f"{verdict.confidence} confidence)",
            EXIT_EXPECT_MISMATCH,
        )


@remote_app.command(epilog=EXIT_STATUS)
def create(
    intake_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    server: ServerOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """Create and score an assessment from an intake JSON file; prints its id."""
    intake = _read_json(intake_file)
    with _connect(server, token_file) as api:
        assessment = api.create_assessment(intake)
    typer.echo(assessment.id)


@remote_app.command("upload-sample", epilog=EXIT_STATUS)
def upload_sample(
    assessment_id: str,
    sample: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    sample_format: FormatOption = "auto",
    task: TaskOption = "auto",
    server: ServerOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """Upload the labelled sample (replacing any earlier one); prints the server's summary."""
    with _connect(server, token_file) as api:
        summary = api.upload_sample(assessment_id, sample, format=sample_format, task=task)
    typer.echo(json.dumps(summary, indent=2))


@remote_app.command("upload-documents", epilog=EXIT_STATUS)
def upload_documents(
    assessment_id: str,
    documents: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)],
    server: ServerOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """Upload reference documents for the RAG arms; prints the server's answer."""
    with _connect(server, token_file) as api:
        answer = api.upload_documents(assessment_id, documents)
    typer.echo(json.dumps(answer, indent=2))


@remote_app.command(epilog=EXIT_STATUS)
def pilot(
    assessment_id: str,
    arm: ArmsOption = None,
    max_train: MaxTrainOption = None,
    prompt_model: ModelOption = None,
    base_model: ModelOption = None,
    judge_model: ModelOption = None,
    serving_model: ModelOption = None,
    learning_curve: CurveOption = None,
    wait: Annotated[bool, typer.Option(help="Wait for the end, with progress on stderr")] = False,
    poll: PollOption = 2.0,
    timeout: TimeoutOption = None,
    server: ServerOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """Start a pilot on the assessment's sample; prints its id (with --wait, once it is done)."""
    body = _pilot_body(
        arm, max_train, prompt_model, base_model, judge_model, serving_model, learning_curve
    )
    with _connect(server, token_file) as api:
        started = api.start_pilot(assessment_id, **body)
        _note(f"pilot {started.id} {started.status}")
        if wait:
            _wait(api, started.id, poll, timeout)
    typer.echo(started.id)


@remote_app.command(epilog=EXIT_STATUS)
def cancel(pilot_id: str, server: ServerOption = None, token_file: TokenFileOption = None) -> None:
    """Cancel a queued or running pilot."""
    with _connect(server, token_file) as api:
        typer.echo(api.cancel_pilot(pilot_id).status)


@remote_app.command(epilog=EXIT_STATUS)
def report(
    assessment_id: str,
    pilot_id: Annotated[
        str | None, typer.Option("--pilot", help="A finished pilot; default the latest")
    ] = None,
    as_json: JsonFlag = False,
    pdf: PdfOption = None,
    expect: ExpectOption = None,
    server: ServerOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """Print the report's verdict: path, confidence, why.

    --pdf saves the report's PDF; --expect checks the path (exit 1 when it differs)."""
    _check_expect(expect)
    with _connect(server, token_file) as api:
        _verdict_step(
            api, assessment_id, pilot_id=pilot_id, as_json=as_json, pdf=pdf, expect=expect
        )


@remote_app.command(epilog=EXIT_STATUS)
def export(
    pilot_id: str,
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="The zip file to write")],
    path: Annotated[
        str | None, typer.Option("--path", help="Hand off this path instead of the recommended")
    ] = None,
    server: ServerOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """Save a finished pilot's hand-off bundle (a zip)."""
    with _connect(server, token_file) as api:
        api.download_export(pilot_id, out, path=path)
    _note(f"saved the hand-off bundle to {out} ({out.stat().st_size:,} bytes)")


def _print_rows(rows: list[dict[str, Any]], columns: tuple[str, ...], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo("\t".join(str(row.get(column) or "") for column in columns))


@list_app.command("assessments", epilog=EXIT_STATUS)
def list_assessments(
    as_json: JsonFlag = False, server: ServerOption = None, token_file: TokenFileOption = None
) -> None:
    """Your assessments, one a line: id, status, title."""
    with _connect(server, token_file) as api:
        rows = list(api.list_assessments())
    _print_rows(rows, ("id", "status", "title"), as_json)


@list_app.command("pilots", epilog=EXIT_STATUS)
def list_pilots(
    assessment_id: str,
    as_json: JsonFlag = False,
    server: ServerOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """The assessment's pilots, one a line: id, status, created."""
    with _connect(server, token_file) as api:
        rows = list(api.list_pilots(assessment_id))
    _print_rows(rows, ("id", "status", "created_at"), as_json)


@list_app.command("models", epilog=EXIT_STATUS)
def list_models(
    as_json: JsonFlag = False, server: ServerOption = None, token_file: TokenFileOption = None
) -> None:
    """Your registered models, one a line: id, kind, name, model."""
    with _connect(server, token_file) as api:
        rows = list(api.list_models())
    _print_rows(rows, ("id", "kind", "name", "model"), as_json)


@remote_app.command(epilog=EXIT_STATUS)
def run(
    intake_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    sample: Annotated[
        Path, typer.Option("--sample", exists=True, dir_okay=False, help="The labelled sample")
    ],
    documents: Annotated[
        list[Path] | None,
        typer.Option(
            "--documents", exists=True, dir_okay=False, help="A reference document (repeat it)"
        ),
    ] = None,
    sample_format: FormatOption = "auto",
    task: TaskOption = "auto",
    arm: ArmsOption = None,
    max_train: MaxTrainOption = None,
    prompt_model: ModelOption = None,
    base_model: ModelOption = None,
    judge_model: ModelOption = None,
    serving_model: ModelOption = None,
    learning_curve: CurveOption = None,
    expect: ExpectOption = None,
    pdf: PdfOption = None,
    as_json: JsonFlag = False,
    poll: PollOption = 2.0,
    timeout: TimeoutOption = None,
    server: ServerOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """The whole flow for CI, from an intake file to a checked verdict.

    Creates the assessment, uploads the sample (and documents), runs a pilot with progress on
    stderr, prints the verdict, saves the PDF (--pdf) and checks the path (--expect)."""
    _check_expect(expect)
    intake = _read_json(intake_file)
    body = _pilot_body(
        arm, max_train, prompt_model, base_model, judge_model, serving_model, learning_curve
    )
    with _connect(server, token_file) as api:
        assessment = api.create_assessment(intake)
        _note(f"assessment {assessment.id} created")
        summary = api.upload_sample(assessment.id, sample, format=sample_format, task=task)
        _note(f"sample {sample.name} uploaded ({_summary_words(summary)})")
        if documents:
            api.upload_documents(assessment.id, documents)
            _note(f"{len(documents)} document(s) uploaded")
        started = api.start_pilot(assessment.id, **body)
        _note(f"pilot {started.id} {started.status}")
        finished = _wait(api, started.id, poll, timeout)
        _verdict_step(
            api, assessment.id, pilot_id=finished.id, as_json=as_json, pdf=pdf, expect=expect
        )


def _summary_words(summary: dict[str, Any]) -> str:
    """A few of the sample summary's facts, whichever the server sent."""
    words = [f"{key} {summary[key]}" for key in ("task", "format", "rows") if key in summary]
    labels = summary.get("label_distribution")
    if isinstance(labels, dict) and labels:
        words.append(f"{len(labels)} labels")
    return ", ".join(words) or "ok"
