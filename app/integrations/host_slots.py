"""The per-host throttle: at most `EgressPolicy.max_per_host` requests in flight to one host from
this process, whichever clients send them, and the jitter their retries are spread with."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit


class HostSlots:
    """At most `limit` requests in flight to one host at once, across every client in this
    process (threads of one pilot, pilots side by side in a worker, the web's checks).

    Keyed by host name, not port: the servers on one machine share it. A host's semaphore
    lives while anything holds or waits for it and goes when idle, so the map stays as small
    as the set of hosts in use; its limit is the one its first request brought (every spec
    of a deployment carries the same policy), and a changed one applies once the host is idle.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # host -> (its semaphore, how many hold it or wait for it)
        self._hosts: dict[str, tuple[threading.BoundedSemaphore, int]] = {}

    @contextmanager
    def hold(self, host: str, *, limit: int) -> Iterator[None]:
        with self._lock:
            semaphore, users = self._hosts.get(host) or (threading.BoundedSemaphore(limit), 0)
            self._hosts[host] = (semaphore, users + 1)
        try:
            with semaphore:
                yield
        finally:
            with self._lock:
                semaphore, users = self._hosts[host]
                if users == 1:
                    del self._hosts[host]
                else:
                    self._hosts[host] = (semaphore, users - 1)


HOST_SLOTS = HostSlots()


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def full_jitter(ceiling_s: float) -> float:
    """A pause drawn uniformly from [0, ceiling]: spreads the retries of many clients apart."""
    return random.uniform(0.0, ceiling_s)
