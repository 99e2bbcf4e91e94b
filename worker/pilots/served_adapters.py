"""Fine-tuned arms evaluated as production serves them: the adapter loaded into vLLM.

When the pilot's fine-tuning base is also served by an OpenAI-compatible vLLM endpoint (the
same weights, started with --enable-lora and runtime LoRA updating), a fine-tuned arm, after
its in-process evaluation, loads its adapter into that server under a name of its own, sends
the same chat messages through it (greedy, the same stop rule, every answer kept in the
pilot's answer cache) and unloads it again, also when something fails.

The served answers become the arm's predictions: the adapter was trained on the NF4 base but
the server applies it to the bf16 base, which shifts a few answers, and the served figure is
what production gets. The in-process answers stay on the result as its reference; the runner
stores their figure on the primary metric beside the served one (`in_process_metrics`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.domain.bootstrap import bootstrap_metric
from app.domain.formatting import format_interval, format_quality
from app.domain.metric_catalogue import in_process_metric, metric_label
from app.domain.metrics import Statistic, aligned_predictions, evaluate, quality_statistics
from app.domain.prompts import stops_at_newline
from app.domain.records import (
    ArmModel,
    ArmResult,
    MetricValue,
    PilotData,
    Progress,
    ProgressCallback,
)
from app.domain.samples.schemas import PilotTask
from app.integrations.openai_compatible.exceptions import EndpointError
from app.integrations.openai_compatible.lora import load_lora_adapter, unload_lora_adapter
from app.integrations.openai_compatible.schemas import EndpointSpec
from worker.pilots.endpoint_answers import (
    AnswerCache,
    EndpointRuntime,
    answer_with_endpoint,
    chat_requests,
    request_key,
)
from worker.pilots.prompt_rendering import Prompt

logger = logging.getLogger(__name__)

# The files vLLM reads from an adapter directory; the adapter's name and its kept answers
# follow their content.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


class AdapterNotServed(RuntimeError):
    """The serving endpoint did not take the adapter; the message names the cause."""


@dataclass(frozen=True)
class ServingRuntime:
    """The pilot's fine-tuning base served over HTTP with runtime LoRA loading."""

    spec: EndpointSpec  # the served base model
    model: ArmModel  # what the manifest records about it
    cache: AnswerCache  # the pilot's kept answers, shared with the prompting endpoint
    scope: str  # makes adapter names unique per pilot: the pilot's id

    def adapter_name(self, arm: str, digest: str) -> str:
        """Unique per pilot and arm, so pilots sharing one server never collide; the content
        digest makes kept answers belong to these weights only (a re-queued pilot may train
        a different adapter if its time cap cuts training elsewhere)."""
        return f"pathpilot-{self.scope}-{arm}-{digest[:12]}"

    def arm_model(self, base: ArmModel) -> ArmModel:
        """What the manifest records about a fine-tuned arm answered through this server,
        given the record of the in-process base with the adapter. The server holds those
        same weights (why the adapter can be served there), so the record still names them,
        and the proxy rule compares the arm with the in-process arms as before; `via` says
        the answers came over HTTP."""
        deployment = base.deployment or self.model.deployment
        return base.model_copy(
            update={"via": "endpoint", "adapter": True, "deployment": deployment}
        )


def adapter_digest(adapter_dir: Path) -> str:
    """sha256 over the adapter's config and weights, as vLLM reads them."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no LoRA adapter at {adapter_dir}")
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        path = adapter_dir / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def answer_as_served(
    serving: ServingRuntime,
    result: ArmResult,
    prompts: Sequence[Prompt],
    *,
    task: PilotTask,
    max_new_tokens: int,
    progress: ProgressCallback,
) -> ArmResult:
    """Answer `prompts` (one per test example, the messages the in-process evaluation
    rendered) with the arm's adapter loaded into the serving endpoint. The served answers
    replace `result.predictions`; the in-process ones move to `reference_predictions`."""
    if result.adapter_path is None:
        raise ValueError("no adapter to serve")
    # vLLM runs elsewhere: a relative path would be read from its working directory.
    adapter_dir = Path(result.adapter_path).resolve()
    name = serving.adapter_name(result.arm, adapter_digest(adapter_dir))
    adapter = EndpointRuntime(
        spec=replace(serving.spec, model=name), model=serving.model, cache=serving.cache
    )
    stop = stops_at_newline(task)
    requests = chat_requests(prompts, max_new_tokens=max_new_tokens, stop_at_newline=stop)
    # A re-queued pilot whose served answers are all kept needs neither the server nor a load.
    needed = any(serving.cache.get(request_key(adapter.spec, r)) is None for r in requests)
    notes: list[str] = []
    if needed:
        progress(Progress("loading adapter", 0, 1))
        _load(serving.spec, name, adapter_dir)
        progress(Progress("loading adapter", 1, 1))
    try:
        asked = answer_with_endpoint(
            adapter, prompts, max_new_tokens=max_new_tokens, stop_at_newline=stop, progress=progress
        )
    finally:
        if needed:
            notes += _unload(serving.spec, name)
    reference = result.predictions
    served = {p.index: p.prediction for p in asked.predictions}
    same = sum(served.get(p.index) == p.prediction for p in reference)
    result.reference_predictions = reference
    result.predictions = asked.predictions
    result.notes = [
        *result.notes,
        f"Served by vLLM at {serving.spec.shown_base_url}: the adapter was loaded at runtime "
        f"onto {serving.spec.model} as {name!r} and unloaded after; served and in-process "
        f"answers agree on {same} of {len(reference)} test items.",
        *asked.notes,
        *notes,
    ]
    return result


def _load(spec: EndpointSpec, name: str, adapter_dir: Path) -> None:
    try:
        try:
            load_lora_adapter(spec, name, adapter_dir)
        except EndpointError as error:
            # vLLM's words for a name it holds: an attempt of this pilot died before it could
            # unload these same weights (the name carries their digest), so load them afresh.
            if "already been loaded" not in str(error):
                raise
            unload_lora_adapter(spec, name)
            load_lora_adapter(spec, name, adapter_dir)
    except EndpointError as error:
        raise AdapterNotServed(
            f"the fine-tuned adapter could not be served by {spec.model} at "
            f"{spec.shown_base_url}, so the arm has no served figure: {error}"
        ) from error


def _unload(spec: EndpointSpec, name: str) -> list[str]:
    """Unload `name`; a failure is noted (and logged), never raised: it must not hide the
    answers, or the error that ended the answering."""
    try:
        unload_lora_adapter(spec, name)
    except EndpointError as error:
        logger.warning("adapter %s stays loaded at %s: %s", name, spec.shown_base_url, error)
        return [f"The adapter {name!r} could not be unloaded and may still be served: {error}"]
    return []


def in_process_metrics(
    result: ArmResult,
    data: PilotData,
    *,
    primary: str,
    served: Mapping[str, Statistic],
    indices: np.ndarray,
) -> list[MetricValue]:
    """The in-process figure on the primary metric, with its bootstrap interval, for an arm
    whose predictions were served (none otherwise); a note puts it beside the served one."""
    n_test = len(data.test)
    if result.reference_predictions is None or not n_test:
        return []
    stats = quality_statistics(
        data.task,
        aligned_predictions(result.reference_predictions, n_test),
        [example.target for example in data.test],
        labels=data.labels,
        alternatives=[example.alternatives for example in data.test],
    )
    if primary not in stats:
        return []
    interval = bootstrap_metric(stats[primary], n_test, indices=indices)
    shown = f"{format_quality(interval.value)} {format_interval(interval.low, interval.high)}"
    served_note = (
        f"; served {format_quality(evaluate(served[primary], n_test))}, the arm's figure"
        if primary in served
        else ""
    )
    result.notes = [*result.notes, f"In-process {metric_label(primary)} {shown}{served_note}."]
    return [MetricValue(in_process_metric(primary), interval.value, interval.low, interval.high)]
