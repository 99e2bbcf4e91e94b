"""The Celery app: SQLAlchemy transport on a SQLite file by default, Redis when scaled out."""

from __future__ import annotations

from celery import Celery
from kombu.transport import sqlalchemy as kombu_sqlalchemy

from app.settings import Settings, get_settings

# The polling interval must be set on the transport class: passing it through
# broker_transport_options crashes the SQLAlchemy transport.
kombu_sqlalchemy.Transport.polling_interval = 1.0


def configure(app: Celery, settings: Settings) -> None:
    """Point the app at the settings' broker (tests re-point it at their own files)."""
    if app.conf.broker_url not in (None, settings.resolved_broker_url):
        # Both cached pools hold connections to the old broker: the producer pool would keep
        # publishing there (to a queue no worker reads) even after the connection pool is reset.
        if app._pool is not None:
            app._pool.force_close_all()
            app._pool = None
        app.amqp._producer_pool = None
    app.conf.update(
        broker_url=settings.resolved_broker_url,
        task_always_eager=settings.celery_always_eager,
    )


def make_celery() -> Celery:
    app = Celery("pathpilot", include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,  # a task whose worker dies is not lost with it
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # one long pilot at a time per worker
        task_ignore_result=True,  # results live in our own SQL tables
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_default_queue="pilots",
    )
    configure(app, get_settings())
    return app


celery_app = make_celery()
