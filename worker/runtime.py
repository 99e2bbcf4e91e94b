"""One builder of a pilot's runtime for both ways a pilot runs: the worker's steps (from the
record `app.pilots.step_inputs` reads) and `pathpilot pilot` (from files and flags). Each
caller says what was chosen in a `RuntimeInputs`; this module turns it into the PilotConfig,
the endpoint runtimes and the loaded resources, so the two never drift apart.

The models themselves load only in `resources` (torch and transformers are imported there),
so a command that fails on its flags never pays for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.domain.records import ArmModel
from app.integrations.openai_compatible.schemas import EndpointSpec
from app.settings import Settings
from worker.pilots.endpoint_answers import AnswerCache, EndpointRuntime
from worker.pilots.plan import PilotConfig, config_from_settings
from worker.pilots.served_adapters import ServingRuntime

if TYPE_CHECKING:  # the worker's record; the command line never reads SQL
    from app.pilots.step_inputs import ChosenModel, StepInputs
    from worker.pilots.resources import Resources

# Answers asked of endpoints are kept per pilot: in SQL for the worker, in memory for the
# command line. Each runtime gets the cache this makes.
CacheFactory = Callable[[], AnswerCache]


@dataclass(frozen=True)
class Endpoint:
    """One endpoint a pilot asks, and what the manifest records about its model."""

    spec: EndpointSpec
    model: ArmModel


@dataclass(frozen=True)
class RuntimeInputs:
    """What a pilot run was given, however it was given."""

    arms: tuple[str, ...]
    seed: int
    max_train: int
    adapter_dir: Path
    learning_curve: bool | None = None  # None: the deployment's PILOT_LEARNING_CURVE
    prompt: Endpoint | None = None  # None: the prompting arms run in process
    judge: Endpoint | None = None
    serving: Endpoint | None = None
    serving_scope: str = ""  # makes served adapter names unique per pilot (or run)
    base_model: str | None = None  # a local model directory instead of LLM_MODEL
    declared_deployment: bool = False  # the base is the model the user will deploy


def pilot_config(settings: Settings, inputs: RuntimeInputs, cache: CacheFactory) -> PilotConfig:
    """The pilot's config: the deployment's caps and prices, the run's arms, seed and judge."""
    config = config_from_settings(
        settings,
        arms=list(inputs.arms),
        seed=inputs.seed,
        max_train=inputs.max_train,
        adapter_dir=inputs.adapter_dir,
    )
    config.judge = endpoint_runtime(inputs.judge, cache)
    if inputs.learning_curve is not None:
        config.learning_curve = inputs.learning_curve
    return config


def endpoint_runtime(endpoint: Endpoint | None, cache: CacheFactory) -> EndpointRuntime | None:
    if endpoint is None:
        return None
    return EndpointRuntime(spec=endpoint.spec, model=endpoint.model, cache=cache())


def serving_runtime(inputs: RuntimeInputs, cache: CacheFactory) -> ServingRuntime | None:
    if inputs.serving is None:
        return None
    return ServingRuntime(
        spec=inputs.serving.spec,
        model=inputs.serving.model,
        cache=cache(),
        scope=inputs.serving_scope,
    )


def base_settings(settings: Settings, inputs: RuntimeInputs) -> Settings:
    """Settings whose LLM_MODEL is the run's base model, when it names one."""
    if inputs.base_model is None:
        return settings
    return settings.model_copy(update={"llm_model": inputs.base_model})


def resources(settings: Settings, inputs: RuntimeInputs, cache: CacheFactory) -> Resources:
    """The loaded base model and embedder (shared by the process), with the run's endpoints."""
    from worker.pilots.resources import load_resources

    return dataclasses.replace(
        load_resources(base_settings(settings, inputs)),
        prompt_endpoint=endpoint_runtime(inputs.prompt, cache),
        serving_endpoint=serving_runtime(inputs, cache),
        declared_deployment=inputs.declared_deployment,
    )


# --------------------------------------------------------------------------- the worker's


def default_endpoint(settings: Settings) -> Endpoint | None:
    """The deployment's shared endpoint (DEFAULT_ENDPOINT_URL), when one is configured."""
    from app.endpoints.service import default_endpoint_spec

    spec = default_endpoint_spec(settings)  # under the deployment's egress policy
    if spec is None:
        return None
    size = settings.default_endpoint_size_b
    return Endpoint(
        spec=spec,
        model=ArmModel(
            model_id=settings.default_endpoint_model,
            parameters=round(size * 1e9) if size else None,
            via="endpoint",
            deployment=settings.default_endpoint_is_deployment,
        ),
    )


def from_step(settings: Settings, inputs: StepInputs) -> RuntimeInputs:
    """A worker step's runtime inputs from what it read of the pilot: the prompting arms ask
    the user's chosen model, else the deployment's shared endpoint when one is configured,
    else run in process; adapters go under the pilot's own folder. Only the models the step
    read are set (preparing reads the judge alone)."""
    from app.pilots.step_inputs import Role

    base = inputs.model(Role.base)
    prompt = _endpoint(inputs.model(Role.prompt))
    if prompt is None and Role.prompt in inputs.models:  # a step that runs prompting arms
        prompt = default_endpoint(settings)
    return RuntimeInputs(
        arms=inputs.arms,
        seed=inputs.seed,
        max_train=inputs.max_train,
        adapter_dir=settings.adapters_dir / inputs.pilot_id,
        learning_curve=inputs.learning_curve,
        prompt=prompt,
        judge=_endpoint(inputs.model(Role.judge)),
        serving=_endpoint(inputs.model(Role.serving)),
        serving_scope=inputs.pilot_id,
        base_model=base.name if base is not None else None,
        declared_deployment=base.facts.deployment if base is not None else False,
    )


def _endpoint(chosen: ChosenModel | None) -> Endpoint | None:
    if chosen is None:
        return None
    assert chosen.spec is not None, "the pilot service accepts only endpoints here"
    return Endpoint(spec=chosen.spec, model=chosen.facts)
