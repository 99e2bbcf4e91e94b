"""Background work, enqueued by task name after the transaction that made it visible commits.

The web app never imports the worker (which pulls in torch and the training code): it sends a
task *name* and arguments through the Celery app defined here, and the worker process registers
the functions behind those names (`worker.tasks`). Enqueueing is tied to the unit of work: a job
added with `enqueue_after_commit` is sent only once the session commits, and dropped if it rolls
back, so a worker never looks for a row that is not there yet (polar's after-commit job list).

The job is also written to the `outbox_job` table in that same transaction and deleted once the
broker has taken it (a transactional outbox). A broker that is down at that moment (Redis
restarting) or a process that dies between the commit and the send would otherwise lose the
job while SQL says its step is queued, and nothing would ever run it: the sweep
(`worker.recovery`) sends whatever stayed in the outbox (`send_unsent`).

A message the broker took can still be lost on its way to a worker. Kombu's Redis transport
takes a message in two commands: BRPOP removes it from the queue, then a second command files
it under `unacked` (where Redis gives it back after its visibility timeout, an hour). When
Redis stops between the two, or before its answer reaches the worker, the message is gone, or
out of reach for that hour; the SQLAlchemy transport never gives back a message whose worker
died before running it. SQL still says the step is queued, so the sweep counts each queue's
messages (`messages_waiting`) and sends again the steps whose message is no longer there.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from celery import Celery
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import JSON, DateTime, ForeignKey, String, delete, event, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.db import Base, changed_rows, session_scope, utcnow
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

# A pilot runs as tasks: its preparation, one task per arm, and the conclusion once every arm
# has finished (`app.pilots.execution`).
PREPARE_PILOT: Final = "pathpilot.prepare_pilot"
# The preparation's name from when one task ran the whole pilot. Messages sent before the
# rename may still wait in a broker (or the outbox) across an upgrade, so workers take this
# name too and run the preparation; nothing sends it any more.
LEGACY_PREPARE_PILOT: Final = "pathpilot.run_pilot"
RUN_ARM: Final = "pathpilot.run_arm"
CONCLUDE_PILOT: Final = "pathpilot.conclude_pilot"
RECOVER_STALLED: Final = "pathpilot.recover_stalled"
# Routing: arms that train go to `gpu`, everything else (preparation, in-process and
# endpoint-bound prompting arms, the conclusion, sweeps) to `cpu`. A worker's queues are a setting
# (WORKER_QUEUES); the embedded default worker takes both.
CPU_QUEUE: Final = "cpu"
GPU_QUEUE: Final = "gpu"
# A job still in the outbox this long after its commit was not sent: a send takes milliseconds,
# and the broker client's own retries give up within a second or two.
RESEND_AFTER: Final = timedelta(seconds=10)
_PENDING: Final = "pathpilot_jobs_after_commit"
_REVOKES: Final = "pathpilot_revokes_after_commit"
_CALLS: Final = "pathpilot_calls_after_commit"

# The polling interval must be set on the transport class: passing it through
# broker_transport_options crashes the SQLAlchemy transport.
kombu_sqlalchemy.Transport.polling_interval = 1.0


@dataclass(frozen=True)
class Job:
    task: str
    args: tuple[str, ...]
    task_id: str | None = None  # known beforehand when the sender may revoke it later
    queue: str | None = None  # None: the default (cpu) queue


class OutboxJob(Base):
    """A job committed with the state that explains it, kept until the broker has taken it."""

    __tablename__ = "outbox_job"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    args: Mapped[list[str]] = mapped_column(JSON)
    task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    queue: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # When a sweep last took the job to send it again: another sweep leaves it alone meanwhile.
    resent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def job(self) -> Job:
        return Job(self.task, tuple(self.args), self.task_id, self.queue)


class DispatchQueue(Base):
    """One row per broker queue, locked by whoever releases arms to it
    (`app.pilots.dispatch`): on PostgreSQL the UPDATE that stamps it holds the row until
    commit, so two processes never count the same free slot twice; SQLite's one writer at a
    time does the same."""

    __tablename__ = "dispatch_queue"

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DispatchTurn(Base):
    """When a user's arm was last released to a queue: of two users with as many arms in
    flight, the one served less recently goes next."""

    __tablename__ = "dispatch_turn"

    queue: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    served_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


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
        # Celery beat (`celery beat`, one per deployment) sweeps for stalled pilots; a sweep
        # not taken within one interval is dropped, never piled up behind long pilots.
        beat_schedule={
            "sweep-stalled-pilots": {
                "task": RECOVER_STALLED,
                "schedule": settings.pilot_sweep_interval_s,
                "options": {"expires": settings.pilot_sweep_interval_s},
            }
        },
    )


def make_celery() -> Celery:
    """The one Celery app: the web sends with it, the worker (`worker.celery_app`) runs it."""
    app = Celery("pathpilot")
    app.conf.update(
        # A task whose worker dies is not lost with it. Redis gives an unacknowledged message
        # back after its visibility timeout, left at kombu's hour: a pilot's arm can train for
        # longer, and a shorter one would only deliver a running step again, for its claim to
        # refuse. A message lost before it was filed as unacknowledged (see above) never comes
        # back that way: the sweep sends it again instead.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # one long pilot at a time per worker
        task_ignore_result=True,  # results live in our own SQL tables
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_default_queue=CPU_QUEUE,
    )
    configure(app, get_settings())
    return app


celery_app = make_celery()


def enqueue_after_commit(
    session: Session,
    task: str,
    *args: str,
    task_id: str | None = None,
    queue: str | None = None,
) -> None:
    """Send `task(*args)` once `session` commits (never, if it rolls back). The job is
    committed to the outbox with the session's own changes, so it is sent even if the broker
    cannot take it right after the commit (`send_unsent`)."""
    row = OutboxJob(id=uuid.uuid4().hex, task=task, args=list(args), task_id=task_id, queue=queue)
    session.add(row)
    session.info.setdefault(_PENDING, []).append((row.id, Job(task, args, task_id, queue)))


def call_after_commit(session: Session, key: str, call: Callable[[], None]) -> None:
    """Run `call()` once `session` commits (never, if it rolls back), once per `key`; an
    error it raises is logged, never raised into the committed caller."""
    session.info.setdefault(_CALLS, {})[key] = call


def send(job: Job) -> None:
    celery_app.send_task(job.task, args=list(job.args), task_id=job.task_id, queue=job.queue)


def revoke_after_commit(session: Session, task_id: str) -> None:
    """Revoke a sent task once `session` commits (the state change that explains it)."""
    session.info.setdefault(_REVOKES, []).append(task_id)


def revoke(task_id: str) -> None:
    """Tell every worker to discard the task: a queued one never runs. Revoking travels by
    broadcast, which only some brokers carry (Redis does, the SQLite transport does not); the
    pilot's state in SQL is what counts either way: a claim refuses a cancelled pilot, and a
    running attempt stops at its next lease check (the solo pool cannot be interrupted)."""
    try:
        with celery_app.connection_for_write() as connection:
            if "fanout" not in connection.transport.implements.exchange_type:
                return
        celery_app.control.revoke(task_id)
    except Exception:  # the cancel is already committed; a lost revoke only costs a delivery
        log.exception("could not revoke task %s", task_id)


def messages_waiting(queues: Iterable[str]) -> dict[str, int]:
    """How many messages wait in each queue, leaving out those a worker has taken (Redis: the
    list's length; the SQLAlchemy transport: its visible rows). Raises when the broker cannot
    be reached."""
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        # A declaration, not a passive check: Redis keeps no empty list, so a passive check
        # would call an empty queue missing. The workers declare the same queues anyway.
        return {name: channel.queue_declare(queue=name).message_count for name in set(queues)}


def _send_and_forget(session: Session, pending: list[tuple[str, Job]]) -> None:
    """Send each job, then delete the outbox rows of those the broker took. A job that could
    not be sent stays in the outbox for the sweep; the commit it follows stands either way."""
    sent: list[str] = []
    for outbox_id, job in pending:
        try:
            send(job)
        except Exception as error:  # the broker is down or restarting: the sweep sends it
            log.warning("job %s %s not sent yet, kept for the sweep: %s", job.task, job.args, error)
        else:
            sent.append(outbox_id)
    if not sent:
        return
    try:
        # The session's own transaction is over (after_commit cannot write): a short one of its
        # own on the same engine.
        with session.get_bind().engine.begin() as connection:
            connection.execute(delete(OutboxJob).where(OutboxJob.id.in_(sent)))
    except Exception:  # the rows stay; the sweep sends them again, and a second delivery is
        # refused by the step's claim
        log.exception("could not clear %d sent job(s) from the outbox", len(sent))


def send_unsent(*, older_than: timedelta = RESEND_AFTER) -> list[Job]:
    """Send the outbox's jobs that were committed more than `older_than` ago and are still
    there: their send failed, or their process died before it. Sweeps running at once on
    several workers each take a job at most once (a conditional UPDATE); a job sent twice is
    harmless, because a step's claim refuses a second delivery. Returns the jobs sent."""
    cutoff = utcnow() - older_than
    due = or_(OutboxJob.resent_at.is_(None), OutboxJob.resent_at < cutoff)
    with session_scope() as session:
        ids = list(
            session.scalars(
                select(OutboxJob.id)
                .where(OutboxJob.created_at < cutoff, due)
                .order_by(OutboxJob.created_at)
            )
        )
    resent: list[Job] = []
    for outbox_id in ids:
        with session_scope() as session:
            taken = update(OutboxJob).where(OutboxJob.id == outbox_id, due)
            if changed_rows(session, taken.values(resent_at=utcnow())) != 1:
                continue  # another sweep took it, or it was sent meanwhile
            job = session.get_one(OutboxJob, outbox_id).job()
        try:
            send(job)
        except Exception as error:
            log.warning("job %s %s still not sent: %s", job.task, job.args, error)
            continue
        with session_scope() as session:
            session.execute(delete(OutboxJob).where(OutboxJob.id == outbox_id))
        resent.append(job)
    if resent:
        log.warning("sent %d job(s) from the outbox: %s", len(resent), resent)
    return resent


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, [])
    if pending:
        _send_and_forget(session, pending)
    for task_id in session.info.pop(_REVOKES, []):
        revoke(task_id)
    for call in session.info.pop(_CALLS, {}).values():
        try:
            call()
        except Exception:  # the commit stands; what the call would do, the sweep does
            log.exception("a call after commit failed")


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, _previous_transaction: object) -> None:
    session.info.pop(_REVOKES, None)
    session.info.pop(_CALLS, None)
    dropped = session.info.pop(_PENDING, [])
    if dropped:
        log.info("rolled back: %d queued job(s) not sent", len(dropped))
