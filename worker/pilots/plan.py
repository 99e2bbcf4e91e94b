"""What every arm of one pilot shares: its config, the capped split, the bootstrap resamples,
the arms' configs and their order. The runner, the conclusion and the worker's tasks each
build the same plan from the same config and split."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from app.domain.arm_registry import ArmRegistry, ConfigSet, PilotSettings
from app.domain.arms import ARMS
from app.domain.bootstrap import DEFAULT_RESAMPLES, resample_indices
from app.domain.metric_catalogue import primary_metric
from app.domain.metrics import PriceRow
from app.domain.records import PilotData
from app.domain.samples.groups import group_index
from app.settings import Settings
from worker.pilots.endpoint_answers import EndpointRuntime

T = TypeVar("T")


@dataclass
class PilotConfig:
    arms: list[str] = field(
        default_factory=lambda: list(ARMS.defaults()),
        metadata={"help": "Arms to run (run in the registry's order)."},
    )
    seed: int = field(default=0, metadata={"help": "One seed for shots, training and bootstrap."})
    max_train: int = field(default=480, metadata={"help": "Cap on training examples."})
    max_test: int = field(default=120, metadata={"help": "Cap on test examples."})
    max_train_minutes: float = field(
        default=6.0, metadata={"help": "Wall-clock cap on each fine-tuning arm."}
    )
    configs: dict[str, object] = field(
        default_factory=dict,
        metadata={"help": "Arm name -> its config (app.domain.arms); unset arms get defaults."},
    )
    price: PriceRow | None = field(
        default=None, metadata={"help": "Price row for the prompting arms' cost per 1k queries."}
    )
    fine_tuned_price: PriceRow | None = field(
        default=None, metadata={"help": "Price row for fine-tuned arms; None = `price`."}
    )
    adapter_dir: Path | None = field(
        default=None, metadata={"help": "Where adapters are saved; None = a new temp dir."}
    )
    n_resamples: int = field(default=DEFAULT_RESAMPLES, metadata={"help": "Bootstrap resamples."})
    registry: ArmRegistry = field(
        default=ARMS, metadata={"help": "Which arms exist (tests and plug-ins pass their own)."}
    )
    judge: EndpointRuntime | None = field(
        default=None, metadata={"help": "A model that grades open-ended answers; None = none."}
    )
    learning_curve: bool = field(
        default=False,
        metadata={"help": "Train the QLoRA arm again on 1/4 and 1/2 of the split for a curve."},
    )


def price_row(table: Mapping[str, tuple[float, float]], name: str) -> PriceRow | None:
    """A row of settings.price_table as a PriceRow (None when the table has no such row)."""
    if name not in table:
        return None
    input_price, output_price = table[name]
    return PriceRow(name=name, input_per_million=input_price, output_per_million=output_price)


def config_from_settings(
    settings: Settings, *, arms: list[str], seed: int, max_train: int, adapter_dir: Path
) -> PilotConfig:
    """The pilot config from app settings: caps, prices and where adapters go (worker and CLI)."""
    return PilotConfig(
        arms=arms,
        seed=seed,
        max_train=max_train,
        max_test=settings.pilot_max_test,
        max_train_minutes=settings.pilot_max_train_minutes,
        price=price_row(settings.price_table, "hosted-base"),
        fine_tuned_price=price_row(settings.price_table, "hosted-fine-tuned"),
        adapter_dir=adapter_dir,
        learning_curve=settings.pilot_learning_curve,
    )


def _cap(data: PilotData, config: PilotConfig) -> tuple[PilotData, list[str]]:
    """Enforce the caps when the caller's split is larger (a seeded subset, order kept)."""
    caps: list[str] = []
    rng = np.random.default_rng(config.seed)

    def subset(items: list[T], limit: int, name: str) -> list[T]:
        if len(items) <= limit:
            return items
        keep = sorted(rng.choice(len(items), size=limit, replace=False).tolist())
        caps.append(f"{name} capped at {limit} of {len(items)} examples")
        return [items[i] for i in keep]

    train = subset(data.train, config.max_train, "train")
    test = subset(data.test, config.max_test, "test")
    if train is data.train and test is data.test:
        return data, caps
    return dataclasses.replace(data, train=train, test=test), caps


@dataclass
class PilotPlan:
    """What every arm of one pilot shares: the capped split, the bootstrap resamples, the arms'
    configs and their order. Rebuilt the same from the same config and split, so arm tasks on
    different workers each make their own."""

    config: PilotConfig
    data: PilotData  # capped
    caps: list[str]
    indices: np.ndarray  # the one resample matrix every interval and difference uses
    configs: ConfigSet
    order: list[str]  # the registry's order, unknown arms last
    # The metric served arms also report in process, and the learning curve is drawn on:
    # the judge's verdict, which may become primary in the conclusion, grades arms only.
    reference_metric: str

    @property
    def adapter_dir(self) -> Path:
        return self.configs.settings.adapter_dir


def plan_pilot(config: PilotConfig, data: PilotData) -> PilotPlan:
    """Cap the split (a seeded subset when it is larger than the caps) and fix the resamples."""
    data, caps = _cap(data, config)
    n_test = len(data.test)
    indices = resample_indices(
        max(n_test, 1),
        n_resamples=config.n_resamples,
        seed=config.seed,
        groups=group_index(data.test) if n_test else None,
    )
    adapter_dir = config.adapter_dir or Path(tempfile.mkdtemp(prefix="pathpilot-adapters-"))
    settings = PilotSettings(
        seed=config.seed, max_train_minutes=config.max_train_minutes, adapter_dir=adapter_dir
    )
    known = [arm for arm in config.arms if arm in config.registry]
    return PilotPlan(
        config=config,
        data=data,
        caps=caps,
        indices=indices,
        configs=ConfigSet(settings, config.configs),
        order=[*config.registry.in_order(known), *(a for a in config.arms if a not in known)],
        reference_metric=primary_metric(data.task, [e.target for e in data.test]),
    )


def upstream_of(plan: PilotPlan, arm: str) -> str | None:
    """The arm whose adapter `arm` adopts when both are in the pilot (it runs after it)."""
    if arm not in plan.config.registry:
        return None
    source = plan.config.registry.get(arm).needs.adapter_from
    return source if source in plan.order else None
