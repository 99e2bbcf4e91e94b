"""Reading an endpoint's answers: the JSON bodies, the HTTP statuses and the transport failures
turned into `EndpointError`s whose messages never quote a body that is not an API's error and
never carry the key (see `client`'s docstring)."""

from __future__ import annotations

import email.utils
import http
import json
import math
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from app.integrations.openai_compatible.exceptions import (
    EndpointAuthError,
    EndpointConnectionError,
    EndpointError,
    EndpointNotFound,
    EndpointProtocolError,
    EndpointRateLimited,
    EndpointRejected,
    EndpointServerError,
    EndpointTimeout,
    EndpointTLSError,
)
from app.integrations.openai_compatible.schemas import shown_url

M = TypeVar("M", bound=BaseModel)

BASE_URL_HINT = "wrong base URL (an OpenAI-compatible API usually ends in /v1)"


def parse(response: httpx.Response, model: type[M], url: str, what: str, key: str | None) -> M:
    where = f"{shown_url(url)} answered {response.status_code}"
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        # The body is not quoted: whatever answered is not the API, and its page (a login
        # form, an internal service) is not for reading back through this message.
        kind = " ".join(response.headers.get("content-type", "no content type").split())[:60]
        raise EndpointProtocolError(
            f"{where} with a body that is not JSON ({kind}): is this the API's base URL "
            "(usually ending in /v1) and not a web page or a proxy's error?",
            url=url,
            status=response.status_code,
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "the body" for e in exc.errors()})
        raise EndpointProtocolError(
            f"{where} with JSON that is not {what} (missing or malformed: {', '.join(fields)}); "
            "is it an OpenAI-compatible API?",
            url=url,
            status=response.status_code,
        ) from None


def status_error(
    response: httpx.Response, url: str, key: str | None, *, not_found: str
) -> EndpointError:
    status = response.status_code
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = response.reason_phrase or "error"
    head = f"{status} {reason} from {shown_url(url)}"
    detail = _server_detail(response, key)
    said = f" (the server said: {detail})" if detail else ""
    if status == 401:
        # The server's words are left out: some echo part of the key back.
        cause = "the API key was rejected" if key else "the endpoint needs an API key"
        return EndpointAuthError(f"{head}: {cause}", url=url, status=status)
    if status == 403:
        return EndpointAuthError(
            f"{head}: the API key may not use this endpoint or model{said}",
            url=url,
            status=status,
            detail=detail,
        )
    if status == 404:
        return EndpointNotFound(
            f"{head}: {not_found}{said}" if not_found else f"{head}{said}",
            url=url,
            status=status,
            detail=detail,
        )
    if status == 429:
        return EndpointRateLimited(
            f"{head}: the rate limit was hit; lower max_concurrency or raise the limit{said}",
            url=url,
            status=status,
            detail=detail,
            retry_after_s=_retry_after_s(response.headers.get("retry-after")),
        )
    if status >= 500:
        retry_after = _retry_after_s(response.headers.get("retry-after")) if status == 503 else None
        return EndpointServerError(
            f"{head}: the server failed or is overloaded{said}",
            url=url,
            status=status,
            detail=detail,
            retry_after_s=retry_after,
        )
    return EndpointRejected(
        f"{head}: the server rejected the request{said}", url=url, status=status, detail=detail
    )


def _server_detail(response: httpx.Response, key: str | None) -> str | None:
    """The server's own error text, from a JSON error object only: OpenAI/vLLM
    `{"error": {"message"}}` or FastAPI `{"detail"}`. A body of any other shape is not an
    API's error and is not quoted (see `client`'s docstring)."""
    try:
        data: object = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    text = _error_text(data)
    if text is None:
        return None
    text = " ".join(_redact(text, key).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _error_text(data: object) -> str | None:
    if isinstance(data, dict):
        for name in ("error", "detail", "message"):
            value = data.get(name)
            if isinstance(value, str):
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
    return None


def transport_error(exc: httpx.HTTPError, url: str, timeout_s: float) -> EndpointError:
    shown = shown_url(url)
    if isinstance(exc, httpx.TimeoutException):
        return EndpointTimeout(f"no answer from {shown} within {timeout_s:g} s", url=url)
    tls = _find_cause(exc, ssl.SSLError)
    if tls is not None:
        reason = getattr(tls, "reason", None) or type(tls).__name__
        return EndpointTLSError(
            f"the TLS handshake with {shown} failed ({reason}): if the server speaks plain HTTP "
            "use http://; if its certificate comes from a private CA, the CA must be trusted "
            "on this machine",
            url=url,
        )
    if _find_cause(exc, socket.gaierror) is not None:
        host = urlsplit(url).hostname
        return EndpointError(
            f"cannot resolve the host name {host!r} of {shown}: check the base URL", url=url
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return EndpointError(f"{shown} is not a usable URL: check the base URL", url=url)
    if isinstance(exc, httpx.ConnectError):
        refused = _find_cause(exc, ConnectionRefusedError) is not None or "refused" in str(exc)
        why = "connection refused" if refused else str(exc) or type(exc).__name__
        return EndpointConnectionError(
            f"cannot connect to {shown} ({why}): is the server running, and the base URL's "
            "host and port right?",
            url=url,
        )
    return EndpointConnectionError(
        f"the connection to {shown} was dropped before a full answer "
        f"({str(exc) or type(exc).__name__})",
        url=url,
    )


def _retry_after_s(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


E = TypeVar("E", bound=BaseException)


def _find_cause(exc: BaseException, kind: type[E]) -> E | None:
    for link in _chain(exc):
        if isinstance(link, kind):
            return link
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def size_text(n_bytes: int) -> str:
    return f"{n_bytes / 1024 / 1024:g} MiB" if n_bytes >= 1024 * 1024 else f"{n_bytes} bytes"


def _redact(text: str, key: str | None) -> str:
    return text.replace(key, "[api key]") if key else text
