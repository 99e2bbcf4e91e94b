"""The sample and the RAG documents through the JSON API, with a token and no browser: the
wizard's checks, limits and messages, FastAPI's 422 shape, and nothing stored lost."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.assessments.models import DataSample
from app.db import get_sessionmaker
from app.settings import get_settings
from tests.app.accounts.helpers import bearer, create_token, shown_once
from tests.factories.assessments import GOOD_CSV, intake


class Script:
    """A program holding an API token: no cookies, no CSRF token, only the bearer header."""

    def __init__(self, http: Any, token: str, browser: Any = None) -> None:
        self.http = http
        self.headers = bearer(token)
        self.browser = browser  # the user's logged-in browser, that made the token

    def create(self) -> str:
        created = self.http.post("/api/v1/assessments", json=intake(), headers=self.headers)
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    def put_sample(
        self, aid: str, text: str | bytes, name: str = "tickets.csv", **form: str
    ) -> Any:
        return self.http.put(
            f"/api/v1/assessments/{aid}/sample",
            files={"file": (name, text, "text/csv")},
            data=form,
            headers=self.headers,
        )

    def post_documents(self, aid: str, *docs: tuple[str, bytes]) -> Any:
        files = [("files", (name, data, "text/plain")) for name, data in docs]
        return self.http.post(
            f"/api/v1/assessments/{aid}/documents", files=files, headers=self.headers
        )

    def get(self, url: str, **kw: Any) -> Any:
        return self.http.get(url, headers=self.headers, **kw)


def script_for(make_client: Any, email: str, *, read_only: bool = False) -> Script:
    browser = make_client()
    browser.signup(email)
    if read_only:
        created = browser.post("/account/tokens", {"name": "dashboard", "read_only": "true"})
        assert created.status_code == 201
        token = shown_once(created.text, "new-token-value")
    else:
        token = create_token(browser)
    return Script(make_client().http, token, browser)  # a fresh cookie jar: the token alone


@pytest.fixture
def script(make_client: Any) -> Script:
    return script_for(make_client, "script@example.com")


def caps(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Settings read per request (sizes, counts, quota) take effect from the next one."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def stored(aid: str, kind: str = "sample") -> list[DataSample]:
    with get_sessionmaker()() as session:
        rows = select(DataSample).where(DataSample.assessment_id == aid, DataSample.kind == kind)
        return list(session.scalars(rows.order_by(DataSample.id)))


def problems(response: Any) -> list[tuple[tuple[str, ...], str]]:
    assert response.status_code == 422, response.text
    return [(tuple(e["loc"]), e["msg"]) for e in response.json()["detail"]]


def test_a_sample_put_answers_the_wizards_summary_and_rescores_as_its_submit(
    script: Script, make_client: Any
) -> None:
    aid = script.create()
    before = script.get(f"/api/v1/assessments/{aid}").json()["result"]
    response = script.put_sample(aid, GOOD_CSV, name="../tickets.csv")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["file_name"] == "tickets.csv" and body["rows"] == 90
    assert body["format"] == "text_label_csv" and body["task"] == "classification"
    assert body["label_distribution"] == {"billing": 30, "card": 30, "refund": 30}
    assert isinstance(body["warnings"], list) and "group_note" in body
    assert body["size_bytes"] == len(GOOD_CSV.encode()) and len(body["sha256"]) == 64

    # The wizard's way to the same state: the page upload, then its submit.
    browser = make_client()
    browser.signup("wizard@example.com")
    wid = browser.http.post("/api/v1/assessments", json=intake()).json()["id"]
    page = browser.post(f"/assessments/{wid}/sample", files={"file": ("t.csv", GOOD_CSV)})
    assert page.status_code == 303
    assert browser.post(f"/assessments/{wid}/submit").status_code == 303
    wizard = browser.http.get(f"/api/v1/assessments/{wid}").json()["result"]
    after = script.get(f"/api/v1/assessments/{aid}").json()["result"]
    assert after == wizard
    assert after != before  # the sample counts: without the re-score the API would be stale


def test_a_bad_sample_is_a_422_per_problem_naming_line_and_field_and_keeps_the_old(
    script: Script,
) -> None:
    aid = script.create()
    assert script.put_sample(aid, GOOD_CSV).status_code == 200
    (kept,) = stored(aid)
    result = script.get(f"/api/v1/assessments/{aid}").json()["result"]

    csv_rows = script.put_sample(aid, "text,label\nhello,a\nworld,\nagain,\n")
    assert problems(csv_rows) == [
        (("body", "file"), "row 3: empty label"),
        (("body", "file"), "row 4: empty label"),
    ]
    assert csv_rows.json()["detail"][0]["type"] == "upload_invalid"
    jsonl = b'{"instruction": "a", "input": "b", "output": "c"}\n{"instruction": "a", \n'
    found = problems(script.put_sample(aid, jsonl, name="s.jsonl"))
    assert [loc for loc, _ in found] == [("body", "file")]
    assert found[0][1].startswith("line 2: ") and "not valid JSON" in found[0][1]

    assert problems(script.put_sample(aid, GOOD_CSV, format="xml", task="mind_reading")) == [
        (("body", "format"), "Unknown format 'xml'; choose one of the listed options."),
        (("body", "task"), "Unknown task 'mind_reading'; choose one of the listed options."),
    ]
    assert [(s.id, s.stored_name) for s in stored(aid)] == [(kept.id, kept.stored_name)]
    assert script.get(f"/api/v1/assessments/{aid}").json()["result"] == result


def test_a_chosen_format_and_task_are_used(script: Script) -> None:
    aid = script.create()
    forced = script.put_sample(aid, GOOD_CSV, format="text_label_csv", task="classification")
    assert forced.status_code == 200, forced.text
    assert forced.json()["task"] == "classification"


def test_a_sample_over_the_size_cap_or_the_quota_is_a_413_with_the_wizards_message(
    script: Script, make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    aid = script.create()
    caps(monkeypatch, MAX_UPLOAD_BYTES="1000")
    too_big = script.put_sample(aid, GOOD_CSV)
    assert too_big.status_code == 413
    assert too_big.json()["detail"] == "the file is 1001 bytes; the limit is 1000 bytes"
    # The wizard says the same words.
    browser = make_client()
    browser.signup("wizard@example.com")
    wid = browser.http.post("/api/v1/assessments", json=intake()).json()["id"]
    page = browser.post(f"/assessments/{wid}/sample", files={"file": ("t.csv", GOOD_CSV)})
    assert page.status_code == 413 and too_big.json()["detail"] in page.text

    caps(monkeypatch, MAX_UPLOAD_BYTES=str(1024 * 1024), USER_STORAGE_QUOTA_BYTES="2048")
    over_quota = script.put_sample(aid, GOOD_CSV)
    assert over_quota.status_code == 413
    assert over_quota.json()["detail"].startswith(
        "This upload (3.3 KB) does not fit in your storage quota of 2 KB"
    )
    assert stored(aid) == []


def test_a_sample_over_the_apis_1_mib_json_cap_still_arrives(script: Script) -> None:
    """The uploads have the forms' request cap (MAX_UPLOAD_REQUEST_BYTES), not the JSON one."""
    aid = script.create()
    rows = 15_000  # 1.4 MB
    line = "message {} about billing with enough words in it to make each line long,billing\n"
    big = "text,label\n" + "".join(line.format(i) for i in range(rows))
    assert len(big) > 1024 * 1024
    response = script.put_sample(aid, big)
    assert response.status_code == 200, response.text[:500]
    assert response.json()["rows"] == rows


def test_documents_post_list_and_delete(script: Script, monkeypatch: pytest.MonkeyPatch) -> None:
    caps(monkeypatch, MAX_DOCUMENTS="3")
    aid = script.create()
    url = f"/api/v1/assessments/{aid}/documents"
    posted = script.post_documents(
        aid, ("faq.md", b"# Refunds\nRefunds take five days."), ("cards.txt", b"Cards freeze.")
    )
    assert posted.status_code == 201, posted.text
    body = posted.json()
    assert body["documents_left"] == 1
    assert [(d["file_name"], d["title"], d["format"]) for d in body["documents"]] == [
        ("faq.md", "Refunds", "md"),
        ("cards.txt", "cards", "txt"),
    ]
    listed = script.get(url).json()
    assert listed == body

    too_many = script.post_documents(aid, ("a.txt", b"a"), ("b.txt", b"b"))
    assert problems(too_many) == [
        (("body", "files"), "2 documents were uploaded; at most 1 more fit in the corpus")
    ]
    bad = script.post_documents(aid, ("report.docx", b"hello"))
    ((loc, msg),) = problems(bad)
    assert loc == ("body", "files") and msg.startswith("report.docx: unsupported file type")
    assert len(stored(aid, "document")) == 2

    removed = script.http.delete(url, headers=script.headers)
    assert removed.status_code == 204
    assert script.get(url).json() == {"documents": [], "documents_left": 3}
    assert stored(aid, "document") == []


def test_documents_over_the_quota_are_a_413_before_any_is_read(
    script: Script, monkeypatch: pytest.MonkeyPatch
) -> None:
    caps(monkeypatch, USER_STORAGE_QUOTA_BYTES="2048")
    aid = script.create()
    response = script.post_documents(aid, ("faq.txt", b"Refunds take five days.\n" * 100))
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "This upload (2.3 KB) does not fit in your storage quota of 2 KB" in detail
    assert stored(aid, "document") == []


def test_a_read_only_token_may_list_but_not_upload(make_client: Any) -> None:
    reader = script_for(make_client, "reader@example.com", read_only=True)
    # The reader's own assessment, made in the browser (the token may not create one).
    created = reader.browser.http.post("/api/v1/assessments", json=intake())
    assert created.status_code == 201, created.text
    aid = created.json()["id"]
    for response in (
        reader.put_sample(aid, GOOD_CSV),
        reader.post_documents(aid, ("faq.txt", b"Refunds take five days.")),
        reader.http.delete(f"/api/v1/assessments/{aid}/documents", headers=reader.headers),
    ):
        assert response.status_code == 403, response.text
        assert "read-only scope" in response.json()["detail"]
    assert [a["id"] for a in reader.get("/api/v1/assessments").json()] == [aid]
    assert reader.get(f"/api/v1/assessments/{aid}/documents").status_code == 200
    assert stored(aid) == []


def test_another_users_assessment_is_404_on_every_file_route(make_client: Any) -> None:
    owner = script_for(make_client, "owner@example.com")
    other = script_for(make_client, "other@example.com")
    aid = owner.create()
    assert owner.put_sample(aid, GOOD_CSV).status_code == 200
    url = f"/api/v1/assessments/{aid}/documents"
    for response in (
        other.put_sample(aid, GOOD_CSV),
        other.post_documents(aid, ("faq.txt", b"Refunds take five days.")),
        other.get(url),
        other.http.delete(url, headers=other.headers),
        other.get(f"/api/v1/assessments/{aid}/pilots"),
    ):
        assert response.status_code == 404, response.text
    assert len(stored(aid)) == 1


def test_an_uploaded_sample_starts_a_pilot(script: Script, monkeypatch: pytest.MonkeyPatch) -> None:
    queued: list[object] = []
    monkeypatch.setattr("app.queue.send", queued.append)
    aid = script.create()
    pilots = f"/api/v1/assessments/{aid}/pilots"
    refused = script.http.post(pilots, json={}, headers=script.headers)
    assert refused.status_code == 422 and "Upload a data sample" in refused.json()["detail"]
    assert script.put_sample(aid, GOOD_CSV).status_code == 200
    started = script.http.post(pilots, json={"arms": ["fewshot"]}, headers=script.headers)
    assert started.status_code == 202, started.text
    listed = script.get(pilots)
    assert [p["id"] for p in listed.json()] == [started.json()["id"]]
    assert listed.json()[0]["task"] in (None, "classification")
    assert listed.json()[0]["arms"] == ["fewshot"]
