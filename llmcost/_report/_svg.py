"""Charts as plain SVG, drawn here so that a page needs nothing at view time: no network, no JavaScript. Hovering a
bar shows its exact figure (an SVG ``<title>``); every text from the data is HTML-escaped.

Example::

    >>> hbar_chart([("gpt-4o", 12.41, "#3b6fd8"), ("gpt-4o-mini", 0.93, "#e8863a")])
    '<svg xmlns="http://www.w3.org/2000/svg" width="540" ...'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._format import escape, money, shorten

__all__ = ["hbar_chart", "legend", "stacked_columns"]


def _nice_step(peak: float, ticks: int = 5) -> float:
    """A round axis step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks up to ``peak``."""
    if peak <= 0:
        return 1.0
    raw = peak / ticks
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power


def _axis_money(value: float) -> str:
    if value == 0:
        return "$0"
    if value >= 1000:
        return f"${value / 1000:,.1f}k".replace(".0k", "k")
    if value >= 1:
        return f"${value:,.2f}".rstrip("0").rstrip(".")
    return f"${value:.4f}".rstrip("0").rstrip(".")


def hbar_chart(items: Sequence[tuple[str, float, str]], *, width: int = 540, label_width: int = 170) -> str:
    """Horizontal bars: ``items`` are ``(label, value, color)``, drawn in the given order with the amount at the end.

    Example::

        >>> hbar_chart([("search", 30.1, "#3b6fd8"), ("(no team tag)", 4.05, "#8a8f98")])
        '<svg xmlns="http://www.w3.org/2000/svg" width="540" height="64" ...<title>search: $30.10</title>...</svg>'
    """
    if not items:
        return '<p class="empty">Nothing to show.</p>'
    row, top = 26, 6
    height = top + row * len(items) + 6
    value_width = 86
    room = width - label_width - value_width - 8
    peak = max((v for _, v, _ in items), default=0.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for i, (label, value, color) in enumerate(items):
        y = top + i * row
        bar = max(value / peak * room, 0.0)
        text = shorten(label, 26)
        parts.append(
            f"<g><title>{escape(label)}: {escape(money(value))}</title>"
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end" font-size="12" fill="#374151">'
            f"{escape(text)}</text>"
            f'<rect x="{label_width}" y="{y + 4}" width="{bar:.1f}" height="17" rx="2" fill="{color}"/>'
            f'<text x="{label_width + bar + 6:.1f}" y="{y + 16}" font-size="12" fill="#1f2430">'
            f"{escape(money(value))}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked_columns(
    periods: Sequence[datetime],
    series: Sequence[tuple[str, Sequence[float], str]],
    *,
    width: int = 1080,
    height: int = 280,
    freq_label: str = "day",
) -> str:
    """Columns per period, stacked by series (``(name, values, color)``), with a money axis and date labels.

    Example::

        >>> stacked_columns([datetime(2024, 5, 1), datetime(2024, 5, 2)], [("compute", [1.0, 2.5], "#e8863a")])
        '<svg xmlns="http://www.w3.org/2000/svg" width="1080" height="280" ...</svg>'
    """
    if not periods:
        return '<p class="empty">Nothing to show.</p>'
    left, right, top, bottom = 64, 12, 12, 38
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for _, values, _ in series) for i in range(len(periods))]
    peak = max(totals) if totals else 0.0
    step = _nice_step(peak)
    ceiling = step * max(math.ceil(peak / step), 1)
    n = len(periods)
    slot = plot_w / n
    bar_w = max(min(slot * 0.72, 46), 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    tick = 0.0
    while tick <= ceiling + step / 2:
        y = top + plot_h - tick / ceiling * plot_h
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb" stroke-width="1"/>'
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#6b7280">'
            f"{escape(_axis_money(tick))}</text>"
        )
        tick += step
    every = max(1, math.ceil(n / 12))
    fmt = (
        "%Y-%m-%d %H:00" if freq_label == "hour" else "%b %Y" if freq_label in ("month", "quarter", "year") else "%b %d"
    )
    for i, period in enumerate(periods):
        x = left + i * slot + (slot - bar_w) / 2
        base = float(top + plot_h)
        pieces = []
        for name, values, color in series:
            value = values[i]
            if value <= 0:
                continue
            h = value / ceiling * plot_h
            base -= h
            pieces.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{escape(period.strftime(fmt))} · {escape(name)}: {escape(money(value))}</title></rect>"
            )
        heading = f"{escape(period.strftime(fmt))}: {escape(money(totals[i]))}"
        parts.append(f"<g><title>{heading}</title>{''.join(pieces)}</g>")
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11" '
                f'fill="#6b7280">{escape(period.strftime(fmt))}</text>'
            )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#9ca3af"/></svg>'
    )
    return "".join(parts)


def legend(series: Sequence[tuple[str, Any, str]]) -> str:
    """The color key of a chart's ``series`` (``(name, values, color)``).

    Example::

        >>> legend([("compute", [1.0, 2.5], "#e8863a")])
        '<div class="legend"><span style="--c:#e8863a">compute</span></div>'
    """
    keys = "".join(f'<span style="--c:{c}">{escape(n)}</span>' for n, _, c in series)
    return f'<div class="legend">{keys}</div>'
