"""Queueing, as pure policy: how long a queued pilot will wait (a rough figure from recent
run times), and in which order ready arms are released to the broker's queues."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum

from app.domain.arm_registry import Needs


def queue_eta_seconds(ahead: int, recent_run_s: list[float], *, busy_workers: int) -> float | None:
    """Seconds until a pilot with `ahead` pilots before it finishes: the pilots before it and
    itself, each taking the median recent run time, shared by the workers busy now (at least
    one). None without any recent run to go by."""
    if not recent_run_s:
        return None
    typical = statistics.median(recent_run_s)
    return (ahead + 1) * typical / max(1, busy_workers)


# --------------------------------------------------------------------------- dispatch order
#
# Ready arms wait in SQL; a dispatcher (`app.pilots.dispatch`) releases a few at a time to each
# broker queue, and this is the order it releases them in. A broker queue is first in, first
# out: whatever it holds runs in the order it was sent, so the choice is made here, as late as
# possible, when a slot frees.


class CostClass(IntEnum):
    """How long an arm takes, coarsely: the quick ones go first, so a pilot's floor and
    prompting figures arrive in seconds instead of after its training."""

    quick = 0  # no model, or prompting only: seconds to a few minutes
    retrieval = 1  # embeds a corpus and prefills passages: minutes
    training = 2  # runs an optimiser: minutes to hours


def cost_class(needs: Needs) -> CostClass:
    """The class of an arm from what it needs (`app.domain.arm_registry.Needs`)."""
    if needs.trains:
        return CostClass.training
    if needs.retrieval:
        return CostClass.retrieval
    return CostClass.quick


@dataclass(frozen=True)
class QueuedArm:
    """An arm that is, or could be, in a broker queue."""

    pilot_id: str
    arm: str
    queue: str
    owner: int
    cost: CostClass
    pilot_created: datetime
    position: int = 0  # the arm's place in its pilot (the last tie-break)
    claimed: bool = False  # for an arm in flight: a worker has started it


# Never served sorts before any time.
_NEVER = datetime.min.replace(tzinfo=UTC)


def dispatch_order(
    ready: Sequence[QueuedArm],
    in_flight: Sequence[QueuedArm],
    *,
    slots: Mapping[str, int],
    last_served: Mapping[tuple[str, int], datetime],
    now: datetime,
    shared_worker: bool,
    limit: int | None = None,
) -> list[QueuedArm]:
    """The ready arms to send now, in the order to send them; with `limit=None` and unlimited
    slots it is the whole waiting order (a queued arm's position).

    Each pick takes the best ready arm on a queue with a free slot (in flight there fewer than
    its `slots`), by: its cost class, quick first; then its owner's arms in flight on that
    queue, fewest first; then when its owner was last served on that queue, least recently
    first; then the oldest pilot, and the arm's place in it. Each pick counts as in flight and
    as served `now` for the picks after it, so one pass shares the slots round-robin.

    `shared_worker`: one worker takes every queue (the embedded default), so whatever a queue
    holds competes with the other queues' messages for that worker, and the broker hands them
    out in no cost order. An arm is then held back while an arm of a quicker class is ready or
    sent and not yet started, on any queue."""
    waiting = sorted(ready, key=lambda a: (a.pilot_created, a.pilot_id, a.position))
    busy: Counter[str] = Counter(a.queue for a in in_flight)
    per_owner: Counter[tuple[str, int]] = Counter((a.queue, a.owner) for a in in_flight)
    served = dict(last_served)
    unstarted = [a.cost for a in in_flight if not a.claimed]
    picked: list[QueuedArm] = []
    tick = 0
    while waiting and (limit is None or len(picked) < limit):
        quickest = min([*unstarted, *(a.cost for a in waiting)], default=None)
        open_ = [
            a
            for a in waiting
            if busy[a.queue] < slots.get(a.queue, 0)
            and not (shared_worker and quickest is not None and a.cost > quickest)
        ]
        if not open_:
            break
        best = min(
            open_,
            key=lambda a: (
                a.cost,
                per_owner[(a.queue, a.owner)],
                served.get((a.queue, a.owner), _NEVER),
                a.pilot_created,
                a.pilot_id,
                a.position,
            ),
        )
        waiting.remove(best)
        picked.append(best)
        busy[best.queue] += 1
        per_owner[(best.queue, best.owner)] += 1
        tick += 1
        served[(best.queue, best.owner)] = now + timedelta(microseconds=tick)
        unstarted.append(best.cost)
    return picked
