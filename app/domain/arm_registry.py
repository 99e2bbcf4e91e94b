"""What an arm is, as data: `ArmSpec` and the `ArmRegistry` that lists the arms in order.

The entries themselves (and their typed configs) are in `app.domain.arms`. A spec names the
module that implements the arm instead of holding its function: the web app reads specs
(labels, order, the path an arm is evidence for) and must never import training code, while
the worker resolves `implementation` to the arm's `run` when it runs the arm. The same idea
as a package entry point, checked at load time by `worker.pilots.arms.load_run`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Generic, Protocol, Self, TypeVar, runtime_checkable

from app.domain.samples.schemas import PilotTask

C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)


class ModelRole(StrEnum):
    """Which model answers the arm's test queries."""

    none = "none"  # no language model: a floor such as the majority label
    prompting = "prompting"  # the prompting model (in-process, or an endpoint)
    fine_tuned = "fine_tuned"  # an adapter trained on the fine-tuning base


class Capability(StrEnum):
    """What a model must be able to do for an arm to measure its path rather than the model.

    A 135M proxy learns from fine-tuning but cannot learn from shots in the prompt or read a
    passage, so its few-shot and RAG arms measure the proxy's limits (`app.domain.proxy`).
    """

    in_context = "in_context"  # learn the task from examples shown in the prompt
    reading = "reading"  # answer from passages retrieved into the prompt
    fine_tuning = "fine_tuning"  # learn the task from weight updates


@dataclass(frozen=True)
class Needs:
    """What an arm needs to run; the runner orders arms and prices answers from this."""

    model: ModelRole
    capabilities: frozenset[Capability] = frozenset()  # what the model must be able to do
    trains: bool = False  # runs an optimiser: the slow part, a GPU's job when there is one
    adapter_from: str | None = None  # reuses this arm's adapter, so it runs after that arm
    retrieval: bool = False  # embeds and searches a corpus (the embedder, FAISS)
    tasks: frozenset[PilotTask] | None = None  # the tasks it applies to; None: every task


@dataclass(frozen=True)
class PilotSettings:
    """The pilot-wide values every arm config is built from."""

    seed: int
    max_train_minutes: float
    adapter_dir: Path


class UnknownArm(LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown arm {name!r}; choose from {', '.join(known)}")
        self.name = name


@runtime_checkable
class AdoptsAdapter(Protocol):
    """A config that can take the adapter an earlier arm trained (`Needs.adapter_from`)."""

    def with_adapter(self, path: Path) -> Self: ...


@dataclass(frozen=True)
class WithoutDocuments:
    """What a retrieval arm measures when the pilot has no documents to retrieve from.

    It then retrieves the nearest labelled training examples as shots: dynamic few-shot
    prompting (Liu et al. 2022, "What Makes Good In-Context Examples for GPT-3?"), which is
    the prompting path at its best, not retrieval over a knowledge base. A verdict that said
    "RAG" there would send a team to build document retrieval they never measured.
    """

    label: str
    evidence_for: str | None
    capabilities: frozenset[Capability]


@dataclass(frozen=True)
class ArmSpec(Generic[C_co]):
    """One arm: everything but its code, which lives in the `implementation` module."""

    name: str
    label: str
    order: int  # arms run, list and chart in this order
    evidence_for: str | None  # the path (or hybrid) it measures; None for a floor
    config_type: type[C_co]
    default_config: Callable[[PilotSettings, ConfigSet], C_co]
    needs: Needs
    implementation: str  # module with `run(config, resources, data, progress) -> ArmResult`
    summary: str = ""  # one sentence for the pilot form
    default: bool = True  # run unless the user picks arms
    without_documents: WithoutDocuments | None = None  # retrieval arms: no documents given

    def applies_to(self, task: PilotTask) -> bool:
        return self.needs.tasks is None or task in self.needs.tasks


class ConfigSet:
    """Each arm's config for one pilot: the caller's override, else the arm's default.

    Configs may depend on each other (QLoRA + RAG reuses the QLoRA and RAG settings), so a
    default is built on demand and asked for through the spec, which keeps the type.
    """

    def __init__(self, settings: PilotSettings, overrides: Mapping[str, object]) -> None:
        self.settings = settings
        self._overrides = dict(overrides)

    def get(self, spec: ArmSpec[C]) -> C:
        given = self._overrides.get(spec.name)
        if given is None:
            return spec.default_config(self.settings, self)
        if not isinstance(given, spec.config_type):
            raise TypeError(
                f"config for arm {spec.name!r} must be {spec.config_type.__name__}, "
                f"not {type(given).__name__}"
            )
        return given


class ArmRegistry:
    """The arms in their order; the one place that says which arms exist."""

    def __init__(self, specs: Iterable[ArmSpec[object]]) -> None:
        ordered = sorted(specs, key=lambda spec: spec.order)
        self._specs = {spec.name: spec for spec in ordered}
        if len(self._specs) != len(ordered):
            raise ValueError("arm names must be unique")
        for spec in ordered:
            source = spec.needs.adapter_from
            if source is not None and (
                source not in self._specs or self._specs[source].order >= spec.order
            ):
                raise ValueError(f"arm {spec.name!r} needs {source!r} registered before it")

    def __iter__(self) -> Iterator[ArmSpec[object]]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def get(self, name: str) -> ArmSpec[object]:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownArm(name, self._specs) from None

    def label(self, name: str, *, documents: bool = True) -> str:
        """The arm's label; a name no longer registered (an old pilot's) reads as itself.

        `documents=False`: the pilot had no documents, so a retrieval arm retrieved training
        examples and is labelled for what it measured.
        """
        spec = self._specs.get(name)
        if spec is None:
            return name
        if not documents and spec.without_documents is not None:
            return spec.without_documents.label
        return spec.label

    def evidence_for(self, name: str, *, documents: bool = True) -> str | None:
        """The path (or combination) an arm's result is evidence for (see `label`)."""
        spec = self._specs.get(name)
        if spec is None:
            return None
        if not documents and spec.without_documents is not None:
            return spec.without_documents.evidence_for
        return spec.evidence_for

    def capabilities(self, name: str, *, documents: bool = True) -> frozenset[Capability]:
        """What the model must be capable of for this arm's result to mean anything."""
        spec = self._specs.get(name)
        if spec is None:
            return frozenset()
        if not documents and spec.without_documents is not None:
            return spec.without_documents.capabilities
        return spec.needs.capabilities

    def labels(self) -> dict[str, str]:
        return {name: spec.label for name, spec in self._specs.items()}

    def in_order(self, names: Iterable[str]) -> tuple[str, ...]:
        """`names` in the registry's order (unknown names raise UnknownArm)."""
        wanted = set(names)
        for name in wanted:
            self.get(name)
        return tuple(name for name in self._specs if name in wanted)

    def defaults(self, task: PilotTask | None = None) -> tuple[str, ...]:
        """The arms a pilot runs when the user does not choose, for `task` if known."""
        return tuple(
            spec.name
            for spec in self._specs.values()
            if spec.default and (task is None or spec.applies_to(task))
        )

    def with_arm(self, spec: ArmSpec[object]) -> ArmRegistry:
        """A registry with one more arm (tests; a plug-in arm in a deployment's own code)."""
        return ArmRegistry([*self._specs.values(), spec])
