"""The FastAPI app factory: `uvicorn --factory app.main:create_app`."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.accounts.dependencies import LoginRequired
from app.accounts.ratelimit import LoginLimiter, SignupLimiter
from app.accounts.routes import router as accounts_router
from app.api_docs import router as api_docs_router
from app.assessment_page import router as assessment_page_router
from app.assessments.api import router as assessments_api
from app.assessments.api import uploads_router as assessment_uploads_api
from app.assessments.routes import router as wizard_router
from app.assessments.routes import uploads_router
from app.deps import API_MAX_BODY_BYTES, StrictJsonBody
from app.domain.samples.decoding import describe_size
from app.endpoints.api import router as models_api
from app.endpoints.routes import router as models_router
from app.errors import DomainError
from app.exports.api import router as exports_api
from app.exports.routes import router as exports_router
from app.pilots.api import router as pilots_api
from app.pilots.routes import router as pilots_router
from app.reports.api import router as reports_api
from app.reports.routes import router as reports_router
from app.settings import PROJECT_ROOT, Settings, get_settings
from app.sharing.routes import router as sharing_router
from app.web import render

log = logging.getLogger(__name__)

# Every asset is vendored, so the policy can be "self" only: no inline script, no CDN.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response that does not set its own.

    Plain ASGI: it edits the response's start message and passes the body through untouched
    (an `@app.middleware("http")` function streams every body through a task and a memory
    channel, a large share of a small page's time under load)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


class BodySizeLimit:
    """Caps every request body: `upload_limit` on the upload forms' paths, `limit` elsewhere,
    so Starlette never spools an unbounded body to disk. Answers 413 with a message naming
    the limit (FastAPI's own max_body_size answers a bare "Content Too Large" in plain text,
    replacing the app's page or JSON whenever the declared length is over).

    A declared Content-Length over the cap is answered at once, before any byte is read; a
    body without one is counted as it arrives and refused where the route reads it (an
    HTTPException there, answered by the app's handler)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        upload_limit: int,
        upload_paths: tuple[re.Pattern[str], ...],
        respond: Callable[[Request, int, str], Response],
    ) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.upload_paths = upload_paths
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = any(p.match(scope["path"]) for p in self.upload_paths)
        limit = self.upload_limit if upload else self.limit
        if upload:
            detail = (
                f"Content Too Large: one upload may hold at most {describe_size(limit)} in all "
                "(MAX_UPLOAD_REQUEST_BYTES); upload fewer or smaller files at a time."
            )
        else:
            detail = f"Content Too Large: this request may be at most {describe_size(limit)}."
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self.respond(Request(scope, receive), 413, detail)(scope, receive, send)
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise StarletteHTTPException(413, detail)
            return message

        await self.app(scope, receive_limited, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="PathPilot",
        version=__version__,
        description="Score prompting, RAG and fine-tuning for one use case, then pilot them.",
        # FastAPI's own pages load Swagger UI from a CDN with an inline script, which the CSP
        # forbids; app.api_docs serves the vendored copy instead.
        docs_url=None,
        redoc_url=None,
    )

    def error_response(
        request: Request, status: int, detail: str, headers: dict[str, str] | None = None
    ) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": detail}, status_code=status, headers=headers)
        ctx = {"status": status, "message": detail}
        return render(request, "error.html", ctx, status_code=status)

    # Added first, so it runs inside the session middleware: its error page knows the user.
    app.add_middleware(
        BodySizeLimit,
        limit=API_MAX_BODY_BYTES,
        upload_limit=settings.max_upload_request_bytes,
        upload_paths=tuple(
            r.path_regex
            for router in (uploads_router, assessment_uploads_api)
            for r in router.routes
            if isinstance(r, APIRoute)
        ),
        respond=error_response,
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.resolved_secret_key(),
        session_cookie="pathpilot_session",
        same_site="lax",
        https_only=settings.secure_cookies,
        max_age=14 * 24 * 3600,
    )

    app.add_middleware(SecurityHeaders)

    app.mount("/static", StaticFiles(directory=PROJECT_ROOT / "static"), name="static")
    app.include_router(api_docs_router)
    app.include_router(accounts_router)
    app.include_router(wizard_router)
    app.include_router(uploads_router)
    app.include_router(assessment_page_router)
    # The JSON API: strict JSON bodies (no duplicate keys or NaN), at most 1 MiB each.
    app.include_router(
        assessments_api, dependencies=[StrictJsonBody], max_body_size=API_MAX_BODY_BYTES
    )
    # The API's uploads: capped by BodySizeLimit at MAX_UPLOAD_REQUEST_BYTES, as the forms are.
    app.include_router(assessment_uploads_api, dependencies=[StrictJsonBody])
    app.include_router(pilots_router)
    app.include_router(pilots_api, dependencies=[StrictJsonBody], max_body_size=API_MAX_BODY_BYTES)
    app.include_router(models_router)
    app.include_router(models_api, dependencies=[StrictJsonBody], max_body_size=API_MAX_BODY_BYTES)
    app.include_router(reports_router)
    app.include_router(reports_api)
    app.include_router(sharing_router)
    app.include_router(exports_router)
    app.include_router(exports_api)
    # In-process failed-log-in counts (one per app); see app.accounts.ratelimit for replicas.
    app.state.login_limiter = LoginLimiter()
    app.state.signup_limiter = SignupLimiter()

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={exc.next_url}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(request, exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        """Every service error, mapped once by its own HTTP meaning."""
        return error_response(request, exc.status_code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        if _wants_json(request):
            return JSONResponse({"detail": errors}, status_code=422)
        lines = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors]
        ctx = {"status": 422, "message": "The request was not valid: " + "; ".join(lines)}
        return render(request, "error.html", ctx, status_code=422)

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError) -> Response:
        log.error("database unavailable: %s", exc.orig)
        message = "The database is unavailable right now. Your data is safe; try again shortly."
        if _wants_json(request):
            return JSONResponse({"detail": message}, status_code=503)
        return render(request, "error.html", {"status": 503, "message": message}, status_code=503)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
