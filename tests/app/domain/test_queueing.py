"""The order ready arms are released to the broker's queues in: quick first, then the user
with the fewest arms in flight (served least recently on a tie), then the oldest pilot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.domain.arms import ARMS
from app.domain.queueing import CostClass, QueuedArm, cost_class, dispatch_order

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
SLOTS = {"cpu": 2, "gpu": 1}


def arm(
    pilot: str,
    name: str = "majority",
    *,
    owner: int = 1,
    queue: str = "cpu",
    cost: CostClass = CostClass.quick,
    minute: int = 0,
    position: int = 0,
    claimed: bool = False,
) -> QueuedArm:
    return QueuedArm(
        pilot_id=pilot,
        arm=name,
        queue=queue,
        owner=owner,
        cost=cost,
        pilot_created=T0 + timedelta(minutes=minute),
        position=position,
        claimed=claimed,
    )


def order(ready, in_flight=(), *, slots=SLOTS, served=None, shared=False, limit=None):  # type: ignore[no-untyped-def]
    picked = dispatch_order(
        ready,
        list(in_flight),
        slots=slots,
        last_served=served or {},
        now=NOW,
        shared_worker=shared,
        limit=limit,
    )
    return [(a.pilot_id, a.arm) for a in picked]


def test_the_cost_class_comes_from_what_the_registry_says_an_arm_needs() -> None:
    classes = {name: cost_class(ARMS.get(name).needs) for name in ARMS.names}
    assert classes["majority"] == classes["fewshot"] == CostClass.quick
    assert classes["rag"] == CostClass.retrieval
    assert classes["qlora"] == classes["qlora_rag"] == CostClass.training
    assert set(classes.values()) == set(CostClass)


def test_quick_arms_go_before_retrieval_and_retrieval_before_training() -> None:
    ready = [
        arm("p1", "qlora", cost=CostClass.training),
        arm("p1", "rag", cost=CostClass.retrieval),
        arm("p1", "fewshot"),
    ]
    unlimited = {"cpu": 9}
    assert order(ready, slots=unlimited) == [("p1", "fewshot"), ("p1", "rag"), ("p1", "qlora")]


def test_one_user_only_gets_the_oldest_pilot_first_and_the_arms_in_their_order() -> None:
    ready = [
        arm("new", "majority", minute=5),
        arm("old", "fewshot", minute=1, position=1),
        arm("old", "majority", minute=1, position=0),
    ]
    assert order(ready, slots={"cpu": 9}) == [
        ("old", "majority"),
        ("old", "fewshot"),
        ("new", "majority"),
    ]


def test_a_later_user_is_served_before_an_earlier_users_third_pilot() -> None:
    # User 1 queued three pilots, then user 2 one: the slots go round the users.
    ready = [
        arm("a1", owner=1, minute=0),
        arm("a2", owner=1, minute=1),
        arm("a3", owner=1, minute=2),
        arm("b1", owner=2, minute=3),
    ]
    assert order(ready, slots={"cpu": 9}) == [
        ("a1", "majority"),
        ("b1", "majority"),
        ("a2", "majority"),
        ("a3", "majority"),
    ]


def test_the_user_with_fewest_arms_in_flight_on_that_queue_goes_next() -> None:
    in_flight = [arm("a0", owner=1, minute=0)]
    ready = [arm("a1", owner=1, minute=1), arm("b1", owner=2, minute=2)]
    assert order(ready, in_flight) == [("b1", "majority")]  # one free cpu slot
    # Arms in flight on another queue do not count against a user here.
    gpu_flight = [arm("a0", "qlora", owner=1, queue="gpu", cost=CostClass.training)]
    assert order(ready, gpu_flight, slots={"cpu": 1, "gpu": 1}) == [("a1", "majority")]


def test_a_tie_goes_to_the_user_served_least_recently_and_never_served_first() -> None:
    ready = [arm("a1", owner=1, minute=0), arm("b1", owner=2, minute=1), arm("c1", owner=3)]
    served = {("cpu", 1): NOW - timedelta(minutes=1), ("cpu", 2): NOW - timedelta(minutes=9)}
    # User 3 was never served; user 2 less recently than user 1.
    assert order(ready, served=served, slots={"cpu": 9}) == [
        ("c1", "majority"),
        ("b1", "majority"),
        ("a1", "majority"),
    ]
    # Served on the gpu queue does not count on the cpu queue: user 3 is still never served.
    gpu_served = {**served, ("gpu", 3): NOW}
    assert order(ready, served=gpu_served, limit=1) == [("c1", "majority")]


def test_the_oldest_pilot_breaks_a_tie_between_users_never_served() -> None:
    ready = [arm("b1", owner=2, minute=7), arm("a1", owner=1, minute=3)]
    assert order(ready, limit=1) == [("a1", "majority")]


def test_nothing_goes_while_the_queue_is_full_and_the_freed_slot_is_filled() -> None:
    ready = [arm("a2", owner=1, minute=2), arm("b1", owner=2, minute=3)]
    full = [arm("a0", owner=1, claimed=True), arm("a1", owner=1)]
    assert order(ready, full) == []
    # One finished: its slot goes to the user with nothing in flight.
    assert order(ready, full[:1]) == [("b1", "majority")]
    # Both finished: both go, the oldest pilot first (neither user has one in flight).
    assert order(ready, []) == [("a2", "majority"), ("b1", "majority")]


def test_each_queue_has_its_own_slots() -> None:
    ready = [
        arm("p1", "qlora", queue="gpu", cost=CostClass.training),
        arm("p2", "qlora", queue="gpu", cost=CostClass.training, minute=1),
        arm("p1", "majority"),
    ]
    assert order(ready) == [("p1", "majority"), ("p1", "qlora")]
    busy_gpu = [arm("p0", "qlora", queue="gpu", cost=CostClass.training, claimed=True)]
    assert order(ready, busy_gpu) == [("p1", "majority")]
    assert order(ready, slots={"cpu": 0, "gpu": 0}) == []
    assert order([], busy_gpu) == []


def test_on_a_shared_worker_a_slower_arm_waits_until_the_quicker_ones_have_started() -> None:
    ready = [
        arm("p1", "majority"),
        arm("p1", "fewshot", position=1),
        arm("p1", "qlora", queue="gpu", cost=CostClass.training, position=2),
    ]
    assert order(ready, shared=True) == [("p1", "majority"), ("p1", "fewshot")]
    # Separate workers: the training arm goes at once, to its own queue.
    assert order(ready, shared=False) == [
        ("p1", "majority"),
        ("p1", "fewshot"),
        ("p1", "qlora"),
    ]
    # A quicker arm sent and not started still holds it back; once started, it goes.
    training = ready[2:]
    sent = [arm("p1", "fewshot")]
    assert order(training, sent, shared=True) == []
    started = [arm("p1", "fewshot", claimed=True)]
    assert order(training, started, shared=True) == [("p1", "qlora")]
    # A quicker arm waiting for a full queue holds it back too.
    waiting = [*training, arm("p2", "rag", cost=CostClass.retrieval)]
    full = [arm("x", claimed=True), arm("y", claimed=True)]
    assert order(waiting, full, shared=True) == []


def test_a_limit_stops_the_picks() -> None:
    ready = [arm(f"p{i}", minute=i) for i in range(5)]
    assert order(ready, slots={"cpu": 9}, limit=2) == [("p0", "majority"), ("p1", "majority")]
