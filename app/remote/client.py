"""A small typed client of the /api/v1 JSON API, for scripts and `pathpilot remote`.

    from app.remote.client import Client

    with Client("https://pathpilot.example.com", token) as api:
        assessment = api.create_assessment(intake)
        api.upload_sample(assessment.id, Path("sample.csv"))
        pilot = api.start_pilot(assessment.id, arms=["majority", "fewshot"])
        finished = api.wait_for_pilot(pilot.id)
        verdict = api.report(assessment.id)

Every failure is a `RemoteError` whose message is a sentence for a person: the server's 4xx
detail with each field's location, the URL that refused a connection, a refused token. The
token is sent in the Authorization header and appears in no message. Responses are read into
models that name only the fields this client uses and keep the rest (`extra="allow"`), so a
newer server's added fields pass through.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from app.domain.records import FINISHED_PILOT, PilotStatus

# Uploads and PDF rendering can take a while on a busy server; connecting should not.
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
# Consecutive failed polls tolerated while waiting: a server restarting for a deploy.
WAIT_RETRIES = 5
RETRYABLE_STATUS = frozenset({502, 503, 504})

M = TypeVar("M", bound=BaseModel)
ID_CHARACTERS = re.compile(r"[A-Za-z0-9_-]{1,64}")

# The `path` a verdict can recommend: app.domain.scoring.paths' PATHS and HYBRID_FT_RAG,
# written out so that this client does not load the scoring engine and the server's settings
# (tests/app/remote/test_client.py holds them equal).
VERDICT_PATHS: tuple[str, ...] = ("prompting", "rag", "fine_tuning", "fine_tuning+rag")


class RemoteError(Exception):
    """Talking to the server failed; the message says what happened, for a person."""


class ServerUnreachable(RemoteError):
    """No connection to the server (refused, unknown host, dropped)."""


class TokenRefused(RemoteError):
    """The server answered 401: a wrong, revoked or expired token."""


class ApiError(RemoteError):
    """The server answered with an error status; `problems` are its detail lines."""

    def __init__(self, status_code: int, what: str, problems: list[str], reason: str = "") -> None:
        self.status_code = status_code
        self.problems = problems
        lines = "".join(f"\n  {problem}" for problem in problems)
        super().__init__(f"{what} failed with {status_code} {reason}".rstrip() + lines)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class Assessment(_Loose):
    id: str
    title: str = ""
    status: str = ""
    result: dict[str, Any] | None = None


class PilotRef(_Loose):
    id: str
    status: str


class QueuePlace(_Loose):
    ahead: int = 0
    eta_seconds: float | None = None


class ArmProgress(_Loose):
    arm: str
    status: str
    stage: str | None = None
    step: int = 0
    total: int = 0
    eta_seconds: float | None = None
    error: str | None = None


class Pilot(_Loose):
    id: str
    assessment_id: str = ""
    status: str
    stage: str | None = None
    error: str | None = None
    arms: list[ArmProgress] = []
    queue: QueuePlace | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_PILOT

    @property
    def succeeded(self) -> bool:
        return self.status == PilotStatus.done


class Verdict(_Loose):
    assessment_id: str
    pilot_id: str | None = None
    path: str
    label: str = ""
    confidence: str = ""
    decided_by: str = ""
    why: str = ""


def normalise_server(server: str) -> str:
    """The server's base URL without a trailing slash; a `RemoteError` if it is not one."""
    text = server.strip().rstrip("/")
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise RemoteError(f"the server address {text!r} is not a URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise RemoteError(
            f"the server address must be an http:// or https:// URL, such as "
            f"https://pathpilot.example.com; got {text!r}"
        )
    if url.userinfo:
        # It would be printed in every message that names the server.
        raise RemoteError("put no user name or password in the server address")
    return text


def check_token(token: str) -> str:
    """The token without surrounding whitespace (a file's newline); never quoted back."""
    value = token.strip()
    if not value:
        raise RemoteError("the API token is empty")
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise RemoteError(
            "the API token has spaces or characters a token never has (tokens start with pp_)"
        )
    return value


def _detail_lines(response: httpx.Response) -> list[str]:
    """The error body as lines: FastAPI's `detail` string, or each `loc: msg` of a 422."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return [text.splitlines()[0][:300]] if text else [response.reason_phrase]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, str):
        return [detail]
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                where = ".".join(str(part) for part in item.get("loc", ()))
                lines.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
            else:
                lines.append(str(item))
        return lines
    return [str(detail)[:300]]


class Client:
    """One server, one token. Use as a context manager, or call `close()`."""

    def __init__(
        self, server: str, token: str, *, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT
    ) -> None:
        self.server = normalise_server(server)
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {check_token(token)}"},
            timeout=timeout,
            # A redirect is reported, not followed: the token should go where it was sent.
            follow_redirects=False,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- assessments -------------------------------------------------------------------------

    def create_assessment(self, intake: dict[str, Any]) -> Assessment:
        """Create and score an assessment from a complete intake (the same JSON as the
        `pathpilot score` file)."""
        return _read(Assessment, self._send("POST", "/api/v1/assessments", json=intake))

    def get_assessment(self, assessment_id: str) -> Assessment:
        return _read(Assessment, self._send("GET", f"/api/v1/assessments/{_id(assessment_id)}"))

    def upload_sample(
        self, assessment_id: str, sample: Path, *, format: str = "auto", task: str = "auto"
    ) -> dict[str, Any]:
        """Store the labelled sample (replacing any earlier one); the server's summary."""
        with sample.open("rb") as handle:
            response = self._send(
                "PUT",
                f"/api/v1/assessments/{_id(assessment_id)}/sample",
                files={"file": (sample.name, handle, _content_type(sample))},
                data={"format": format, "task": task},
            )
        return _json_object(response)

    def upload_documents(self, assessment_id: str, documents: Sequence[Path]) -> Any:
        """Add reference documents (what the RAG arms retrieve from)."""
        with contextlib.ExitStack() as stack:
            files = [
                ("files", (path.name, stack.enter_context(path.open("rb")), _content_type(path)))
                for path in documents
            ]
            response = self._send(
                "POST", f"/api/v1/assessments/{_id(assessment_id)}/documents", files=files
            )
        return response.json()

    # --- pilots ------------------------------------------------------------------------------

    def start_pilot(self, assessment_id: str, **options: Any) -> PilotRef:
        """Queue a pilot. `options` are the API's body fields (arms, max_train,
        prompt_model_id, base_model_id, judge_model_id, serving_model_id, learning_curve);
        those left None take the server's defaults."""
        body = {name: value for name, value in options.items() if value is not None}
        response = self._send("POST", f"/api/v1/assessments/{_id(assessment_id)}/pilots", json=body)
        return _read(PilotRef, response)

    def get_pilot(self, pilot_id: str) -> Pilot:
        return _read(Pilot, self._send("GET", f"/api/v1/pilots/{_id(pilot_id)}"))

    def cancel_pilot(self, pilot_id: str) -> PilotRef:
        return _read(PilotRef, self._send("POST", f"/api/v1/pilots/{_id(pilot_id)}/cancel"))

    def wait_for_pilot(
        self,
        pilot_id: str,
        *,
        on_update: Callable[[Pilot], None] | None = None,
        poll_seconds: float = 2.0,
        timeout_seconds: float | None = None,
    ) -> Pilot:
        """Poll until the pilot is done, failed or cancelled; `on_update` sees every poll.

        A few failed polls in a row (a restarting server) are waited out; more are raised."""
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        failures = 0
        while True:
            try:
                pilot = self.get_pilot(pilot_id)
                failures = 0
            except (ServerUnreachable, ApiError) as exc:
                transient = isinstance(exc, ServerUnreachable) or (
                    isinstance(exc, ApiError) and exc.status_code in RETRYABLE_STATUS
                )
                failures += 1
                if not transient or failures > WAIT_RETRIES:
                    raise
            else:
                if on_update is not None:
                    on_update(pilot)
                if pilot.finished:
                    return pilot
            if deadline is not None and time.monotonic() >= deadline:
                raise RemoteError(
                    f"pilot {pilot_id} had not finished after {timeout_seconds:g} s; it goes "
                    f"on running on the server"
                )
            time.sleep(poll_seconds)

    # --- reports and downloads ---------------------------------------------------------------

    def report_json(self, assessment_id: str, *, pilot_id: str | None = None) -> dict[str, Any]:
        """The report's verdict exactly as the server sent it."""
        params = {"pilot": pilot_id} if pilot_id else None
        return _json_object(
            self._send("GET", f"/api/v1/assessments/{_id(assessment_id)}/report", params=params)
        )

    def report(self, assessment_id: str, *, pilot_id: str | None = None) -> Verdict:
        return _validated(Verdict, self.report_json(assessment_id, pilot_id=pilot_id))

    def download_report_pdf(
        self, assessment_id: str, out: Path, *, pilot_id: str | None = None
    ) -> Path:
        params = {"pilot": pilot_id} if pilot_id else None
        return self._download(f"/api/v1/assessments/{_id(assessment_id)}/report.pdf", out, params)

    def download_export(self, pilot_id: str, out: Path, *, path: str | None = None) -> Path:
        """The finished pilot's hand-off bundle (a zip); `path` hands off another path."""
        params = {"path": path} if path else None
        return self._download(f"/api/v1/pilots/{_id(pilot_id)}/export", out, params)

    # --- lists -------------------------------------------------------------------------------

    # Newest first, every page; `page_size` (the API's `limit`, 1 to 100) only changes how
    # many requests that takes.

    def list_assessments(self, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._pages("/api/v1/assessments", page_size)

    def list_pilots(
        self, assessment_id: str, *, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        return self._pages(f"/api/v1/assessments/{_id(assessment_id)}/pilots", page_size)

    def list_models(self, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._pages("/api/v1/models", page_size)

    # --- transport ---------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        with self._transport_errors(method, url):
            response = self._http.request(method, url, **kwargs)
        self._check(response)
        return response

    @contextlib.contextmanager
    def _transport_errors(self, method: str, url: str) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectError as exc:
            raise ServerUnreachable(f"cannot connect to {self.server}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(
                f"{self.server} did not answer {method} {httpx.URL(url).path} in time"
            ) from exc
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"lost the connection to {self.server}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise RemoteError(f"{method} {httpx.URL(url).path}: {exc}") from exc

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 300:
            return
        what = f"{response.request.method} {response.request.url.path}"
        if response.status_code == 401:
            reason = "; ".join(_detail_lines(response))
            raise TokenRefused(
                f"the server at {self.server} refused the API token ({reason}): check "
                f"PATHPILOT_TOKEN or --token-file, or create a new token under API tokens"
            )
        if response.status_code < 400:
            location = response.headers.get("location", "elsewhere")
            raise RemoteError(
                f"{what} was redirected to {location}: use that server address instead"
            )
        raise ApiError(response.status_code, what, _detail_lines(response), response.reason_phrase)

    def _pages(self, url: str, page_size: int | None) -> Iterator[dict[str, Any]]:
        """Every item of a paged list, following `Link: <…>; rel="next"`.

        Only the link's query (limit, cursor) is taken, sent to this server's own path: the
        token never follows a link to another host, and a server behind a proxy that builds
        its links with an inner address still pages."""
        params: httpx.QueryParams | None = (
            httpx.QueryParams({"limit": page_size}) if page_size else None
        )
        seen: set[str] = set()
        while True:
            response = self._send("GET", url, params=params)
            items = response.json()
            if not isinstance(items, list):
                raise RemoteError(f"GET {url} did not answer a JSON list")
            yield from items
            link = response.links.get("next", {}).get("url")
            if not link:
                return
            params = httpx.URL(link).params
            if str(params) in seen or not params:
                raise RemoteError(f"GET {url}: the next-page link leads nowhere new: {link}")
            seen.add(str(params))

    def _download(self, url: str, out: Path, params: dict[str, str] | None) -> Path:
        """Stream a body into `out`, via a temporary file beside it: a failed download leaves
        no half-written file that a later step could take for the real one."""
        out.parent.mkdir(parents=True, exist_ok=True)
        with self._transport_errors("GET", url), self._http.stream("GET", url, params=params) as r:
            if r.status_code >= 300:
                r.read()
                self._check(r)
            descriptor, partial = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    for chunk in r.iter_bytes():
                        handle.write(chunk)
                os.replace(partial, out)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
        return out


def _id(value: str) -> str:
    """An id for a URL path. Letters, digits, - and _ only: the server decodes an escaped
    slash before routing, so `x%2Fcancel` would still reach another route."""
    if not ID_CHARACTERS.fullmatch(value):
        raise RemoteError(f"{value[:80]!r} is not an id (letters, digits, - and _)")
    return value


def _content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise RemoteError(f"{response.request.url.path} did not answer JSON") from exc
    if not isinstance(body, dict):
        raise RemoteError(f"{response.request.url.path} did not answer a JSON object")
    return body


def _validated(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise RemoteError(f"unexpected answer from the server ({problems})") from exc


def _read(model: type[M], response: httpx.Response) -> M:
    return _validated(model, _json_object(response))
