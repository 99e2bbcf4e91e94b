"""The report as a PDF: the page's own template rendered with ``pdf=True``, then WeasyPrint.

WeasyPrint never touches the network: its URL fetcher serves files under ``static/`` and
refuses every other URL, so a crafted link in user text (already escaped) or a future template
change cannot make the server fetch anything remote or read files outside ``static/``.

Rendering is synchronous and CPU-bound (a few seconds); call it from a sync route, which
FastAPI runs in its thread pool, never from the event loop. A done pilot's report shows the
same until something in it changes, so its PDF is rendered once per process and kept
(`kept_report_pdf`), for the owner's download and every share link alike.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

from sqlalchemy.orm import Session
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from app.accounts.models import User
from app.assessments.models import Assessment
from app.domain.memo import LruCache
from app.domain.scoring.costs import PriceTable
from app.reports.service import Report, build_report, report_identity
from app.settings import PROJECT_ROOT

TEMPLATE: Final = "reports/show.html"
STATIC_DIR: Final = (PROJECT_ROOT / "static").resolve()
# Root-relative links (/static/...) resolve against this made-up origin; the fetcher maps it
# back to STATIC_DIR. `.invalid` is reserved (RFC 2606), so it can never reach a real host.
BASE_URL: Final = "https://pathpilot.invalid/"
_STATIC_PREFIX: Final = BASE_URL + "static/"
# A report's PDF is 100-300 KB: a few hundred of them per process.
KEPT_PDF_BYTES: Final = 64 * 1024 * 1024


class RefusedFetch(ValueError):
    """WeasyPrint asked for something other than a file under static/."""


def static_path(url: str) -> Path:
    """The file under static/ that `url` names; RefusedFetch for anything else."""
    if not url.startswith(_STATIC_PREFIX):
        raise RefusedFetch(f"refused to fetch {url[:200]!r}: only /static/ files are served")
    relative = unquote(url[len(_STATIC_PREFIX) :].split("?", 1)[0].split("#", 1)[0])
    path = (STATIC_DIR / relative).resolve()
    # resolve() collapses '..' and symlinks, so this also stops traversal out of static/.
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise RefusedFetch(f"refused to fetch {url[:200]!r}: not a file under static/")
    return path


class StaticOnlyFetcher(URLFetcher):
    """Serves `https://pathpilot.invalid/static/...` from disk and refuses everything else.

    WeasyPrint catches the refusal, logs a warning and renders without the resource.
    """

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        path = static_path(url)
        mime_type, _ = mimetypes.guess_type(path.name)
        return URLFetcherResponse(
            url, path.read_bytes(), {"Content-Type": mime_type or "application/octet-stream"}
        )


def report_context(report: Report, *, pdf: bool) -> dict[str, Any]:
    """What the report template needs; the page adds the request's own keys on top."""
    return {"report": report, "pdf": pdf}


def render_html(report: Report) -> str:
    """The report page's template as the PDF sees it: no navigation, no buttons."""
    from app.web import templates

    context = {
        **report_context(report, pdf=True),
        # base.html reads these; a PDF has no session, so no token and no signed-in menu.
        "csrf_token": "",
        "user": None,
    }
    return templates.env.get_template(TEMPLATE).render(context)


class _CssNoiseFilter(logging.Filter):
    """Drop WeasyPrint's CSS-parser chatter; keep everything else (refused fetches included).

    Pico's screen-only rules and the SVG presentation styles that WeasyPrint's HTML parser
    does not know (its SVG renderer applies them) cost about a thousand warnings per PDF.
    """

    NOISE: Final = (
        "Ignored `",
        "Expected a media type",
        "Invalid media type",
        "Unknown rule",
        "Unknown empty rule",
        "Invalid or unsupported selector",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


@contextmanager
def _quiet_css_warnings() -> Iterator[None]:
    logger, noise = logging.getLogger("weasyprint"), _CssNoiseFilter()
    logger.addFilter(noise)
    try:
        yield
    finally:
        logger.removeFilter(noise)


def html_to_pdf(html: str) -> bytes:
    """WeasyPrint, offline: stylesheets come only from static/ through the fetcher."""
    document = HTML(string=html, base_url=BASE_URL, url_fetcher=StaticOnlyFetcher())
    with _quiet_css_warnings():
        pdf = document.write_pdf()
    assert pdf is not None  # write_pdf returns bytes when no target is given
    return pdf


def render_pdf(report: Report) -> bytes:
    """The whole report as PDF bytes."""
    return html_to_pdf(render_html(report))


def write_pdf(report: Report, target: Path) -> Path:
    """Write the report's PDF to `target` (parents created); returns the path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(render_pdf(report))
    return target


def filename(report: Report) -> str:
    return f"pathpilot-{report.slug}.pdf"


@dataclass(frozen=True)
class ReportPdf:
    content: bytes
    filename: str


KEPT_PDFS: LruCache[ReportPdf] = LruCache(KEPT_PDF_BYTES, weigh=lambda pdf: len(pdf.content))


def kept_report_pdf(
    session: Session,
    *,
    assessment: Assessment,
    owner: User,
    today: date,
    price_table: PriceTable,
    pilot_id: str | None = None,
) -> ReportPdf:
    """The report's PDF, kept under its key (`report_identity(..., variant="pdf")`, None while
    the pilot shown can still change) so that WeasyPrint's seconds are spent once per report
    and process. The PDF holds nothing of its viewer (no token, no menu), so the owner's
    download and a share link's are the same bytes. One built while something it shows
    changed is not kept: the key is read again first."""

    def identify() -> str | None:
        return report_identity(
            session,
            assessment=assessment,
            owner=owner,
            pilot_id=pilot_id,
            today=today,
            price_table=price_table,
            variant="pdf",
        ).key

    key = identify()
    kept = KEPT_PDFS.get(key) if key is not None else None
    if kept is not None:
        return kept
    report = build_report(
        session,
        assessment=assessment,
        owner=owner,
        pilot_id=pilot_id,
        today=today,
        price_table=price_table,
    )
    made = ReportPdf(content=render_pdf(report), filename=filename(report))
    if key is not None and identify() == key:
        KEPT_PDFS.put(key, made)
    return made
