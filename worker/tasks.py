"""Celery tasks, registered under the names `app.queue` sends. Thin: the work is in
worker.jobs, the state in SQL."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready

from app.queue import (
    CONCLUDE_PILOT,
    LEGACY_PREPARE_PILOT,
    PREPARE_PILOT,
    RECOVER_STALLED,
    RUN_ARM,
)
from app.settings import get_settings
from worker.celery_app import celery_app
from worker.jobs import conclude_pilot, execute_arm, prepare_pilot
from worker.recovery import recover_stalled

log = logging.getLogger(__name__)


@celery_app.task(name=PREPARE_PILOT, acks_late=True, reject_on_worker_lost=True)
def prepare_pilot_task(pilot_id: str) -> None:
    prepare_pilot(pilot_id)


@celery_app.task(name=LEGACY_PREPARE_PILOT, acks_late=True, reject_on_worker_lost=True)
def legacy_prepare_pilot_task(pilot_id: str) -> None:
    """A preparation sent under the old task name before an upgrade (`app.queue`)."""
    prepare_pilot(pilot_id)


@celery_app.task(name=RUN_ARM, acks_late=True, reject_on_worker_lost=True)
def run_arm_task(pilot_id: str, arm: str) -> None:
    execute_arm(pilot_id, arm)


@celery_app.task(name=CONCLUDE_PILOT, acks_late=True, reject_on_worker_lost=True)
def conclude_pilot_task(pilot_id: str) -> None:
    conclude_pilot(pilot_id)


@celery_app.task(name=RECOVER_STALLED, acks_late=False)
def recover_stalled_task() -> None:
    """Celery beat's periodic sweep: a dead worker's pilot recovers without any restart."""
    recover_stalled(get_settings())


@worker_ready.connect
def _recover_on_start(**_: Any) -> None:
    """A worker that starts picks up pilots orphaned by one that died."""
    try:
        recover_stalled(get_settings())
    except Exception:  # recovery must never stop the worker from serving new pilots
        log.exception("stalled-pilot recovery failed")
