"""A pilot's conclusion, once every arm has finished: the judge, the paired differences on the
primary metric, the small-sample warnings and the reproducibility manifest.

It reads each arm through `FinishedArm` (its status, figures and `ArmHandover`), so the same
code concludes a pilot whose arms ran in this process one after another (`run_pilot`) and one
whose arms ran as separate tasks on several workers (the worker's finaliser reads them back
from SQL). Statistics are rebuilt here from each arm's answers: a `Statistic` is a function,
and functions do not cross process lines.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata

import numpy as np

from app.domain.bootstrap import bootstrap_difference
from app.domain.judging import JUDGED_TASKS
from app.domain.metric_catalogue import primary_metric
from app.domain.metrics import Statistic, quality_statistics
from app.domain.preparation import dataset_hash
from app.domain.records import (
    ArmHandover,
    ArmModel,
    ArmStatus,
    BootstrapSettings,
    Difference,
    JudgeResults,
    Manifest,
    MetricValue,
    PilotData,
    Progress,
    SplitSizes,
    to_json_data,
)
from worker.pilots.judge import ArmVerdicts, PilotJudge
from worker.pilots.plan import PilotPlan
from worker.pilots.resources import Resources

LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "sentence-transformers",
    "faiss-cpu",
    "numpy",
    "gguf",
)


@dataclass
class FinishedArm:
    """One arm as the conclusion reads it, wherever it ran."""

    arm: str
    status: ArmStatus
    metrics: list[MetricValue] = field(default_factory=list)
    handover: ArmHandover = field(default_factory=ArmHandover)


@dataclass
class Conclusion:
    primary_metric: str
    differences: list[Difference]
    warnings: list[str]
    manifest: Manifest
    judge: JudgeResults | None
    # What the judge added to each arm it graded (metrics and notes), to store with the arm.
    verdicts: dict[str, ArmVerdicts] = field(default_factory=dict)


ConclusionProgress = Callable[[str, Progress], None]


def conclude(
    plan: PilotPlan,
    arms: Sequence[FinishedArm],
    resources: Resources,
    *,
    started_at: datetime,
    on_progress: ConclusionProgress | None = None,
) -> Conclusion:
    """Judge the finished arms (in the pilot's arm order), compare every pair on the primary
    metric, and write the manifest."""
    data = plan.data
    n_test = len(data.test)
    targets = [example.target for example in data.test]
    by_arm = {arm.arm: arm for arm in arms}
    ordered = [by_arm[name] for name in plan.order if name in by_arm]
    judge, warnings = _judge_for(plan)
    statistics: dict[str, dict[str, Statistic]] = {}
    verdicts: dict[str, ArmVerdicts] = {}
    for arm in ordered:
        answers = arm.handover.answers
        if arm.status != ArmStatus.done or answers is None or len(answers) != n_test:
            continue
        statistics[arm.arm] = quality_statistics(
            data.task, answers, targets, labels=data.labels, embedder=resources.embedder
        )
        if judge is not None:

            def progress(update: Progress, arm: str = arm.arm) -> None:
                if on_progress is not None:
                    on_progress(arm, update)

            added = judge.judge_arm(arm.arm, answers, progress)
            verdicts[arm.arm] = added
            statistics[arm.arm] = {**statistics[arm.arm], **added.statistics}

    finished = {arm.arm for arm in ordered if arm.status == ArmStatus.done}
    judged = judge is not None and bool(finished) and finished <= judge.graded
    primary = primary_metric(data.task, targets, judged=judged)
    if judge is not None and (ungraded := sorted(finished - judge.graded)):
        first = f" ({judge.errors[0]})" if judge.errors else ""
        warnings.append(
            f"The judge has no readable verdict for {', '.join(ungraded)}{first}, so the arms "
            f"are compared on {primary}, not on the judge's pass rate."
        )
    differences = _differences(statistics, plan.order, primary, n_test, plan.indices)
    metrics = {
        arm.arm: [*arm.metrics, *(verdicts[arm.arm].metrics if arm.arm in verdicts else [])]
        for arm in ordered
        if arm.status == ArmStatus.done
    }
    warnings.extend(small_sample_warnings(metrics, differences, primary, n_test))
    manifest = _manifest(plan, ordered, resources, started_at=started_at)
    if judge is not None:
        manifest.judge_model = judge.runtime.model
    return Conclusion(
        primary_metric=primary,
        differences=differences,
        warnings=warnings,
        manifest=manifest,
        judge=judge.results() if judge is not None else None,
        verdicts=verdicts,
    )


# --------------------------------------------------------------------------- differences


def _differences(
    statistics: dict[str, dict[str, Statistic]],
    arms: Sequence[str],
    metric: str,
    n_test: int,
    indices: np.ndarray,
) -> list[Difference]:
    """later arm - earlier arm on the primary metric, for every pair of finished arms."""
    finished = [arm for arm in arms if arm in statistics and metric in statistics[arm]]
    differences = []
    for position, earlier in enumerate(finished):
        for later in finished[position + 1 :]:
            interval = bootstrap_difference(
                statistics[later][metric], statistics[earlier][metric], n_test, indices=indices
            )
            differences.append(
                Difference(
                    metric=metric,
                    arm_a=later,
                    arm_b=earlier,
                    delta=interval.value,
                    ci_low=interval.low,
                    ci_high=interval.high,
                )
            )
    return differences


def _overlap(a: MetricValue, b: MetricValue) -> bool:
    if None in (a.ci_low, a.ci_high, b.ci_low, b.ci_high):
        return False
    return bool(a.ci_low <= b.ci_high and b.ci_low <= a.ci_high)  # type: ignore[operator]


def small_sample_warnings(
    metrics: dict[str, list[MetricValue]],
    differences: Sequence[Difference],
    metric: str,
    n_test: int,
) -> list[str]:
    """One warning per pair of finished arms whose intervals on the primary metric overlap."""
    by_arm = {
        arm: next((m for m in values if m.name == metric), None) for arm, values in metrics.items()
    }
    warnings = []
    for difference in differences:
        a, b = by_arm.get(difference.arm_a), by_arm.get(difference.arm_b)
        if a is None or b is None or not _overlap(a, b):
            continue
        if difference.significant:
            detail = "the paired difference still excludes zero, but treat it as tentative"
        else:
            detail = "the pilot cannot tell them apart; a larger test split would"
        warnings.append(
            f"Small sample: {difference.arm_a} and {difference.arm_b} have overlapping 95% "
            f"intervals on {metric} with {n_test} test items; {detail}."
        )
    return warnings


# --------------------------------------------------------------------------- the judge


def _judge_for(plan: PilotPlan) -> tuple[PilotJudge | None, list[str]]:
    """The pilot's judge, when it has one and the task is open-ended; else why not."""
    runtime, data = plan.config.judge, plan.data
    if runtime is None:
        return None, []
    if data.task not in JUDGED_TASKS or not data.test:
        return None, [
            f"The judge ({runtime.model.model_id}) grades open-ended answers "
            f"(generation, qa) and was not used on this {data.task} sample."
        ]
    return PilotJudge(runtime, data, plan.indices), []


# --------------------------------------------------------------------------- manifest


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_description(device: str) -> str:
    """Where an arm ran, in words; taken on the worker that ran it (a finaliser on a CPU
    worker cannot name another machine's GPU)."""
    if device.startswith("cuda"):
        import torch

        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.machine()}, {platform.processor() or 'unknown'})"


def _devices(arms: Sequence[FinishedArm], resources: Resources) -> str:
    described = [arm.handover.device for arm in arms if arm.handover.device]
    if not described:
        return device_description(resources.device)
    return "; ".join(dict.fromkeys(described))  # distinct, in arm order


def _manifest(
    plan: PilotPlan, arms: Sequence[FinishedArm], resources: Resources, *, started_at: datetime
) -> Manifest:
    data: PilotData = plan.data
    config = plan.config
    arm_models: dict[str, ArmModel] = {
        arm.arm: arm.handover.model for arm in arms if arm.handover.model is not None
    }
    return Manifest(
        seed=config.seed,
        base_model_id=resources.model_id,
        base_model_sha256=resources.model_sha256,
        base_model_path=resources.llm_path,
        base_model_parameters=resources.model_parameters,
        arm_models=arm_models,
        embedder=resources.embedder_path,
        dataset_sha256=dataset_hash(data),
        task=str(data.task),
        split_sizes=SplitSizes(
            train=len(data.train),
            validation=len(data.validation),
            test=len(data.test),
            documents=len(data.documents),
            labels=len(data.labels),
        ),
        arms=list(plan.order),
        hyperparameters=to_json_data(
            {arm.arm: arm.handover.recipe for arm in arms if arm.status == ArmStatus.done}
        ),
        bootstrap=BootstrapSettings(resamples=config.n_resamples),
        price=to_json_data(dataclasses.asdict(config.price)) if config.price else None,
        fine_tuned_price=(
            to_json_data(dataclasses.asdict(config.fine_tuned_price))
            if config.fine_tuned_price
            else None
        ),
        libraries=library_versions(),
        device=_devices(arms, resources),
        started_at=started_at.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
    )
