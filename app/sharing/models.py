from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class ShareLink(Base):
    """An unguessable, revocable link to one assessment's report (page and PDF, read-only).

    Only the SHA-256 of the link's token is stored: a leaked database does not open reports.
    The owner sees the full link once, when it is created; the list shows `prefix`.
    """

    __tablename__ = "share_link"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assessment_id: Mapped[str] = mapped_column(
        ForeignKey("assessment.id", ondelete="CASCADE"), index=True
    )
    created_by_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(80), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_viewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The owner ticked "include data and adapter": the link also gives the hand-off bundle
    # (data split, adapter, scripts). Off by default: a link gives the report and PDF only.
    include_bundle: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The pilot the report showed when the link was made: the page, the PDF and the bundle
    # show it and no later one, so a pilot run after sharing never leaks through an old link.
    # NULL only on links made before links were pinned that give the report alone (they
    # follow the report's default pilot, as they always did) or made before any pilot ran.
    pilot_id: Mapped[str | None] = mapped_column(
        ForeignKey("pilot.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # After this moment the link answers 410 (NULL: until revoked).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
