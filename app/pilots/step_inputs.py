"""What one of a pilot's worker steps (preparing, an arm, the conclusion) reads from SQL,
read in one transaction into a frozen record: the step then holds no row and no session
while it runs for minutes, and every part it uses comes from the same moment.

The caller owns the transaction (`worker.jobs` reads it in one retried unit of work); this
module only reads. Keys of chosen endpoint models are decrypted here, as the worker needs
them to send requests; the record's repr never shows them (`EndpointSpec` hides its key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.records import ArmHandover, ArmModel, ArmStatus, MetricValue
from app.endpoints import service as endpoints
from app.endpoints.models import LlmModel, ModelKind
from app.integrations.openai_compatible.schemas import EndpointSpec
from app.pilots.execution import StoredSplit, finished_arms, read_split
from app.pilots.models import Pilot, PilotArm
from app.settings import Settings


class Role(StrEnum):
    """A model the user may choose for a pilot, named as its failure messages name it; the
    order is the order they are resolved in, so the first unusable one is the one reported."""

    judge = "judge model"
    base = "base model"
    prompt = "prompting model"
    serving = "serving endpoint"


ALL_ROLES = tuple(Role)

_COLUMNS = {
    Role.judge: Pilot.judge_model_id,
    Role.base: Pilot.base_model_id,
    Role.prompt: Pilot.prompt_model_id,
    Role.serving: Pilot.serving_model_id,
}


@dataclass(frozen=True)
class ChosenModel:
    """A registered model the pilot chose, as plain values (the SQL row is gone once the
    transaction closes)."""

    name: str  # the model's served name, or its directory for a local model
    facts: ArmModel
    spec: EndpointSpec | None  # with the key decrypted; None for a local model


@dataclass(frozen=True)
class StoredArm:
    """A finished (done or failed) arm as the conclusion reads it."""

    arm: str
    status: ArmStatus
    metrics: tuple[MetricValue, ...]
    handover: ArmHandover
    error: str | None


@dataclass(frozen=True)
class StepInputs:
    """Everything a step of one pilot needs from SQL."""

    pilot_id: str
    arms: tuple[str, ...]
    seed: int
    max_train: int
    learning_curve: bool
    started_at: datetime | None
    split: StoredSplit | None  # None when the step did not ask for it (preparing makes it)
    models: Mapping[Role, ChosenModel | None] = field(default_factory=lambda: MappingProxyType({}))
    # The adapter each arm that finished with one trained: an arm adopting it reads it here.
    adapters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    finished: tuple[StoredArm, ...] = ()  # only when the conclusion asked for it

    def model(self, role: Role) -> ChosenModel | None:
        return self.models.get(role)


def read_step_inputs(
    session: Session,
    *,
    pilot_id: str,
    settings: Settings,
    roles: tuple[Role, ...] = ALL_ROLES,
    split: bool = True,
    finished: bool = False,
) -> StepInputs:
    """The pilot's inputs for one step; `roles` are the chosen models it resolves, `split`
    whether it reads the stored split, `finished` whether it reads every arm's results.

    Raises LookupError when the pilot, its split or a chosen model is gone, and
    `endpoints.ModelNotUsable` when a chosen model cannot be used any more."""
    pilot = session.get(Pilot, pilot_id)
    if pilot is None:
        raise LookupError(f"pilot {pilot_id} does not exist")
    stored = read_split(session, pilot_id=pilot_id) if split else None
    models = {role: _chosen(session, pilot, role, settings) for role in roles}
    adapters = {
        arm: ArmHandover.read(handover).adapter_path or ""
        for arm, handover in session.execute(
            select(PilotArm.arm, PilotArm.handover).where(
                PilotArm.pilot_id == pilot_id, PilotArm.status == ArmStatus.done
            )
        )
    }
    return StepInputs(
        pilot_id=pilot_id,
        arms=tuple(pilot.arms or ()),
        seed=pilot.seed,
        max_train=pilot.max_train,
        learning_curve=pilot.learning_curve,
        started_at=pilot.started_at,
        split=stored,
        models=MappingProxyType(models),
        adapters=MappingProxyType({arm: path for arm, path in adapters.items() if path}),
        finished=_finished(session, pilot_id) if finished else (),
    )


def _chosen(session: Session, pilot: Pilot, role: Role, settings: Settings) -> ChosenModel | None:
    """The registered model in the pilot's column for `role`, or None when it chose none; a
    model deleted before the pilot ran is an error that names its role."""
    model_id = getattr(pilot, _COLUMNS[role].key)
    if model_id is None:
        return None
    model = session.get(LlmModel, model_id)
    if model is None:
        raise LookupError(f"the pilot's {role} was deleted before it ran")
    endpoint = model.kind == ModelKind.openai_compatible
    return ChosenModel(
        # A local directory is checked against LOCAL_MODEL_ROOTS again here, where it loads.
        name=model.model if endpoint else endpoints.local_model_path(model, settings),
        facts=endpoints.arm_model(model),
        spec=endpoints.endpoint_spec(model, settings) if endpoint else None,
    )


def _finished(session: Session, pilot_id: str) -> tuple[StoredArm, ...]:
    return tuple(
        StoredArm(
            arm=row.arm,
            status=ArmStatus(row.status),
            metrics=tuple(MetricValue(m.name, m.value, m.ci_low, m.ci_high) for m in metrics),
            handover=ArmHandover.read(row.handover),
            error=row.error,
        )
        for row, metrics in finished_arms(session, pilot_id=pilot_id)
    )
