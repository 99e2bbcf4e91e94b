"""Which path a bundle hands off: the recommended one by default, any path whose arm ran on
request (page, API, command line), and the bundle saying which and whether recommended."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest

from app.exports import service
from app.exports.bundle import ArmFacts
from tests.app.accounts.helpers import bearer, create_token
from tests.app.exports.helpers import exportable_pilot
from tests.app.reports.factory import ArmSpec, paired_accuracy
from tests.factories.assessments import scored_assessment


@pytest.fixture
def owner(make_client):  # type: ignore[no-untyped-def]
    client = make_client()
    client.signup("owner@example.com")
    return client


def rag_recommended(owner) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A pilot that ran few-shot, RAG and QLoRA (adapter saved), where RAG clearly wins."""
    aid = scored_assessment(owner)
    arms = (
        ArmSpec("fewshot", 0.40, (0.30, 0.50), right=5),
        ArmSpec("rag", 0.92, (0.85, 0.98), right=11),
        ArmSpec("qlora", 0.50, (0.40, 0.60), right=6, trains=True),
    )
    differences = (
        paired_accuracy("rag", "fewshot", a_only=66, b_only=3),
        paired_accuracy("qlora", "fewshot", a_only=22, b_only=8),
        paired_accuracy("qlora", "rag", a_only=4, b_only=55),
    )
    pid = exportable_pilot(aid, arms=arms, differences=differences, documents=40)
    report = owner.get(f"/assessments/{aid}/report?pilot={pid}").text
    assert re.search(r'<h2 id="rec-h">RAG</h2>', report), "the pilot recommends RAG"
    return aid, pid


def files(content: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(content))


def test_a_path_whose_arm_ran_exports_on_request(owner) -> None:  # type: ignore[no-untyped-def]
    _, pid = rag_recommended(owner)
    token = create_token(owner, "export script")

    default = owner.http.get(f"/api/v1/pilots/{pid}/export", headers=bearer(token))
    assert default.status_code == 200, default.text
    hand_off = json.loads(files(default.content).read("MANIFEST.json"))["hand_off"]
    assert hand_off == {
        "path": "rag",
        "label": "RAG",
        "recommended": True,
        "recommended_path": "rag",
    }
    assert "the path the pilot recommends" in files(default.content).read("README.md").decode()

    chosen = owner.http.get(
        f"/api/v1/pilots/{pid}/export", params={"path": "fine_tuning"}, headers=bearer(token)
    )
    assert chosen.status_code == 200, chosen.text
    assert "-fine_tuning-bundle.zip" in chosen.headers["content-disposition"]
    bundle = files(chosen.content)
    hand_off = json.loads(bundle.read("MANIFEST.json"))["hand_off"]
    assert hand_off["path"] == "fine_tuning" and hand_off["recommended"] is False
    assert hand_off["recommended_path"] == "rag"
    readme = bundle.read("README.md").decode()
    assert "hands off **Fine-tuning**" in readme and "**not** the recommended path" in readme
    assert "adapter/adapter_config.json" in bundle.namelist()

    # The page's form sends the same query.
    page = owner.get(f"/pilots/{pid}/export?path=fine_tuning")
    assert page.status_code == 200 and page.headers["content-type"] == "application/zip"


def test_an_unknown_path_is_422_and_an_arm_that_did_not_run_409(owner) -> None:  # type: ignore[no-untyped-def]
    _, pid = rag_recommended(owner)
    unknown = owner.http.get(f"/api/v1/pilots/{pid}/export", params={"path": "finetune"})
    assert unknown.status_code == 422
    assert any(error["loc"][-1] == "path" for error in unknown.json()["detail"])
    absent = owner.http.get(f"/api/v1/pilots/{pid}/export", params={"path": "fine_tuning+rag"})
    assert absent.status_code == 409, absent.text
    detail = absent.json()["detail"]
    assert "You chose Fine-tuning + RAG" in detail and "did not run" in detail
    assert "(qlora_rag)" in detail


def test_the_page_offers_the_paths_whose_arms_ran(owner) -> None:  # type: ignore[no-untyped-def]
    aid, pid = rag_recommended(owner)
    report = owner.get(f"/assessments/{aid}/report?pilot={pid}").text
    form = re.search(r'<form[^>]*id="export-path-form".*?</form>', report, re.DOTALL)
    assert form, "the export path form"
    assert f'action="/pilots/{pid}/export"' in form.group(0)
    options = re.findall(r'<option value="([^"]+)"( selected)?', form.group(0))
    assert [value for value, _ in options] == ["prompting", "rag", "fine_tuning"]
    assert [value for value, selected in options if selected] == ["rag"]


def test_a_recommended_path_that_did_not_run_names_those_that_did() -> None:
    """The issue's case: the rubric recommends prompting, only the QLoRA arm ran."""
    arms = {"qlora": ArmFacts("qlora", "done")}
    assert service.exportable_paths(arms) == ["fine_tuning"]
    with pytest.raises(service.ExportNotPossible) as refused:
        service._check_chosen_path("prompting", "Prompting", arms, None, None)
    message = str(refused.value)
    assert "nothing measured to hand off" in message
    assert "Export a path whose arm ran instead: fine_tuning (path=fine_tuning)" in message


def test_pathpilot_export_takes_a_path(owner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from app import cli
    from worker.cli_export import export_command

    _, pid = rag_recommended(owner)
    if "export" not in {c.name for c in cli.app.registered_commands}:
        cli.app.command("export")(export_command)
    runner = CliRunner()
    out = tmp_path / "ft.zip"
    args = ["export", pid, "--out", str(out), "--no-pdf", "--path", "fine_tuning"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(files(out.read_bytes()).read("MANIFEST.json"))["hand_off"]["path"] == (
        "fine_tuning"
    )
    bad = runner.invoke(cli.app, ["export", pid, "--out", str(tmp_path / "x.zip"), "--path", "x"])
    assert bad.exit_code == 2 and "--path" in bad.output
    absent = ["export", pid, "--out", str(tmp_path / "y.zip"), "--path", "fine_tuning+rag"]
    refused = runner.invoke(cli.app, absent)
    assert refused.exit_code == 1 and "did not run" in refused.output
