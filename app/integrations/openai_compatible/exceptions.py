"""The errors a request to an endpoint ends in. str() of each names the cause in words a user
can act on; `retryable` says whether the client tries again (see `client`'s docstring)."""

from __future__ import annotations


class EndpointError(Exception):
    """A request to an endpoint failed. str() names the cause in words a user can act on.

    `detail` is the server's own error text (the key blanked out), when it sent one.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        detail: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s


class EndpointAuthError(EndpointError):
    """401 or 403: the key is missing, wrong, or may not use this model."""


class EndpointNotFound(EndpointError):
    """404: the base URL or the model name is wrong."""


class EndpointRejected(EndpointError):
    """Another 4xx: the server refused this request (too long a prompt, a bad parameter)."""


class EndpointProtocolError(EndpointError):
    """The answer is not what an OpenAI-compatible server sends (not JSON, no `choices`)."""


class EndpointTLSError(EndpointError):
    """The TLS handshake failed: an untrusted certificate, or https:// to a plain-HTTP port."""


class EndpointRateLimited(EndpointError):
    """429, still there after the retries (or the server asked for too long a pause)."""

    retryable = True


class EndpointServerError(EndpointError):
    """5xx, still there after the retries."""

    retryable = True


class EndpointConnectionError(EndpointError):
    """No connection, or it was dropped before a full answer, after the retries."""

    retryable = True


class EndpointTimeout(EndpointConnectionError):
    """No answer within `timeout_s`, after the retries."""


class EndpointRefused(EndpointError):
    """The egress policy refused the destination: nothing was sent to it."""


class EndpointUnavailable(EndpointError):
    """The circuit breaker is open: too many requests in a row failed; nothing more is sent."""
