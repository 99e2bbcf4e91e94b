"""Share links: create, list, revoke, and resolve a link's token to its assessment.

A link's token is `secrets.token_urlsafe(32)` (256 random bits); only its SHA-256 is stored,
looked up by that hash and compared in constant time. No FastAPI here; callers commit.

A link is pinned to the pilot its report showed when it was made (`ShareLink.pilot_id`), so a
pilot run later never shows through it, and may expire (`expires_at`: 410 after). A link that
gives the hand-off bundle builds it once, on its first download, and keeps the zip under
`Settings.share_bundles_dir` in a folder named by the link and its pilot; the folder goes when
the link is revoked or found expired, and `prune_kept_bundles` sweeps up after links that went
another way (their assessment deleted).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.accounts.models import User
from app.accounts.tokens import as_utc, hash_secret
from app.assessments.models import Assessment
from app.db import utcnow
from app.domain.records import PilotStatus
from app.errors import Conflict, DomainError
from app.exports import service as exports
from app.pilots.models import Pilot
from app.reports import service as reports
from app.settings import Settings
from app.sharing.models import ShareLink

MAX_ACTIVE_LINKS = 20
PREFIX_LENGTH = 6
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet; nothing else is looked up.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


class NotShareable(Conflict):
    """The assessment cannot be shared yet (not scored) or has too many links."""


class LinkExpired(DomainError):
    """The link existed and has expired: 410, so its holder knows to ask for a new one."""

    status_code = 410


@dataclass(frozen=True)
class Shared:
    """What an open link gives access to: one assessment's report, as its owner sees it."""

    link: ShareLink
    assessment: Assessment
    owner: User


def create_link(
    session: Session,
    *,
    assessment: Assessment,
    owner: User,
    label: str = "",
    include_bundle: bool = False,
    expires_in_days: int | None = None,
    now: datetime | None = None,
) -> tuple[ShareLink, str]:
    """A new active link to the assessment's report; returns (row, token). Token not stored.

    The link is pinned to the pilot the report shows now (the latest finished one, else the
    latest when it failed, else none yet). `include_bundle`: the link also gives that pilot's
    hand-off bundle (data and adapter), so it must be a finished pilot. `expires_in_days`:
    None, until revoked; else it stops working that many days from now.
    """
    if assessment.score_result is None:
        raise NotShareable("Score this assessment first: a share link shows its report.")
    moment = now or utcnow()
    active = session.scalar(
        select(func.count(ShareLink.id)).where(
            ShareLink.assessment_id == assessment.id, *_opens(moment)
        )
    )
    if (active or 0) >= MAX_ACTIVE_LINKS:
        raise NotShareable(f"This report has {MAX_ACTIVE_LINKS} active links; revoke one first.")
    pilot = _shown_pilot(session, assessment=assessment, owner=owner, today=moment.date())
    if include_bundle and (pilot is None or pilot.status != PilotStatus.done):
        # Unpinned, such a link would hand over whichever pilot finishes next: data the owner
        # never looked at when deciding to share.
        raise NotShareable(
            "Include data and adapter needs a finished pilot: the link gives that pilot's "
            "bundle. Run a pilot first, or share the report and PDF only."
        )
    token = secrets.token_urlsafe(32)
    link = ShareLink(
        assessment_id=assessment.id,
        created_by_id=owner.id,
        label=label,
        prefix=token[:PREFIX_LENGTH],
        token_hash=hash_secret(token),
        include_bundle=include_bundle,
        pilot_id=pilot.id if pilot is not None else None,
        created_at=moment,
        expires_at=moment + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(link)
    session.flush()
    return link, token


def _shown_pilot(
    session: Session, *, assessment: Assessment, owner: User, today: date
) -> Pilot | None:
    """The pilot the owner's report shows now (the report's own choice, not a copy of it)."""
    identity = reports.report_identity(session, assessment=assessment, owner=owner, today=today)
    return session.get(Pilot, identity.pilot_id) if identity.pilot_id is not None else None


def _opens(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """The conditions of a link that still opens: not revoked, not expired."""
    return (
        ShareLink.revoked_at.is_(None),
        or_(ShareLink.expires_at.is_(None), ShareLink.expires_at > now),
    )


def is_expired(link: ShareLink, now: datetime | None = None) -> bool:
    return link.expires_at is not None and as_utc(link.expires_at) <= (now or utcnow())


def active_links(session: Session, *, assessment: Assessment) -> list[ShareLink]:
    """The assessment's links that still open (not revoked, not expired), newest first."""
    stmt = (
        select(ShareLink)
        .where(ShareLink.assessment_id == assessment.id, *_opens(utcnow()))
        .order_by(ShareLink.created_at.desc(), ShareLink.id.desc())
    )
    return list(session.scalars(stmt))


def revoke_link(session: Session, *, assessment: Assessment, link_id: int) -> bool:
    """Revoke one of the assessment's links; False when it has no such active link."""
    link = session.get(ShareLink, link_id)
    if link is None or link.assessment_id != assessment.id or link.revoked_at is not None:
        return False
    link.revoked_at = utcnow()
    session.flush()
    return True


def open_link(
    session: Session, *, token: str, count: bool = True, now: datetime | None = None
) -> Shared | None:
    """The report a token opens; None for unknown or revoked tokens. Raises LinkExpired for
    an expired one. `count`: count the view now (False: the caller calls `count_view` once
    it has decided to serve it, so a refused download is not a view)."""
    if not _TOKEN.fullmatch(token):
        return None
    digest = hash_secret(token)
    link = session.scalar(select(ShareLink).where(ShareLink.token_hash == digest))
    if (
        link is None
        or link.revoked_at is not None
        or not secrets.compare_digest(link.token_hash, digest)
    ):
        return None
    if is_expired(link, now):
        assert link.expires_at is not None
        day = as_utc(link.expires_at).strftime("%Y-%m-%d %H:%M")
        raise LinkExpired(
            f"This share link expired on {day} UTC. Ask the report's owner for a new link."
        )
    assessment = session.get(Assessment, link.assessment_id)
    owner = session.get(User, assessment.owner_id) if assessment is not None else None
    if assessment is None or owner is None:
        return None
    shared = Shared(link=link, assessment=assessment, owner=owner)
    if count:
        count_view(session, shared)
    return shared


def count_view(session: Session, shared: Shared) -> None:
    shared.link.view_count += 1
    shared.link.last_viewed_at = utcnow()
    session.flush()


def expired_link_id(session: Session, *, token: str) -> int | None:
    """The id of the expired link a token names (None: none such), to drop its bundle."""
    if not _TOKEN.fullmatch(token):
        return None
    link = session.scalar(select(ShareLink).where(ShareLink.token_hash == hash_secret(token)))
    return link.id if link is not None and is_expired(link) else None


# --- the bundle a link gives, built once and kept on disk ---------------------------------

# One build at a time per process: each holds a whole bundle in memory while it zips, so
# anonymous first downloads of many links cannot add up to many bundles at once.
_BUILDING = threading.Lock()


@dataclass(frozen=True)
class KeptBundle:
    path: Path
    filename: str


PdfRenderer = Callable[[reports.Report], bytes]


def _bundle_dir(root: Path, link: ShareLink) -> Path:
    return root / f"{link.id}-{link.pilot_id}"


def kept_bundle(
    session: Session, *, shared: Shared, settings: Settings, render_pdf: PdfRenderer
) -> KeptBundle | None:
    """The link's pinned pilot's bundle as a zip on disk, built on the first call and kept;
    None when the link gives no bundle. Raises `ExportNotPossible` (409) as the export does.

    Kept by link and pilot: the pilot is done, so what the bundle holds no longer changes,
    and later downloads are a file read instead of a PDF render and a zip in memory."""
    link = shared.link
    if not link.include_bundle or link.pilot_id is None:
        return None
    folder = _bundle_dir(settings.share_bundles_dir, link)
    with _BUILDING:
        found = _zip_in(folder)
        if found is not None:
            return found
        pilot = session.get(Pilot, link.pilot_id)
        if pilot is None:
            return None
        made = exports.export_pilot(session, pilot=pilot, settings=settings, render_pdf=render_pdf)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / made.filename
        # Written aside and renamed, so another process never serves half a zip.
        partial = folder / f".{os.getpid()}-{threading.get_ident()}.partial"
        partial.write_bytes(made.bundle.zip_bytes())
        os.replace(partial, target)
        return KeptBundle(path=target, filename=made.filename)


def _zip_in(folder: Path) -> KeptBundle | None:
    if not folder.is_dir():
        return None
    for path in folder.glob("*.zip"):
        return KeptBundle(path=path, filename=path.name)
    return None


def drop_kept_bundles(root: Path, link_id: int) -> None:
    """Delete what a link kept on disk (its bundle, whichever pilot it was built for)."""
    for folder in root.glob(f"{link_id}-*"):
        shutil.rmtree(folder, ignore_errors=True)


def prune_kept_bundles(session: Session, *, root: Path) -> None:
    """Delete the kept bundles of links that no longer give one: revoked, expired, or gone
    with their assessment (a cascade that no code of ours sees)."""
    if not root.is_dir():
        return
    kept: dict[int, Path] = {}
    for folder in root.iterdir():
        head = folder.name.split("-", 1)[0]
        if head.isdigit():
            kept[int(head)] = folder
    if not kept:
        return
    live = set(
        session.scalars(
            select(ShareLink.id).where(
                ShareLink.id.in_(kept), ShareLink.include_bundle, *_opens(utcnow())
            )
        )
    )
    for link_id, folder in kept.items():
        if link_id not in live:
            shutil.rmtree(folder, ignore_errors=True)
