"""Local models: only directories under the operator's LOCAL_MODEL_ROOTS, checked on the
resolved path when registered and again when used; *Check* never probes outside them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import get_settings
from tests.app.accounts.helpers import bearer, create_token


def model_dir(path: Path) -> Path:
    """A directory that looks like a Hugging Face model (what *Check* looks for)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    return path


def register(client, model: str, name: str = "local"):  # type: ignore[no-untyped-def]
    body = {"name": name, "kind": "local", "model": model}
    return client.http.post("/api/v1/models", json=body, headers=bearer(create_token(client)))


def set_roots(monkeypatch: pytest.MonkeyPatch, *roots: Path) -> None:
    monkeypatch.setenv("LOCAL_MODEL_ROOTS", ",".join(str(r) for r in roots))
    get_settings.cache_clear()


def test_a_model_under_the_default_root_registers_and_checks(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    inside = model_dir(get_settings().models_dir / "team-model")
    created = register(client, str(inside))
    assert created.status_code == 201, created.text
    report = client.http.post(f"/api/v1/models/{created.json()['id']}/check").json()
    assert report == {**report, "ok": True}


def test_directories_outside_the_roots_are_a_422_naming_model(  # type: ignore[no-untyped-def]
    client, tmp_path: Path
) -> None:
    client.signup()
    outside = model_dir(tmp_path / "elsewhere" / "model")
    roots = get_settings().models_dir
    escape = roots / "escape"
    roots.mkdir(parents=True, exist_ok=True)
    escape.symlink_to(outside, target_is_directory=True)
    answers = {}
    for label, path in {
        "existing": str(outside),
        "missing": str(tmp_path / "elsewhere" / "nothing"),
        "dot-dot": f"{roots}/../../elsewhere/model",
        "symlink": str(escape),
        "relative": "team-model",
    }.items():
        response = register(client, path, name=label)
        assert response.status_code == 422, (label, response.text)
        answers[label] = response.json()["detail"]
    assert answers["existing"].startswith("model: ") and "LOCAL_MODEL_ROOTS" in answers["existing"]
    # One answer whatever is there: registering is no way to learn what exists.
    assert len(set(answers.values())) == 1, answers
    assert client.http.get("/api/v1/models").json() == []


def test_the_operator_sets_the_roots(client, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    team = model_dir(tmp_path / "team-models" / "qwen")
    assert register(client, str(team)).status_code == 422
    set_roots(monkeypatch, tmp_path / "team-models")
    assert register(client, str(team)).status_code == 201
    # The default root is no longer one, LLM_MODEL's directory always is.
    assert register(client, str(get_settings().models_dir / "other")).status_code == 422
    assert register(client, get_settings().llm_model).status_code == 201


def test_the_check_answers_alike_for_missing_and_outside_directories(  # type: ignore[no-untyped-def]
    client, tmp_path: Path, monkeypatch
) -> None:
    client.signup()
    set_roots(monkeypatch, tmp_path / "roots")
    real = register(client, str(model_dir(tmp_path / "roots" / "real")), name="real").json()
    gone = register(client, str(tmp_path / "roots" / "gone"), name="gone").json()
    assert client.http.post(f"/api/v1/models/{real['id']}/check").json()["ok"] is True
    missing = client.http.post(f"/api/v1/models/{gone['id']}/check").json()

    # The operator moves the roots: the real directory still exists, but is outside now.
    set_roots(monkeypatch, tmp_path / "new-roots")
    outside = client.http.post(f"/api/v1/models/{real['id']}/check").json()
    assert outside["ok"] is False
    shown = outside["message"].replace(real["model"], "<dir>")
    assert "No Hugging Face model directory" in shown
    assert shown == missing["message"].replace(gone["model"], "<dir>").replace(
        str(tmp_path / "roots"), str(tmp_path / "new-roots")
    )


def test_the_directory_is_checked_again_where_it_is_used(  # type: ignore[no-untyped-def]
    client, tmp_path: Path, monkeypatch
) -> None:
    from app.db import get_sessionmaker
    from app.endpoints.models import LlmModel
    from app.endpoints.service import ModelNotUsable, local_model_path

    client.signup()
    set_roots(monkeypatch, tmp_path / "roots")
    target = model_dir(tmp_path / "roots" / "base")
    created = register(client, str(target)).json()
    with get_sessionmaker()() as session:
        model = session.get(LlmModel, created["id"])
        assert model is not None
        assert local_model_path(model, get_settings()) == str(target.resolve())
        # A symlink swapped in after registration, pointing out of the roots.
        target.rename(tmp_path / "roots" / "moved")
        target.symlink_to(model_dir(tmp_path / "secret"), target_is_directory=True)
        with pytest.raises(ModelNotUsable, match="LOCAL_MODEL_ROOTS"):
            local_model_path(model, get_settings())
