"""The verdict's evidence from a pilot's rows, and the names of the metrics the report reads.

`pilot_evidence` turns the SQL rows (`app.reports.pilot_rows`) into the rule's input
(`app.domain.verdict_inputs.PilotEvidence`); the report's tables (`app.reports.pilot_view`,
`app.reports.arm_table`) and the what-if panel read the same metric names from here.
"""

from __future__ import annotations

from typing import Final

from app.domain.arms import MAJORITY
from app.domain.records import ArmStatus, PilotStatus
from app.domain.verdict_inputs import ArmEvidence, ArmGap, FailedArm, PilotEvidence
from app.reports.pilot_rows import PilotRows

# The worker's operational metric names (app.domain.metric_catalogue).
PROMPT_TOKENS: Final = "prompt_tokens_per_query"
OUTPUT_TOKENS: Final = "output_tokens_per_query"
COST_PER_1K: Final = "cost_per_1k_usd"
LATENCY_P50: Final = "latency_p50_ms"
# The arm that measures the majority-label floor: no path, but a bar to clear.
FLOOR_ARM: Final = MAJORITY.name


def pilot_evidence(rows: PilotRows, *, target_size_b: float | None = None) -> PilotEvidence | None:
    """The primary metric per finished arm, which model produced it, the stored paired
    differences with their samples, the majority floor and the arms that failed;
    `target_size_b` is the intake's deployment model size.

    A pilot whose every arm failed is evidence too: of nothing measured, which the headline
    must say rather than "no pilot has finished"."""
    metric = rows.metric
    pilot_failed = rows.pilot.status == PilotStatus.failed
    failed = tuple(
        FailedArm(arm.arm, rows.arm_label(arm.arm), arm.error or rows.pilot.error or "unknown")
        for arm in rows.arms
        # A pilot that failed as a whole (its preparation, say) failed every arm it had not run.
        if arm.status == ArmStatus.failed or (pilot_failed and arm.status != ArmStatus.done)
    )
    finished = rows.pilot.status == PilotStatus.done and metric
    if pilot_failed:
        # A failed pilot compared nothing (its conclusion may be what failed), so none of its
        # arms' figures are evidence: the headline says what failed instead.
        return PilotEvidence(
            metric_label=rows.metric_label,
            arms=(),
            n_test=rows.n_test,
            target_size_b=target_size_b,
            failed=failed,
            # With no arm finished, every arm failed, and the headline lists them; else the
            # pilot failed on its own account after some arms had finished.
            pilot_error=(rows.pilot.error or "no reason was recorded") if rows.done_arms else None,
        )
    if not finished:
        return None
    # Only arms that are evidence for a path compete; the floor is checked against the winner.
    competing = {a.arm for a in rows.done_arms if rows.evidence_for(a.arm) is not None}
    models = rows.arm_models()
    arms, floor = [], None
    for arm in rows.done_arms:
        measured = rows.metrics.get(arm.arm, {})
        value = measured.get(metric or "")
        if value is None:
            continue
        cost, latency = measured.get(COST_PER_1K), measured.get(LATENCY_P50)
        evidence = ArmEvidence(
            arm.arm,
            rows.arm_label(arm.arm),
            value.value,
            value.ci_low,
            value.ci_high,
            model=models.get(arm.arm),
            cost_per_1k_usd=cost.value if cost is not None else None,
            latency_p50_ms=latency.value if latency is not None else None,
            documents=rows.documents,
        )
        if arm.arm in competing:
            arms.append(evidence)
        elif arm.arm == FLOOR_ARM:
            floor = evidence
    measured_arms = competing | ({floor.arm} if floor is not None else set())
    gaps = tuple(
        ArmGap.stored(d)
        for d in rows.differences
        if d.metric == metric and {d.arm_a, d.arm_b} <= measured_arms
    )
    return PilotEvidence(
        metric_label=rows.metric_label,
        arms=tuple(arms),
        differences=gaps,
        n_test=rows.n_test,
        target_size_b=target_size_b,
        floor=floor,
        failed=failed,
    )
