"""Anonymous downloads through a share link, per link and client address.

Anyone holding a link may download without an account, so without a limit one link is a
free way to make this server send its PDF and its bundle (tens of megabytes) over and over.
In-process counts, like the log-in limiter (`app.accounts.ratelimit`, which says what changes
with several web replicas and behind a proxy).
"""

from __future__ import annotations

import math
import time

from fastapi import Request

from app.accounts.ratelimit import Clock, SlidingWindow, Throttled
from app.settings import get_settings


class DownloadLimiter:
    """At most `per_hour` downloads (PDF or bundle) per link and client address in any hour.

    Per link and address together: one reader's retries do not lock out the others the
    owner sent the link to, nor does one link's reader use up another link's downloads."""

    def __init__(self, *, per_hour: int, clock: Clock = time.monotonic) -> None:
        self.window = SlidingWindow(limit=per_hour, window_s=3600.0, clock=clock)

    def attempt(self, *, link_id: int, ip: str) -> Throttled | None:
        """Counts the download and returns None, or returns why it must wait (not counted)."""
        key = f"{link_id} {ip}"
        wait = self.window.retry_after(key)
        if wait is not None:
            return Throttled(
                max(1, math.ceil(wait)), what="downloads", source="this link and network"
            )
        self.window.hit(key)
        return None


def get_download_limiter(request: Request) -> DownloadLimiter:
    """The app's limiter (`app.state.share_download_limiter`, made on first use; tests swap
    it for one with their own clock)."""
    limiter = getattr(request.app.state, "share_download_limiter", None)
    if limiter is None:
        limiter = DownloadLimiter(per_hour=get_settings().share_downloads_per_hour)
        request.app.state.share_download_limiter = limiter
    return limiter
