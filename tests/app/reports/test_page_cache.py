"""A done pilot's report and pilot page are rendered once and kept; what they show stays right.

Kept bodies (`app.web.PAGE_BODIES`) are keyed by everything the page shows, so any change
renders the page anew; the owner check still runs on every request; a body holds no viewer's
token or address; a browser's copy is revalidated by ETag (304).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from jinja2 import ChoiceLoader, DictLoader

from app.assessments.models import Assessment
from app.db import session_scope, utcnow
from app.pilots.service import fail_pilot
from app.reports import downloads as report_downloads
from app.reports import pdf as report_pdf
from app.reports import routes as report_routes
from app.reports import service as report_service
from app.web import PAGE_BODIES, PerViewerValue, render_body, templates
from tests.app.reports.factory import DEFAULT_ARMS, finished_pilot
from tests.app.sharing.helpers import create_link
from tests.factories.assessments import GOOD_CSV, scored_assessment


@pytest.fixture(autouse=True)
def _fresh_bodies() -> None:
    PAGE_BODIES.clear()
    report_pdf.KEPT_PDFS.clear()


@pytest.fixture
def pdf_renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The title of every report WeasyPrint lays out (a kept PDF lays out none)."""
    rendered: list[str] = []
    real = report_pdf.render_pdf

    def counting(report):  # type: ignore[no-untyped-def]
        rendered.append(report.title)
        return real(report)

    monkeypatch.setattr(report_pdf, "render_pdf", counting)
    return rendered


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The pilot id of every report the page route builds (a kept body builds none)."""
    built: list[str | None] = []
    real = report_service.build_report

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        report = real(*args, **kwargs)
        built.append(report.pilot.id if report.pilot else None)
        return report

    monkeypatch.setattr(report_routes.service, "build_report", counting)
    return built


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match
    return match.group(1)


def test_a_done_pilots_report_is_built_once_then_served_kept(client, builds) -> None:
    client.signup()
    aid = scored_assessment(client)
    pid = finished_pilot(aid)
    url = f"/assessments/{aid}/report?pilot={pid}"
    first, second = client.get(url), client.get(url)
    assert first.status_code == second.status_code == 200
    assert builds == [pid]
    assert second.text == first.text
    assert second.headers["content-type"] == "text/html; charset=utf-8"
    # The default pilot (no ?pilot=) is the same report, so the same kept body.
    assert client.get(f"/assessments/{aid}/report").text == first.text
    assert builds == [pid]


def test_the_kept_report_is_rebuilt_when_anything_it_shows_changes(
    client, builds, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.signup()
    aid = scored_assessment(client)
    first = finished_pilot(aid)
    url = f"/assessments/{aid}/report"
    assert f"?pilot={first}" in client.get(url).text
    # Another pilot finishes: it becomes the default one and joins the selector.
    second = finished_pilot(aid, arms=DEFAULT_ARMS[:2])
    html = client.get(url).text
    assert f"/report.pdf?pilot={second}" in html and 'id="pilot-select"' in html
    # The first pilot's own report lists the second one too now.
    assert f'value="{second}"' in client.get(f"{url}?pilot={first}").text
    # The assessment changes (any column: updated_at moves with it).
    with session_scope() as session:
        assessment = session.get(Assessment, aid)
        assert assessment is not None
        assessment.title = "Renamed routing study"
    assert "Renamed routing study" in client.get(url).text
    # A new sample is uploaded.
    built = len(builds)
    upload = client.post(f"/assessments/{aid}/sample", files={"file": ("t.csv", GOOD_CSV)})
    assert upload.status_code == 303
    client.get(url)
    assert len(builds) == built + 1
    # The pilot shown is failed after all: its report says so, and is no longer kept.
    with session_scope() as session:
        fail_pilot(session, pilot_id=second, message="re-checked and failed")
    for _ in range(2):
        assert (
            "This pilot failed, so it adds no measured evidence"
            in client.get(f"{url}?pilot={second}").text
        )
    assert builds[-2:] == [second, second]
    # The date printed on the report: a new day, a new body.
    today = client.get(url).text
    tomorrow = utcnow() + timedelta(days=1)
    monkeypatch.setattr(report_routes, "utcnow", lambda: tomorrow)
    assert tomorrow.date().isoformat() in client.get(url).text
    assert tomorrow.date().isoformat() not in today
    # The what-if values as typed are part of the key.
    built = len(builds)
    changed = client.get(f"{url}?queries_per_day=123456").text
    assert changed != client.get(url).text
    client.get(f"{url}?queries_per_day=123456")
    assert len(builds) == built + 1


def test_the_owners_copy_is_revalidated_by_etag(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    pid = finished_pilot(aid)
    for url in (f"/assessments/{aid}/report?pilot={pid}", f"/pilots/{pid}"):
        page = client.get(url)
        etag = page.headers["etag"]
        assert re.fullmatch(r'"[0-9a-f]{40}"', etag)
        assert page.headers["cache-control"] == "private, no-cache"
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        assert client.get(url, headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304
        assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    # Once the report changes, the old copy is not current: the whole page comes back.
    report = f"/assessments/{aid}/report"
    etag = client.get(report).headers["etag"]
    finished_pilot(aid, arms=DEFAULT_ARMS[:2])
    fresh = client.get(report, headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["etag"] != etag
    # A pilot that has not finished is rendered on every request, with no ETag.
    with session_scope() as session:
        fail_pilot(session, pilot_id=pid, message="failed after all")
    assert "etag" not in client.get(f"/pilots/{pid}").headers
    assert "etag" not in client.get(f"{report}?pilot={pid}").headers


def test_kept_pages_hold_no_viewers_token_and_still_check_the_owner(make_client) -> None:
    owner = make_client()
    owner.signup("owner@example.com")
    aid = scored_assessment(owner)
    pid = finished_pilot(aid)
    urls = (f"/assessments/{aid}/report?pilot={pid}", f"/pilots/{pid}")
    # The owner in a second browser: same kept bodies, each page with its own session's token.
    laptop = make_client()
    laptop.post("/login", {"email": "owner@example.com", "password": "correct horse battery"})
    for url in urls:
        first, second = owner.get(url), laptop.get(url)
        assert first.status_code == second.status_code == 200
        mine, theirs = csrf_of(first.text), csrf_of(second.text)
        assert mine != theirs
        assert theirs not in first.text and mine not in second.text
        assert first.text.replace(mine, "") == second.text.replace(theirs, "")
        # One browser's ETag is not another's: its page carries another token.
        etag = first.headers["etag"]
        assert laptop.get(url, headers={"If-None-Match": etag}).status_code == 200
    # Another user gets a 404 for the kept pages, with or without the owner's ETag.
    other = make_client()
    other.signup("other@example.com")
    for url in urls:
        etag = owner.get(url).headers["etag"]
        for headers in ({}, {"If-None-Match": etag}, {"If-None-Match": "*"}):
            refused = other.get(url, headers=headers)
            assert refused.status_code == 404
            assert "owner@example.com" not in refused.text and pid not in refused.text
    assert other.get(f"/assessments/{aid}/report").status_code == 404


def test_a_share_link_shows_only_the_read_only_report(make_client) -> None:
    owner = make_client()
    owner.signup("owner@example.com")
    aid = scored_assessment(owner)
    finished_pilot(aid)
    owners_only = ('id="pdf-link"', 'id="export-link"', 'id="what-if-form"')
    # The owner's page is kept first; the link must not get it.
    owner_html = owner.get(f"/assessments/{aid}/report").text
    assert all(marker in owner_html for marker in owners_only)
    first, second = create_link(owner, aid, "one"), create_link(owner, aid, "two")
    reader = make_client()
    pages = {path: reader.get(path) for path in (first, second)}
    for path, page in pages.items():
        assert page.status_code == 200 and page.headers["cache-control"] == "private, no-store"
        assert "etag" not in page.headers
        html = page.text
        assert 'id="shared-banner"' in html and f'href="{path}/report.pdf"' in html
        assert not any(marker in html for marker in owners_only)
        assert csrf_of(owner_html) not in html and "owner@example.com" not in html.split("<main")[0]
        other_path = second if path == first else first
        assert other_path not in html  # one link's page never shows another link's token
    # Same body for both links, kept once; the owner's page still has its links afterwards.
    assert pages[first].text.replace(first, "") == pages[second].text.replace(second, "")
    assert owner.get(f"/assessments/{aid}/report").text.count('id="pdf-link"') == 1


def test_a_kept_body_cannot_print_a_per_viewer_value(monkeypatch: pytest.MonkeyPatch) -> None:
    page = '{% extends "base.html" %}{% block title %}T{% endblock %}{% block content %}'
    loader = DictLoader(
        {
            "leaky-token.html": page + "{{ csrf_token }}{% endblock %}",
            "leaky-user.html": page + "{% if user %}{{ user.email }}{% endif %}{% endblock %}",
            "clean.html": page + "{{ shown }}{% endblock %}",
        }
    )
    monkeypatch.setattr(templates.env, "loader", ChoiceLoader([loader, templates.env.loader]))
    monkeypatch.setattr(templates.env, "cache", None)
    assert render_body("clean.html", {"shown": "<b>"}).content == b"&lt;b&gt;"
    for name in ("leaky-token.html", "leaky-user.html"):
        with pytest.raises(PerViewerValue):
            render_body(name, {})


def test_a_reports_pdf_is_laid_out_once_for_the_owner_and_every_share_link(
    make_client, pdf_renders, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = make_client()
    owner.signup()
    aid = scored_assessment(owner)
    pid = finished_pilot(aid)
    url = f"/assessments/{aid}/report.pdf"
    first = owner.get(url)
    assert first.status_code == 200 and first.content.startswith(b"%PDF")
    assert first.headers["content-disposition"].startswith('attachment; filename="pathpilot-')
    assert len(pdf_renders) == 1
    # The same report again, by the pilot's id, and through a share link: the kept bytes.
    assert owner.get(f"{url}?pilot={pid}").content == first.content
    link = create_link(owner, aid)
    shared = make_client().get(f"{link}/report.pdf")
    assert shared.status_code == 200 and shared.content == first.content
    assert shared.headers["content-disposition"] == first.headers["content-disposition"]
    assert len(pdf_renders) == 1
    # What it shows changes (the title; then the date printed): laid out anew.
    with session_scope() as session:
        assessment = session.get(Assessment, aid)
        assert assessment is not None
        assessment.title = "Renamed routing study"
    renamed = owner.get(url)
    assert renamed.content != first.content and len(pdf_renders) == 2
    assert pdf_renders[-1] == "Renamed routing study"
    tomorrow = utcnow() + timedelta(days=1)
    monkeypatch.setattr(report_downloads, "utcnow", lambda: tomorrow)
    owner.get(url)
    assert len(pdf_renders) == 3
    # A pilot that can still change is never kept: its PDF is laid out on every download.
    with session_scope() as session:
        fail_pilot(session, pilot_id=pid, message="re-checked and failed")
    owner.get(f"{url}?pilot={pid}")
    owner.get(f"{url}?pilot={pid}")
    assert len(pdf_renders) == 5


def test_a_revoked_links_pdf_is_not_served_from_the_kept_copy(make_client) -> None:
    owner = make_client()
    owner.signup()
    aid = scored_assessment(owner)
    finished_pilot(aid)
    link = create_link(owner, aid)
    reader = make_client()
    assert reader.get(f"{link}/report.pdf").status_code == 200
    page = owner.get(f"/assessments/{aid}/sharing").text
    link_id = re.search(r"/sharing/(\d+)/revoke", page)
    assert link_id
    assert owner.post(f"/assessments/{aid}/sharing/{link_id.group(1)}/revoke").status_code == 303
    assert reader.get(f"{link}/report.pdf").status_code == 404
    # Another user asking for the owner's PDF by its address: not found, kept copy or not.
    other = make_client()
    other.signup(email="other@example.com")
    assert other.get(f"/assessments/{aid}/report.pdf").status_code == 404
