"""The session's exported QLoRA pilot (tests/app/exports/pilot_runs.py), for every module here."""

from tests.app.exports.pilot_runs import qlora_pilot

__all__ = ["qlora_pilot"]
