"""The HTML report: one self-contained page (inline CSS and SVG, no script, no external URL) with spend over time,
by category, by model and by tag as charts, and the tables behind them.

The charts are drawn here as plain SVG, so the page needs nothing at view time: no network, no JavaScript. Hovering a
bar shows its exact figure (an SVG ``<title>``). Every text that comes from the data (resources, models, tag keys
and values) is HTML-escaped.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .analytics import _Source

__all__ = ["render_html_report", "write_html_report"]

_CATEGORY_COLORS = {
    "llm_inference": "#3b6fd8",
    "llm_embedding": "#1fa39a",
    "compute": "#e8863a",
    "storage": "#8c5ccf",
    "network": "#a0674b",
    "api_calls": "#d45a8c",
    "other": "#8a8f98",
}
_PALETTE = ("#3b6fd8", "#e8863a", "#1fa39a", "#d45a8c", "#8c5ccf", "#a0674b", "#6b9b37", "#c9a227", "#5b7a99")
_FONT = "-apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"

_CSS = """
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1f2430; font: 14px/1.45 FONT; }
header { background: #1f2430; color: #fff; padding: 22px 32px 18px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header p { margin: 0; color: #b8bfcc; font-size: 13px; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 24px 40px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 14px; margin-bottom: 18px; }
.card { background: #fff; border-radius: 8px; padding: 14px 16px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.card .label { color: #6b7280; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 24px; font-weight: 600; margin-top: 2px; }
.card .note { color: #6b7280; font-size: 12px; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; margin-bottom: 16px; }
.grid section { margin-bottom: 0; }
section { background: #fff; border-radius: 8px; padding: 16px 18px; box-shadow: 0 1px 2px rgba(0,0,0,.08);
  margin-bottom: 16px; overflow-x: auto; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 15px; margin: 0 0 10px; font-weight: 600; }
h3 { font-size: 13px; margin: 10px 0 4px; color: #4b5563; font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th { text-align: left; color: #6b7280; font-weight: 600; border-bottom: 1px solid #e5e7eb; padding: 6px 8px; }
td { padding: 5px 8px; border-bottom: 1px solid #f0f1f3; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafbfc; }
.muted { color: #6b7280; }
.empty { color: #6b7280; font-style: italic; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font-family: FONT; }
.legend { display: flex; flex-wrap: wrap; gap: 12px; font-size: 12px; margin-top: 6px; color: #4b5563; }
.legend span::before { content: ""; display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 5px; background: var(--c); vertical-align: -1px; }
footer { color: #6b7280; font-size: 12px; text-align: center; margin-top: 8px; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } .cards { grid-template-columns: 1fr 1fr; } }
""".replace("FONT", _FONT)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _money(value: float) -> str:
    size = abs(value)
    sign = "-" if value < 0 else ""
    if size >= 1 or size == 0:
        return f"{sign}${size:,.2f}"
    if size >= 0.01:
        return f"{sign}${size:.4f}"
    return f"{sign}${size:.6f}"


def _count(value: float) -> str:
    size = abs(value)
    if size < 10_000:
        return f"{int(value):,}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= scale:
            return f"{value / scale:,.1f}{suffix}"
    return f"{int(value):,}"


def _label(value: object) -> str:
    return "(none)" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


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


# ---------------------------------------------------------------------------------------------------------------
# Charts


def hbar_chart(items: Sequence[tuple[str, float, str]], *, width: int = 540, label_width: int = 170) -> str:
    """Horizontal bars: ``items`` are ``(label, value, color)``, drawn in the given order with the amount at the end."""
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
        text = _cut(label, 26)
        parts.append(
            f"<g><title>{_e(label)}: {_e(_money(value))}</title>"
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end" font-size="12" fill="#374151">'
            f"{_e(text)}</text>"
            f'<rect x="{label_width}" y="{y + 4}" width="{bar:.1f}" height="17" rx="2" fill="{color}"/>'
            f'<text x="{label_width + bar + 6:.1f}" y="{y + 16}" font-size="12" fill="#1f2430">'
            f"{_e(_money(value))}</text></g>"
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
    """Columns per period, stacked by series (``(name, values, color)``), with a money axis and date labels."""
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
            f"{_e(_axis_money(tick))}</text>"
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
                f"<title>{_e(period.strftime(fmt))} · {_e(name)}: {_e(_money(value))}</title></rect>"
            )
        parts.append(f"<g><title>{_e(period.strftime(fmt))}: {_e(_money(totals[i]))}</title>{''.join(pieces)}</g>")
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11" '
                f'fill="#6b7280">{_e(period.strftime(fmt))}</text>'
            )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#9ca3af"/></svg>'
    )
    return "".join(parts)


def _legend(series: Sequence[tuple[str, Any, str]]) -> str:
    return '<div class="legend">' + "".join(f'<span style="--c:{c}">{_e(n)}</span>' for n, _, c in series) + "</div>"


# ---------------------------------------------------------------------------------------------------------------
# Tables


def html_table(frame: pd.DataFrame, columns: Sequence[tuple[str, str, str]]) -> str:
    """``frame`` as an HTML table; ``columns`` are ``(column, header, kind)``, kind text, money, int, count, pct,
    score or time."""
    if frame.empty:
        return '<p class="empty">Nothing to show.</p>'
    head = "".join(f'<th class="{"" if k == "text" else "num"}">{_e(h)}</th>' for _, h, k in columns)
    rows = []
    for rec in frame.to_dict("records"):
        cells = []
        for name, _, kind in columns:
            value = rec.get(name)
            if kind == "money":
                text = "-" if value is None or value != value else _money(float(value))
            elif kind == "int":
                text = f"{int(value):,}"
            elif kind == "count":
                text = _count(float(value))
            elif kind == "pct":
                text = f"{float(value):.0%}"
            elif kind == "score":
                text = f"{float(value):+.1f}"
            elif kind == "time":
                text = value.strftime("%Y-%m-%d %H:%M").replace(" 00:00", "")
            else:
                text = _label(value)
            cells.append(f'<td class="{"" if kind == "text" else "num"}">{_e(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# ---------------------------------------------------------------------------------------------------------------
# The page


def _freq_for(src: _Source) -> tuple[str, str]:
    span = src.sql("SELECT timezone('UTC', min(timestamp)) AS a, timezone('UTC', max(timestamp)) AS b FROM _e")
    first, last = span["a"].iloc[0], span["b"].iloc[0]
    if first is None or last is None or first != first:
        return "D", "day"
    days = (last - first).total_seconds() / 86400
    if days <= 2:
        return "h", "hour"
    if days <= 120:
        return "D", "day"
    if days <= 730:
        return "W", "week"
    return "MS", "month"


def render_html_report(
    source: Any, *, title: str = "llmcost report", store: str | None = None, now: datetime | None = None
) -> str:
    """The report for ``source`` (tracker, store, frame) as one self-contained HTML page.

    Example::

        Path("report.html").write_text(render_html_report(tracker), encoding="utf-8")
    """
    from . import analytics

    src = analytics._source(source)
    moment = now or datetime.now(timezone.utc)
    total = analytics.spend(src, by=())
    subtitle = f"{_e(store)} · " if store else ""
    body: list[str] = []
    if total.empty:
        body.append('<section><p class="empty">No entries for this selection.</p></section>')
    else:
        body.extend(_sections(src, total, moment))
    generated = moment.strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>{subtitle}generated {_e(generated)} · all times UTC</p></header>"
        f"<main>{''.join(body)}<footer>Made by llmcost. Amounts in USD, summed exactly.</footer></main>"
        "</body></html>\n"
    )


def _sections(src: _Source, total: pd.DataFrame, now: datetime) -> list[str]:
    from . import analytics

    t = total.iloc[0]
    span = src.sql("SELECT timezone('UTC', min(timestamp)) AS a, timezone('UTC', max(timestamp)) AS b FROM _e").iloc[0]
    forecast = analytics.forecast(src, "monthly", now=now).iloc[0]
    tokens = int(t.input_tokens) + int(t.output_tokens)
    out = [
        '<div class="cards">',
        _card("Total spend", _money(float(t.cost)), f"{span['a']:%Y-%m-%d} to {span['b']:%Y-%m-%d}"),
        _card("Calls", f"{int(t.calls):,}", f"{_money(float(t.cost) / max(int(t.calls), 1))} per call"),
        _card("Tokens", _count(tokens), f"{_count(int(t.input_tokens))} in · {_count(int(t.output_tokens))} out"),
        _card(
            "This month, projected",
            _money(float(forecast.projected)),
            f"{_money(float(forecast.spent))} so far ({forecast.period_start:%B %Y})",
        ),
        "</div>",
    ]
    freq, unit = _freq_for(src)
    over = analytics.over_time(src, freq, by="category")
    periods = sorted(over["period"].unique())
    stamps = [p.to_pydatetime() if hasattr(p, "to_pydatetime") else p for p in periods]
    series = []
    for i, (category, group) in enumerate(over.groupby("category", sort=False, dropna=False)):
        values = dict(zip(group["period"], group["cost"], strict=True))
        color = _CATEGORY_COLORS.get(str(category), _PALETTE[i % len(_PALETTE)])
        series.append((_label(category), [float(values.get(p, 0.0)) for p in periods], color))
    series.sort(key=lambda s: -sum(s[1]))
    out.append(
        f'<section class="wide"><h2>Spend per {unit}</h2>'
        f"{stacked_columns(stamps, series, freq_label=unit)}{_legend(series)}</section>"
    )
    out.append('<div class="grid">')
    categories = analytics.by_category(src)
    out.append(
        "<section><h2>By category</h2>"
        + hbar_chart(
            [
                (_label(c), float(v), _CATEGORY_COLORS.get(str(c), _PALETTE[0]))
                for c, v in zip(categories["category"], categories["cost"], strict=True)
            ]
        )
        + "</section>"
    )
    models = analytics.by_model(src)
    top = _top(models, "model", 10, "(no model)")
    out.append(
        "<section><h2>By model</h2>"
        + hbar_chart([(name, value, _PALETTE[i % len(_PALETTE)]) for i, (name, value) in enumerate(top)])
        + "</section>"
    )
    out.append(_tag_section(analytics.by_tag(src)))
    resources = analytics.by_resource(src)
    top_resources = _top(resources, "resource", 10, "(no resource)")
    out.append(
        "<section><h2>By resource</h2>"
        + hbar_chart([(name, value, "#5b7a99") for name, value in top_resources])
        + "</section>"
    )
    out.append("</div>")
    out.append(
        '<section class="wide"><h2>Models compared</h2>'
        + html_table(
            analytics.compare_models(src),
            [
                ("model", "model", "text"),
                ("calls", "calls", "int"),
                ("cost", "cost", "money"),
                ("cost_per_call", "per call", "money"),
                ("cost_per_1k_tokens", "per 1k tokens", "money"),
            ],
        )
        + "</section>"
    )
    out.append(
        '<section class="wide"><h2>Resources</h2>'
        + html_table(
            resources.head(25),
            [
                ("resource", "resource", "text"),
                ("cost", "cost", "money"),
                ("calls", "calls", "int"),
                ("input_tokens", "input tokens", "count"),
                ("output_tokens", "output tokens", "count"),
                ("cache_read_tokens", "cache read", "count"),
            ],
        )
        + "</section>"
    )
    advice = analytics.recommendations(src, now=now)
    out.append(
        '<section class="wide"><h2>Cheaper models for the same work</h2>'
        + (
            html_table(
                advice,
                [
                    ("resource", "resource", "text"),
                    ("model", "model", "text"),
                    ("suggested_model", "suggested", "text"),
                    ("cost", "cost", "money"),
                    ("projected_cost", "projected", "money"),
                    ("saving", "saving", "money"),
                ],
            )
            if not advice.empty
            else '<p class="empty">No cheaper model of the same family is known for the recorded usage.</p>'
        )
        + '<p class="muted">Same provider and model line, a context window at least as large, and at least '
        "20% cheaper on the recorded tokens.</p></section>"
    )
    odd = analytics.anomalies(src, freq)
    flagged = odd[odd["anomaly"]]
    out.append(
        f'<section class="wide"><h2>Anomalies (per {unit})</h2>'
        + (
            html_table(
                flagged,
                [
                    ("period", unit, "time"),
                    ("cost", "cost", "money"),
                    ("expected", "typical (median)", "money"),
                    ("score", "robust score", "score"),
                ],
            )
            if not flagged.empty
            else f'<p class="empty">No {unit} stands out (robust score within ±3.5).</p>'
        )
        + "</section>"
    )
    return out


def _top(frame: pd.DataFrame, key: str, size: int, none: str = "(none)") -> list[tuple[str, float]]:
    rows = [
        (none if _label(k) == "(none)" else str(k), float(v)) for k, v in zip(frame[key], frame["cost"], strict=True)
    ]
    if len(rows) > size:
        rest = sum(v for _, v in rows[size - 1 :])
        rows = [*rows[: size - 1], (f"{len(rows) - size + 1} others", rest)]
    return rows


def _tag_section(tags: pd.DataFrame) -> str:
    if tags.empty:
        return '<section><h2>By tag</h2><p class="empty">No entry carries tags.</p></section>'
    parts = ["<section><h2>By tag</h2>"]
    keys = list(dict.fromkeys(tags["tag_key"]))
    for n, key in enumerate(keys[:6]):
        rows = tags[tags["tag_key"] == key]
        items = _top(rows.rename(columns={"tag_value": "value"}), "value", 6, f"(no {key} tag)")
        parts.append(f"<h3>{_e(key)}</h3>")
        parts.append(hbar_chart([(name, value, _PALETTE[(n + 2) % len(_PALETTE)]) for name, value in items]))
    if len(keys) > 6:
        parts.append(f'<p class="muted">and {len(keys) - 6} more tag keys.</p>')
    parts.append("</section>")
    return "".join(parts)


def _card(label: str, value: str, note: str) -> str:
    return (
        f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
        f'<div class="note">{_e(note)}</div></div>'
    )


def write_html_report(
    source: Any,
    path: str | os.PathLike[str],
    *,
    title: str = "llmcost report",
    store: str | None = None,
    now: datetime | None = None,
) -> Path:
    """Write the HTML report of ``source`` to ``path`` (replacing it whole) and return the path.

    Example::

        write_html_report(tracker, "report.html")
    """
    target = Path(os.fspath(path))
    if not target.parent.exists():
        raise FileNotFoundError(f"cannot write the report to {str(target)!r}: no directory {str(target.parent)!r}")
    page = render_html_report(source, title=title, store=store, now=now)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, target)
    return target
