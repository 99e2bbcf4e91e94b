"""Template rendering: full pages, or one named block of a page for HTMX requests."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app import __version__
from app.deps import csrf_token
from app.domain import formatting
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
