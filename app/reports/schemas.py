"""The report's verdict as data: what `GET /api/v1/assessments/{id}/report` returns.

Built from the same `Report` the page and the PDF render (`app.reports.service.build_report`),
so a script reads exactly what a person reads. `schema_version` changes when a field changes
meaning or goes away; new fields are added without a new version.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.reports.service import Report

SCHEMA_VERSION: Literal[1] = 1


class MoreDataOut(BaseModel):
    arm_a: str
    arm_b: str
    delta: float = Field(description="Quality difference arm_a - arm_b, a 0-1 fraction.")
    n_now: int | None = Field(description="Paired test items the comparison rests on now.")
    n_needed: int | None = Field(
        description="Test items that would resolve it with 80% power; None when none would."
    )
    text: str


class DifferenceOut(BaseModel):
    """One pair of arms on the primary metric, as the report's exploratory table shows it."""

    comparison: str
    difference: str
    interval: str
    sample: str
    p_holm: str
    clear: bool
    too_little_evidence: str


class TotalCostOut(BaseModel):
    option: str
    label: str
    one_off: str
    monthly: str
    per_1k: str
    total: str
    break_even: str
    source: str
    cheapest: bool


class VerdictOut(BaseModel):
    schema_version: Literal[1] = SCHEMA_VERSION
    assessment_id: str
    pilot_id: str | None = Field(description="The pilot whose evidence was read, if any.")
    path: str = Field(
        description="prompting, rag, fine_tuning, or a combination such as fine_tuning+rag."
    )
    label: str = Field(
        description="What the report's headline names, e.g. 'Prompting with retrieved examples'."
    )
    confidence: Literal["high", "medium", "low"]
    decided_by: Literal["pilot", "rubric"]
    decided_on: list[str] = Field(
        description="Cost, latency, simplicity: what broke a tie on quality, in order."
    )
    why: str
    rubric_path: str
    pilot_leader: str | None
    proxy_note: str | None
    failures: list[str] = Field(description="Arms that did not run, each with its reason.")
    inconclusive: bool = Field(description="The pilot's evidence was too thin to read.")
    unresolved: list[str]
    more_data: list[MoreDataOut]
    rule: str
    pilot_note: str | None
    differences: list[DifferenceOut]
    learning_curve: str | None = Field(description="The learning curve's sentence, if run.")
    total_cost_summary: str | None
    total_cost: list[TotalCostOut]
    flips: list[str] = Field(description="Where the recommendation changes with the volume.")
    cost_flips: list[str]


def verdict_out(report: Report) -> VerdictOut:
    rec = report.recommendation
    pilot = report.pilot
    total = report.what_if.total
    return VerdictOut(
        assessment_id=report.assessment_id,
        pilot_id=pilot.id if pilot is not None else None,
        path=rec.option,
        label=rec.label,
        confidence=rec.confidence,
        decided_by=rec.decided_by,
        decided_on=list(rec.decided_on),
        why=rec.why,
        rubric_path=rec.rubric_option,
        pilot_leader=rec.pilot_leader,
        proxy_note=rec.proxy_note,
        failures=list(rec.failures),
        inconclusive=rec.inconclusive,
        unresolved=list(rec.unresolved),
        more_data=[
            MoreDataOut(
                arm_a=m.arm_a,
                arm_b=m.arm_b,
                delta=m.delta,
                n_now=m.n_now,
                n_needed=m.n_needed,
                text=m.text,
            )
            for m in rec.more_data
        ],
        rule=report.rule,
        pilot_note=report.pilot_note,
        differences=[
            DifferenceOut(
                comparison=f"{d.label_a} - {d.label_b}",
                difference=d.delta,
                interval=d.interval,
                sample=d.sample,
                p_holm=d.p_adjusted,
                clear=d.significant,
                too_little_evidence=d.thin,
            )
            for d in (pilot.differences if pilot is not None else ())
        ],
        learning_curve=(
            pilot.learning_curve.sentence
            if pilot is not None and pilot.learning_curve is not None
            else None
        ),
        total_cost_summary=total.summary if total is not None else None,
        total_cost=[
            TotalCostOut(
                option=r.option,
                label=r.label,
                one_off=r.one_off,
                monthly=r.monthly,
                per_1k=r.per_1k,
                total=r.total,
                break_even=r.break_even,
                source=r.source,
                cheapest=r.cheapest,
            )
            for r in (total.rows if total is not None else ())
        ],
        flips=list(report.what_if.flips),
        cost_flips=list(report.what_if.cost_flips),
    )
