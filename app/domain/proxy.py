"""When may a pilot's measured gap between two arms overrule the rubric?

A pilot on a small proxy model measures that model's weaknesses as much as the paths: the
135M default cannot learn from shots in the prompt or read a retrieved passage (measured:
binary sentiment few-shot at chance, 52.5%; reading comprehension at 6.7% token F1 with
retrieval recall@k 0.95), so "fine-tuning beat few-shot by 30 points" on it says little about
an 8B model the team will deploy. The rule, stated in `RULE_TEXT` and docs/pilots.md:

A gap between two arms counts only when
1. both arms ran on the deployment model (the model the intake names: declared so when it was
   registered, or of the intake's target size), or
2. both ran on the same model, and that model is known to be capable of what both arms need
   (`Capability`; thresholds in `KNOWN_CAPABLE_FROM_PARAMETERS`).
Otherwise the rubric decides between them, and the report says which run would settle it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from app.domain.arm_registry import Capability
from app.domain.records import ArmModel

# Smallest model (parameters) known to do each thing well enough for a pilot to measure the
# path rather than the model. In-context learning and reading retrieved passages come with
# scale (Brown et al. 2020, arXiv 2005.14165; Wei et al. 2022, arXiv 2206.07682); the 135M
# default fails both on held-out samples (docs/pilots.md, "Calibration"). Fine-tuning teaches
# even the 135M model a label set (90% on Banking77 intents), so it has no threshold.
KNOWN_CAPABLE_FROM_PARAMETERS: Final[dict[Capability, int]] = {
    Capability.in_context: 1_000_000_000,
    Capability.reading: 1_000_000_000,
    Capability.fine_tuning: 0,
}
# A model within this factor of the intake's target size stands for the deployment model.
DEPLOYMENT_SIZE_FACTOR: Final = 0.5


def is_deployment_model(model: ArmModel, target_size_b: float | None) -> bool:
    """Declared the deployment model, or of the intake's target size (within a factor 2)."""
    if model.deployment:
        return True
    if model.parameters is None or target_size_b is None:
        return False
    return model.parameters >= DEPLOYMENT_SIZE_FACTOR * target_size_b * 1e9


def known_capable(model: ArmModel, needs: Iterable[Capability]) -> bool:
    """Whether the model is known to do everything in `needs` (unknown size: not known)."""
    needed = [KNOWN_CAPABLE_FROM_PARAMETERS[capability] for capability in needs]
    if not needed or max(needed) == 0:
        return True
    return model.parameters is not None and model.parameters >= max(needed)


@dataclass(frozen=True)
class Comparability:
    counts: bool  # the gap may overrule the rubric
    reason: str  # why, in a clause for the report


def comparable(
    a: ArmModel | None,
    needs_a: Iterable[Capability],
    b: ArmModel | None,
    needs_b: Iterable[Capability],
    target_size_b: float | None,
) -> Comparability:
    """Whether a measured gap between two arms counts against the rubric (module docstring)."""
    if a is None or b is None:
        return Comparability(False, "the pilot did not record which model answered")
    if is_deployment_model(a, target_size_b) and is_deployment_model(b, target_size_b):
        return Comparability(True, "both ran on the deployment model")
    if a.model_id != b.model_id:
        return Comparability(False, "they ran on different models")
    needs = {*needs_a, *needs_b}
    if known_capable(a, needs):
        return Comparability(True, f"both ran on {a.model_id}, which is capable of both")
    missing = sorted(c.value.replace("_", "-") for c in needs if not known_capable(a, [c]))
    return Comparability(
        False,
        f"{a.model_id} ({describe_size(a.parameters)}) is not known to be capable of "
        f"{' or '.join(missing)}",
    )


def describe_size(parameters: int | None) -> str:
    if parameters is None:
        return "size unknown"
    if parameters >= 1e9:
        return f"{parameters / 1e9:.1f}B parameters"
    return f"{parameters / 1e6:.0f}M parameters"
