"""The score chart: a horizontal bar per path, as an inline SVG the page and the PDF share.

Built on an explicit ``Figure`` with the Agg canvas (never pyplot), so it is thread-safe in the
web server and leaves matplotlib's global state alone. Drawn once per process per result and
kept: the assessment page shows it on every visit.
"""

from __future__ import annotations

import io
from typing import Final
from xml.sax.saxutils import escape

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from app.domain.memo import LruCache, memoized
from app.domain.scoring.paths import PATH_LABELS, PATHS
from app.domain.scoring.schemas import ScoreResult

_HASH_SALT: Final = "pathpilot-scores"
# Metadata matplotlib would otherwise stamp with today's date or its version.
_NO_METADATA: Final[dict[str, str | None]] = {"Date": None, "Creator": None}

_BAR_COLOURS: Final[dict[str, str]] = {
    "prompting": "#5b7db1",
    "rag": "#3f9a6f",
    "fine_tuning": "#c0763a",
}


def chart_title(result: ScoreResult) -> str:
    """The chart's text alternative: every score, in the ranking's order."""
    parts = [f"{PATH_LABELS[path]} {result.scores[path]:.0f}" for path in result.ranking]
    return "Path scores out of 100: " + ", ".join(parts)


# Drawn charts kept per process, keyed by the scores they show (see app.domain.memo).
CACHE: Final[LruCache[str]] = LruCache(16 * 1024 * 1024, weigh=len)


@memoized(CACHE)
def score_chart_svg(result: ScoreResult) -> str:
    """An inline ``<svg>`` bar chart of the three scores, with a ``<title>`` for screen readers."""
    # Top-to-bottom in declaration order, so the same path sits in the same place every report.
    paths = list(reversed(PATHS))
    figure = Figure(figsize=(6.0, 2.2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    values = [result.scores[path] for path in paths]
    bars = axes.barh(
        [PATH_LABELS[path] for path in paths],
        values,
        color=[_BAR_COLOURS[path] for path in paths],
        height=0.6,
    )
    axes.bar_label(bars, labels=[f"{value:.0f}" for value in values], padding=4)
    axes.set_xlim(0, 100)
    axes.set_xlabel("Score (0–100)")
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()

    buffer = io.StringIO()
    # Text stays text (searchable, accessible, styled by the page's font); a fixed hash salt
    # makes matplotlib's generated ids, and so the whole SVG, identical from run to run.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": _HASH_SALT}):
        figure.savefig(buffer, format="svg", metadata=_NO_METADATA)
    return _inline(buffer.getvalue(), chart_title(result))


def _inline(document: str, title: str) -> str:
    """Drop the XML prolog and doctype, and put a <title> first inside <svg>."""
    svg = document[document.index("<svg") :]
    tag_end = svg.index(">") + 1
    opening = svg[:tag_end].replace("<svg ", '<svg role="img" ', 1)
    return f"{opening}\n <title>{escape(title)}</title>{svg[tag_end:]}".strip()
