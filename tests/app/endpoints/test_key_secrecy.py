"""An API key registered for a model never comes back out: not in var/, the logs, the SQL,
the report page, the PDF, the export bundle, the API answers or the command line's JSON.

A real pilot runs through the worker's own job code, its prompting arm asking a real vLLM
server with the key as a bearer token (vLLM started without --api-key accepts any).
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from tests.app.accounts.helpers import bearer, create_token
from tests.conftest import REPO
from tests.factories.assessments import GOOD_CSV, scored_assessment

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

SECRET = "sk-live-PathPilotSecretProbe-9e2b7"


def everything_in_sql() -> str:
    """Every value of every row of every table, as text: a dump of the database."""
    from app.db import get_engine

    metadata = MetaData()
    metadata.reflect(get_engine())
    parts: list[str] = []
    with get_engine().connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


def test_an_api_key_never_appears_anywhere(
    client, var_dir: Path, vllm_server, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from app.pilots.models import Pilot
    from worker.jobs import run_in_process

    caplog.set_level(logging.DEBUG)
    client.signup()
    aid = scored_assessment(client)
    headers = bearer(create_token(client))
    created = client.http.post(
        "/api/v1/models",
        json={
            "name": "served default",
            "kind": "openai_compatible",
            "base_url": vllm_server.base_url,
            "model": vllm_server.model,
            "api_key": SECRET,
            "input_usd_per_million": 0.2,
            "output_usd_per_million": 0.6,
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    model_id = created.json()["id"]
    check = client.http.post(f"/api/v1/models/{model_id}/check", headers=headers)
    assert check.json()["ok"] is True, check.text
    page_check = client.post(f"/models/{model_id}/check", headers={"HX-Request": "true"})
    assert "answered in" in page_check.text

    started = client.http.post(
        f"/api/v1/assessments/{aid}/pilots",
        json={"arms": ["fewshot"], "max_train": 30, "prompt_model_id": model_id},
        headers=headers,
    )
    assert started.status_code == 202, started.text
    pilot_id = started.json()["id"]
    run_in_process(pilot_id)  # the worker's tasks, in this process

    from app.db import get_sessionmaker

    with get_sessionmaker()() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None and pilot.status == "done", pilot and pilot.error
        arm_models = pilot.manifest["arm_models"]
    assert arm_models["fewshot"]["via"] == "endpoint"

    report = client.get(f"/assessments/{aid}/report").text
    assert "served default" in report or vllm_server.model in report
    pdf = client.get(f"/assessments/{aid}/report.pdf").content
    (tmp_path / "report.pdf").write_bytes(pdf)
    pdf_text = subprocess.run(
        ["pdftotext", str(tmp_path / "report.pdf"), "-"], capture_output=True, text=True
    ).stdout
    assert vllm_server.model in pdf_text

    # The command line, with the key in an environment variable.
    out = tmp_path / "cli.json"
    sample = tmp_path / "sample.csv"
    sample.write_text(GOOD_CSV)
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("pathpilot")), "pilot", str(sample),
         "--arms", "fewshot", "--max-train", "30", "--endpoint", vllm_server.base_url,
         "--endpoint-model", vllm_server.model, "--api-key-env", "PP_TEST_ENDPOINT_KEY",
         "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "PP_TEST_ENDPOINT_KEY": SECRET, "VAR_DIR": str(var_dir)},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    cli_json = out.read_text()
    assert json.loads(cli_json)["manifest"]["arm_models"]["fewshot"]["via"] == "endpoint"

    # The hand-off bundle: every file in the zip, or the refusal when the chosen path's arm
    # did not run in this one-arm pilot.
    exported = client.http.get(f"/api/v1/pilots/{pilot_id}/export", headers=headers)
    assert exported.status_code in (200, 409), exported.text
    bundle_text = exported.text
    if exported.status_code == 200:
        with zipfile.ZipFile(io.BytesIO(exported.content)) as bundle:
            assert any(name.endswith("MANIFEST.json") for name in bundle.namelist())
            bundle_text = "\n".join(
                bundle.read(name).decode("utf-8", "replace") for name in bundle.namelist()
            )

    places = {
        "export": bundle_text,
        "API model list": client.http.get("/api/v1/models", headers=headers).text,
        "API pilot": client.http.get(f"/api/v1/pilots/{pilot_id}", headers=headers).text,
        "models page": client.get("/models").text,
        "report page": report,
        "PDF text": pdf_text,
        "CLI JSON": cli_json,
        "CLI output": cli.stdout + cli.stderr,
        "logs": caplog.text,
        "SQL": everything_in_sql(),
    }
    for where, text in places.items():
        assert SECRET not in text, f"the API key leaked into the {where}"
    for path in var_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the API key leaked into {path}"
