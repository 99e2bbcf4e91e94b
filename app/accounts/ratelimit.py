"""Log-in throttling: failed attempts per email and per client IP in a sliding window.

The store is in-process memory, which is right for the embedded mode (one web process).
With several web replicas each keeps its own counts, so an attacker spreading attempts over
N replicas gets N times the budget: a scaled-out deployment needs a shared store (e.g. Redis
INCR + EXPIRE per key) behind the same `LoginLimiter` interface.

The client IP is `request.client.host`. Behind a reverse proxy that is the proxy's address
unless uvicorn runs with `--proxy-headers --forwarded-allow-ips=<proxy>`; never trust
X-Forwarded-For from anyone else, or every attacker picks their own IP.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

Clock = Callable[[], float]


class SlidingWindow:
    """At most `limit` events per key in any `window_s` seconds. Thread-safe, memory-bounded.

    Only keys with recent events are kept, and at most `max_keys` of them (the least
    recently touched go first), so a flood of distinct emails cannot exhaust memory.
    """

    def __init__(
        self, *, limit: int, window_s: float, clock: Clock = time.monotonic, max_keys: int = 50_000
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window_s:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def retry_after(self, key: str) -> float | None:
        """Seconds until the next attempt is allowed; None when it is allowed now."""
        with self._lock:
            now = self.clock()
            events = self._live(key, now)
            if events is None or len(events) < self.limit:
                return None
            # The oldest event that keeps the count at the limit must leave the window.
            return events[-self.limit] + self.window_s - now

    def hit(self, key: str) -> None:
        """Record one event for `key`."""
        with self._lock:
            now = self.clock()
            events = self._live(key, now)
            if events is None:
                events = self._events[key] = deque(maxlen=self.limit)
            events.append(now)
            self._events.move_to_end(key)
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)

    def reset(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)


@dataclass(frozen=True)
class Throttled:
    """An attempt refused: wait `retry_after` whole seconds (at least 1)."""

    retry_after: int
    what: str = "failed log-ins"
    source: str = "this account or network"

    @property
    def message(self) -> str:
        minutes = math.ceil(self.retry_after / 60)
        when = "a minute" if minutes <= 1 else f"{minutes} minutes"
        return f"Too many {self.what} from {self.source}. Try again in {when}."


class LoginLimiter:
    """Failed log-ins per email and per client IP; a success clears its email's count only.

    Per email stops guessing one account's password from many addresses; per IP stops one
    address trying many accounts (its limit is higher: an office shares one IP). The IP count
    is not cleared by a success, or an attacker could clear it with their own account.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        per_email: int = 5,
        per_ip: int = 20,
        window_s: float = 15 * 60,
    ) -> None:
        self.by_email = SlidingWindow(limit=per_email, window_s=window_s, clock=clock)
        self.by_ip = SlidingWindow(limit=per_ip, window_s=window_s, clock=clock)

    @staticmethod
    def email_key(email: str) -> str:
        return email.strip().lower()[:254]

    def check(self, *, email: str, ip: str) -> Throttled | None:
        """Throttled when either the email or the IP has used up its failures."""
        waits = [
            wait
            for wait in (
                self.by_email.retry_after(self.email_key(email)),
                self.by_ip.retry_after(ip),
            )
            if wait is not None
        ]
        return Throttled(max(1, math.ceil(max(waits)))) if waits else None

    def failed(self, *, email: str, ip: str) -> None:
        self.by_email.hit(self.email_key(email))
        self.by_ip.hit(ip)

    def succeeded(self, *, email: str, ip: str) -> None:
        self.by_email.reset(self.email_key(email))


class SignupLimiter:
    """Sign-ups per client IP: "this email has an account" is an answer sign-up must give,
    so the rate of asking is what is limited (and with it, bulk account creation)."""

    def __init__(
        self, *, clock: Clock = time.monotonic, per_ip: int = 20, window_s: float = 60 * 60
    ) -> None:
        self.by_ip = SlidingWindow(limit=per_ip, window_s=window_s, clock=clock)

    def check(self, *, ip: str) -> Throttled | None:
        wait = self.by_ip.retry_after(ip)
        return (
            None
            if wait is None
            else Throttled(max(1, math.ceil(wait)), what="sign-ups", source="this network")
        )

    def attempted(self, *, ip: str) -> None:
        self.by_ip.hit(ip)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def get_login_limiter(request: Request) -> LoginLimiter:
    """The app's limiter (`app.state.login_limiter`, set by create_app; tests swap it)."""
    limiter = getattr(request.app.state, "login_limiter", None)
    if limiter is None:
        limiter = request.app.state.login_limiter = LoginLimiter()
    return limiter


def get_signup_limiter(request: Request) -> SignupLimiter:
    """The app's sign-up limiter (`app.state.signup_limiter`, set by create_app)."""
    limiter = getattr(request.app.state, "signup_limiter", None)
    if limiter is None:
        limiter = request.app.state.signup_limiter = SignupLimiter()
    return limiter
