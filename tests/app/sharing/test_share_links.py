"""Share links: the owner creates and revokes them; a link opens the report and its PDF only."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from app.db import get_sessionmaker
from app.sharing import service
from app.sharing.models import ShareLink
from tests.app.reports.factory import finished_pilot
from tests.app.sharing.helpers import create_link
from tests.factories.assessments import scored_assessment

XSS_TITLE = "Routing <script>alert(1)</script><img src=x onerror=alert(2)>"


def links() -> list[ShareLink]:
    with get_sessionmaker()() as session:
        return list(session.scalars(select(ShareLink).order_by(ShareLink.id)))


@pytest.fixture
def shared(make_client):  # type: ignore[no-untyped-def]
    """(owner client, assessment id, share path, a fresh anonymous client)."""
    owner = make_client()
    owner.signup("owner@example.com")
    aid = scored_assessment(owner)
    finished_pilot(aid)
    return owner, aid, create_link(owner, aid, "management"), make_client()


def test_link_is_shown_once_and_stored_as_a_hash(shared) -> None:
    owner, aid, path, _ = shared
    token = path.removeprefix("/share/")
    assert len(token) == 43  # secrets.token_urlsafe(32)
    [link] = links()
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert link.prefix == token[:6] and link.assessment_id == aid
    page = owner.get(f"/assessments/{aid}/sharing")
    assert page.status_code == 200
    assert token not in page.text
    assert f"/share/{link.prefix}…" in page.text and "management" in page.text


def test_anyone_with_the_link_reads_the_report_and_pdf(shared) -> None:
    _, aid, path, visitor = shared
    page = visitor.get(path)
    assert page.status_code == 200
    html = page.text
    assert 'id="headline"' in html and 'id="arms-table"' in html
    assert 'id="shared-pdf-link"' in html and f'href="{path}/report.pdf"' in html
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "private, no-store"
    assert "noindex" in page.headers["x-robots-tag"]
    # No way from the shared page into the owner's pages: no links or forms of theirs.
    assert f"/assessments/{aid}" not in html
    assert "<form" not in html
    pdf = visitor.get(f"{path}/report.pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert pdf.headers["referrer-policy"] == "no-referrer"
    assert [link.view_count for link in links()] == [2]


def test_a_link_opens_nothing_else(shared) -> None:
    _, aid, path, visitor = shared
    assert visitor.get(path).status_code == 200  # the visitor has used the link
    for url in (
        f"{path}/report",
        f"{path}/report/compare",
        f"{path}/sharing",
        f"{path}/steps/use_case",
        f"{path}/report.pdf/x",
        f"{path}?pilot=x",  # query strings are ignored, not an error
    ):
        response = visitor.get(url)
        assert response.status_code in (200, 404, 405), url
        if response.status_code == 200:
            assert url.endswith("?pilot=x")
    for url in (
        f"/assessments/{aid}",
        f"/assessments/{aid}/report",
        f"/assessments/{aid}/report.pdf",
        f"/assessments/{aid}/sharing",
        f"/assessments/{aid}/steps/use_case",
    ):
        response = visitor.get(url)
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert visitor.http.get(f"/api/v1/assessments/{aid}").status_code == 401
    assert visitor.post(path, {}).status_code == 405


def test_revoked_link_is_404_for_page_and_pdf(shared) -> None:
    owner, aid, path, visitor = shared
    [link] = links()
    revoked = owner.post(f"/assessments/{aid}/sharing/{link.id}/revoke")
    assert revoked.status_code == 303
    assert revoked.headers["location"] == f"/assessments/{aid}/sharing"
    page = visitor.get(path)
    assert page.status_code == 404
    assert "does not exist or was revoked" in page.text
    assert visitor.get(f"{path}/report.pdf").status_code == 404
    assert "No active links" in owner.get(f"/assessments/{aid}/sharing").text
    assert owner.post(f"/assessments/{aid}/sharing/{link.id}/revoke").status_code == 404


def test_revoking_one_link_leaves_the_others(shared) -> None:
    owner, aid, first, visitor = shared
    second = create_link(owner, aid, "team")
    first_row = links()[0]
    owner.post(f"/assessments/{aid}/sharing/{first_row.id}/revoke")
    assert visitor.get(first).status_code == 404
    assert visitor.get(second).status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        "x",
        "A" * 43,
        "A" * 44,
        "%00" * 43,
        "..%2F..%2Fetc%2Fpasswd",
        "' OR 1=1 --" + "a" * 32,
        "é" * 43,
    ],
)
def test_unknown_or_malformed_tokens_are_404(shared, token: str) -> None:
    _, _, _, visitor = shared
    assert visitor.get(f"/share/{token}").status_code == 404
    assert visitor.get(f"/share/{token}/report.pdf").status_code == 404


def test_other_users_cannot_manage_the_owners_links(shared, make_client) -> None:
    _, aid, path, _ = shared
    other = make_client()
    other.signup("other@example.com")
    own_aid = scored_assessment(other)
    [link] = links()
    assert other.get(f"/assessments/{aid}/sharing").status_code == 404
    assert other.post(f"/assessments/{aid}/sharing", {"label": "mine now"}).status_code == 404
    assert other.post(f"/assessments/{aid}/sharing/{link.id}/revoke").status_code == 404
    # Their own assessment id with the owner's link id: the link is not that assessment's.
    assert other.post(f"/assessments/{own_aid}/sharing/{link.id}/revoke").status_code == 404
    assert len(links()) == 1 and links()[0].revoked_at is None
    assert other.get(path).status_code == 200  # the link itself still works for anyone


def test_only_scored_assessments_can_be_shared(client) -> None:
    client.signup()
    draft = client.post("/assessments").headers["location"].split("/")[2]
    response = client.post(f"/assessments/{draft}/sharing", {})
    assert response.status_code == 409
    assert "Score this assessment first" in response.text
    assert links() == []


def test_label_is_validated_and_escaped(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    too_long = client.post(f"/assessments/{aid}/sharing", {"label": "x" * 81})
    assert too_long.status_code == 422 and "under 80 characters" in too_long.text
    create_link(client, aid, "<b>bold</b>")
    page = client.get(f"/assessments/{aid}/sharing").text
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page


def test_active_links_are_capped(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    from app.accounts.models import User
    from app.assessments.models import Assessment

    with get_sessionmaker()() as session:
        assessment = session.get(Assessment, aid)
        user = session.scalars(select(User)).one()
        assert assessment is not None
        for _ in range(service.MAX_ACTIVE_LINKS):
            service.create_link(session, assessment=assessment, owner=user)
        session.commit()
    response = client.post(f"/assessments/{aid}/sharing", {})
    assert response.status_code == 409 and "revoke one first" in response.text


def test_shared_report_escapes_user_text(client, make_client) -> None:
    client.signup()
    aid = scored_assessment(client, title=XSS_TITLE)
    path = create_link(client, aid)
    html = make_client().get(path).text
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_assessment_page_links_to_sharing(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    assert re.search(rf'href="/assessments/{aid}/sharing"', client.get(f"/assessments/{aid}").text)
