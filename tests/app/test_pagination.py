"""The JSON API's lists (assessments, an assessment's pilots, models): one contract, newest
first, keyset cursors that survive rows added while a client walks the pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import update

from app.assessments.models import Assessment
from app.db import get_sessionmaker
from app.pagination import Cursor, InvalidCursor, decode_cursor, encode_cursor
from app.settings import get_settings
from tests.app.accounts.helpers import bearer, create_token
from tests.factories.assessments import GOOD_CSV, intake
from tests.factories.models import in_models_dir

LINK = re.compile(r'^<(http://testserver/[^>]+)>; rel="next"$')


def signed_up(make_client: Any, email: str) -> tuple[Any, dict[str, str]]:
    """A logged-in browser (for the wizard's upload) and its user's token header."""
    browser = make_client()
    browser.signup(email)
    return browser, bearer(create_token(browser))


def new_assessment(http: Any, headers: dict[str, str]) -> str:
    created = http.post("/api/v1/assessments", json=intake(), headers=headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def walk(http: Any, url: str, headers: dict[str, str], between: Any = None) -> list[list[str]]:
    """Every page's ids, following the Link header; `between()` runs after each page."""
    pages: list[list[str]] = []
    next_url: str | None = url
    while next_url is not None:
        response = http.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        assert isinstance(response.json(), list)
        pages.append([row["id"] for row in response.json()])
        link = response.headers.get("link")
        if link is None:
            next_url = None
        else:
            match = LINK.match(link)
            assert match, link
            next_url = match.group(1)
            if between is not None:
                between()
        assert len(pages) < 50, "the walk does not end"
    return pages


def test_assessments_walk_newest_first_without_repeats_while_rows_arrive(
    make_client: Any,
) -> None:
    browser, headers = signed_up(make_client, "owner@example.com")
    http = browser.http
    made = [new_assessment(http, headers) for _ in range(7)]
    # The four oldest share one timestamp, across a page boundary: the id breaks the tie, so
    # none is skipped or repeated.
    with get_sessionmaker().begin() as session:
        same = datetime(2020, 1, 1, tzinfo=UTC)
        stmt = update(Assessment).where(Assessment.id.in_(made[:4])).values(created_at=same)
        session.execute(stmt)
    other, other_headers = signed_up(make_client, "other@example.com")
    new_assessment(other.http, other_headers)

    arrived: list[str] = []
    first = http.get("/api/v1/assessments?limit=3", headers=headers)
    assert first.headers["x-total-count"] == "7"
    pages = walk(
        http,
        "/api/v1/assessments?limit=3",
        headers,
        between=lambda: arrived.append(new_assessment(http, headers)),
    )
    seen = [aid for page in pages for aid in page]
    assert [len(p) for p in pages] == [3, 3, 1]
    # Every row that existed at the start exactly once; the ones added meanwhile are newer, so
    # they belong before the first page, not in the walk.
    assert sorted(seen) == sorted(made) and len(set(seen)) == len(seen)
    assert not set(arrived) & set(seen)
    assert seen[:3] == made[:3:-1] and seen[3:] == sorted(made[:4], reverse=True)
    with get_sessionmaker()() as session:
        rows = [session.get(Assessment, aid) for aid in seen]
    keys = [(row.created_at, row.id) for row in rows if row is not None]
    assert keys == sorted(keys, reverse=True)
    last = http.get("/api/v1/assessments?limit=100", headers=headers)
    assert "link" not in last.headers and last.headers["x-total-count"] == str(7 + len(arrived))


def test_pilots_and_models_follow_the_same_contract(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.queue.send", lambda job: None)
    monkeypatch.setenv("MAX_QUEUED_PILOTS_PER_USER", "10")
    get_settings.cache_clear()
    browser, headers = signed_up(make_client, "owner@example.com")
    http = browser.http
    aid = new_assessment(http, headers)
    sample = browser.post(f"/assessments/{aid}/sample", files={"file": ("t.csv", GOOD_CSV)})
    assert sample.status_code == 303
    url = f"/api/v1/assessments/{aid}/pilots"
    started = []
    for _ in range(5):
        response = http.post(url, json={"arms": ["fewshot"]}, headers=headers)
        assert response.status_code == 202, response.text
        started.append(response.json()["id"])
    pages = walk(http, f"{url}?limit=2", headers)
    assert pages == [started[::-1][0:2], started[::-1][2:4], started[::-1][4:]]
    assert http.get(url, headers=headers).headers["x-total-count"] == "5"

    for n in range(3):
        body = {"name": f"m{n}", "kind": "local", "model": in_models_dir(f"m{n}")}
        assert http.post("/api/v1/models", json=body, headers=headers).status_code == 201
    models = http.get("/api/v1/models", headers=headers)
    assert [m["name"] for m in models.json()] == ["m2", "m1", "m0"]  # still a bare array
    assert models.headers["x-total-count"] == "3" and "link" not in models.headers
    pages = walk(http, "/api/v1/models?limit=1", headers)
    assert [len(p) for p in pages] == [1, 1, 1]
    other, other_headers = signed_up(make_client, "other@example.com")
    assert other.http.get("/api/v1/models", headers=other_headers).json() == []
    assert other.http.get(url, headers=other_headers).status_code == 404


@pytest.mark.parametrize("path", ["/api/v1/assessments", "/api/v1/models", "pilots"])
def test_a_bad_limit_or_cursor_is_a_422_naming_it(make_client: Any, path: str) -> None:
    browser, headers = signed_up(make_client, "owner@example.com")
    if path == "pilots":
        path = f"/api/v1/assessments/{new_assessment(browser.http, headers)}/pilots"
    for query, field in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=nonsense", "cursor"),
        ("cursor=" + "A" * 300, "cursor"),
        ("cursor=WzEsMl0", "cursor"),  # base64 of [1,2]: the right shape, the wrong values
    ]:
        response = browser.http.get(f"{path}?{query}", headers=headers)
        assert response.status_code == 422, (query, response.text)
        assert [e["loc"] for e in response.json()["detail"]] == [["query", field]], query
    bad = browser.http.get(f"{path}?cursor=nonsense", headers=headers).json()["detail"][0]
    assert "Link header" in bad["msg"]


def test_the_list_headers_are_in_the_openapi_document(client: Any) -> None:
    spec = client.http.get("/openapi.json").json()
    for path in ("/api/v1/assessments", "/api/v1/assessments/{assessment_id}/pilots"):
        ok = spec["paths"][path]["get"]["responses"]["200"]
        assert set(ok["headers"]) == {"Link", "X-Total-Count"}, path
        assert ok["content"]["application/json"]["schema"]["type"] == "array"
        names = {p["name"] for p in spec["paths"][path]["get"]["parameters"]}
        assert {"limit", "cursor"} <= names
    models = spec["paths"]["/api/v1/models"]["get"]["responses"]["200"]
    assert set(models["headers"]) == {"Link", "X-Total-Count"}


def test_cursors_round_trip_and_refuse_what_they_did_not_make() -> None:
    when = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    cursor = Cursor(created_at=when, id="ab" * 16)
    assert decode_cursor(encode_cursor(cursor)) == cursor
    # SQLite's naive datetimes are UTC.
    naive = Cursor(created_at=when.replace(tzinfo=None), id="x")
    assert decode_cursor(encode_cursor(naive)).created_at == when
    # Another zone is the same moment.
    elsewhere = Cursor(created_at=when.astimezone(timezone(timedelta(hours=5))), id="x")
    assert decode_cursor(encode_cursor(elsewhere)).created_at == when
    not_json, not_a_date, no_zone = (
        "bm90IGpzb24",
        "WyJub3QgYSBkYXRlIiwgIngiXQ",
        "WyIyMDI2LTAzLTAxIiwgIngiXQ",
    )
    for text in ["", "!!!", not_json, not_a_date, no_zone]:
        with pytest.raises(InvalidCursor):
            decode_cursor(text)
