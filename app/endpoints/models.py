from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.assessments.models import new_id
from app.db import Base, utcnow


class ModelKind(StrEnum):
    local = "local"  # a Hugging Face directory the worker loads
    openai_compatible = "openai_compatible"  # vLLM, TGI, Ollama's /v1, llama.cpp, hosted APIs


class LlmModel(Base):
    """A model a user registered for pilots. The API key is stored encrypted and never shown
    back (`app.endpoints.secrets`); only `has_api_key` is."""

    __tablename__ = "llm_model"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    model: Mapped[str] = mapped_column(String(300))  # served model name, or a local directory
    api_key_ciphertext: Mapped[str | None] = mapped_column(Text, nullable=True)
    input_usd_per_million: Mapped[float | None] = mapped_column(Float, nullable=True)
    output_usd_per_million: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=4)
    context_window: Mapped[int | None] = mapped_column(Integer, nullable=True)
    parameters_b: Mapped[float | None] = mapped_column(Float, nullable=True)
    deployment: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    check_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    check_message: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def has_api_key(self) -> bool:
        return self.api_key_ciphertext is not None
