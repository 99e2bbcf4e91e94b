"""Export through the page, the API, a share link and the command line, with who may."""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from app.db import session_scope
from app.pilots.models import Pilot
from tests.app.accounts.helpers import bearer, create_token
from tests.app.exports.helpers import exportable_pilot
from tests.factories.assessments import scored_assessment

EXPECTED = {
    "MANIFEST.json",
    "README.md",
    "report.pdf",
    "data/train.chat.jsonl",
    "data/train.jsonl",
    "data/validation.chat.jsonl",
    "data/test/test.jsonl",
    "data/test/test.chat.jsonl",
    "data/test/README.md",
    "finetune/train_trl.py",
    "finetune/axolotl.yaml",
    "finetune/requirements.txt",
    "finetune/recipe.json",
    "finetune/README.md",
    "adapter/adapter_config.json",
    "adapter/adapter_model.safetensors",
    "adapter/merge.py",
    "serve/serve.sh",
    "serve/make_gguf.sh",
    "serve/gguf_helper.py",
    "serve/client.py",
    "serve/prompt.json",
    "serve/pilot_metrics.py",
    "serve/pilot_prompts.py",
    "rag/rag_config.json",
    "rag/build_index.py",
    "rag/query.py",
}


def names(content: bytes) -> set[str]:
    return set(zipfile.ZipFile(io.BytesIO(content)).namelist())


@pytest.fixture
def owner(make_client):  # type: ignore[no-untyped-def]
    client = make_client()
    client.signup("owner@example.com")
    return client


def test_owner_exports_from_the_page_and_the_api(owner, make_client) -> None:  # type: ignore[no-untyped-def]
    aid = scored_assessment(owner)
    pid = exportable_pilot(aid)
    report = owner.get(f"/assessments/{aid}/report?pilot={pid}")
    assert f'href="/pilots/{pid}/export"' in report.text  # the Export button

    page = owner.get(f"/pilots/{pid}/export")
    assert page.status_code == 200, page.text[:500]
    assert page.headers["content-type"] == "application/zip"
    assert "attachment" in page.headers["content-disposition"]
    assert names(page.content) >= EXPECTED
    archive = zipfile.ZipFile(io.BytesIO(page.content))
    assert archive.read("report.pdf").startswith(b"%PDF-")
    assert "verified" in archive.read("data/README.md").decode()

    token = create_token(owner, "export script")
    api = owner.http.get(f"/api/v1/pilots/{pid}/export", headers=bearer(token))
    assert api.status_code == 200 and names(api.content) == names(page.content)

    other = make_client()
    other.signup("other@example.com")
    assert other.get(f"/pilots/{pid}/export").status_code == 404
    other_token = create_token(other, "other")
    response = other.http.get(f"/api/v1/pilots/{pid}/export", headers=bearer(other_token))
    assert response.status_code == 404
    anonymous = make_client()
    assert anonymous.http.get(f"/api/v1/pilots/{pid}/export").status_code == 401
    assert anonymous.get(f"/pilots/{pid}/export").status_code == 303


def test_a_pilot_that_is_not_done_is_409(owner) -> None:  # type: ignore[no-untyped-def]
    aid = scored_assessment(owner)
    pid = exportable_pilot(aid)
    with session_scope() as session:
        pilot = session.get(Pilot, pid)
        assert pilot is not None
        pilot.status = "running"
    response = owner.http.get(f"/api/v1/pilots/{pid}/export")
    assert response.status_code == 409
    assert "only a finished pilot" in response.json()["detail"]


def test_a_missing_adapter_is_409_naming_it(owner) -> None:  # type: ignore[no-untyped-def]
    aid = scored_assessment(owner)
    pid = exportable_pilot(aid, adapter=False)
    response = owner.http.get(f"/api/v1/pilots/{pid}/export")
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert "adapter" in detail and "(qlora" in detail and "missing" in detail


def test_a_changed_sample_is_409(owner) -> None:  # type: ignore[no-untyped-def]
    aid = scored_assessment(owner)
    pid = exportable_pilot(aid)
    with session_scope() as session:
        pilot = session.get(Pilot, pid)
        assert pilot is not None
        pilot.manifest = {**pilot.manifest, "dataset_sha256": "0" * 64}
    response = owner.http.get(f"/api/v1/pilots/{pid}/export")
    assert response.status_code == 409
    assert "dataset_sha256" in response.json()["detail"]


def test_share_links_give_the_bundle_only_when_the_owner_included_it(owner, make_client) -> None:  # type: ignore[no-untyped-def]
    from urllib.parse import urlsplit

    from tests.app.accounts.helpers import shown_once

    aid = scored_assessment(owner)
    exportable_pilot(aid)
    paths = {}
    for include in (False, True):
        data = {"label": f"include {include}"} | ({"include_bundle": "true"} if include else {})
        created = owner.post(f"/assessments/{aid}/sharing", data)
        assert created.status_code == 201
        paths[include] = urlsplit(shown_once(created.text, "new-link-value")).path
    manage = owner.get(f"/assessments/{aid}/sharing").text
    assert "report, PDF, data and adapter" in manage and "Include data and adapter" in manage

    visitor = make_client()
    plain = visitor.get(paths[False])
    assert "report and its PDF only" in plain.text and "shared-bundle-link" not in plain.text
    assert visitor.get(f"{paths[False]}/export.zip").status_code == 404
    opened = visitor.get(paths[True])
    assert "shared-bundle-link" in opened.text and "data and the adapter" in opened.text
    bundle = visitor.get(f"{paths[True]}/export.zip")
    assert bundle.status_code == 200 and names(bundle.content) >= EXPECTED
    assert bundle.headers["referrer-policy"] == "no-referrer"


def test_pathpilot_export_writes_a_folder_or_a_zip(owner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from app import cli
    from worker.cli_export import export_command

    aid = scored_assessment(owner)
    pid = exportable_pilot(aid)
    if "export" not in {c.name for c in cli.app.registered_commands}:
        cli.app.command("export")(export_command)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["export", pid, "--out", str(tmp_path / "b.zip")])
    assert result.exit_code == 0, result.output
    assert names((tmp_path / "b.zip").read_bytes()) >= EXPECTED
    result = runner.invoke(cli.app, ["export", pid, "--out", str(tmp_path / "dir"), "--no-pdf"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dir" / "finetune" / "train_trl.py").is_file()
    assert not (tmp_path / "dir" / "report.pdf").exists()
    missing = runner.invoke(cli.app, ["export", "nope", "--out", str(tmp_path / "x.zip")])
    assert missing.exit_code == 2 and "No pilot" in missing.output


def test_share_link_migration_upgrades_and_downgrades(var_dir) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa
    from alembic import command

    from app.db import get_engine
    from app.migrate import alembic_config

    def columns() -> set[str]:
        return {c["name"] for c in sa.inspect(get_engine()).get_columns("share_link")}

    assert "include_bundle" in columns()
    command.downgrade(alembic_config(), "9f8d5f396ed3")
    get_engine().dispose()
    assert "include_bundle" not in columns()
    command.upgrade(alembic_config(), "head")
    get_engine().dispose()
    assert "include_bundle" in columns()


def test_a_failed_fine_tuning_arm_of_the_recommended_path_is_409(owner) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from app.pilots.models import PilotArm

    aid = scored_assessment(owner)
    pid = exportable_pilot(aid)
    with session_scope() as session:
        for arm in session.scalars(select(PilotArm).where(PilotArm.pilot_id == pid)):
            if arm.arm.startswith("qlora"):
                arm.status, arm.error = "failed", "RuntimeError: out of memory"
    response = owner.http.get(f"/api/v1/pilots/{pid}/export")
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert "Fine-tuning" in detail and "(qlora) arm failed: RuntimeError: out of memory" in detail


def test_a_rag_recommendation_exports_what_exists(owner) -> None:  # type: ignore[no-untyped-def]
    """RAG clearly wins the pilot and the adapter is gone: the bundle holds the rest and says
    what is missing."""
    from tests.app.reports.factory import ArmSpec, paired_accuracy

    aid = scored_assessment(owner)
    arms = (
        ArmSpec("fewshot", 0.40, (0.30, 0.50), right=5),
        ArmSpec("rag", 0.92, (0.85, 0.98), right=11),
        ArmSpec("qlora", 0.50, (0.40, 0.60), right=6, trains=True),
    )
    # On 120 paired items, with enough discordant ones for each gap to matter.
    differences = (
        paired_accuracy("rag", "fewshot", a_only=66, b_only=3),
        paired_accuracy("qlora", "fewshot", a_only=22, b_only=8),
        paired_accuracy("qlora", "rag", a_only=4, b_only=55),
    )
    # RAG is recommended only where its arm read documents: without them it would be
    # evidence for prompting with retrieved examples.
    pid = exportable_pilot(aid, adapter=False, arms=arms, differences=differences, documents=40)
    report = owner.get(f"/assessments/{aid}/report?pilot={pid}").text
    assert re.search(r'<h2 id="rec-h">RAG</h2>', report), "the pilot recommends RAG"
    response = owner.http.get(f"/api/v1/pilots/{pid}/export")
    assert response.status_code == 200, response.text
    listing = names(response.content)
    readme = zipfile.ZipFile(io.BytesIO(response.content)).read("README.md").decode()
    assert "adapter/: not included: the adapter's files are missing" in readme
    assert not any(n.startswith("adapter/") for n in listing)
    assert {"rag/rag_config.json", "rag/build_index.py", "serve/client.py"} <= listing
