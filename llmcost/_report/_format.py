"""Figures as text, one way everywhere: money, token counts, times and labels for people; aligned tables for a
terminal; CSV and JSON records for machines. The text report, the HTML report and the command line all use these.

Example::

    >>> money(1234.5), money(0.00054), count(12_345_678)
    ('$1,234.50', '$0.000540', '12.3M')
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import IO, TYPE_CHECKING, Any

from .._model_price import tidy

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "WIDTH",
    "cell",
    "count",
    "decimal_text",
    "elapsed_words",
    "escape",
    "format_table",
    "frame_records",
    "frame_table",
    "label",
    "money",
    "per_mtok",
    "shorten",
    "spend_table",
    "when",
    "write_frame",
]

#: Terminal tables and lines fit this many columns.
WIDTH = 80


def money(value: Decimal | float) -> str:
    """Dollars with as many decimals as a small amount needs: ``$1,234.50``, ``$0.0420``, ``$0.000540``; NaN is "-".

    A ``Decimal`` is formatted exactly, rounded half even as ``dollars`` rounds (never through a float, which shows
    2.675 as $2.67 and a 20-digit sum with made-up digits); a float as the shortest decimal that reads back as it.
    The places follow the amount as rounded: $0.00999995 is ``$0.0100``, not ``$0.010000``.

    >>> money(0.042), money(Decimal("2.675")), money(Decimal("12345678901234567890.123456789"))
    ('$0.0420', '$2.68', '$12,345,678,901,234,567,890.12')
    """
    if isinstance(value, Decimal):
        amount = value
    else:
        try:
            amount = Decimal(str(value))  # a float's shortest repr, an int or a numpy scalar exactly
        except ArithmeticError:  # pandas' NA and such
            return "-"
    if not amount.is_finite():
        return "-"
    size = amount.copy_abs()  # (abs() would round to the caller's context)
    # Room for every digit before the point and six after: the default 28 digits would round a large sum.
    context = Context(prec=max(size.adjusted(), 0) + 10, rounding=ROUND_HALF_EVEN)
    places = 2 if size >= 1 or size == 0 else 4 if size >= Decimal("0.01") else 6
    shown = size.quantize(Decimal(1).scaleb(-places), context=context)
    # An amount that rounds up into the next size is shown as one of that size ($0.999996 as $1.00).
    while places > 2 and shown >= (Decimal("0.01") if places == 6 else 1):
        places -= 2
        shown = size.quantize(Decimal(1).scaleb(-places), context=context)
    sign = "-" if amount < 0 and shown else ""  # -1e-9 is $0.000000, not -$0.000000
    return f"{sign}${shown:,f}"


def elapsed_words(span: timedelta) -> str:
    """A span under a day or so, in words: whole minutes below an hour, else whole hours.

    >>> elapsed_words(timedelta(hours=2, minutes=12)), elapsed_words(timedelta(minutes=9, seconds=50))
    ('2 h', '9 min')
    """
    minutes = max(int(span.total_seconds() // 60), 0)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h"


def count(value: float) -> str:
    """Token counts: exact below 10,000, then compact (12.3k, 4.5M, 1.2G); NaN is "-".

    >>> count(9_999), count(12_345)
    ('9,999', '12.3k')
    """
    if value != value:
        return "-"
    size = abs(value)
    if size < 10_000:
        return f"{int(value):,}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= scale:
            return f"{value / scale:,.1f}{suffix}"
    return f"{int(value):,}"  # pragma: no cover - unreachable


def per_mtok(value: float | None) -> str:
    """A per-million-token price: at least two decimals, more when they matter (0.075, 0.0375); None is "-".

    >>> per_mtok(0.075), per_mtok(15.0)
    ('0.075', '15.00')
    """
    if value is None:
        return "-"
    text = f"{value:,.4f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


def label(value: object) -> str:
    """A group key as shown: ``(none)`` for a missing one (None, or NaN from pandas).

    >>> label(None), label("gpt-4o")
    ('(none)', 'gpt-4o')
    """
    return "(none)" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def when(value: Any) -> str:
    """A period start or a moment: the date alone at midnight, else date, hour and minute (pandas or datetime).

    >>> when(datetime(2024, 5, 1)), when(datetime(2024, 5, 1, 13, 30))
    ('2024-05-01', '2024-05-01 13:30')
    """
    stamp = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    if isinstance(stamp, datetime):
        if stamp.hour == stamp.minute == stamp.second == 0:
            return stamp.strftime("%Y-%m-%d")
        return stamp.strftime("%Y-%m-%d %H:%M")
    return str(stamp)


def escape(value: object) -> str:
    """``value`` as text safe inside HTML and its attributes; None is empty.

    >>> escape('<b class="x">')
    '&lt;b class=&quot;x&quot;&gt;'
    """
    return html.escape("" if value is None else str(value), quote=True)


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis when cut.

    >>> shorten("summarize-ticket", 10)
    'summarize…'
    """
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def cell(value: Any, kind: str) -> str:
    """One value as text by ``kind``: text, time, money, count, int, pct, score, bool (anything else: ``str``).
    A missing value is ``(none)`` as text and ``-`` otherwise.

    >>> cell(0.25, "pct"), cell(4.2, "score"), cell(None, "money")
    ('25%', '+4.2', '-')
    """
    if value is None or (isinstance(value, float) and math.isnan(value) and kind in ("text", "time")):
        return "-" if kind != "text" else "(none)"
    if kind == "money":
        return money(value)  # as it is: a Decimal is formatted exactly
    if kind == "count":
        return count(float(value))
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{float(value):.0%}"
    if kind == "score":
        return f"{float(value):+.1f}"
    if kind == "time":
        return when(value)
    if kind == "bool":
        return "yes" if value else ""
    return str(value)


_NUMERIC = ("money", "count", "int", "pct", "score", "num")


def format_table(
    rows: Sequence[Sequence[Any]],
    columns: Sequence[tuple[str, str]],
    width: int = WIDTH,
    *,
    whole: Sequence[int] = (),
) -> str:
    """Rows as an aligned text table no wider than ``width``: ``columns`` are ``(header, kind)`` pairs, kind one of
    text, time, money, count, int, pct, score, bool. Numbers are right-aligned; long text is cut with an ellipsis,
    except in the ``whole`` columns (indexes): an identifier there too long for its column is never cut but put
    on a line of its own, the rest of its row on the next line.

    Example::

        >>> print(format_table([("gpt-4o", 12.5)], [("model", "text"), ("cost", "money")]))
        model     cost
        ------  ------
        gpt-4o  $12.50
    """
    cells = [[cell(v, kind) for v, (_, kind) in zip(row, columns, strict=True)] for row in rows]
    headers = [h for h, _ in columns]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    gap = 2
    kept = set(whole)
    text_columns = [i for i, (_, kind) in enumerate(columns) if kind == "text" and i not in kept]
    while sum(widths) + gap * (len(widths) - 1) > width and (text_columns or kept):
        if not text_columns:  # only whole columns are left to give room: they wrap instead of being cut
            _fit_whole(widths, headers, cells, sorted(kept), width - gap * (len(widths) - 1))
            break
        widest = max(text_columns, key=lambda i: widths[i])
        floor = max(len(headers[widest]), 8)
        if widths[widest] <= floor:
            text_columns.remove(widest)
            continue
        widths[widest] -= 1
    lines = []
    for n, row in enumerate([headers, *cells]):
        parts = []
        for i, value in enumerate(row):
            if i in kept and len(value) > widths[i]:
                # Under its column, or as far right as the line lets a long one be (no line past ``width``).
                offset = max(min(sum(widths[:i]) + gap * i, width - len(value)), 0)
                lines.append(" " * offset + value)
                value = ""
            value = shorten(value, widths[i])
            parts.append(value.rjust(widths[i]) if columns[i][1] in _NUMERIC else value.ljust(widths[i]))
        lines.append((" " * gap).join(parts).rstrip())
        if n == 0:
            lines.append((" " * gap).join("-" * w for w in widths))
    return "\n".join(lines)


def _fit_whole(widths: list[int], headers: list[str], cells: list[list[str]], kept: list[int], room: int) -> None:
    """Narrow the ``kept`` (whole) columns in ``widths`` so the row fits ``room``, putting as few of their values
    as can be on lines of their own: the widest column alone giving way would wrap nearly every row of it (a long
    budget filter beside a long name). Each column's choices are the lengths of its values; ties keep the most."""
    import bisect
    import itertools

    others = sum(w for i, w in enumerate(widths) if i not in kept)
    lengths = [sorted(len(r[i]) for r in cells) for i in kept]
    floors = [max(len(headers[i]), 8) for i in kept]
    choices = [sorted({floor, *(n for n in found if n > floor)}) for found, floor in zip(lengths, floors, strict=True)]
    # At most ~20,000 combinations (a table of many values of many lengths): each column's choices thinned evenly,
    # its narrowest and widest kept.
    most = max(2, int(20_000 ** (1 / len(choices)))) if choices else 2
    choices = [
        c if len(c) <= most else sorted({c[round(k * (len(c) - 1) / (most - 1))] for k in range(most)}) for c in choices
    ]
    best: tuple[tuple[int, int, int], tuple[int, ...]] | None = None
    for combo in itertools.product(*choices):
        over = max(others + sum(combo) - room, 0)
        wrapped = sum(len(found) - bisect.bisect_right(found, w) for found, w in zip(lengths, combo, strict=True))
        key = (over, wrapped, -sum(combo))
        if best is None or key < best[0]:
            best = (key, combo)
    if best is not None:
        for i, w in zip(kept, best[1], strict=True):
            widths[i] = w


_KINDS = {
    "cost": "money",
    "spent": "money",
    "projected": "money",
    "expected": "money",
    "projected_cost": "money",
    "saving": "money",
    "cost_per_call": "money",
    "cost_per_1k_tokens": "money",
    "limit": "money",
    "remaining": "money",
    "calls": "int",
    "input_tokens": "count",
    "output_tokens": "count",
    "cache_read_tokens": "count",
    "cache_write_tokens": "count",
    "utilization": "pct",
    "score": "score",
    "anomaly": "bool",
    "period": "time",
    "period_start": "time",
    "period_end": "time",
}
_HEADERS = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_tokens": "cache rd",
    "cache_write_tokens": "cache wr",
    "cost_per_call": "per call",
    "cost_per_1k_tokens": "per 1k tok",
    "projected_cost": "projected",
    "suggested_model": "suggested",
}


def frame_table(
    frame: pd.DataFrame,
    columns: Sequence[str] | None = None,
    width: int = WIDTH,
    optional: Sequence[str] = (),
    *,
    whole: Sequence[str] = (),
) -> str:
    """A frame as ``format_table`` text, column kinds guessed from the names analytics uses. ``optional`` columns
    are left out, last first, while the table would be wider than ``width`` with them; ``whole`` columns are never
    cut (``format_table``'s ``whole``).

    Example::

        >>> print(frame_table(analytics.by_model(tracker), ["model", "cost", "calls"]))
        model                 cost  calls
        -----------------  -------  -----
        (none)              $24.00     10
        gpt-4o               $5.18     40
        claude-3-5-sonnet    $1.20     10
        gpt-4o-mini        $0.1080     30
    """
    names = list(columns) if columns is not None else list(frame.columns)
    spec = []
    for name in names:
        kind = _KINDS.get(name)
        if kind is None:
            dtype = frame[name].dtype
            kind = "int" if dtype.kind in "iu" else "money" if dtype.kind == "f" else "text"
            if str(dtype).startswith("datetime64"):
                kind = "time"
        spec.append((_HEADERS.get(name, name), kind))
    rows = list(frame[names].itertuples(index=False, name=None))
    droppable = [names.index(n) for n in optional if n in names]
    while droppable:
        natural = format_table(rows, spec, width=10_000)
        if max((len(line) for line in natural.splitlines()), default=0) <= width:
            break
        drop = droppable.pop()
        spec.pop(drop)
        names.pop(drop)
        rows = [row[:drop] + row[drop + 1 :] for row in rows]
        droppable = [i - 1 if i > drop else i for i in droppable]
    return format_table(rows, spec, width, whole=[names.index(n) for n in whole if n in names])


_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def spend_table(frame: pd.DataFrame) -> str:
    """A ``spend`` frame for people: keys, cost and calls, then the token columns that fit (cache ones if used).

    Example::

        >>> print(spend_table(analytics.spend(tracker, by=("model", "tag:team"))))
        model              tag:team     cost  calls   input  output
        -----------------  --------  -------  -----  ------  ------
        (none)             search     $24.00     10       0       0
        gpt-4o             support     $3.08     20    1.2M   8,000
        gpt-4o             search      $2.10     20  800.0k   10.0k
        claude-3-5-sonnet  (none)      $1.20     10  300.0k   20.0k
        gpt-4o-mini        support   $0.1080     30  600.0k   30.0k
    """
    keys = [c for c in frame.columns if c not in ("cost", "calls", *_TOKEN_COLUMNS)]
    tokens = [c for c in _TOKEN_COLUMNS if c in frame and (c in _TOKEN_COLUMNS[:2] or frame[c].any())]
    return frame_table(frame, [*keys, "cost", "calls", *tokens], optional=tokens)


def _plain(value: Any) -> Any:
    if value is None or type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing values
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Decimal):  # money: exact text, never a float and never an exponent (1E-7)
        return decimal_text(value)
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def decimal_text(value: Decimal) -> str | None:
    """Exact money as text: every significant digit, at least two decimals, never an exponent; NaN is None.

    >>> decimal_text(Decimal("40.50")), decimal_text(Decimal("0.000540000")), decimal_text(Decimal("1E+2"))
    ('40.50', '0.00054', '100.00')
    """
    if value != value:
        return None
    # tidy, not ``value.normalize()``: that rounds to the caller's context (28 digits by default, 8 if a notebook
    # set prec=8), and this text is documented as the exact sum.
    text = format(tidy(value) if value.is_finite() else value, "f")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready records: timestamps in ISO 8601, NaN and None as null.

    Example::

        >>> frame_records(analytics.forecast(tracker)[["period_start", "spent"]])
        [{'period_start': '2024-05-01T00:00:00+00:00', 'spent': 30.488}]
    """
    names = [str(c) for c in frame.columns]
    return [dict(zip(names, map(_plain, row), strict=True)) for row in frame.itertuples(index=False, name=None)]


def write_frame(
    frame: pd.DataFrame, fmt: str, out: IO[str], columns: Sequence[str] | None = None, *, whole: Sequence[str] = ()
) -> None:
    """Print ``frame`` to ``out`` as a table (``fmt`` "table", its ``whole`` columns never cut), CSV or JSON (a
    list of records).

    Example::

        >>> write_frame(analytics.by_model(tracker)[["model", "cost", "calls"]], "csv", sys.stdout)
        model,cost,calls
        ,24.0,10
        gpt-4o,5.18,40
        claude-3-5-sonnet,1.2,10
        gpt-4o-mini,0.108,30
    """
    if fmt == "json":
        json.dump(frame_records(frame), out, indent=1, ensure_ascii=False)
        out.write("\n")
    elif fmt == "csv":
        import csv

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([str(c) for c in frame.columns])
        for record in frame_records(frame):
            writer.writerow(["" if v is None else json.dumps(v) if isinstance(v, dict) else v for v in record.values()])
    else:
        out.write(frame_table(frame, columns, whole=whole) + "\n")
