"""The pilot engine's test doubles: stand-in arms in a registry, resources without models, data,
and the real tokenizer's resources for the tests that load the default model."""

from __future__ import annotations

from typing import Any

from app.domain.arm_registry import ArmRegistry, ArmSpec, ModelRole, Needs
from app.domain.records import PilotData
from app.domain.samples.schemas import Example, PilotTask
from tests.conftest import REPO
from tests.worker.pilots.stand_in_arm import StandInConfig
from worker.pilots.resources import Resources
from worker.pilots.runner import PilotConfig

LABELS = ["a", "b"]
# Resources without models: the stand-in arms answer without one.
RESOURCES = Resources(
    llm_path="/m",
    tokenizer=None,
    model=None,
    embedder=None,
    device="cpu",
    model_id="tiny",
    model_sha256="f" * 64,
    embedder_path="/e",
    model_parameters=135_000_000,
)


def make_data(n_test: int = 40) -> PilotData:
    test = [Example(input=f"q{i}", target=LABELS[i % 2]) for i in range(n_test)]
    train = [Example(input=f"t{i}", target=LABELS[i % 2]) for i in range(10)]
    return PilotData(PilotTask.classification, train, [], test, labels=LABELS)


def stand_in(
    name: str, order: int, share: float, *, fail_with: str | None = None, **needs: Any
) -> ArmSpec[StandInConfig]:
    """A registry entry for the stand-in arm module: all it takes to add an arm."""
    return ArmSpec(
        name=name,
        label=name.title(),
        order=order,
        evidence_for=name,
        config_type=StandInConfig,
        default_config=lambda settings, _: StandInConfig(
            name, share, settings.seed, fail_with, adapter_dir=settings.adapter_dir
        ),
        needs=Needs(model=ModelRole.prompting, **needs),
        implementation="tests.worker.pilots.stand_in_arm",
    )


# Four stand-in arms named like the real ones; the last fails as a real arm might.
REGISTRY = ArmRegistry(
    [
        stand_in("fewshot", 10, 0.4),
        stand_in("rag", 20, 0.9),
        stand_in("qlora", 30, 0.45),
        stand_in("qlora_rag", 40, 0.5, fail_with="out of memory", adapter_from="qlora"),
    ]
)


def config(**kwargs: Any) -> PilotConfig:
    return PilotConfig(registry=REGISTRY, **({"arms": list(REGISTRY.names)} | kwargs))


QUESTIONS = [
    "What is the capital of France?",
    "Name a yellow fruit.",
    "Explain in one sentence why the sky looks blue during the day, please.",
    "2+2=?",
]

BANKING77 = REPO / "examples" / "banking77-sample.csv"  # shipped: runs the same everywhere


def tokenizer_resources(llm_path: str, device: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llm_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Resources(
        llm_path=llm_path,
        tokenizer=tokenizer,
        model=None,
        embedder=None,
        device=device,
        model_id="SmolLM2-135M-Instruct",
        model_sha256=None,
    )
