"""Export a finished pilot as a hand-off bundle: read SQL and disk, check, build.

No FastAPI: the page, the API, the share link and `pathpilot export` call `export_pilot`.
Callers check who may export (the owner, or a share link the owner opened to it) before
calling; an export that cannot be made raises `ExportNotPossible` (409) naming the cause.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy.orm import Session

from app.accounts.models import User
from app.assessments import service as assessments
from app.assessments.models import Assessment
from app.domain.arms import ARMS
from app.domain.metric_catalogue import primary_metric
from app.domain.preparation import dataset_hash, prepare_pilot_data
from app.domain.records import Manifest, PilotData, PilotStatus
from app.domain.samples.documents import parse_documents
from app.domain.samples.errors import SampleError
from app.domain.samples.formats import parse_sample
from app.domain.samples.schemas import PilotTask, SampleFormat
from app.domain.scoring.paths import HYBRID_FT_RAG, HYBRID_LABELS, PATH_LABELS
from app.errors import Conflict
from app.exports.bundle import ArmFacts, Bundle, BundleInputs, build_bundle
from app.pilots import execution
from app.pilots.models import Pilot
from app.reports import service as reports
from app.reports.pilot_rows import PilotRows, load_pilot
from app.settings import Settings

# The arm whose result is the evidence for each path, and whether the path needs its adapter.
PATH_ARMS: dict[str, tuple[str, bool]] = {
    "prompting": ("fewshot", False),
    "rag": ("rag", False),
    "fine_tuning": ("qlora", True),
    HYBRID_FT_RAG: ("qlora_rag", True),
}


# Every path an export can hand off, in the rubric's order, with its label.
EXPORT_PATHS: dict[str, str] = {**PATH_LABELS, **HYBRID_LABELS}


class ExportPath(StrEnum):
    """The `path` the page, the API and the command line accept (their 422 lists these)."""

    prompting = "prompting"
    rag = "rag"
    fine_tuning = "fine_tuning"
    fine_tuning_rag = HYBRID_FT_RAG


class ExportNotPossible(Conflict):
    """The pilot cannot be exported (yet): the message says why and what to do."""


@dataclass(frozen=True)
class Export:
    bundle: Bundle
    filename: str
    pilot_id: str


PdfRenderer = Callable[[reports.Report], bytes]


def export_pilot(
    session: Session,
    *,
    pilot: Pilot,
    settings: Settings,
    render_pdf: PdfRenderer | None = None,
    path: str | None = None,
) -> Export:
    """The bundle of a finished pilot (the caller has checked who may have it).

    `render_pdf` renders the report (`app.reports.pdf.render_pdf`, passed in by the routes and
    the command line: a service does not import the web's templates); None leaves it out.
    `path` hands off that path (one of `EXPORT_PATHS`) instead of the recommended one: a
    team may deploy the adapter the pilot trained even where the rubric prefers prompting.
    """
    if path is not None and path not in EXPORT_PATHS:
        raise ValueError(f"unknown path {path!r}: one of {', '.join(EXPORT_PATHS)}")
    if pilot.status != PilotStatus.done:
        raise ExportNotPossible(
            f"This pilot is {pilot.status}: only a finished pilot can be exported."
        )
    assessment = session.get(Assessment, pilot.assessment_id)
    owner = session.get(User, assessment.owner_id) if assessment is not None else None
    if assessment is None or owner is None:
        raise ExportNotPossible("This pilot's assessment no longer exists.")
    report = reports.build_report(session, assessment=assessment, owner=owner, pilot_id=pilot.id)
    recommendation = report.recommendation
    rows = load_pilot(session, pilot=pilot)
    arms = arm_facts(rows)
    adapter_dir, adapter_note = _adapter(settings, pilot, arms)
    option = path or recommendation.option
    recommended = option == recommendation.option
    label = recommendation.label if recommended else EXPORT_PATHS[option]
    _check_chosen_path(option, label, arms, adapter_dir, adapter_note, recommended=recommended)
    manifest = Manifest.read(pilot.manifest, seed=pilot.seed)
    data, check = reproduce_split(session, assessment, pilot, settings, manifest)
    pdf = render_pdf(report) if render_pdf is not None else None
    inputs = BundleInputs(
        pilot_id=pilot.id,
        title=assessment.title,
        option=option,
        option_label=label,
        recommended_option=recommendation.option,
        recommended_label=recommendation.label,
        data=data,
        data_check=check,
        seed=pilot.seed,
        # The bundle's client scores string metrics; a judge's pass rate needs the judge, so
        # it gets the metric the pilot compared on before a judge graded it.
        primary_metric=primary_metric(data.task, [example.target for example in data.test]),
        arms=arms,
        manifest=manifest.as_json() if manifest is not None else {"seed": pilot.seed},
        target_size_b=_target_size_b(assessment),
        adapter_dir=adapter_dir,
        adapter_note=adapter_note,
        report_pdf=pdf,
        server_dirs=_server_dirs(settings),
    )
    bundle = build_bundle(inputs)
    suffix = "" if recommended else f"-{option.replace('+', '-')}"
    filename = f"pathpilot-{report.slug}-{pilot.id[:8]}{suffix}-bundle.zip"
    return Export(bundle=bundle, filename=filename, pilot_id=pilot.id)


def arm_facts(rows: PilotRows) -> dict[str, ArmFacts]:
    facts = {}
    for arm in rows.arms:
        losses = rows.losses.get(arm.arm, [])
        first = next((p.train_loss for p in losses if p.train_loss is not None), None)
        facts[arm.arm] = ArmFacts(
            name=arm.arm,
            status=arm.status,
            error=arm.error,
            recipe=dict(arm.recipe or {}),
            metrics={
                name: (m.value, m.ci_low, m.ci_high)
                for name, m in rows.metrics.get(arm.arm, {}).items()
            },
            retrieval_recall_at_k=arm.retrieval_recall_at_k,
            first_train_loss=first,
        )
    return facts


def _adapter(
    settings: Settings, pilot: Pilot, arms: dict[str, ArmFacts]
) -> tuple[Path | None, str | None]:
    """The pilot's saved adapter (the QLoRA arms save it under ADAPTERS/<pilot id>)."""
    trained = [arms[name] for name in ("qlora", "qlora_rag") if name in arms]
    if not trained:
        return None, "the pilot ran no fine-tuning arm"
    if not any(arm.done for arm in trained):
        failed = trained[0]
        return None, f"the {failed.name} arm {failed.status}" + (
            f" ({failed.error})" if failed.error else ""
        )
    folder = settings.adapters_dir / pilot.id
    if not (folder / "adapter_config.json").is_file():
        return None, "the adapter's files are missing on the server (deleted after the pilot)"
    return folder, None


def exportable_paths(arms: dict[str, ArmFacts]) -> list[str]:
    """The paths whose own arm finished: what `export_pilot(path=...)` may hand off (a
    fine-tuning path still needs its adapter on disk)."""
    return [
        path
        for path, (arm_name, _) in PATH_ARMS.items()
        if arm_name in arms and arms[arm_name].done
    ]


def _check_chosen_path(
    option: str,
    label: str,
    arms: dict[str, ArmFacts],
    adapter_dir: Path | None,
    adapter_note: str | None,
    *,
    recommended: bool = True,
) -> None:
    """The chosen path's own arm (and its adapter, for fine-tuning) must exist."""
    arm_name, needs_adapter = PATH_ARMS.get(option, (None, False))
    if arm_name is None:
        return
    arm = arms.get(arm_name)
    arm_label = f"{ARMS.label(arm_name)} ({arm_name})"
    chosen = f"The recommended path is {label}" if recommended else f"You chose {label}"
    # Where the recommended path cannot be handed off, the paths that can are named, so the
    # owner can still take what the pilot did measure (an adapter, a RAG setup) to production.
    others = [p for p in exportable_paths(arms) if p != option]
    instead = (
        f" Export a path whose arm ran instead: {', '.join(others)} (path={others[0]})."
        if others
        else ""
    )
    if arm is None:
        raise ExportNotPossible(
            f"{chosen}, but this pilot did not run the {arm_label} arm: "
            f"there is nothing measured to hand off. Run a pilot with it.{instead}"
        )
    if not arm.done:
        reason = f": {arm.error}" if arm.error else ""
        raise ExportNotPossible(
            f"{chosen}, but the {arm_label} arm {arm.status}{reason}. "
            f"Re-run the pilot to export it.{instead}"
        )
    if needs_adapter and adapter_dir is None:
        raise ExportNotPossible(
            f"{chosen}, but the adapter of the {arm_label} arm is "
            f"missing: {adapter_note}. Re-run the pilot to export it.{instead}"
        )


def reproduce_split(
    session: Session,
    assessment: Assessment,
    pilot: Pilot,
    settings: Settings,
    manifest: Manifest | None,
) -> tuple[PilotData, str]:
    """The pilot's split and the sentence saying how it was checked against the manifest's
    `dataset_sha256`: the split the pilot stored and ran on when it is there (so a change to
    how splits are made, such as keeping passage groups whole, never locks an older pilot
    out of its export), else made again from the stored sample with its seed and caps."""
    recorded = manifest.dataset_sha256 if manifest is not None else None
    try:
        stored = execution.read_split(session, pilot_id=pilot.id)
    except (LookupError, execution.SplitChanged):
        stored = None
    if stored is not None and recorded is not None and dataset_hash(stored.data) == recorded:
        return stored.data, (
            "The split this pilot ran on, as its preparation stored it, verified: the SHA-256 "
            "of the split as canonical JSON (task, labels, train, validation, test and "
            f"documents, as the pilot hashes it) is {recorded}, equal to the manifest's "
            "dataset_sha256."
        )
    sample = assessments.current_sample(session, assessment=assessment)
    if sample is None:
        raise ExportNotPossible("The assessment's data sample is gone: the split cannot be made.")
    documents = assessments.documents(session, assessment=assessment)
    try:
        parsed = parse_sample(
            (settings.uploads_dir / sample.stored_name).read_bytes(),
            None,
            assessments.sample_limits(settings),
            fmt=SampleFormat(sample.format) if sample.format else None,
            task=PilotTask(sample.task) if sample.task else None,
        )
        corpus = parse_documents(
            [
                (d.original_name, (settings.uploads_dir / d.stored_name).read_bytes())
                for d in documents
            ],
            max_documents=settings.max_documents,
            max_bytes=settings.max_upload_bytes,
        )
        data, _ = prepare_pilot_data(
            parsed,
            corpus,
            seed=pilot.seed,
            max_train=pilot.max_train,
            max_test=settings.pilot_max_test,
        )
    except (OSError, SampleError) as error:
        raise ExportNotPossible(
            f"The assessment's data sample cannot be read again to make the split: {error}"
        ) from error
    caps = (
        f"seed {pilot.seed}, at most {pilot.max_train} training and "
        f"{settings.pilot_max_test} test examples"
    )
    if recorded is None:
        return data, (
            f"Made again from the assessment's data sample ({caps}). Not verified: this "
            "pilot's manifest records no dataset hash."
        )
    digest = dataset_hash(data)
    if digest != recorded:
        raise ExportNotPossible(
            "The assessment's data sample no longer gives this pilot's split (its SHA-256 "
            "differs from the manifest's dataset_sha256): the sample or the documents were "
            "replaced after the pilot ran, or the test cap changed. Run a new pilot to export."
        )
    return data, (
        f"Made again from the assessment's data sample ({caps}) and verified: the SHA-256 of "
        "the split as canonical JSON (task, labels, train, validation, test and documents, as "
        f"the pilot hashes it) is {digest}, equal to the manifest's dataset_sha256."
    )


def _server_dirs(settings: Settings) -> tuple[str, ...]:
    """The folders this server keeps models, adapters and uploads in, as written and resolved:
    the builder rewrites any of them a manifest or training summary still names."""
    folders = (settings.var_dir, settings.models_dir, settings.adapters_dir, settings.uploads_dir)
    return tuple(dict.fromkeys(str(p) for folder in folders for p in (folder, folder.resolve())))


def _target_size_b(assessment: Assessment) -> float | None:
    size = (assessment.intake or {}).get("target_model_size_b")
    return float(size) if isinstance(size, int | float) and size > 0 else None


def pilot_for_owner(session: Session, *, pilot_id: str, owner: User) -> Pilot | None:
    from app.pilots import service as pilots

    return pilots.get_pilot_for_owner(session, pilot_id=pilot_id, owner_id=owner.id)
