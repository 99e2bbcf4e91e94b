"""Assemble the report's view model from SQL. No FastAPI: the page, the PDF and the CLI share it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import __version__
from app.accounts.models import User
from app.assessments import service as assessments
from app.assessments.models import Assessment, DataSample
from app.db import utcnow
from app.domain.arms import ARMS
from app.domain.formatting import format_count, format_interval, format_quality
from app.domain.intake import DEFAULT_MIN_DIFFERENCE_POINTS, Intake
from app.domain.metric_catalogue import metric_label
from app.domain.more_data import MORE_DATA_TEXT
from app.domain.reconcile import RULE_TEXT, reconcile
from app.domain.records import PilotStatus
from app.domain.scoring.costs import DAYS_PER_MONTH, PriceTable
from app.domain.scoring.schemas import ScoreResult
from app.domain.verdict_inputs import PilotEvidence, rubric_pick
from app.domain.verdicts import Recommendation
from app.domain.what_if import parse_scenario
from app.errors import Conflict, Invalid, NotFound
from app.page_keys import page_key
from app.pilots import service as pilots
from app.pilots.models import Pilot
from app.reports.pilot_evidence import pilot_evidence
from app.reports.pilot_rows import PilotRows, load_pilot
from app.reports.pilot_view import PilotReport, pilot_report
from app.reports.rubric_view import RubricReport, rubric_report
from app.reports.what_if import WhatIfInputs, WhatIfView, pilot_measurements, what_if_view
from app.settings import get_settings

# More columns than this no longer fit a readable table (and bound the work per request).
MAX_COMPARED = 6


class ReportUnavailable(Conflict):
    """The assessment has no rubric result yet; the message says what to do."""


class PilotNotFound(NotFound):
    """The requested pilot does not exist or belongs to another assessment."""

    def __init__(self, pilot_id: str) -> None:
        super().__init__("No such pilot for this assessment")
        self.pilot_id = pilot_id


class BadComparison(Invalid):
    """A comparison needs two or more distinct pilots."""


@dataclass(frozen=True)
class PilotChoice:
    id: str
    label: str
    selected: bool


@dataclass(frozen=True)
class Report:
    assessment_id: str
    title: str
    owner_email: str
    generated_on: str
    version: str
    slug: str
    queries_per_month: str
    recommendation: Recommendation
    rule: str
    more_data_rule: str
    rubric: RubricReport
    pilot: PilotReport | None
    pilot_note: str | None  # why there is no pilot evidence, when there is none
    pilot_choices: tuple[PilotChoice, ...]  # finished pilots, for the selector and compare
    what_if: WhatIfView  # the what-if panel and the 12-month total cost


def build_report(
    session: Session,
    *,
    assessment: Assessment,
    owner: User,
    pilot_id: str | None = None,
    today: date | None = None,
    what_if: Mapping[str, str | None] | None = None,
    price_table: PriceTable | None = None,
) -> Report:
    """The report for `assessment`: the chosen pilot (default the latest finished one).

    `what_if` holds the reader's what-if values as typed (a query string); bad ones come back
    as errors in `Report.what_if`, never as an exception. Raises ReportUnavailable when the
    assessment is not scored, PilotNotFound for a pilot id that is not this assessment's.
    """
    result = _score_result(assessment)
    rubric = rubric_pick(result)
    queries_per_month = _queries_per_month(assessment)
    finished = [
        p
        for p in pilots.list_pilots(session, assessment=assessment)
        if p.status == PilotStatus.done
    ]
    pilot = _select_pilot(session, assessment, pilot_id, finished)
    rows = load_pilot(session, pilot=pilot) if pilot is not None else None
    evidence = (
        pilot_evidence(rows, target_size_b=_target_size_b(assessment)) if rows is not None else None
    )
    recommendation = reconcile(
        rubric, evidence, min_difference_points=_min_difference_points(assessment)
    )
    inputs = _what_if_inputs(session, assessment, pilot, rows, evidence, price_table)
    return Report(
        assessment_id=assessment.id,
        title=assessment.title,
        owner_email=owner.email,
        generated_on=(today or utcnow().date()).isoformat(),
        version=__version__,
        slug=slugify(assessment.title),
        queries_per_month=format_count(queries_per_month),
        recommendation=recommendation,
        rule=RULE_TEXT,
        more_data_rule=MORE_DATA_TEXT,
        rubric=rubric_report(result, queries_per_month=queries_per_month),
        pilot=(
            pilot_report(
                rows,
                recommendation,
                examples_available=_examples_available(assessment),
                min_difference_points=_min_difference_points(assessment),
            )
            if rows is not None
            else None
        ),
        pilot_note=_pilot_note(pilot),
        pilot_choices=tuple(
            PilotChoice(p.id, pilot_label(p), pilot is not None and p.id == pilot.id)
            for p in finished
        ),
        what_if=what_if_view(inputs, parse_scenario(what_if or {})),
    )


@dataclass(frozen=True)
class ReportIdentity:
    """Which report a request asks for, read without building it.

    `key` is a digest of every value the report's page shows (None: not kept, because its pilot
    is not done and its rows may still change); `pilot_id` the pilot shown (None: rubric only).
    """

    key: str | None
    pilot_id: str | None


def report_identity(
    session: Session,
    *,
    assessment: Assessment,
    owner: User,
    pilot_id: str | None = None,
    today: date,
    what_if: Mapping[str, str | None] | None = None,
    price_table: PriceTable | None = None,
    variant: str = "page",
) -> ReportIdentity:
    """The report `build_report` would build for these arguments, named by what it shows.

    Raises as `build_report` does: ReportUnavailable when the assessment is not scored,
    PilotNotFound for a pilot that is not this assessment's. The key covers the assessment
    (its `updated_at` moves on every change to its title, intake or score), the owner's
    address, the current sample (a fresh `stored_name` per upload), every finished pilot
    (the selector and the comparison list), the pilot shown (a done pilot's rows are final:
    only a new status or `finished_at` changes them), the date printed, the what-if values
    as typed, the price table and `variant` (the page, or the share link's read-only body);
    `app.web.page_key` adds the code and templates. Two reads of a few columns each.
    """
    if assessment.score_result is None:
        _score_result(assessment)  # raises ReportUnavailable with its message
    rows = session.execute(
        select(
            Pilot.id, Pilot.status, Pilot.created_at, Pilot.finished_at, Pilot.max_train, Pilot.arms
        )
        .where(Pilot.assessment_id == assessment.id)
        .order_by(Pilot.created_at.desc())
    ).all()
    done = [row for row in rows if row.status == PilotStatus.done]
    if pilot_id is None:
        # As `_select_pilot`: the latest done pilot, else the latest pilot when it failed.
        latest_failed = rows[0] if rows and rows[0].status == PilotStatus.failed else None
        chosen = done[0] if done else latest_failed
    else:
        chosen = next((row for row in rows if row.id == pilot_id), None)
        if chosen is None:
            raise PilotNotFound(pilot_id)
    if chosen is not None and chosen.status != PilotStatus.done:
        return ReportIdentity(key=None, pilot_id=chosen.id)
    sample = session.scalar(
        select(DataSample.stored_name).where(
            DataSample.assessment_id == assessment.id, DataSample.kind == "sample"
        )
    )
    key = page_key(
        "report",
        variant,
        assessment.id,
        str(assessment.updated_at),
        owner.email,
        sample,
        tuple(
            (row.id, str(row.created_at), str(row.finished_at), row.max_train, len(row.arms or []))
            for row in done
        ),
        chosen.id if chosen is not None else None,
        today.isoformat(),
        tuple(sorted((what_if or {}).items())),
        repr(price_table if price_table is not None else get_settings().price_table),
    )
    return ReportIdentity(key=key, pilot_id=chosen.id if chosen is not None else None)


def build_what_if(
    session: Session,
    *,
    assessment: Assessment,
    pilot_id: str | None = None,
    what_if: Mapping[str, str | None],
    price_table: PriceTable | None = None,
) -> WhatIfView:
    """The what-if panel alone (the page's live update): the same figures as `build_report`."""
    _score_result(assessment)
    finished = [
        p
        for p in pilots.list_pilots(session, assessment=assessment)
        if p.status == PilotStatus.done
    ]
    pilot = _select_pilot(session, assessment, pilot_id, finished)
    rows = load_pilot(session, pilot=pilot) if pilot is not None else None
    evidence = (
        pilot_evidence(rows, target_size_b=_target_size_b(assessment)) if rows is not None else None
    )
    inputs = _what_if_inputs(session, assessment, pilot, rows, evidence, price_table)
    return what_if_view(inputs, parse_scenario(what_if))


def _what_if_inputs(
    session: Session,
    assessment: Assessment,
    pilot: Pilot | None,
    rows: PilotRows | None,
    evidence: PilotEvidence | None,
    price_table: PriceTable | None,
) -> WhatIfInputs:
    return WhatIfInputs(
        assessment_id=assessment.id,
        pilot_id=pilot.id if pilot is not None else None,
        intake=_intake(assessment),
        summary=assessments.sample_summary(session, assessment=assessment),
        price_table=price_table if price_table is not None else get_settings().price_table,
        evidence=evidence,
        measurements=pilot_measurements(rows),
    )


def pilot_label(pilot: Pilot) -> str:
    """How a pilot is named in selectors and column heads."""
    return (
        f"{pilot.created_at.strftime('%Y-%m-%d %H:%M')} · {len(pilot.arms)} arms · "
        f"{pilot.max_train} training examples"
    )


def slugify(title: str) -> str:
    """An ASCII file-name stem from a title: 'Banking intents (v2)' → 'banking-intents-v2'."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return slug[:60].strip("-") or "report"


def _score_result(assessment: Assessment) -> ScoreResult:
    if assessment.score_result is None:
        raise ReportUnavailable("Finish the wizard and score this assessment to get a report.")
    return ScoreResult.model_validate(assessment.score_result)


def _intake(assessment: Assessment) -> Intake:
    try:
        return Intake.model_validate(assessment.intake or {})
    except ValidationError as exc:
        raise ReportUnavailable(
            "This assessment's answers no longer match the wizard; review and submit them again "
            "to get a report."
        ) from exc


def _min_difference_points(assessment: Assessment) -> float:
    """The intake's smallest quality gain that matters; the default for older intakes."""
    value = (assessment.intake or {}).get("min_difference_points")
    if isinstance(value, int | float) and 0 <= value <= 50:
        return float(value)
    return DEFAULT_MIN_DIFFERENCE_POINTS


def _examples_available(assessment: Assessment) -> int | None:
    """The labelled examples the team could train on, from the intake (None: not said)."""
    count = (assessment.intake or {}).get("examples_available")
    return int(count) if isinstance(count, int | float) and count >= 0 else None


def _target_size_b(assessment: Assessment) -> float | None:
    """The size of the model the team intends to deploy, from the intake (billions)."""
    size = (assessment.intake or {}).get("target_model_size_b")
    return float(size) if isinstance(size, int | float) and size > 0 else None


def _queries_per_month(assessment: Assessment) -> float:
    per_day = (assessment.intake or {}).get("queries_per_day", 0)
    return float(per_day) * DAYS_PER_MONTH


def _select_pilot(
    session: Session, assessment: Assessment, pilot_id: str | None, finished: list[Pilot]
) -> Pilot | None:
    if pilot_id is None:
        if finished:
            return finished[0]
        # No pilot finished, but the latest one failed: its headline must say that every arm
        # failed (and why), not that no pilot has finished.
        latest = pilots.list_pilots(session, assessment=assessment)[:1]
        return latest[0] if latest and latest[0].status == PilotStatus.failed else None
    pilot = session.get(Pilot, pilot_id)
    if pilot is None or pilot.assessment_id != assessment.id:
        raise PilotNotFound(pilot_id)
    return pilot


def _pilot_note(pilot: Pilot | None) -> str | None:
    if pilot is None:
        return (
            "No pilot has finished for this assessment yet. This recommendation rests on the "
            "rubric alone; a pilot on your own sample would add measured evidence."
        )
    if pilot.status == PilotStatus.failed:
        return (
            "This pilot failed, so it adds no measured evidence; the recommendation rests on "
            "the rubric alone, and the headline says what failed."
        )
    if pilot.status != PilotStatus.done:
        return (
            f"This pilot is {pilot.status}, so it adds no evidence yet; the recommendation "
            "rests on the rubric alone."
        )
    return None


# --- comparison of pilots -----------------------------------------------------------------


@dataclass(frozen=True)
class CompareColumn:
    id: str
    label: str
    status: str
    metric_label: str
    recommendation: Recommendation
    facts: tuple[tuple[str, str], ...]  # manifest facts that explain differences between runs


@dataclass(frozen=True)
class CompareCell:
    quality: str
    interval: str


@dataclass(frozen=True)
class CompareRow:
    label: str
    cells: tuple[CompareCell, ...]


@dataclass(frozen=True)
class Comparison:
    assessment_id: str
    title: str
    columns: tuple[CompareColumn, ...]
    rows: tuple[CompareRow, ...]
    notes: tuple[str, ...]


def build_comparison(
    session: Session, *, assessment: Assessment, pilot_ids: Sequence[str]
) -> Comparison:
    """Pilots of one assessment side by side: quality per arm and each pilot's recommendation."""
    ids = list(dict.fromkeys(pilot_ids))
    if len(ids) < 2:
        raise BadComparison("Choose two or more different pilots to compare.")
    if len(ids) > MAX_COMPARED:
        raise BadComparison(f"Compare at most {MAX_COMPARED} pilots at a time.")
    rubric = rubric_pick(_score_result(assessment))
    loaded: list[PilotRows] = []
    for pid in ids:
        pilot = session.get(Pilot, pid)
        if pilot is None or pilot.assessment_id != assessment.id:
            raise PilotNotFound(pid)
        loaded.append(load_pilot(session, pilot=pilot))
    arm_order = [a for a in ARMS.names if any(a in r.pilot.arms for r in loaded)]
    columns = tuple(
        CompareColumn(
            id=r.pilot.id,
            label=pilot_label(r.pilot),
            status=r.pilot.status,
            metric_label=r.metric_label,
            recommendation=reconcile(
                rubric,
                pilot_evidence(r, target_size_b=_target_size_b(assessment)),
                min_difference_points=_min_difference_points(assessment),
            ),
            facts=_facts(r),
        )
        for r in loaded
    )
    rows = tuple(
        CompareRow(
            label=ARMS.label(arm),
            cells=tuple(_cell(r, arm) for r in loaded),
        )
        for arm in arm_order
    )
    metrics = {r.metric for r in loaded if r.metric}
    notes = (
        (
            "These pilots were scored on different metrics ("
            + ", ".join(metric_label(m) for m in sorted(metrics))
            + "); compare within a column only.",
        )
        if len(metrics) > 1
        else ()
    )
    return Comparison(assessment.id, assessment.title, columns, rows, notes)


def _cell(rows: PilotRows, arm: str) -> CompareCell:
    metric = rows.metric
    value = rows.metrics.get(arm, {}).get(metric) if metric else None
    if value is None:
        return CompareCell("—", "")
    return CompareCell(format_quality(value.value), format_interval(value.ci_low, value.ci_high))


def _facts(rows: PilotRows) -> tuple[tuple[str, str], ...]:
    manifest = rows.manifest
    facts = [
        ("Base model", (manifest.base_model_id if manifest else None) or "—"),
        ("Training examples (cap)", format_count(rows.pilot.max_train)),
        ("Test examples", format_count(n) if (n := rows.n_test) else "—"),
        ("Seed", str(manifest.seed if manifest else rows.pilot.seed)),
    ]
    return tuple(facts)
