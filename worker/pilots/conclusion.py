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

from app.domain.comparison import as_difference, compare_paired
from app.domain.evidence import GapFacts, shortfalls
from app.domain.judging import JUDGED_TASKS, judge_primary_refusal
from app.domain.metric_catalogue import primary_metric
from app.domain.metrics import Statistic, quality_statistics
from app.domain.preparation import dataset_hash
from app.domain.records import (
    ArmHandover,
    ArmModel,
    ArmOutcome,
    ArmStatus,
    BootstrapSettings,
    Difference,
    JudgeResults,
    LearningCurve,
    Manifest,
    MetricValue,
    PilotData,
    PilotOutcome,
    Progress,
    SplitSizes,
    to_json_data,
)
from app.domain.samples.groups import group_index, group_summary
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

    def outcome(
        self,
        plan: PilotPlan,
        arms: list[ArmOutcome],
        *,
        data_warnings: Sequence[str] = (),
        learning_curve: LearningCurve | None = None,
    ) -> PilotOutcome:
        """The pilot's outcome: the one place it is assembled, for a pilot run in one process
        (`runner.run_pilot`) and for one concluded by the worker's task alike. The data's own
        warnings (duplicates, leakage, PII) come first, then the conclusion's."""
        return PilotOutcome(
            task=plan.data.task,
            primary_metric=self.primary_metric,
            arms=arms,
            differences=self.differences,
            warnings=[*data_warnings, *self.warnings],
            caps=plan.caps,
            manifest=self.manifest,
            judge=self.judge,
            learning_curve=learning_curve,
        )


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
            data.task,
            answers,
            targets,
            labels=data.labels,
            embedder=resources.embedder,
            alternatives=[example.alternatives for example in data.test],
        )
        if judge is not None:

            def progress(update: Progress, arm: str = arm.arm) -> None:
                if on_progress is not None:
                    on_progress(arm, update)

            added = judge.judge_arm(arm.arm, answers, progress)
            verdicts[arm.arm] = added
            statistics[arm.arm] = {**statistics[arm.arm], **added.statistics}

    finished = {arm.arm for arm in ordered if arm.status == ArmStatus.done}
    judge_results = judge.results() if judge is not None else None
    refusal = _judge_refusal(judge, judge_results, finished)
    judged = judge_results is not None and refusal is None
    primary = primary_metric(data.task, targets, judged=judged)
    if judge_results is not None:
        judge_results.primary = judged
        judge_results.not_primary_because = refusal
        if refusal is not None:
            warnings.append(
                f"The judge's pass rate does not decide: {refusal}, so the arms are compared "
                f"on {primary}."
            )
    scores = {
        arm: _item_scores(statistics[arm], verdicts.get(arm), primary, n_test)
        for arm in statistics
        if primary in statistics[arm]
    }
    differences = paired_differences(scores, plan.order, primary, group_index(data.test))
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
        judge=judge_results,
        verdicts=verdicts,
    )


# --------------------------------------------------------------------------- differences


def _judge_refusal(
    judge: PilotJudge | None, results: JudgeResults | None, finished: set[str]
) -> str | None:
    """Why the judge's pass rate may not be the primary metric; None when it may (or when
    there is no judge, and so nothing to refuse)."""
    if judge is None or results is None:
        return None
    if not finished:
        return "no arm finished"
    if ungraded := sorted(finished - judge.graded):
        first = f" ({judge.errors[0]})" if judge.errors else ""
        return f"it has no readable verdict for {', '.join(ungraded)}{first}"
    return judge_primary_refusal(results, finished)


def _item_scores(
    statistics: dict[str, Statistic], verdicts: ArmVerdicts | None, metric: str, n_test: int
) -> np.ndarray:
    """One arm's per-item scores on `metric` (NaN: no readable judge verdict for the item).

    Every primary metric is a mean over items, so evaluating its statistic on one item at a
    time gives the item's score; the judge's own arrays keep unreadable verdicts as NaN,
    which the statistic would fill in.
    """
    if verdicts is not None and metric in verdicts.item_scores:
        return np.asarray(verdicts.item_scores[metric], dtype=float)
    return np.asarray(statistics[metric](np.arange(n_test)[:, None]), dtype=float)


def paired_differences(
    scores: dict[str, np.ndarray], arms: Sequence[str], metric: str, groups: np.ndarray
) -> list[Difference]:
    """later arm - earlier arm on the primary metric, for every pair of finished arms, each on
    the items both were scored on, with its interval and sample (app.domain.comparison)."""
    finished = [arm for arm in arms if arm in scores]
    differences = []
    for position, earlier in enumerate(finished):
        for later in finished[position + 1 :]:
            compared = compare_paired(scores[later], scores[earlier], groups)
            differences.append(as_difference(metric, later, earlier, compared))
    return differences


def small_sample_warnings(
    metrics: dict[str, list[MetricValue]],
    differences: Sequence[Difference],
    metric: str,
    n_test: int,
) -> list[str]:
    """One warning per pair of finished arms whose difference is too thin to decide
    (app.domain.evidence), naming what is missing."""
    del metrics  # the per-arm intervals no longer decide anything here
    warnings = []
    for difference in differences:
        reasons = shortfalls(GapFacts.of(difference, n_test))
        if reasons:
            warnings.append(
                f"Thin evidence: {difference.arm_a} vs {difference.arm_b} on {metric} rests "
                f"on {'; '.join(reasons)}, so this comparison cannot decide the verdict."
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
        bootstrap=BootstrapSettings(
            resamples=config.n_resamples,
            differences="analytic: paired binary (Bonett-Price, exact McNemar) or clustered t",
            grouped=bool(len(data.test)) and group_summary(data.test).clustered,
        ),
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
