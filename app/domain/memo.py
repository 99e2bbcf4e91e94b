"""Keep the results of pure functions, keyed by a digest of their arguments' values.

For the report's dearest steps (drawing a chart, scanning the rubric for flip points): each is
a pure function of values that are cheap to `repr`, so its result is computed once per process
and reused. The key is a digest of exactly the arguments, so a kept result is never stale and
nothing has to invalidate it: any change to what the result shows changes its key.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class LruCache(Generic[R]):
    """Values by key, least recently used dropped first once their weight passes `max_weight`.

    `weigh` gives a value's weight (default 1: a bound on the number of values).
    """

    def __init__(self, max_weight: int, weigh: Callable[[R], int] = lambda _: 1) -> None:
        self.max_weight = max_weight
        self._weigh = weigh
        self._items: OrderedDict[str, tuple[R, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> R | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, value: R) -> None:
        weight = self._weigh(value)
        with self._lock:
            if key in self._items or weight > self.max_weight:
                return
            self._items[key] = (value, weight)
            self._weight += weight
            while self._weight > self.max_weight:
                _, (_, dropped) = self._items.popitem(last=False)
                self._weight -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._weight = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)


def value_key(name: str, args: tuple[object, ...], kwargs: dict[str, object]) -> str | None:
    """A digest of the call, or None when an argument has no value `repr` (e.g. an iterator).

    Frozen dataclasses, pydantic models, numbers, strings, and sequences and mappings of them
    show every value in their `repr` (floats in full precision), so equal keys mean equal calls.
    """
    text = repr((name, args, sorted(kwargs.items())))
    # An object shown by its address could be another object at the same address later, and
    # numpy elides long arrays ("array([0, 1, ..., 9])"): neither repr identifies the value.
    if " at 0x" in text or "array(" in text:
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def memoized(cache: LruCache[R]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Keep a pure function's results in `cache`, keyed by `value_key`. The results are shared
    between callers, so they must be immutable (strings, frozen dataclasses)."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        name = f"{func.__module__}.{func.__qualname__}"

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            key = value_key(name, args, kwargs)
            if key is None:
                return func(*args, **kwargs)
            value = cache.get(key)
            if value is None:
                value = func(*args, **kwargs)
                cache.put(key, value)
            return value

        return wrapper

    return decorate
