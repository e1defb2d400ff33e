"""The benchmark results file, and a growth chart drawn from it as a plain SVG (no plotting library needed).

A results file is what ``--json PATH`` makes a benchmark write::

    {"bench": "stores", "machine": "...", "created": "2026-11-23T00:00:00+00:00", "versions": {...},
     "records": [{"figure": "ingest", "series": "DuckDBStore", "size": 1000000, "value": 4.2, "unit": "s"}, ...]}

Each record is one measured figure: ``figure`` names the chart it belongs to, ``series`` the line in it, ``size``
the number of entries (records without a size are tables, not growth, and are not drawn), ``value`` in ``unit``.

Run: python -m benchmarks.plot results/*.json --out docs/performance-growth.svg [--figure ingest ...]
Each figure becomes one log-log panel: a line of slope 1 grows linearly with size.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from benchmarks._util import machine

__all__ = ["load_results", "svg_chart", "write_results"]

_COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
    "#000000",
)
_W, _H = 900, 300  # one panel
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 340, 34, 46
_LEGEND_CHARS = 52


def write_results(path: str | Path, bench: str, records: Sequence[Mapping[str, Any]], **extra: Any) -> None:
    """Write ``records`` (one dict per measured figure) as benchmark ``bench``'s results file at ``path``.

    Example::

        write_results("results/stores.json", "stores",
                      [{"figure": "ingest", "series": "DuckDBStore", "size": 100_000, "value": 0.8, "unit": "s"}])
    """
    doc = {
        "bench": bench,
        "machine": machine(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
        "records": [dict(r) for r in records],
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc, indent=1, default=str) + "\n")


def load_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every record of the results files at ``paths``, each with its ``bench`` name added."""
    records = []
    for path in paths:
        doc = json.loads(Path(path).read_text())
        for record in doc.get("records", []):
            records.append({"bench": doc.get("bench"), **record})
    return records


def _decades(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis from ``lo`` to ``hi``: powers of ten, with 2 and 5 between when few."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    steps = (1,) if last - first > 3 else (1, 2, 5)
    ticks = [m * 10.0**e for e in range(first, last + 1) for m in steps]
    return [t for t in ticks if lo / 1.0001 <= t <= hi * 1.0001] or [lo, hi]


def _label(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _short(name: str) -> str:
    return name if len(name) <= _LEGEND_CHARS else name[: _LEGEND_CHARS - 1] + "…"


def _panel(figure: str, records: list[dict[str, Any]], top: float) -> list[str]:
    """SVG elements of one log-log panel for ``figure``, drawn ``top`` pixels down."""
    series: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        series.setdefault(str(r["series"]), []).append((float(r["size"]), float(r["value"])))
    units = sorted({str(r.get("unit", "")) for r in records})
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts if y > 0]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    if x_lo == x_hi:
        x_lo, x_hi = x_lo / 2, x_hi * 2
    # Pad the value axis to whole decades (or halves) so lines don't touch the frame.
    y_lo, y_hi = 10 ** math.floor(math.log10(y_lo)), 10 ** math.ceil(math.log10(y_hi))
    if y_lo == y_hi:
        y_lo, y_hi = y_lo / 10, y_hi * 10
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + (math.log10(x) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo)) * pw

    def py(y: float) -> float:
        return top + _TOP + ph - (math.log10(y) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)) * ph

    out = [
        f'<text x="{_LEFT}" y="{top + 20}" font-size="14" font-weight="bold">{escape(figure)}</text>',
        f'<rect x="{_LEFT}" y="{top + _TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    for t in _decades(x_lo, x_hi):
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{top + _TOP}" x2="{x:.1f}" y2="{top + _TOP + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + _TOP + ph + 16}" text-anchor="middle">{_label(t)}</text>')
    for t in _decades(y_lo, y_hi):
        y = py(t)
        out.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + pw}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
    out.append(
        f'<text x="{_LEFT + pw / 2}" y="{top + _H - 8}" text-anchor="middle">entries (log scale)</text>'
        f'<text transform="translate(16,{top + _TOP + ph / 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(', '.join(units))} (log scale)</text>"
    )
    # A dashed guide of slope 1 (linear growth) through the lowest series' first point, clipped to the panel.
    clip = f"clip{int(top)}"
    anchor = min((sorted(pts)[0] for pts in series.values()), key=lambda p: p[1])
    gx0, gx1 = x_lo, x_hi
    gy0, gy1 = anchor[1] * gx0 / anchor[0], anchor[1] * gx1 / anchor[0]
    out.append(
        f'<clipPath id="{clip}"><rect x="{_LEFT}" y="{top + _TOP}" width="{pw}" height="{ph}"/></clipPath>'
        f'<line x1="{px(gx0):.1f}" y1="{py(gy0):.1f}" x2="{px(gx1):.1f}" y2="{py(gy1):.1f}" stroke="#bbb" '
        f'stroke-dasharray="5,4" clip-path="url(#{clip})"/>'
    )
    legend_y = top + _TOP + 8 + len(series) * 18
    out.append(
        f'<line x1="{_W - _RIGHT + 14}" y1="{legend_y}" x2="{_W - _RIGHT + 34}" y2="{legend_y}" stroke="#bbb" '
        f'stroke-dasharray="5,4"/><text x="{_W - _RIGHT + 40}" y="{legend_y + 4}" fill="#777">'
        "linear growth (slope 1)</text>"
    )
    for n, (name, pts) in enumerate(sorted(series.items())):
        color = _COLORS[n % len(_COLORS)]
        pts = sorted(p for p in pts if p[1] > 0)
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in pts:
            out.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}">'
                f"<title>{escape(name)}: {_label(x)} entries, {y:.4g} {escape(units[0] if units else '')}</title>"
                "</circle>"
            )
        ly = top + _TOP + 8 + n * 18
        out.append(
            f'<line x1="{_W - _RIGHT + 14}" y1="{ly}" x2="{_W - _RIGHT + 34}" y2="{ly}" stroke="{color}" '
            f'stroke-width="2"/><text x="{_W - _RIGHT + 40}" y="{ly + 4}">{escape(_short(name))}'
            f"<title>{escape(name)}</title></text>"
        )
    return out


def svg_chart(records: Iterable[Mapping[str, Any]], figures: Sequence[str] | None = None, title: str = "") -> str:
    """An SVG document with one log-log panel per figure (in ``figures`` order, default: as first seen) of the
    records that carry a ``size``.

    Example::

        Path("growth.svg").write_text(svg_chart(load_results(["results/stores.json"]), ["ingest"]))
    """
    by_figure: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("size") is not None and r.get("value") is not None:
            by_figure.setdefault(str(r["figure"]), []).append(dict(r))
    names = [f for f in (figures or list(by_figure)) if f in by_figure]
    if not names:
        raise ValueError(f"no records with a size for figures {list(figures or by_figure)!r}")
    head = 30 if title else 0
    height = head + _H * len(names)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" viewBox="0 0 {_W} {height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{_W}" height="{height}" fill="white"/>',
    ]
    if title:
        parts.append(f'<text x="{_W / 2}" y="20" text-anchor="middle" font-size="15">{escape(title)}</text>')
    for n, figure in enumerate(names):
        parts.extend(_panel(figure, by_figure[figure], head + n * _H))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="results JSON files written with --json")
    parser.add_argument("--out", default="docs/performance-growth.svg", help="SVG file to write")
    parser.add_argument("--figure", action="append", help="figure to draw (repeatable); default: every sized one")
    parser.add_argument("--title", default="", help="a title over the panels")
    args = parser.parse_args(argv)
    svg = svg_chart(load_results(args.results), args.figure, args.title)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(svg)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
