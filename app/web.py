"""Template rendering: full pages, or one named block of a page for HTMX requests.

Pages whose content is the same for every viewer (a finished pilot's report and page) can be
rendered once and kept (`PageBody`, `PAGE_BODIES`): only base.html's per-viewer parts, the
CSRF token and the signed-in menu, are rendered per request (`body_response`). A kept body is
rendered with those values replaced by `PerViewer` stand-ins that refuse to render, so a body
can never carry one viewer's token or address to another.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, NoReturn

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from app import __version__
from app.deps import csrf_token
from app.domain import formatting
from app.domain.memo import LruCache
from app.domain.records import excludes_zero
from app.settings import PROJECT_ROOT

templates = Jinja2Templates(directory=str(PROJECT_ROOT / "templates"))
templates.env.globals["version"] = __version__
# The one definition of a clear difference, for pages that print stored differences.
templates.env.globals["excludes_zero"] = excludes_zero
# The report's number formatting, for every page that prints pilot figures.
# Stored times are UTC; pages show them to the minute.
templates.env.filters["minute"] = lambda moment: moment.strftime("%Y-%m-%d %H:%M")
templates.env.filters.update(
    quality=formatting.format_quality,
    interval=formatting.format_interval,
    points=formatting.format_points,
    signed_interval=formatting.format_signed_interval,
    usd=formatting.format_usd,
)


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    block: str | None = None,
) -> HTMLResponse:
    """Render a page; with `block`, only that named block (an HTMX partial) of the same page."""
    ctx: dict[str, Any] = {"request": request, "csrf_token": csrf_token(request)}
    ctx.setdefault("user", getattr(request.state, "user", None))
    ctx.update(context or {})
    if block is None:
        return templates.TemplateResponse(request, template, ctx, status_code=status_code)
    tmpl = templates.env.get_template(template)
    html = "".join(tmpl.blocks[block](tmpl.new_context(ctx)))
    return HTMLResponse(html, status_code=status_code)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


# --- pages rendered once for every viewer ------------------------------------------------------

# What base.html (and any page) may show that differs from one viewer to the next.
PER_VIEWER_NAMES = ("request", "csrf_token", "user")
# Kept bodies, per process: a report is ~200 KB, so ~300 reports.
PAGE_BODY_BYTES = 64 * 1024 * 1024
SHELL_TEMPLATE = "_shell.html"
# Where the kept content goes in the shell: random per process, so no page text can hold it.
_BODY_MARKER = Markup(f"<!--body-{secrets.token_hex(16)}-->")
CACHE_CONTROL_REVALIDATE = "private, no-cache"


class PerViewerValue(RuntimeError):
    """A template tried to show a per-viewer value in a body kept for every viewer."""


class PerViewer:
    """Stands for `request`, `csrf_token` and `user` while a shared body renders: printing,
    testing or reading it raises PerViewerValue instead of rendering anything."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _refuse(self, *_: object) -> NoReturn:
        raise PerViewerValue(
            f"{object.__getattribute__(self, '_name')} is per viewer: render it in the shell "
            "(base.html), not in a page body kept for every viewer"
        )

    __str__ = __html__ = __bool__ = __iter__ = __len__ = __getattr__ = __getitem__ = _refuse


@dataclass(frozen=True)
class PageBody:
    """A page's `title` and `content` blocks as rendered for every viewer (content as UTF-8)."""

    title: str
    content: bytes


PAGE_BODIES: LruCache[PageBody] = LruCache(
    PAGE_BODY_BYTES, weigh=lambda body: len(body.content) + len(body.title)
)


def render_body(template: str, context: dict[str, Any]) -> PageBody:
    """The `title` and `content` blocks of a page that extends base.html, without the request:
    `context` must hold only what every viewer may see."""
    tmpl = templates.env.get_template(template)
    ctx = tmpl.new_context(
        {**context, **{name: PerViewer(name) for name in PER_VIEWER_NAMES}}, shared=False
    )
    title = "".join(tmpl.blocks["title"](ctx))
    content = "".join(tmpl.blocks["content"](ctx))
    return PageBody(title=title, content=content.encode())


def body_response(
    request: Request,
    body: PageBody,
    *,
    status_code: int = 200,
    shell: str = SHELL_TEMPLATE,
    context: dict[str, Any] | None = None,
) -> Response:
    """The whole page: the shell (base.html with this viewer's token and menu, and `context`
    for the shell's own blocks) around a kept body, joined as bytes."""
    ctx: dict[str, Any] = {"request": request, "csrf_token": csrf_token(request)}
    ctx.setdefault("user", getattr(request.state, "user", None))
    ctx.update(context or {})
    ctx.update(page_title=Markup(body.title), page_body=_BODY_MARKER)
    head, tail = templates.env.get_template(shell).render(ctx).split(_BODY_MARKER)
    return HTMLResponse(b"".join((head.encode(), body.content, tail.encode())), status_code)


def viewer_etag(request: Request, key: str) -> str:
    """A strong ETag for one viewer's copy of a kept page: its key plus this viewer's token
    and address, which the shell prints."""
    user = getattr(request.state, "user", None)
    email = getattr(user, "email", "") or ""
    material = "\0".join((key, csrf_token(request), email))
    return '"' + hashlib.sha256(material.encode()).hexdigest()[:40] + '"'


def etag_matches(request: Request, etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for it)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def not_modified(etag: str) -> Response:
    return Response(
        status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL_REVALIDATE}
    )
