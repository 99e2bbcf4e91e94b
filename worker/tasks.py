"""Celery tasks. Thin: the work is in worker.jobs, the state in SQL."""

from __future__ import annotations

from worker.celery_app import celery_app


@celery_app.task(name="pathpilot.run_pilot", acks_late=True, reject_on_worker_lost=True)
def run_pilot_task(pilot_id: str) -> None:
    from worker.jobs import execute_pilot

    execute_pilot(pilot_id)


def enqueue_pilot(pilot_id: str) -> None:
    """Queue a pilot; call only after the transaction that created it has committed."""
    run_pilot_task.delay(pilot_id)
