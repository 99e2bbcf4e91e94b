from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.assessments.models import new_id
from app.db import Base, utcnow
from app.domain.records import DEFAULT_SEED, ArmStatus, PilotStatus


class Pilot(Base):
    __tablename__ = "pilot"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    assessment_id: Mapped[str] = mapped_column(
        ForeignKey("assessment.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=PilotStatus.queued)
    arms: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_train: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer, default=DEFAULT_SEED)
    # The endpoint the prompting arms ask (None: the in-process base model); the local base
    # model every in-process arm loads and the fine-tuning arms train (None: LLM_MODEL); the
    # endpoint that serves that base with LoRA enabled, to evaluate adapters as served.
    prompt_model_id: Mapped[str | None] = mapped_column(
        ForeignKey("llm_model.id", ondelete="SET NULL"), nullable=True
    )
    base_model_id: Mapped[str | None] = mapped_column(
        ForeignKey("llm_model.id", ondelete="SET NULL"), nullable=True
    )
    serving_model_id: Mapped[str | None] = mapped_column(
        ForeignKey("llm_model.id", ondelete="SET NULL"), nullable=True
    )
    # The endpoint that grades open-ended answers (None: no judge), and what it found: the
    # pilot-level part (pairwise tallies, agreement, cost); per-arm judge metrics are rows.
    judge_model_id: Mapped[str | None] = mapped_column(
        ForeignKey("llm_model.id", ondelete="SET NULL"), nullable=True
    )
    judge_results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Whether to train the QLoRA arm on 1/4 and 1/2 of the split too (the learning curve),
    # and the curve it measured (`app.domain.learning_curve.LearningCurve` as JSON).
    learning_curve: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    learning_curve_results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    task: Mapped[str | None] = mapped_column(String(32), nullable=True)
    primary_metric: Mapped[str | None] = mapped_column(String(32), nullable=True)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    caps: Mapped[list[str]] = mapped_column(JSON, default=list)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The current attempt's lease: set by the one conditional UPDATE that claims the pilot, and
    # checked by every later write, so a superseded attempt cannot overwrite a newer one.
    lease: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)  # host:pid
    # The Celery task id of the latest delivery sent, so a cancel can revoke it.
    task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Where a running pilot is (`PilotStage`): preparing its split, running its arms (each a
    # task with its own lease), or concluding. The pilot's own lease and heartbeat cover the
    # preparing and concluding steps; the arms' rows carry theirs.
    stage: Mapped[str | None] = mapped_column(String(16), nullable=True)


class PilotSplit(Base):
    """The split a pilot's preparation made, stored once so every arm task, on any worker,
    runs on the same data (checked against `dataset_sha256` when read back)."""

    __tablename__ = "pilot_split"

    pilot_id: Mapped[str] = mapped_column(
        ForeignKey("pilot.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSON)  # app.domain.preparation.split_as_json
    dataset_sha256: Mapped[str] = mapped_column(String(64))
    caps: Mapped[list[str]] = mapped_column(JSON, default=list)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)


class PilotArm(Base):
    __tablename__ = "pilot_arm"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pilot_id: Mapped[str] = mapped_column(ForeignKey("pilot.id", ondelete="CASCADE"), index=True)
    arm: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(
        String(16), default=ArmStatus.pending
    )  # pending|running|done|failed
    stage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    training_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    peak_memory_mb: Mapped[float] = mapped_column(Float, default=0.0)
    trainable_parameters: Mapped[int] = mapped_column(Integer, default=0)
    adapter_bytes: Mapped[int] = mapped_column(Integer, default=0)
    retrieval_recall_at_k: Mapped[float | None] = mapped_column(Float, nullable=True)
    recipe: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    notes: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    # The arm as a task of its own: claimed by one conditional UPDATE that sets a fresh lease
    # (checked by every later write of the arm) and bumps `attempts`; its heartbeat shows the
    # worker is alive, so the sweep re-queues the arm alone when it goes silent.
    lease: Mapped[str | None] = mapped_column(String(32), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)  # host:pid
    task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # What the arm leaves for the conclusion (`ArmHandover`: answers, model, recipe, device).
    handover: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class MetricRow(Base):
    __tablename__ = "metric"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pilot_id: Mapped[str] = mapped_column(ForeignKey("pilot.id", ondelete="CASCADE"), index=True)
    arm: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(48))
    value: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    ci_high: Mapped[float | None] = mapped_column(Float, nullable=True)


class ArmDifference(Base):
    __tablename__ = "arm_difference"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pilot_id: Mapped[str] = mapped_column(ForeignKey("pilot.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(48))
    arm_a: Mapped[str] = mapped_column(String(16))
    arm_b: Mapped[str] = mapped_column(String(16))
    delta: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float] = mapped_column(Float)
    ci_high: Mapped[float] = mapped_column(Float)
    # The sample the interval rests on (app.domain.comparison); NULL on older pilots.
    n_items: Mapped[int | None] = mapped_column(Integer, nullable=True)
    n_groups: Mapped[int | None] = mapped_column(Integer, nullable=True)
    discordant: Mapped[int | None] = mapped_column(Integer, nullable=True)
    p_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    design_effect: Mapped[float | None] = mapped_column(Float, nullable=True)
    method: Mapped[str | None] = mapped_column(String(16), nullable=True)


class LossCurvePoint(Base):
    __tablename__ = "loss_point"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    arm_id: Mapped[int] = mapped_column(ForeignKey("pilot_arm.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float)
    train_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    validation_loss: Mapped[float | None] = mapped_column(Float, nullable=True)


class SamplePrediction(Base):
    __tablename__ = "sample_prediction"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    arm_id: Mapped[int] = mapped_column(ForeignKey("pilot_arm.id", ondelete="CASCADE"), index=True)
    test_index: Mapped[int] = mapped_column(Integer)
    input: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    prediction: Mapped[str] = mapped_column(Text)
    correct: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)


class EndpointAnswer(Base):
    """One answered endpoint request of a pilot, so a re-queued pilot does not pay for it again.

    `request_key` is a hash of the model, messages and decoding settings; the key never holds
    the request text itself.
    """

    __tablename__ = "endpoint_answer"
    __table_args__ = (UniqueConstraint("pilot_id", "request_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pilot_id: Mapped[str] = mapped_column(ForeignKey("pilot.id", ondelete="CASCADE"), index=True)
    request_key: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ArmExecution(Base):
    """One execution of one arm under one lease: the audit trail that proves each arm of a
    pilot ran once per attempt, and which worker ran it."""

    __tablename__ = "arm_execution"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pilot_id: Mapped[str] = mapped_column(ForeignKey("pilot.id", ondelete="CASCADE"), index=True)
    arm: Mapped[str] = mapped_column(String(16))
    lease: Mapped[str] = mapped_column(String(32))
    worker: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
