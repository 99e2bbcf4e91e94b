"""Hostile inputs from tests/security/corpus.py, against a user with data worth protecting.

Every case must get its 4xx and a message naming the problem (or, for the few inputs that
are valid after all, be stored safely), must never echo markup unescaped, and must leave
the earlier good sample, the scored assessment and everything else on disk as they were.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.accounts.models import ApiToken
from app.accounts.ratelimit import LoginLimiter
from app.assessments.models import Assessment, DataSample
from app.db import get_sessionmaker
from app.endpoints.models import LlmModel
from app.pilots.models import Pilot
from app.settings import get_settings
from app.sharing.models import ShareLink
from tests.conftest import WebClient
from tests.conftest import _reset_caches as reset_caches
from tests.factories.assessments import GOOD_CSV, intake
from tests.security.corpus import (
    API_ASSESSMENTS,
    API_DOCUMENTS,
    API_MODELS,
    API_PILOTS,
    API_SAMPLE,
    CORPUS,
    DOCUMENTS,
    LINK_FORM,
    LOGIN,
    MODEL_FORM,
    PILOT_FORM,
    SAMPLE,
    SIGNUP,
    TOKEN_FORM,
    WHAT_IF,
    XSS,
    Hostile,
)

ESCAPED_XSS = "&lt;script&gt;alert(1)&lt;/script&gt;"
HEX_NAME = re.compile(r"[0-9a-f]{32}")


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 50
    assert len({case.id for case in CORPUS}) == len(CORPUS)


@pytest.fixture(scope="module")
def module_var_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One var/ and database for the whole corpus (the `var_dir` fixture, module-scoped).

    Sharing it is sound: every case snapshots the state just before it and compares after,
    and the few accepted inputs only add rows and files.
    """
    root = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAR_DIR", str(root / "var"))
        patch.delenv("DATABASE_URL", raising=False)
        patch.delenv("BROKER_URL", raising=False)
        reset_caches()
        from app.migrate import upgrade_head

        upgrade_head()
        yield root
        reset_caches()


@pytest.fixture(scope="module")
def module_owner(module_var_dir: Path) -> Iterator[tuple[WebClient, str]]:
    """A user with a scored assessment and a good sample: (client, assessment id)."""
    from app.main import create_app

    with TestClient(create_app(), follow_redirects=False) as http:
        client = WebClient(http)
        client.signup("owner@example.com", "correct horse battery")
        created = client.http.post("/api/v1/assessments", json=intake())
        assert created.status_code == 201
        aid = created.json()["id"]
        upload = client.post(
            f"/assessments/{aid}/sample", files={"file": ("good.csv", GOOD_CSV, "text/csv")}
        )
        assert upload.status_code == 303
        yield client, aid


@pytest.fixture
def owner(
    module_owner: tuple[WebClient, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[WebClient, str]:
    client, aid = module_owner
    # Starting a pilot enqueues it; the queue is not what these tests are about.
    monkeypatch.setattr("app.queue.send", lambda job: None)
    # Each case starts with no failed log-ins counted against it.
    client.http.app.state.login_limiter = LoginLimiter()
    return client, aid


def files_under(root: Path) -> dict[str, str]:
    """Every file under `root` (the test's tmp dir), with a digest; SQLite files excluded."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and ".db" not in path.name:
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def snapshot(aid: str) -> dict[str, Any]:
    with get_sessionmaker()() as session:
        assessment = session.get(Assessment, aid)
        assert assessment is not None
        samples = session.scalars(
            select(DataSample).where(DataSample.assessment_id == aid).order_by(DataSample.id)
        ).all()

        def count(model: Any) -> int:
            return session.scalar(select(func.count()).select_from(model)) or 0

        return {
            "status": assessment.status,
            "intake": assessment.intake,
            "score_result": assessment.score_result,
            "samples": [
                (s.id, s.kind, s.original_name, s.stored_name, s.sha256, s.summary) for s in samples
            ],
            "assessments": count(Assessment),
            "pilots": count(Pilot),
            "tokens": count(ApiToken),
            "links": count(ShareLink),
            "models": count(LlmModel),
        }


def send(client: WebClient, aid: str, case: Hostile):  # type: ignore[no-untyped-def]
    fields = dict(case.fields)
    if case.target == SAMPLE:
        file = {"file": (case.filename, case.data, "application/octet-stream")}
        return client.post(f"/assessments/{aid}/sample", fields, files=file)
    if case.target == DOCUMENTS:
        files = [("files", (case.filename, case.data, "application/octet-stream"))]
        return client.post(f"/assessments/{aid}/documents", fields, files=files)
    # The uploads' JSON API twins, with the session cookie and the page's CSRF header.
    if case.target == API_SAMPLE:
        file = {"file": (case.filename, case.data, "application/octet-stream")}
        return client.http.put(f"/api/v1/assessments/{aid}/sample", data=fields, files=file)
    if case.target == API_DOCUMENTS:
        files = [("files", (case.filename, case.data, "application/octet-stream"))]
        return client.http.post(f"/api/v1/assessments/{aid}/documents", files=files)
    if case.target.startswith("step:"):
        step = case.target.removeprefix("step:")
        return client.post(f"/assessments/{aid}/steps/{step}", fields)
    if case.target == PILOT_FORM:
        return client.post(f"/assessments/{aid}/pilots", fields)
    if case.target == TOKEN_FORM:
        return client.post("/account/tokens", fields)
    if case.target == LINK_FORM:
        return client.post(f"/assessments/{aid}/sharing", fields)
    if case.target in (LOGIN, SIGNUP):
        return client.post(f"/{case.target}", fields)
    if case.target == MODEL_FORM:
        return client.post("/models", fields)
    if case.target == WHAT_IF:
        return client.get(
            f"/assessments/{aid}/report/what-if", params=fields, headers={"HX-Request": "true"}
        )
    url = {
        API_ASSESSMENTS: "/api/v1/assessments",
        API_PILOTS: f"/api/v1/assessments/{aid}/pilots",
        API_MODELS: "/api/v1/models",
    }[case.target]
    # The session cookie plus the page's CSRF header, as the app's own pages would call it.
    return client.http.post(url, content=case.data, headers={"content-type": case.content_type})


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.id)
def test_hostile_input(
    owner: tuple[WebClient, str],
    module_var_dir: Path,
    case: Hostile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, aid = owner
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()  # the overrides (or the end of the last case's) take effect
    root = module_var_dir
    before, files_before = snapshot(aid), files_under(root)

    response = send(client, aid, case)

    assert response.status_code == case.status, response.text[-3000:]
    for words in case.expect:
        assert words in response.text, f"{words!r} not in: {response.text[-3000:]}"
    if case.target in (API_SAMPLE, API_DOCUMENTS):
        # The uploads' JSON answers give a file's name or a choice back as data, as sent; JSON
        # under nosniff is never rendered as a page. The pages that show it escape it (below).
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-content-type-options"] == "nosniff"
    else:
        assert "<script>alert(1)" not in response.text
        assert "<img src=x" not in response.text
    for secret in case.hidden:
        assert secret not in response.text, "a credential came back"

    after, files_after = snapshot(aid), files_under(root)
    new_files = sorted(set(files_after) - set(files_before))
    # Nothing already on disk changed, whatever the outcome, but for the file of a sample
    # an accepted one replaced (removed with its row).
    replaced = {f"var/uploads/{s[3]}" for s in before["samples"] if s not in after["samples"]}
    kept = {k: v for k, v in files_before.items() if k not in replaced}
    assert {k: files_after.get(k) for k in kept} == kept
    assert not replaced & set(files_after), "a replaced sample's file stayed on disk"
    if not case.accepted:
        assert after == before
        assert new_files == []
        return

    # Accepted: stored under a server-chosen name inside uploads/, earlier results intact
    # (a sample sent to the API is scored at once, as the wizard's submit would score it).
    if case.target != API_SAMPLE:
        assert after["score_result"] == before["score_result"]
    assert after["intake"] == before["intake"] and after["status"] == "scored"
    uploads = get_settings().uploads_dir.resolve()
    for relative in new_files:
        path = (root / relative).resolve()
        assert path.parent == uploads and HEX_NAME.fullmatch(path.name), relative
    if case.target in (SAMPLE, DOCUMENTS, API_SAMPLE, API_DOCUMENTS):
        assert len(new_files) == 1
        added = [s for s in after["samples"] if s not in before["samples"]]
        assert len(added) == 1
        _, kind, original_name, stored_name, _, _ = added[0]
        assert kind == ("sample" if case.target in (SAMPLE, API_SAMPLE) else "document")
        assert HEX_NAME.fullmatch(stored_name) and new_files == [f"var/uploads/{stored_name}"]
        if case.stored_name is not None:
            assert original_name == case.stored_name
    if case.escaped is not None:
        assert case.shown_on is not None
        page = client.get(case.shown_on.format(aid=aid))
        assert page.status_code == 200
        assert case.escaped not in page.text
        assert ESCAPED_XSS in page.text if case.escaped == XSS else True
