"""The one runtime builder (worker.runtime) for its two callers: the command line's flags and a
worker step's record of the pilot."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from app.domain.records import ArmModel
from app.integrations.openai_compatible.schemas import EndpointSpec
from app.pilots.step_inputs import ChosenModel, Role, StepInputs
from app.settings import Settings
from worker import runtime
from worker.pilots.endpoint_answers import MemoryCache
from worker.runtime import Endpoint, RuntimeInputs


def _settings(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(var_dir=tmp_path, secret_key="k" * 32, **changes)


def _endpoint(model: str, **facts: Any) -> Endpoint:
    spec = EndpointSpec(base_url="http://127.0.0.1:9/v1", model=model)
    return Endpoint(spec=spec, model=ArmModel(model_id=model, via="endpoint", **facts))


def _step(pilot_id: str = "p1", **changes: Any) -> StepInputs:
    fields: dict[str, Any] = {
        "pilot_id": pilot_id,
        "arms": ("fewshot", "qlora"),
        "seed": 7,
        "max_train": 40,
        "learning_curve": True,
        "started_at": None,
        "split": None,
    }
    return StepInputs(**(fields | changes))


def test_the_command_lines_inputs_make_its_config_and_endpoints(tmp_path: Path) -> None:
    settings = _settings(tmp_path, pilot_max_test=9, pilot_learning_curve=True)
    given = RuntimeInputs(
        arms=("fewshot", "rag"),
        seed=3,
        max_train=50,
        adapter_dir=tmp_path / "adapters",
        prompt=_endpoint("prompt-8b"),
        judge=_endpoint("judge-70b"),
        serving=_endpoint("base", adapter=True),
        serving_scope="cli-1234",
    )
    made: list[MemoryCache] = []

    def cache() -> MemoryCache:
        made.append(MemoryCache())
        return made[-1]

    config = runtime.pilot_config(settings, given, cache)
    assert (config.arms, config.seed, config.max_train) == (["fewshot", "rag"], 3, 50)
    assert (config.max_test, config.adapter_dir) == (9, tmp_path / "adapters")
    assert config.learning_curve is True  # no flag: the deployment's default
    assert config.judge is not None and config.judge.spec.model == "judge-70b"
    prompt = runtime.endpoint_runtime(given.prompt, cache)
    serving = runtime.serving_runtime(given, cache)
    assert prompt is not None and prompt.model.model_id == "prompt-8b"
    assert serving is not None and (serving.scope, serving.model.adapter) == ("cli-1234", True)
    # Each endpoint keeps its own answers, as each had its own cache before.
    assert [config.judge.cache, prompt.cache, serving.cache] == made and len(made) == 3
    assert len({id(c) for c in made}) == 3
    assert runtime.base_settings(settings, given) is settings  # LLM_MODEL as configured

    off = runtime.pilot_config(settings, dataclasses.replace(given, learning_curve=False), cache)
    assert off.learning_curve is False  # --no-learning-curve wins over the default
    bare = RuntimeInputs(arms=("fewshot",), seed=0, max_train=1, adapter_dir=tmp_path)
    assert runtime.pilot_config(settings, bare, MemoryCache).judge is None
    assert runtime.serving_runtime(bare, MemoryCache) is None


def test_a_worker_steps_record_makes_its_runtime_inputs(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    spec = EndpointSpec(base_url="http://127.0.0.1:9/v1", model="served", api_key="sk-x")
    judge = ChosenModel(name="judge", facts=ArmModel(model_id="judge", via="endpoint"), spec=spec)
    base = ChosenModel(
        name=str(tmp_path / "base"),
        facts=ArmModel(model_id="Our base", via="in-process", deployment=True),
        spec=None,
    )
    models = {Role.judge: judge, Role.base: base, Role.prompt: None, Role.serving: judge}
    given = runtime.from_step(settings, _step(models=MappingProxyType(models)))
    assert (given.arms, given.seed, given.max_train, given.learning_curve) == (
        ("fewshot", "qlora"),
        7,
        40,
        True,
    )
    assert given.adapter_dir == settings.adapters_dir / "p1"  # the pilot's own folder
    assert given.judge == Endpoint(spec=spec, model=judge.facts)
    assert given.prompt is None  # none chosen, no DEFAULT_ENDPOINT_URL: in process
    assert given.serving is not None and given.serving_scope == "p1"
    assert (given.base_model, given.declared_deployment) == (str(tmp_path / "base"), True)
    assert runtime.base_settings(settings, given).llm_model == str(tmp_path / "base")
    config = runtime.pilot_config(settings, given, MemoryCache)
    assert config.learning_curve is True and config.adapter_dir == settings.adapters_dir / "p1"


def test_the_deployments_endpoint_answers_a_step_that_read_the_prompting_model(
    tmp_path: Path,
) -> None:
    settings = _settings(
        tmp_path,
        default_endpoint_url="http://127.0.0.1:9/v1",
        default_endpoint_model="shared-70b",
        default_endpoint_size_b=70,
    )
    step = _step(models=MappingProxyType({Role.prompt: None}))
    prompt = runtime.from_step(settings, step).prompt
    assert prompt is not None
    assert (prompt.spec.model, prompt.model.parameters) == ("shared-70b", 70_000_000_000)
    # Preparing reads the judge alone: it asks no prompting endpoint, the shared one neither.
    only_judge = _step(models=MappingProxyType({Role.judge: None}))
    assert runtime.from_step(settings, only_judge).prompt is None


def test_an_endpoint_role_holding_a_local_model_is_refused(tmp_path: Path) -> None:
    local = ChosenModel(name=str(tmp_path), facts=ArmModel(model_id="m"), spec=None)
    with pytest.raises(AssertionError, match="only endpoints"):
        runtime.from_step(_settings(tmp_path), _step(models=MappingProxyType({Role.judge: local})))


def test_the_resources_carry_the_runs_endpoints_and_base_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resources: Any
) -> None:
    # The session's models, not a second copy: the settings they were asked for are kept.
    asked: list[Settings] = []

    def loaded(settings: Settings) -> Any:
        asked.append(settings)
        return resources

    monkeypatch.setattr("worker.pilots.resources.load_resources", loaded)
    settings = _settings(tmp_path)
    given = RuntimeInputs(
        arms=("fewshot",),
        seed=0,
        max_train=8,
        adapter_dir=tmp_path,
        prompt=_endpoint("prompt-8b"),
        serving=_endpoint("base"),
        serving_scope="p9",
        base_model=str(tmp_path / "base"),
        declared_deployment=True,
    )
    built = runtime.resources(settings, given, MemoryCache)
    assert [s.llm_model for s in asked] == [str(tmp_path / "base")]
    assert built.prompt_endpoint is not None and built.prompt_endpoint.spec.model == "prompt-8b"
    assert built.serving_endpoint is not None and built.serving_endpoint.scope == "p9"
    assert built.declared_deployment is True and built.model is resources.model
    assert resources.prompt_endpoint is None  # the shared resources are left as they were
