"""The report's charts as inline SVG strings, shared verbatim by the page and the PDF.

Same approach as ``app.domain.scoring.chart``: an explicit ``Figure`` on the Agg canvas
(never pyplot, so it is thread-safe in the web server), text kept as text
(``svg.fonttype='none'``), no date metadata, and a fixed ``svg.hashsalt`` per chart so the
ids — and therefore the whole SVG — are identical run to run. All the charts sit in one HTML
document, so every id in a chart is prefixed with the chart's own key (which is also its salt)
to keep ids unique.

Charts contain only fixed labels and numbers, never user text, which is why the template may
insert them unescaped.

Drawing is the report's dearest step (~0.1-0.3 s a chart), and a chart is a pure function of
its arguments, so each one is drawn once per process and kept (`app.domain.memo`), keyed by a
digest of exactly those arguments: a pilot's charts are drawn on its first report and reused
after; any change to what a chart shows changes its key, so a kept chart is never stale.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from xml.sax.saxutils import escape

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from app.domain.formatting import format_count, format_quality, format_usd
from app.domain.memo import LruCache, memoized
from app.domain.scoring.costs import PAYBACK_MONTHS, CostEstimate
from app.domain.scoring.paths import PATH_LABELS, PATHS

_NO_METADATA: Final[dict[str, str | None]] = {"Date": None, "Creator": None}
# The same colour per path everywhere (matches the score chart); the combination gets its own.
ARM_COLOURS: Final[dict[str, str]] = {
    "fewshot": "#5b7db1",
    "rag": "#3f9a6f",
    "qlora": "#c0763a",
    "qlora_rag": "#8a5bb1",
}
PATH_COLOURS: Final[dict[str, str]] = {
    "prompting": "#5b7db1",
    "rag": "#3f9a6f",
    "fine_tuning": "#c0763a",
    "fine_tuning+rag": "#8a5bb1",
}
_INK: Final = "#333333"
_GRID: Final = "#dddddd"
# Drawn charts kept per process (SVG text, bounded by size): a report's charts take ~0.2 MB.
CACHE: Final[LruCache[str]] = LruCache(64 * 1024 * 1024, weigh=len)
_cached = memoized(CACHE)


@dataclass(frozen=True)
class QualityBar:
    arm: str
    label: str
    value: float  # 0–1
    ci_low: float | None
    ci_high: float | None
    recommended: bool = False


@dataclass(frozen=True)
class LossSeries:
    arm: str
    label: str
    steps: Sequence[int]
    train: Sequence[float | None]
    validation: Sequence[float | None]


@_cached
def quality_chart_svg(bars: Sequence[QualityBar], metric_label: str) -> str:
    """One bar per arm with its 95% interval as an error bar; value labels as in the table."""
    figure, axes = _figure(6.4, 2.8)
    x = list(range(len(bars)))
    values = [b.value * 100 for b in bars]
    lower = [max(0.0, (b.value - b.ci_low) * 100) if b.ci_low is not None else 0.0 for b in bars]
    upper = [max(0.0, (b.ci_high - b.value) * 100) if b.ci_high is not None else 0.0 for b in bars]
    axes.bar(
        x,
        values,
        width=0.6,
        color=[ARM_COLOURS.get(b.arm, "#888888") for b in bars],
        edgecolor=[_INK if b.recommended else "none" for b in bars],
        linewidth=1.6,
        yerr=[lower, upper],
        error_kw={"ecolor": _INK, "capsize": 5, "elinewidth": 1.2},
    )
    for i, bar in enumerate(bars):
        top = values[i] + upper[i]
        axes.annotate(
            format_quality(bar.value),
            (i, top),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
            color=_INK,
        )
    axes.set_xticks(x, [b.label for b in bars])
    axes.set_ylim(0, 112)
    axes.set_yticks([0, 25, 50, 75, 100])
    axes.set_ylabel(f"{metric_label} (%)")
    axes.yaxis.grid(True, color=_GRID, linewidth=0.6)
    axes.set_axisbelow(True)
    title = f"{metric_label} per arm with 95% intervals: " + ", ".join(
        f"{b.label} {format_quality(b.value)}" for b in bars
    )
    return _svg(figure, title, "chart-q")


def monthly_cost(cost: CostEstimate, queries_per_month: float) -> float:
    """One-off cost amortised over the rubric's payback period, plus per-query cost × volume."""
    return cost.one_off_usd / PAYBACK_MONTHS + cost.usd_per_query * queries_per_month


@_cached
def cost_chart_svg(
    costs: Mapping[str, CostEstimate],
    *,
    queries_per_month: float,
    break_even: float | None,
) -> str:
    """Monthly cost against monthly query volume per path (log–log), break-even marked."""
    figure, axes = _figure(6.4, 3.0)
    anchors = [q for q in (queries_per_month, break_even) if q]
    high = max([*anchors, 1_000.0]) * 10
    low = max(min([*anchors, 1_000_000.0]) / 10, 100.0)
    steps = 60
    volumes = [low * (high / low) ** (i / steps) for i in range(steps + 1)]
    for path in PATHS:
        if path not in costs:
            continue
        axes.plot(
            volumes,
            [max(monthly_cost(costs[path], v), 0.01) for v in volumes],
            label=PATH_LABELS[path],
            color=PATH_COLOURS[path],
            linewidth=1.8,
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    if queries_per_month:
        axes.axvline(queries_per_month, color="#777777", linestyle=":", linewidth=1)
        axes.annotate(
            f"your volume: {format_count(queries_per_month)}/month",
            (queries_per_month, 1),
            xycoords=("data", "axes fraction"),
            xytext=(-4, -12),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color="#555555",
        )
    if break_even and "prompting" in costs:
        y = monthly_cost(costs["prompting"], break_even)
        axes.plot([break_even], [y], marker="o", markersize=7, color=_INK, zorder=5)
        axes.annotate(
            f"break-even ≈ {format_count(break_even)} queries/month",
            (break_even, y),
            xytext=(8, -14),
            textcoords="offset points",
            fontsize=8,
            color=_INK,
        )
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "$" + _compact(v)))
    axes.set_xlabel("Queries per month")
    axes.set_ylabel("USD per month")
    axes.grid(True, which="major", color=_GRID, linewidth=0.6)
    axes.legend(frameon=False, fontsize=8, loc="upper left")
    parts = [
        f"{PATH_LABELS[p]} {format_usd(monthly_cost(costs[p], queries_per_month))}"
        for p in PATHS
        if p in costs
    ]
    title = (
        f"Monthly cost by query volume, one-off costs amortised over {PAYBACK_MONTHS} months; "
        f"at {format_count(queries_per_month)} queries a month: " + ", ".join(parts)
    )
    if break_even:
        title += f"; break-even at {format_count(break_even)} queries a month"
    return _svg(figure, title, "chart-c")


@dataclass(frozen=True)
class CostLine:
    """One path's cumulative cost: the one-off at month 0, then a fixed amount a month."""

    option: str
    label: str
    one_off_usd: float
    monthly_usd: float


@dataclass(frozen=True)
class BreakEvenMark:
    option: str
    label: str  # e.g. "Fine-tuning pays back: month 4.2"
    month: float


@_cached
def cumulative_cost_chart_svg(
    lines: Sequence[CostLine], *, months: int, marks: Sequence[BreakEvenMark] = ()
) -> str:
    """Cumulative cost per path over `months`, each break-even month inside them marked."""
    figure, axes = _figure(6.4, 3.0)
    steps = list(range(months + 1))
    by_option = {line.option: line for line in lines}
    for line in lines:
        axes.plot(
            steps,
            [line.one_off_usd + line.monthly_usd * m for m in steps],
            label=line.label,
            color=PATH_COLOURS.get(line.option, "#888888"),
            linewidth=1.8,
        )
    for mark in marks:
        marked = by_option.get(mark.option)
        if marked is None or not 0 <= mark.month <= months:
            continue
        y = marked.one_off_usd + marked.monthly_usd * mark.month
        axes.axvline(mark.month, color="#777777", linestyle=":", linewidth=1)
        axes.plot([mark.month], [y], marker="o", markersize=7, color=_INK, zorder=5)
        axes.annotate(
            mark.label,
            (mark.month, y),
            xytext=(6, 8),
            textcoords="offset points",
            fontsize=8,
            color=_INK,
        )
    axes.set_xlim(0, months)
    axes.set_ylim(bottom=0)
    axes.set_xticks(steps)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "$" + _compact(v)))
    axes.set_xlabel("Month")
    axes.set_ylabel("Cumulative USD")
    axes.grid(True, which="major", color=_GRID, linewidth=0.6)
    axes.legend(frameon=False, fontsize=8, loc="upper left")
    parts = [
        f"{line.label} {format_usd(line.one_off_usd + line.monthly_usd * months)}" for line in lines
    ]
    title = f"Cumulative cost per path over {months} months: " + ", ".join(parts)
    shown = [m for m in marks if 0 <= m.month <= months]
    if shown:
        title += "; " + "; ".join(m.label for m in shown)
    return _svg(figure, title, "chart-m")


@dataclass(frozen=True)
class CurveMark:
    """A point of the learning curve: examples trained on, quality and its 95% interval."""

    examples: int
    value: float  # 0-1
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class CurveLine:
    """The fitted trend sampled along n, with its bootstrap band."""

    examples: Sequence[float]
    value: Sequence[float]  # 0-1
    low: Sequence[float]
    high: Sequence[float]


@_cached
def learning_curve_chart_svg(
    points: Sequence[CurveMark], fit: CurveLine | None, *, largest: int, metric_label: str
) -> str:
    """Quality by training examples (log axis): the measured points with their intervals, the
    fitted trend and its band; past the largest size trained the line is dashed and the
    region is labelled an extrapolation, so a reader never takes it for a measurement."""
    figure, axes = _figure(6.4, 2.8)
    colour = ARM_COLOURS["qlora"]
    if fit is not None:
        inside = [i for i, n in enumerate(fit.examples) if n <= largest]
        outside = [i for i, n in enumerate(fit.examples) if n >= largest]
        axes.fill_between(
            list(fit.examples),
            [v * 100 for v in fit.low],
            [v * 100 for v in fit.high],
            color=colour,
            alpha=0.15,
            linewidth=0,
            label="Fit, 95% band",
        )
        for part, style in ((inside, "-"), (outside, "--")):
            if len(part) > 1:
                axes.plot(
                    [fit.examples[i] for i in part],
                    [fit.value[i] * 100 for i in part],
                    color=colour,
                    linewidth=1.4,
                    linestyle=style,
                )
        if max(fit.examples) > largest:
            axes.axvspan(largest, max(fit.examples), color="#888888", alpha=0.08, linewidth=0)
            axes.annotate(
                "extrapolation",
                (largest, 1),
                xycoords=("data", "axes fraction"),
                xytext=(4, -12),
                textcoords="offset points",
                fontsize=8,
                color=_INK,
            )
    axes.errorbar(
        [p.examples for p in points],
        [p.value * 100 for p in points],
        yerr=[
            [max(0.0, (p.value - p.ci_low) * 100) for p in points],
            [max(0.0, (p.ci_high - p.value) * 100) for p in points],
        ],
        fmt="o",
        color=colour,
        ecolor=_INK,
        capsize=4,
        markersize=5,
        label="Measured, 95% interval",
    )
    axes.set_xscale("log")
    ticks = sorted({p.examples for p in points} | ({round(max(fit.examples))} if fit else set()))
    axes.set_xticks(ticks)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_count(v)))
    axes.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    axes.set_ylim(0, 100)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}%"))
    axes.set_xlabel("Training examples (log scale)")
    axes.set_ylabel(metric_label)
    axes.grid(True, which="major", color=_GRID, linewidth=0.6)
    axes.legend(frameon=False, fontsize=8, loc="lower right")
    title = (
        f"Learning curve of the QLoRA fine-tune, {metric_label.lower()} by examples: "
        + ", ".join(
            f"{format_count(p.examples)} examples {format_quality(p.value)}" for p in points
        )
    )
    return _svg(figure, title, "chart-n")


@_cached
def loss_chart_svg(series: Sequence[LossSeries]) -> str:
    """Training (solid) and validation (dashed) loss per fine-tuned arm, by optimiser step."""
    figure, axes = _figure(6.4, 2.8)
    for s in series:
        colour = ARM_COLOURS.get(s.arm, "#888888")
        train = [(st, v) for st, v in zip(s.steps, s.train, strict=True) if v is not None]
        valid = [(st, v) for st, v in zip(s.steps, s.validation, strict=True) if v is not None]
        if train:
            axes.plot(
                *zip(*train, strict=True), color=colour, linewidth=1.6, label=f"{s.label}, training"
            )
        if valid:
            axes.plot(
                *zip(*valid, strict=True),
                color=colour,
                linewidth=1.6,
                linestyle="--",
                marker="o",
                markersize=3,
                label=f"{s.label}, validation",
            )
    axes.set_xlabel("Optimiser step")
    axes.set_ylabel("Loss")
    axes.grid(True, color=_GRID, linewidth=0.6)
    axes.legend(frameon=False, fontsize=8)
    title = "Training and validation loss by step for " + ", ".join(s.label for s in series)
    return _svg(figure, title, "chart-l")


@_cached
def latency_chart_svg(latencies: Mapping[str, Sequence[float]], labels: Mapping[str, str]) -> str:
    """Per-arm latency distribution of the stored predictions: box plot with every point."""
    arms = [a for a, values in latencies.items() if values]
    figure, axes = _figure(6.4, 0.6 + 0.55 * max(len(arms), 1))
    data = [list(latencies[a]) for a in arms]
    positions = list(range(1, len(arms) + 1))
    boxes = axes.boxplot(
        data,
        positions=positions,
        vert=False,
        widths=0.5,
        showfliers=False,
        patch_artist=True,
        medianprops={"color": _INK, "linewidth": 1.4},
    )
    for patch, arm in zip(boxes["boxes"], arms, strict=True):
        patch.set_facecolor(ARM_COLOURS.get(arm, "#888888"))
        patch.set_alpha(0.45)
    for pos, arm, values in zip(positions, arms, data, strict=True):
        # Points spread evenly over a fixed band instead of random jitter: deterministic output.
        count = len(values)
        offsets = [((i % 7) - 3) * 0.04 for i in range(count)]
        axes.scatter(
            values,
            [pos + o for o in offsets],
            s=8,
            color=ARM_COLOURS.get(arm, "#888"),
            alpha=0.8,
            linewidths=0,
            zorder=3,
        )
    axes.set_yticks(positions, [labels.get(a, a) for a in arms])
    axes.set_xlabel("Latency per query (ms)")
    axes.set_xlim(left=0)
    axes.xaxis.grid(True, color=_GRID, linewidth=0.6)
    axes.set_axisbelow(True)
    title = "Latency per query of the stored predictions, by arm: " + ", ".join(
        f"{labels.get(a, a)} median {sorted(v)[len(v) // 2]:,.0f} ms"
        for a, v in zip(arms, data, strict=True)
    )
    return _svg(figure, title, "chart-t")


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.spines[["top", "right"]].set_visible(False)
    axes.tick_params(labelsize=8.5, colors=_INK)
    return figure, axes


def _compact(value: float) -> str:
    """Axis ticks: 1k, 10k, 1M; small values keep their digits."""
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:g}{suffix}"
    return f"{value:g}"


def _svg(figure: Figure, title: str, key: str) -> str:
    """The figure as an inline <svg>: no prolog, a <title> first, ids unique to this chart."""
    figure.tight_layout()
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": key}):
        figure.savefig(buffer, format="svg", metadata=_NO_METADATA)
    document = buffer.getvalue()
    svg = _prefix_ids(document[document.index("<svg") :], key)
    tag_end = svg.index(">") + 1
    opening = svg[:tag_end].replace("<svg ", '<svg role="img" ', 1)
    return f"{opening}\n <title>{escape(title)}</title>{svg[tag_end:]}".strip()


_ID = re.compile(r'\bid="([^"]+)"')
_HREF = re.compile(r'\b((?:xlink:)?href)="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")


def _prefix_ids(svg: str, key: str) -> str:
    """Prefix every id and reference to it with `key`.

    matplotlib numbers its element ids (figure_1, line2d_3, ...) per figure, so four charts in
    one HTML document would repeat them: invalid HTML, and WeasyPrint warns about each one.
    """
    svg = _ID.sub(lambda m: f'id="{key}-{m.group(1)}"', svg)
    svg = _HREF.sub(lambda m: f'{m.group(1)}="#{key}-{m.group(2)}"', svg)
    return _URL.sub(lambda m: f"url(#{key}-{m.group(1)})", svg)
