from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


def new_id() -> str:
    """Random 128-bit ids: not enumerable, so a guessed URL finds nothing."""
    return uuid.uuid4().hex


class Assessment(Base):
    __tablename__ = "assessment"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200), default="Untitled assessment")
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | scored
    step: Mapped[str] = mapped_column(String(32), default="use_case")
    # Partial answers as the wizard collects them; `intake` holds the validated whole.
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    intake: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    score_result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class DataSample(Base):
    """An uploaded file: the training/eval sample, or one document of the RAG corpus."""

    __tablename__ = "data_sample"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assessment_id: Mapped[str] = mapped_column(
        ForeignKey("assessment.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # sample | document
    # Shown to the user only; the file on disk is named by `stored_name`, never by the client.
    original_name: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(32), nullable=True)
    task: Mapped[str | None] = mapped_column(String(32), nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PathScore(Base):
    """One path's score, queryable in SQL; the full breakdown is in `factors`."""

    __tablename__ = "path_score"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assessment_id: Mapped[str] = mapped_column(
        ForeignKey("assessment.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(String(32))
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    factors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    rationale: Mapped[str] = mapped_column(Text, default="")
