"""Connection checks per user: each one makes this server send requests where the user says.

Without a limit, *Check connection* is a free request cannon (and, on what the policy allows,
a port prober) driven from this server's address. In-process counts, like the log-in limiter
(`app.accounts.ratelimit`, which says what changes with several web replicas).
"""

from __future__ import annotations

import math
import time

from fastapi import Request

from app.accounts.ratelimit import Clock, SlidingWindow, Throttled


class CheckLimiter:
    """At most `per_user` connection checks per user in any `window_s` seconds."""

    def __init__(
        self, *, clock: Clock = time.monotonic, per_user: int = 10, window_s: float = 60.0
    ) -> None:
        self.by_user = SlidingWindow(limit=per_user, window_s=window_s, clock=clock)

    def attempt(self, user_id: int) -> Throttled | None:
        """Counts the check and returns None, or returns why it must wait (not counted)."""
        key = str(user_id)
        wait = self.by_user.retry_after(key)
        if wait is not None:
            return Throttled(
                max(1, math.ceil(wait)), what="connection checks", source="your account"
            )
        self.by_user.hit(key)
        return None


def get_check_limiter(request: Request) -> CheckLimiter:
    """The app's limiter (`app.state.check_limiter`, made on first use; tests swap it)."""
    limiter = getattr(request.app.state, "check_limiter", None)
    if limiter is None:
        limiter = request.app.state.check_limiter = CheckLimiter()
    return limiter
