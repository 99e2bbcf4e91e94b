"""Share links: create, list, revoke, and resolve a link's token to its assessment.

A link's token is `secrets.token_urlsafe(32)` (256 random bits); only its SHA-256 is stored,
looked up by that hash and compared in constant time. No FastAPI here; callers commit.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.tokens import hash_secret
from app.assessments.models import Assessment
from app.db import utcnow
from app.errors import Conflict
from app.sharing.models import ShareLink

MAX_ACTIVE_LINKS = 20
PREFIX_LENGTH = 6
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet; nothing else is looked up.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


class NotShareable(Conflict):
    """The assessment cannot be shared yet (not scored) or has too many links."""


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
) -> tuple[ShareLink, str]:
    """A new active link to the assessment's report; returns (row, token). Token not stored.

    `include_bundle`: the link also gives the pilot's hand-off bundle (data and adapter).
    """
    if assessment.score_result is None:
        raise NotShareable("Score this assessment first: a share link shows its report.")
    active = session.scalar(
        select(func.count(ShareLink.id)).where(
            ShareLink.assessment_id == assessment.id, ShareLink.revoked_at.is_(None)
        )
    )
    if (active or 0) >= MAX_ACTIVE_LINKS:
        raise NotShareable(f"This report has {MAX_ACTIVE_LINKS} active links; revoke one first.")
    token = secrets.token_urlsafe(32)
    link = ShareLink(
        assessment_id=assessment.id,
        created_by_id=owner.id,
        label=label,
        prefix=token[:PREFIX_LENGTH],
        token_hash=hash_secret(token),
        include_bundle=include_bundle,
    )
    session.add(link)
    session.flush()
    return link, token


def active_links(session: Session, *, assessment: Assessment) -> list[ShareLink]:
    """The assessment's links that still open, newest first."""
    stmt = (
        select(ShareLink)
        .where(ShareLink.assessment_id == assessment.id, ShareLink.revoked_at.is_(None))
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


def open_link(session: Session, *, token: str) -> Shared | None:
    """The report a token opens and counts the view; None for unknown or revoked tokens."""
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
    assessment = session.get(Assessment, link.assessment_id)
    owner = session.get(User, assessment.owner_id) if assessment is not None else None
    if assessment is None or owner is None:
        return None
    link.view_count += 1
    link.last_viewed_at = utcnow()
    session.flush()
    return Shared(link=link, assessment=assessment, owner=owner)
