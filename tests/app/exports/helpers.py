"""A finished pilot that can be exported: the report tests' synthetic pilot, with the real
split's hash in its manifest and an adapter folder on disk, as the worker leaves them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.assessments.models import Assessment
from app.db import session_scope
from app.domain.preparation import dataset_hash
from app.exports import service
from app.pilots.models import Pilot
from app.settings import get_settings
from tests.app.reports.factory import finished_pilot


def exportable_pilot(assessment_id: str, *, adapter: bool = True, **pilot: Any) -> str:
    pilot_id = finished_pilot(assessment_id, **pilot)
    settings = get_settings()
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assessment = session.get(Assessment, assessment_id)
        assert pilot is not None and assessment is not None
        data, _ = service.reproduce_split(session, assessment, pilot, settings, None)
        pilot.manifest = {**pilot.manifest, "dataset_sha256": dataset_hash(data)}
    if adapter:
        write_adapter(settings.adapters_dir / pilot_id)
    return pilot_id


def write_adapter(folder: Path) -> None:
    """The files a saved PEFT adapter has (contents are not read by the export)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": "all-linear"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(b"stand-in weights")
    (folder / "pathpilot-training.json").write_text('{"loss_curve": []}\n')
