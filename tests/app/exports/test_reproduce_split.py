"""The export's split: the one the pilot stored and ran on, verified against its manifest."""

from __future__ import annotations

from app.assessments import service as assessments
from app.assessments.models import Assessment
from app.db import session_scope
from app.domain.preparation import dataset_hash
from app.domain.records import Manifest
from app.exports import service
from app.pilots.models import Pilot
from app.settings import get_settings
from tests.app.reports.factory import finished_pilot, pilot_data
from tests.factories.assessments import scored_assessment


def test_the_stored_split_is_exported_even_when_the_sample_would_split_otherwise(
    client,
) -> None:
    client.signup()
    aid = scored_assessment(client)
    pilot_id = finished_pilot(aid)
    settings = get_settings()
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assessment = session.get(Assessment, aid)
        assert pilot is not None and assessment is not None
        # The manifest records the split the pilot ran on (the factory's stored one); the
        # sample file is gone, so making the split again is impossible.
        pilot.manifest = {**pilot.manifest, "dataset_sha256": dataset_hash(pilot_data())}
        sample = assessments.current_sample(session, assessment=assessment)
        assert sample is not None
        (settings.uploads_dir / sample.stored_name).unlink()
        manifest = Manifest.read(pilot.manifest, seed=pilot.seed)
        data, how = service.reproduce_split(session, assessment, pilot, settings, manifest)
    assert dataset_hash(data) == dataset_hash(pilot_data())
    assert "as its preparation stored it, verified" in how
