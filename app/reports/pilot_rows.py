"""One pilot's rows, read from SQL once and shared by the evidence, the tables and the charts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.orm import Session

from app.domain.arms import ARMS
from app.domain.metric_catalogue import metric_label
from app.domain.records import ArmModel, ArmStatus, Manifest
from app.pilots import service as pilots
from app.pilots.models import (
    ArmDifference,
    LossCurvePoint,
    MetricRow,
    Pilot,
    PilotArm,
    SamplePrediction,
)


@dataclass
class PilotRows:
    pilot: Pilot
    arms: list[PilotArm]
    metrics: dict[str, dict[str, MetricRow]]
    differences: list[ArmDifference]
    losses: dict[str, list[LossCurvePoint]]
    predictions: dict[str, list[SamplePrediction]]

    @property
    def done_arms(self) -> list[PilotArm]:
        return [a for a in self.arms if a.status == ArmStatus.done]

    @property
    def metric(self) -> str | None:
        return self.pilot.primary_metric

    @property
    def metric_label(self) -> str:
        return metric_label(self.metric or "")

    @cached_property  # read once: every arm's label and model asks for it
    def manifest(self) -> Manifest | None:
        """The typed manifest; None until the pilot has finished."""
        return Manifest.read(self.pilot.manifest, seed=self.pilot.seed)

    def arm_models(self) -> dict[str, ArmModel]:
        """Which model answered each arm. A pilot from before this was recorded ran every arm
        on its base model, whose size it did not record."""
        manifest = self.manifest
        if manifest is None:
            return {}
        if manifest.arm_models:
            return dict(manifest.arm_models)
        if not manifest.base_model_id:
            return {}
        base = ArmModel(model_id=manifest.base_model_id, parameters=manifest.base_model_parameters)
        return {arm.arm: base for arm in self.arms}

    @property
    def documents(self) -> bool:
        """Whether the pilot had documents to retrieve from. Without them its retrieval arms
        retrieved training examples, and are labelled for what they measured."""
        manifest = self.manifest
        return manifest is None or manifest.had_documents

    def arm_label(self, arm: str) -> str:
        return ARMS.label(arm, documents=self.documents)

    def evidence_for(self, arm: str) -> str | None:
        return ARMS.evidence_for(arm, documents=self.documents)

    @property
    def n_test(self) -> int | None:
        manifest = self.manifest
        return manifest.split_sizes.test or None if manifest is not None else None


def load_pilot(session: Session, *, pilot: Pilot) -> PilotRows:
    """Read everything the report needs about one pilot."""
    arms = pilots.arms_of(session, pilot=pilot)
    # One query per kind of row for all arms, not one per arm.
    losses = pilots.loss_curves_of(session, pilot=pilot)
    predictions = pilots.predictions_by_arm(session, pilot=pilot)
    return PilotRows(
        pilot=pilot,
        arms=arms,
        metrics=pilots.metrics_of(session, pilot=pilot),
        differences=pilots.differences_of(session, pilot=pilot),
        losses={a.arm: losses.get(a.arm, []) for a in arms},
        predictions={a.arm: predictions.get(a.arm, []) for a in arms},
    )
