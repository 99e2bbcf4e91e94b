"""Uploads on a server shared by a team: size caps, counts, a storage quota, replaced files
removed from disk, and parsing that leaves the server answering other requests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.assessments.models import DataSample
from app.db import get_sessionmaker
from app.settings import get_settings
from tests.conftest import REPO, WebClient
from tests.factories.assessments import GOOD_CSV, new_assessment
from tests.serving import free_port, wait_until_healthy


def app_with(monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[WebClient]:
    """The real app, built after `env` is set (the upload cap is fixed when it starts)."""
    from app.main import create_app

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with TestClient(create_app(), follow_redirects=False) as http:
        yield WebClient(http)


@pytest.fixture
def small_caps(var_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebClient]:
    yield from app_with(
        monkeypatch,
        MAX_UPLOAD_BYTES="8192",
        MAX_UPLOAD_REQUEST_BYTES="16384",
        MAX_DOCUMENTS="3",
        USER_STORAGE_QUOTA_BYTES="12000",
    )


def stored(aid: str) -> list[DataSample]:
    with get_sessionmaker()() as session:
        rows = select(DataSample).where(DataSample.assessment_id == aid).order_by(DataSample.id)
        return list(session.scalars(rows))


def files_on_disk() -> list[str]:
    uploads = get_settings().uploads_dir
    return sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []


def upload_sample(client: WebClient, aid: str, text: str, name: str = "tickets.csv"):  # type: ignore[no-untyped-def]
    return client.post(f"/assessments/{aid}/sample", files={"file": (name, text, "text/csv")})


def upload_documents(client: WebClient, aid: str, *docs: tuple[str, bytes]):  # type: ignore[no-untyped-def]
    files = [("files", (name, data, "text/plain")) for name, data in docs]
    return client.post(f"/assessments/{aid}/documents", files=files)


def test_a_replaced_sample_leaves_one_file_on_disk(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    aid = new_assessment(client)
    for n in range(4):
        assert upload_sample(client, aid, GOOD_CSV, name=f"v{n}.csv").status_code == 303
    (sample,) = stored(aid)
    assert sample.original_name == "v3.csv"
    assert files_on_disk() == [sample.stored_name]
    # A refused replacement keeps the stored sample and its file.
    missing_output = '{"instruction": "Summarise", "input": "a"}\n'
    assert upload_sample(client, aid, missing_output, name="bad.jsonl").status_code == 422
    assert [s.stored_name for s in stored(aid)] == files_on_disk() == [sample.stored_name]


def test_an_upload_over_the_request_cap_is_a_413_naming_it(small_caps: WebClient) -> None:
    client = small_caps
    client.signup()
    aid = new_assessment(client)
    assert upload_sample(client, aid, GOOD_CSV).status_code == 303
    before = files_on_disk()
    big = ("a.txt", b"Refunds take five days.\n" * 400)  # 9.6 KB each, 3 of them
    response = upload_documents(client, aid, big, big, big)
    assert response.status_code == 413, response.text[-2000:]
    assert "at most 16 KB" in response.text and "MAX_UPLOAD_REQUEST_BYTES" in response.text

    # Sent without a length (chunked), it is counted as it arrives: the same answer.
    body = b"".join(
        [b"--b\r\n", b'Content-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\n']
        + [b"x" * 1024] * 40
        + [b"\r\n--b--\r\n"]
    )
    chunked = client.http.post(
        f"/assessments/{aid}/documents",
        content=iter([body[i : i + 4096] for i in range(0, len(body), 4096)]),
        headers={"content-type": "multipart/form-data; boundary=b", "x-csrf-token": client.csrf()},
    )
    assert chunked.status_code == 413 and "at most 16 KB" in chunked.text
    assert [s.stored_name for s in stored(aid)] == before == files_on_disk()


def test_a_page_form_over_the_request_cap_is_a_413(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    aid = new_assessment(client)
    step = f"/assessments/{aid}/steps/use_case"
    response = client.post(step, {"title": "x" * 2_000_000})
    assert response.status_code == 413
    assert "Content Too Large: this request may be at most 1 MB" in response.text
    api = client.http.post("/api/v1/assessments", content=b"{" + b" " * 2_000_000 + b"}")
    assert api.status_code == 413 and "at most 1 MB" in api.json()["detail"]


def test_documents_are_counted_before_they_are_read(small_caps: WebClient) -> None:
    client = small_caps
    client.signup()
    aid = new_assessment(client)
    four = [(f"d{n}.txt", b"Refunds take five days.") for n in range(4)]
    response = upload_documents(client, aid, *four)
    assert response.status_code == 422
    assert "4 documents were uploaded; at most 3 more fit in the corpus" in response.text
    assert upload_documents(client, aid, *four[:2]).status_code == 303
    response = upload_documents(client, aid, *four[:2])
    assert "2 documents were uploaded; at most 1 more fit in the corpus" in response.text
    assert len(stored(aid)) == len(files_on_disk()) == 2


def test_the_storage_quota_is_per_user_and_named(small_caps: WebClient) -> None:
    client = small_caps
    client.signup()
    first, second = new_assessment(client), new_assessment(client)
    assert upload_sample(client, first, GOOD_CSV).status_code == 303  # 3.3 KB
    doc = ("faq.txt", b"Refunds take five days.\n" * 300)  # 7 KB
    assert upload_documents(client, first, doc).status_code == 303
    # The quota counts every assessment of the user: 10.3 KB of 11.7 KB are used.
    response = upload_sample(client, second, GOOD_CSV)
    assert response.status_code == 413
    assert "This upload (3.3 KB) does not fit in your storage quota of 11.7 KB" in response.text
    assert "your uploaded files use 10.3 KB already" in response.text
    assert "USER_STORAGE_QUOTA_BYTES" in response.text
    assert stored(second) == []
    # Replacing a sample frees its own size first.
    assert upload_sample(client, first, GOOD_CSV).status_code == 303
    assert len(files_on_disk()) == 2


@pytest.mark.server  # a uvicorn process of its own
def test_the_server_answers_while_a_large_upload_parses(var_dir: Path, tmp_path: Path) -> None:
    """A real uvicorn (the TestClient runs one request at a time): /healthz answers within a
    second all through a large HTML document's parsing, which takes seconds."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        cwd=REPO,
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(url, proc, lambda: Path(log.name).read_text())
        with httpx.Client(base_url=url, timeout=60) as http:
            token = csrf(http)
            signup = http.post(
                "/signup",
                data={"csrf_token": token, "email": "a@example.com", "password": "correct horse"},
            )
            assert signup.status_code == 303, signup.text[-2000:]
            created = http.post("/assessments", data={"csrf_token": csrf(http)})
            page = "<html><body>" + "<p>Refunds take <b>five</b> days.</p>\n" * 80_000
            # Four 3 MB pages: seconds of parsing even on an idle machine (one took ~0.9 s),
            # which would hold an event-loop handler's /healthz for all of them.
            files = [("files", (f"help-{i}.html", page.encode(), "text/html")) for i in range(4)]
            answers: list[int] = []

            def send() -> None:
                response = http.post(
                    created.headers["location"].replace("/steps/use_case", "/documents"),
                    data={"csrf_token": csrf(http)},
                    files=files,
                )
                answers.append(response.status_code)

            uploading = threading.Thread(target=send)
            started = time.monotonic()
            uploading.start()
            waits: list[float] = []
            with httpx.Client(base_url=url, timeout=30) as other:
                while uploading.is_alive():
                    asked = time.monotonic()
                    assert other.get("/healthz").status_code == 200
                    waits.append(time.monotonic() - asked)
                    time.sleep(0.05)
            uploading.join()
            took = time.monotonic() - started
        assert answers == [303]
        assert max(waits) < 1.0, f"/healthz waited {max(waits):.2f} s during a {took:.1f} s upload"
        assert took > 1.0 and len(waits) >= 5, (took, waits)  # it did overlap the parsing
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def csrf(http: httpx.Client) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', http.get("/login").text)
    assert match, "page has no CSRF token"
    return match.group(1)
