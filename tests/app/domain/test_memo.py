"""Kept results of pure functions: keyed by the arguments' values, bounded, never stale."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.memo import LruCache, memoized, value_key


@dataclass(frozen=True)
class Point:
    x: float
    y: float


def test_equal_arguments_reuse_the_result_and_different_ones_do_not() -> None:
    cache: LruCache[str] = LruCache(10)
    calls: list[tuple[Point, ...]] = []

    @memoized(cache)
    def draw(points: tuple[Point, ...], *, title: str) -> str:
        calls.append(points)
        return f"{title}:{points}"

    first = draw((Point(1, 2.5),), title="a")
    assert draw((Point(1, 2.5),), title="a") == first
    assert len(calls) == 1
    # Any value that reaches the result changes the key: a kept result is never stale.
    assert draw((Point(1, 2.5000001),), title="a") != first
    assert draw((Point(1, 2.5),), title="b") != first
    assert len(calls) == 3
    assert (cache.hits, cache.misses) == (1, 3)


def test_the_least_recently_used_go_first_once_over_the_weight() -> None:
    cache: LruCache[str] = LruCache(10, weigh=len)
    cache.put("a", "xxxx")
    cache.put("b", "xxxx")
    assert cache.get("a") == "xxxx"  # now b is the least recently used
    cache.put("c", "xxxx")
    assert cache.get("b") is None
    assert cache.get("a") == cache.get("c") == "xxxx"
    cache.put("huge", "x" * 11)  # heavier than the whole cache: not kept
    assert cache.get("huge") is None
    assert len(cache) == 2


def test_arguments_without_a_value_repr_are_never_kept() -> None:
    assert value_key("f", (iter([1, 2]),), {}) is None
    cache: LruCache[int] = LruCache(10)

    @memoized(cache)
    def total(values: object) -> int:
        return sum(values)  # type: ignore[call-overload]

    assert total(iter([1, 2])) == 3
    assert total(iter([1, 2, 3])) == 6
    assert len(cache) == 0


def test_numpy_arrays_are_never_keys_their_repr_elides_long_ones() -> None:
    import numpy as np

    long = np.arange(2000.0)
    changed = long.copy()
    changed[1000] = -1.0
    assert repr(long) == repr(changed)  # why: the elided middle would make them one key
    assert value_key("f", (long,), {}) is None
    assert value_key("f", (), {"values": np.zeros(3)}) is None
