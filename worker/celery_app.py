"""The worker's Celery app: the web's queue app (`app.queue`) plus the task functions.

SQLAlchemy transport on a SQLite file by default, Redis when scaled out (`BROKER_URL`).
"""

from __future__ import annotations

from app.queue import celery_app, configure

celery_app.conf.include = ["worker.tasks"]

__all__ = ["celery_app", "configure"]
