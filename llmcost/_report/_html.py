"""The HTML report: the overview (``_overview``) as one self-contained page (inline CSS and SVG, no script, no
external URL) with spend over time, by category, by model and by tag as charts, and the tables behind them.

Every text that comes from the data (resources, models, tag keys and values) is HTML-escaped.

Example::

    >>> write_html_report(tracker, "report.html")
    PosixPath('report.html')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..analytics._output import OutputFile
from ._format import cell, count, elapsed_words, escape, label, money
from ._overview import Overview, compute_overview
from ._svg import hbar_chart, legend, stacked_columns

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["html_table", "render_html", "render_html_report", "render_main", "write_html", "write_html_report"]

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


def html_table(frame: pd.DataFrame, columns: Sequence[tuple[str, str, str]]) -> str:
    """``frame`` as an HTML table; ``columns`` are ``(column, header, kind)``, kind text, money, int, count, pct,
    score or time (see ``_format.cell``).

    Example::

        >>> html_table(analytics.by_model(tracker).head(1), [("model", "model", "text"), ("cost", "cost", "money")])
        '<table><thead><tr><th class="">model</th><th class="num">cost</th></tr></thead><tbody>...</tbody></table>'
    """
    if frame.empty:
        return '<p class="empty">Nothing to show.</p>'
    head = "".join(f'<th class="{"" if k == "text" else "num"}">{escape(h)}</th>' for _, h, k in columns)
    rows = []
    for rec in frame.to_dict("records"):
        cells = []
        for name, _, kind in columns:
            value = rec.get(name)
            text = label(value) if kind == "text" else cell(value, kind)
            cells.append(f'<td class="{"" if kind == "text" else "num"}">{escape(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# ---------------------------------------------------------------------------------------------------------------
# The page


def render_main(overview: Overview, extra: Sequence[str] = ()) -> str:
    """What the page's ``<main>`` holds for ``overview``: cards, charts and tables, then the footer. A live page
    (``llmcost serve``'s dashboard) swaps this in when the figures change. ``extra`` are further sections, already
    HTML (the reprice and reconcile sections of ``_repricing``).

    Example::

        >>> render_main(compute_overview(tracker, now=tracker.clock())).startswith('<div class="cards">')
        True
    """
    if overview.empty:
        body = ['<section><p class="empty">No entries for this selection.</p></section>']
    else:
        body = _sections(overview)
    body.extend(extra)
    return f"{''.join(body)}<footer>Made by llmcost. Amounts in USD, summed exactly.</footer>"


def render_html(
    overview: Overview,
    *,
    title: str = "llmcost report",
    extra: Sequence[str] = (),
    controls: str = "",
    script: str = "",
    css: str = "",
) -> str:
    """``overview`` as one self-contained HTML page.

    ``extra`` sections (HTML) follow the report's own; ``controls`` (HTML, e.g. a filter form) goes above
    ``<main>``, ``script`` (JavaScript, inline) at the end of the body and ``css`` after the report's own style:
    the live dashboard of ``llmcost serve`` uses them; the report file has none, so it stays a page without
    script.

    Example::

        Path("report.html").write_text(render_html(compute_overview(tracker)), encoding="utf-8")
    """
    subtitle = f"{escape(overview.store)} · " if overview.store else ""
    generated = overview.now.strftime("%Y-%m-%d %H:%M UTC")
    tail = f"<script>{script}</script>" if script else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}{css}</style></head><body>"
        f'<header><h1>{escape(title)}</h1><p>{subtitle}<span id="generated">generated {escape(generated)}</span>'
        " · all times UTC</p></header>"
        f'{controls}<main id="report">{render_main(overview, extra)}</main>{tail}'
        "</body></html>\n"
    )


def render_html_report(
    source: Any, *, title: str = "llmcost report", store: str | None = None, now: datetime | None = None
) -> str:
    """The report for ``source`` (tracker, store, frame) as one self-contained HTML page.

    Example::

        Path("report.html").write_text(render_html_report(tracker), encoding="utf-8")
    """
    return render_html(compute_overview(source, store=store, now=now), title=title)


def _sections(overview: Overview) -> list[str]:
    o = overview
    first = f"{o.first:%Y-%m-%d}" if o.first is not None else "-"
    last = f"{o.last:%Y-%m-%d}" if o.last is not None else "-"
    out = [
        '<div class="cards">',
        _card("Total spend", money(o.cost), f"{first} to {last}"),
        _card("Calls", f"{o.calls:,}", f"{money(o.cost / max(o.calls, 1))} per call"),
        _card(
            "Tokens",
            count(o.input_tokens + o.output_tokens),
            f"{count(o.input_tokens)} in · {count(o.output_tokens)} out",
        ),
        _card(
            "This month, so far",
            money(o.month_spent),
            f"{elapsed_words(o.month_elapsed)} into {o.month_start:%B %Y}: too early to project"
            + (f" ({o.month_scope})" if o.month_scope else "")
            + (" (the whole month, not only the selection)" if o.window else ""),
        )
        if o.projection_too_early
        else _card(
            "This month, projected",
            money(o.month_projected),
            f"{money(o.month_spent)} so far ({o.month_start:%B %Y}"
            + (f", {o.month_scope}" if o.month_scope else "")
            + (", the whole month, not only the selection" if o.window else "")
            + ")",
        ),
        "</div>",
    ]
    over = o.by_period
    periods = sorted(over["period"].unique())
    stamps = [p.to_pydatetime() if hasattr(p, "to_pydatetime") else p for p in periods]
    series = []
    for i, (category, group) in enumerate(over.groupby("category", sort=False, dropna=False)):
        values = dict(zip(group["period"], group["cost"], strict=True))
        color = _CATEGORY_COLORS.get(str(category), _PALETTE[i % len(_PALETTE)])
        series.append((label(category), [float(values.get(p, 0.0)) for p in periods], color))
    series.sort(key=lambda s: -sum(s[1]))
    selection = f" (the selection {o.window})" if o.window else ""
    out.append(
        f'<section class="wide"><h2>Spend per {o.unit}{escape(selection)}</h2>'
        f"{stacked_columns(stamps, series, freq_label=o.unit)}{legend(series)}</section>"
    )
    out.append('<div class="grid">')
    categories = o.by_category
    out.append(
        "<section><h2>By category</h2>"
        + hbar_chart(
            [
                (label(c), float(v), _CATEGORY_COLORS.get(str(c), _PALETTE[0]))
                for c, v in zip(categories["category"], categories["cost"], strict=True)
            ]
        )
        + "</section>"
    )
    top = _top(o.by_model, "model", 10)
    out.append(
        "<section><h2>By model</h2>"
        + hbar_chart([(name, value, _PALETTE[i % len(_PALETTE)]) for i, (name, value) in enumerate(top)])
        + "</section>"
    )
    out.append(_tag_section(o.by_tag))
    top_resources = _top(o.by_resource, "resource", 10)
    out.append(
        "<section><h2>By resource</h2>"
        + hbar_chart([(name, value, "#5b7a99") for name, value in top_resources])
        + "</section>"
    )
    out.append("</div>")
    out.append(
        '<section class="wide"><h2>Models compared</h2>'
        + html_table(
            o.models,
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
            o.by_resource.head(25),
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
    out.append(
        '<section class="wide"><h2>Cheaper models for the same work</h2>'
        + (
            html_table(
                o.advice,
                [
                    ("resource", "resource", "text"),
                    ("model", "model", "text"),
                    ("suggested_model", "suggested", "text"),
                    ("cost", "cost", "money"),
                    ("projected_cost", "projected", "money"),
                    ("saving", "saving", "money"),
                ],
            )
            if not o.advice.empty
            else '<p class="empty">No cheaper model of the same family is known for the recorded usage.</p>'
        )
        + '<p class="muted">Same provider and model line, a context window at least as large, and at least '
        "20% cheaper on the recorded tokens.</p></section>"
    )
    out.append(
        f'<section class="wide"><h2>Anomalies (per {o.unit})</h2>'
        + (
            html_table(
                o.anomalies,
                [
                    ("period", o.unit, "time"),
                    ("cost", "cost", "money"),
                    ("expected", "typical (median)", "money"),
                    ("score", "robust score", "score"),
                ],
            )
            if not o.anomalies.empty
            else f'<p class="empty">No {o.unit} stands out (robust score within ±3.5).</p>'
        )
        + "</section>"
    )
    return out


def _top(frame: pd.DataFrame, key: str, size: int) -> list[tuple[str, float]]:
    rows = [(label(k), float(v)) for k, v in zip(frame[key], frame["cost"], strict=True)]
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
        items = _top(rows.rename(columns={"tag_value": "value"}), "value", 6)
        parts.append(f"<h3>{escape(key)}</h3>")
        parts.append(hbar_chart([(name, value, _PALETTE[(n + 2) % len(_PALETTE)]) for name, value in items]))
    if len(keys) > 6:
        parts.append(f'<p class="muted">and {len(keys) - 6} more tag keys.</p>')
    parts.append("</section>")
    return "".join(parts)


def _card(title: str, value: str, note: str) -> str:
    return (
        f'<div class="card"><div class="label">{escape(title)}</div><div class="value">{escape(value)}</div>'
        f'<div class="note">{escape(note)}</div></div>'
    )


def write_html(
    overview: Overview, path: str | os.PathLike[str], *, title: str = "llmcost report", extra: Sequence[str] = ()
) -> Path:
    """Write ``overview`` as an HTML page to ``path`` (replacing a regular file whole, writing through a link or
    pipe; ``"-"`` is standard output) and return the path.

    Example::

        write_html(compute_overview(tracker), "report.html")
    """
    output = OutputFile(path)
    page = render_html(overview, title=title, extra=extra)
    with output as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(os.fspath(path))


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
    OutputFile(path)  # a path that cannot be written fails before the work of the overview
    return write_html(compute_overview(source, store=store, now=now), path, title=title)
