"""Arms that did not run are named in the report's headline; an all-failed pilot says so."""

from __future__ import annotations

import html as html_lib

from app.db import session_scope
from app.domain.records import ArmOutcome, ArmStatus, Manifest, PilotOutcome
from app.domain.samples.schemas import PilotTask
from app.pilots.service import start_pilot
from app.settings import get_settings
from tests.app.reports.factory import (
    DEFAULT_ARMS,
    DEFAULT_DIFFERENCES,
    MANIFEST,
    _outcome,
    pilot_data,
    record_as_worker,
)
from tests.factories.assessments import scored_assessment

OOM = "CUDA out of memory: the adapter needs 9.1 GB, 7.8 GB free"


def pilot_with(aid: str, outcomes: list[ArmOutcome], differences: list) -> str:  # type: ignore[type-arg]
    from app.assessments.models import Assessment

    with session_scope() as session:
        assessment = session.get(Assessment, aid)
        assert assessment is not None
        pilot_id = start_pilot(
            session,
            assessment=assessment,
            settings=get_settings(),
            max_train=60,
            arms=[o.arm for o in outcomes],
        ).id
    record_as_worker(
        pilot_id,
        pilot_data(),
        PilotOutcome(
            task=PilotTask.classification,
            primary_metric="accuracy",
            arms=outcomes,
            differences=differences,
            warnings=[],
            caps=[],
            manifest=Manifest.model_validate(MANIFEST),
        ),
    )
    return pilot_id


def test_a_failed_arm_is_named_in_the_headline(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    data = pilot_data()
    ran = [_outcome(spec, data) for spec in DEFAULT_ARMS if spec.arm in ("fewshot", "rag")]
    failed = ArmOutcome(arm="qlora", status=ArmStatus.failed, error=OOM)
    kept = [d for d in DEFAULT_DIFFERENCES if {d.arm_a, d.arm_b} <= {"fewshot", "rag"}]
    pilot_with(aid, [*ran, failed], kept)
    page = html_lib.unescape(client.get(f"/assessments/{aid}/report").text)
    assert 'id="failed-arms"' in page
    assert f"QLoRA fine-tune did not run: {OOM}" in page


def test_an_all_failed_pilot_says_so_instead_of_no_pilot_finished(client) -> None:
    client.signup()
    aid = scored_assessment(client)
    outcomes = [
        ArmOutcome(arm=arm, status=ArmStatus.failed, error=f"{arm}: the endpoint answered 503")
        for arm in ("fewshot", "rag")
    ]
    pilot_with(aid, outcomes, [])
    page = html_lib.unescape(client.get(f"/assessments/{aid}/report").text)
    assert "Every arm of the pilot failed" in page
    assert "fewshot: the endpoint answered 503" in page
    assert "No pilot has finished" not in page


def test_a_pilot_that_failed_after_its_arms_says_what_failed(client) -> None:
    from app.domain.records import PilotStatus
    from app.pilots.models import Pilot
    from tests.app.reports.factory import finished_pilot

    client.signup()
    aid = scored_assessment(client)
    pilot_id = finished_pilot(aid)
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        # As the sweep leaves a pilot whose conclusion failed on every attempt.
        pilot.status = PilotStatus.failed
        pilot.error = "the conclusion failed 3 times: the judge endpoint answered 503"
    page = html_lib.unescape(client.get(f"/assessments/{aid}/report?pilot={pilot_id}").text)
    assert "The pilot failed before it could compare its arms" in page
    assert "the judge endpoint answered 503" in page
    assert "No pilot has finished" not in page
    assert "Low confidence" in page or "Medium confidence" in page
