"""Every number the report prints, formatted in one place.

The page, the PDF and the charts all call these, so a figure reads the same everywhere (the
tests compare the PDF's text with the page's). Quality metrics are stored as fractions (0–1)
and shown as percentages with one decimal.
"""

from __future__ import annotations

import math


def _points(fraction: float) -> float:
    """A fraction in percentage points, rounded for display; + 0.0 turns -0.0 into 0.0."""
    return round(fraction * 100, 1) + 0.0


def points_value(fraction: float) -> float:
    """A fraction in percentage points exactly as the report prints it (one decimal), for rules
    that must agree with the printed figure."""
    return _points(fraction)


def format_quality(value: float) -> str:
    """A quality metric (a 0–1 fraction) as a percentage: 0.725 → '72.5%'."""
    return f"{_points(value):.1f}%"


def format_interval(low: float | None, high: float | None) -> str:
    """A 95% interval of a quality metric, in percentage points: '[64.2, 80.1]'."""
    if low is None or high is None:
        return ""
    return f"[{_points(low):.1f}, {_points(high):.1f}]"


def format_points(delta: float) -> str:
    """A difference of two quality metrics, in percentage points, always signed: '+8.0 pts'."""
    return f"{_points(delta):+.1f} pts"


def format_signed_interval(low: float, high: float) -> str:
    """The 95% interval of a difference, signed, in points: '[+2.1, +13.9]'."""
    return f"[{_points(low):+.1f}, {_points(high):+.1f}]"


def format_usd(value: float) -> str:
    """Money with as many decimals as the magnitude needs: '$0.042', '$12.50', '$1,234'."""
    if value == 0:
        return "$0"
    if abs(value) < 1:
        return f"${value:,.3f}"
    if abs(value) < 100:
        return f"${value:,.2f}"
    return f"${value:,.0f}"


def format_count(value: float) -> str:
    """A whole count with thousands separators: '1,234'."""
    return f"{round(value):,}"


def format_ms(value: float) -> str:
    """A latency in milliseconds: '412 ms'."""
    return f"{value:,.0f} ms"


def format_tokens(value: float) -> str:
    """A mean token count per query."""
    return f"{value:,.0f}"


def format_duration(seconds: float) -> str:
    """Wall time in words a reader scans: '42 s', '5 min 35 s', '2 h 05 min'."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_megabytes(value_mb: float) -> str:
    """Memory given in MB: '812 MB', '3.4 GB'."""
    if value_mb >= 1024:
        return f"{value_mb / 1024:.1f} GB"
    return f"{value_mb:,.0f} MB"


def format_bytes(value: int) -> str:
    """A file size: '2.3 MB'."""
    if value <= 0:
        return "0 B"
    units = ("B", "kB", "MB", "GB", "TB")
    exponent = min(int(math.log(value, 1024)), len(units) - 1)
    scaled = value / 1024**exponent
    return f"{scaled:.0f} {units[exponent]}" if exponent == 0 else f"{scaled:.1f} {units[exponent]}"


def format_score(value: float) -> str:
    """A rubric score out of 100, as the assessment page shows it."""
    return f"{value:.0f}"
