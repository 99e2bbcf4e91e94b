"""Arm implementations: one module per arm, each with a `run` function.

`app.domain.arms` holds what each arm is (its spec and typed config) and names the module here
that implements it; `load_run` resolves that name when the arm runs, so only the worker (and
the CLI) ever imports training code.
"""

from __future__ import annotations

import importlib
from typing import Protocol, TypeVar

from app.domain.arm_registry import ArmSpec
from app.domain.records import ArmResult, PilotData, ProgressCallback
from worker.pilots.resources import Resources

C_contra = TypeVar("C_contra", contravariant=True)


class ArmRun(Protocol[C_contra]):
    """The contract every arm module's `run` follows."""

    def __call__(
        self,
        config: C_contra,
        resources: Resources,
        data: PilotData,
        progress: ProgressCallback,
        /,
    ) -> ArmResult: ...


class ArmNotAvailable(RuntimeError):
    """The arm's module (or a library it needs, e.g. peft) is not installed here."""


def load_run(spec: ArmSpec[C_contra]) -> ArmRun[C_contra]:
    """The `run` function of the module `spec.implementation` names."""
    try:
        module = importlib.import_module(spec.implementation)
    except ModuleNotFoundError as error:
        raise ArmNotAvailable(
            f"arm not available in this installation ({type(error).__name__}: {error})"
        ) from error
    run = getattr(module, "run", None)
    if not callable(run):
        raise ArmNotAvailable(f"{spec.implementation} has no run function for arm {spec.name!r}")
    arm_run: ArmRun[C_contra] = run
    return arm_run
