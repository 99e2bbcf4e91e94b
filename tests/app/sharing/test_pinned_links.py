"""A share link is pinned to the pilot it showed when made, may expire, keeps its bundle on
disk once built, and limits anonymous downloads per link and address."""

from __future__ import annotations

import io
import shutil
import zipfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from app.db import get_sessionmaker, session_scope, utcnow
from app.settings import get_settings
from app.sharing.models import ShareLink
from app.sharing.throttle import DownloadLimiter
from tests.app.accounts.helpers import shown_once
from tests.app.exports.helpers import exportable_pilot
from tests.app.reports.factory import finished_pilot
from tests.factories.assessments import scored_assessment

LATER = "A warning only the later pilot has, never shared."


def links() -> list[ShareLink]:
    with get_sessionmaker()() as session:
        return list(session.scalars(select(ShareLink).order_by(ShareLink.id)))


def create(owner, aid: str, **form: str):  # type: ignore[no-untyped-def]
    return owner.post(f"/assessments/{aid}/sharing", {"label": "x", **form})


def path_of(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 201, response.text
    return urlsplit(shown_once(response.text, "new-link-value")).path


def mentions(content: bytes, text: str) -> bool:
    """Whether any file of the zip names `text` (the bundle's pilot id, in its manifest)."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return any(text.encode() in archive.read(name) for name in archive.namelist())


@pytest.fixture
def owner(make_client):  # type: ignore[no-untyped-def]
    client = make_client()
    client.signup("owner@example.com")
    return client


def test_a_link_keeps_showing_the_pilot_it_was_made_with(owner, make_client) -> None:  # type: ignore[no-untyped-def]
    aid = scored_assessment(owner)
    first = exportable_pilot(aid)
    path = path_of(create(owner, aid, include_bundle="true"))
    [link] = links()
    assert link.pilot_id == first
    # A pilot run after sharing, with data the owner never decided to share.
    later = exportable_pilot(aid, warnings=(LATER,))
    assert LATER in owner.get(f"/assessments/{aid}/report").text  # the owner's default moved

    visitor = make_client()
    page = visitor.get(path)
    assert page.status_code == 200 and LATER not in page.text
    bundle = visitor.get(f"{path}/export.zip")
    assert bundle.status_code == 200
    assert mentions(bundle.content, first) and not mentions(bundle.content, later)
    assert first[:8] in bundle.headers["content-disposition"]
    assert later[:8] not in bundle.headers["content-disposition"]
    assert f"of pilot <code>{first[:8]}</code>" in owner.get(f"/assessments/{aid}/sharing").text


def test_data_and_adapter_need_a_finished_pilot(owner) -> None:  # type: ignore[no-untyped-def]
    aid = scored_assessment(owner)
    refused = create(owner, aid, include_bundle="true")
    assert refused.status_code == 409
    assert "Include data and adapter needs a finished pilot" in refused.text
    assert links() == []
    # The report alone may be shared before any pilot has run.
    assert create(owner, aid).status_code == 201


def test_the_bundle_is_built_once_kept_and_dropped_on_revoke(owner, make_client) -> None:  # type: ignore[no-untyped-def]
    aid = scored_assessment(owner)
    pilot_id = exportable_pilot(aid)
    path = path_of(create(owner, aid, include_bundle="true"))
    [link] = links()
    kept = get_settings().share_bundles_dir / f"{link.id}-{pilot_id}"
    visitor = make_client()
    first = visitor.get(f"{path}/export.zip")
    assert first.status_code == 200
    assert first.headers["referrer-policy"] == "no-referrer"
    assert [p.name for p in kept.iterdir()] == [
        f.split('"')[1] for f in [first.headers["content-disposition"]]
    ]

    # Built from the adapter on disk once: with the adapter gone, an export would be refused,
    # and the link still serves the same bytes it kept.
    shutil.rmtree(get_settings().adapters_dir / pilot_id)
    assert owner.get(f"/pilots/{pilot_id}/export").status_code == 409
    again = visitor.get(f"{path}/export.zip")
    assert again.status_code == 200 and again.content == first.content

    owner.post(f"/assessments/{aid}/sharing/{link.id}/revoke")
    assert not kept.exists()
    assert visitor.get(f"{path}/export.zip").status_code == 404


def test_a_link_expires(owner, make_client) -> None:  # type: ignore[no-untyped-def]
    aid = scored_assessment(owner)
    exportable_pilot(aid)
    path = path_of(create(owner, aid, include_bundle="true", expires_days="7"))
    [link] = links()
    assert link.expires_at is not None
    assert (
        timedelta(days=6, hours=23)
        < link.expires_at.replace(tzinfo=None) - utcnow().replace(tzinfo=None)
        <= timedelta(days=7)
    )
    visitor = make_client()
    page = visitor.get(path)
    assert page.status_code == 200 and 'id="shared-expiry"' in page.text
    assert visitor.get(f"{path}/export.zip").status_code == 200
    assert (
        "never" not in owner.get(f"/assessments/{aid}/sharing").text.split("link-expires")[1][:40]
    )

    with session_scope() as session:  # a week has passed
        row = session.get(ShareLink, link.id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(minutes=1)
    for url in (path, f"{path}/report.pdf", f"{path}/export.zip"):
        gone = visitor.get(url)
        assert gone.status_code == 410, url
        assert "This share link expired on" in gone.text and "new link" in gone.text
    assert not list(get_settings().share_bundles_dir.glob(f"{link.id}-*"))
    # Expired links leave the owner's list and stop counting against the cap.
    assert "No active links" in owner.get(f"/assessments/{aid}/sharing").text


@pytest.mark.parametrize("days", ["0", "-1", "abc", "1.5", "366", "9" * 30])
def test_a_bad_expiry_is_422_saying_what_to_enter(owner, days: str) -> None:  # type: ignore[no-untyped-def]
    aid = scored_assessment(owner)
    response = create(owner, aid, expires_days=days)
    assert response.status_code == 422
    assert "Expires after (days): enter a whole number from 1 to 365" in response.text
    assert links() == []


def test_downloads_are_limited_per_link_and_address(owner, make_client) -> None:  # type: ignore[no-untyped-def]
    aid = scored_assessment(owner)
    finished_pilot(aid)
    first, second = (path_of(create(owner, aid)) for _ in range(2))
    visitor = make_client()
    now = [0.0]
    visitor.http.app.state.share_download_limiter = DownloadLimiter(
        per_hour=2, clock=lambda: now[0]
    )
    assert [visitor.get(f"{first}/report.pdf").status_code for _ in range(2)] == [200, 200]
    refused = visitor.get(f"{first}/report.pdf")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "3600"
    assert "Too many downloads" in refused.text
    assert visitor.get(f"{second}/report.pdf").status_code == 200  # another link: its own count
    assert visitor.get(first).status_code == 200  # reading the page is not a download
    views = {row.prefix: row.view_count for row in links()}
    assert views[first.removeprefix("/share/")[:6]] == 3  # the refused one was not a view

    now[0] += 3600.0  # an hour on
    assert visitor.get(f"{first}/report.pdf").status_code == 200


def test_migration_pins_old_links_that_give_the_bundle(var_dir: Path, make_client) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa
    from alembic import command

    from app.db import get_engine
    from app.migrate import alembic_config

    owner = make_client()
    owner.signup("owner@example.com")
    with_pilots = scored_assessment(owner)
    older = finished_pilot(with_pilots)
    latest = finished_pilot(with_pilots)
    without = scored_assessment(owner)
    command.downgrade(alembic_config(), "a5d3f9c07e12")
    get_engine().dispose()
    insert = sa.text(
        "INSERT INTO share_link (assessment_id, created_by_id, label, prefix, token_hash, "
        "created_at, view_count, include_bundle) "
        "VALUES (:aid, 1, '', 'abcdef', :hash, '2026-12-01 00:00:00', 0, :bundle)"
    )
    with get_engine().begin() as connection:
        for n, (aid, bundle) in enumerate(
            [(with_pilots, True), (with_pilots, False), (without, True)]
        ):
            connection.execute(insert, {"aid": aid, "hash": f"{n:064d}", "bundle": bundle})
    command.upgrade(alembic_config(), "head")
    get_engine().dispose()
    rows = [(row.assessment_id, row.include_bundle, row.pilot_id) for row in links()]
    assert older != latest
    assert rows == [
        (with_pilots, True, latest),  # what it gave at migration time, and only that
        (with_pilots, False, None),  # report only: follows the report's default, as before
        (without, False, None),  # gave nothing yet: now it never will hand over data
    ]
