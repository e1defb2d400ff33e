"""The ``llmcost`` command: ``demo``, ``report``, ``export``, ``prices`` and ``budgets``.

Every command takes ``--store URL`` (default: ``$LLMCOST_STORE``, else ``./llmcost.duckdb``) and ``--format``.
Errors are one line on stderr and exit status 2; tables fit an 80-column terminal.

Example::

    $ llmcost demo                        # simulate two weeks of traffic into ./llmcost.duckdb, then report
    $ llmcost report --by model,tag:team --since 7d
    $ llmcost report --html report.html
    $ llmcost export costs.parquet --since 2024-05-01
    $ llmcost prices 'claude-3-5*'
    $ llmcost budgets status --format json
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import pandas as pd

    from .analytics import _Source
    from .stores import CostStore

__all__ = ["main"]

DEFAULT_STORE = "duckdb://llmcost.duckdb"
WIDTH = 80
_FORMATS = ("table", "csv", "json")


class CliError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


# ---------------------------------------------------------------------------------------------------------------
# Parsing arguments


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2), not usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, *, now: datetime, end_of_day: bool = False) -> datetime:
    """A ``--since``/``--until`` value as an aware UTC datetime.

    Accepts a date (``2024-05-01``, UTC midnight; with ``end_of_day``, the midnight after it, so that
    ``--until 2024-05-31`` includes the 31st), an ISO datetime (naive is UTC), ``today``, ``yesterday``, or a time
    ago: ``30m``, ``24h``, ``7d``, ``2w``.
    """
    value = text.strip()
    lowered = value.lower()
    if lowered in ("today", "yesterday", "now"):
        if lowered == "now":
            return now
        day = now.date() - timedelta(days=1 if lowered == "yesterday" else 0)
        return _midnight(day, end_of_day)
    match = _RELATIVE.match(value)
    if match:
        amount = float(match.group(1))
        return now - timedelta(**{_UNITS[match.group(2).lower()]: amount})
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return _midnight(date.fromisoformat(value), end_of_day)
        except ValueError:
            pass
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    raise CliError(f"cannot read the time {text!r}: use a date (2024-05-01), an ISO datetime, or a span ago (7d, 24h)")


def _midnight(day: date, end_of_day: bool) -> datetime:
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return start + timedelta(days=1) if end_of_day else start


def _tag_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _by_keys(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or ():
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def _build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--store",
        metavar="URL",
        help="where costs are kept: duckdb:///path/costs.duckdb, parquet:///path/dir or memory:// "
        "(default: $LLMCOST_STORE, else ./llmcost.duckdb)",
    )
    output = _Parser(add_help=False)
    output.add_argument("--format", choices=_FORMATS, default="table", help="table (default), or csv/json for machines")
    window = _Parser(add_help=False)
    window.add_argument("--since", metavar="WHEN", help="from this time on: 2024-05-01, an ISO datetime, 7d, 24h...")
    window.add_argument("--until", metavar="WHEN", help="before this time (a date includes that whole day)")
    window.add_argument(
        "--tag", metavar="KEY=VALUE", action="append", type=_tag_pair, default=[], help="only entries with this tag"
    )

    parser = _Parser(
        prog="llmcost",
        description="What your LLM calls cost: reports, exports, prices and budgets from a llmcost store.",
        epilog="Run 'llmcost COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="store_true", help="print the llmcost version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser(
        "demo",
        parents=[common, output],
        help="simulate a realistic workload into the store, then print a report",
        description="Simulate a few teams' LLM traffic over past days (no network, no API key) through the real "
        "@track_cost and budget code, including a batch job that a budget stops, then print a report.",
    )
    demo.add_argument("--days", type=int, default=14, help="days of history to simulate (default 14)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulated traffic (default 7)")

    report = commands.add_parser(
        "report",
        parents=[common, output, window],
        help="spend by category, model, resource, tag and time",
        description="Spend in the store. Without --by: an overview (totals, breakdowns, daily spend, forecast, "
        "anomalies, cheaper models). With --by: one table grouped by those keys.",
    )
    report.add_argument(
        "--by",
        metavar="KEYS",
        action="append",
        help="group by category, resource, model, provider or tag:KEY (comma-separated or repeated)",
    )
    report.add_argument("--freq", metavar="FREQ", help="also split by period: h, D, W (ISO weeks) or MS (months)")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with charts")

    export = commands.add_parser(
        "export",
        parents=[common, window],
        help="write every entry to a CSV, JSON or Parquet file",
        description="Write one row per entry, oldest first. The format follows the file suffix unless --format.",
    )
    export.add_argument("path", metavar="PATH", help="file to write (.csv, .json or .parquet)")
    export.add_argument("--format", choices=("csv", "json", "parquet"), help="file format (default: from PATH)")
    shown = export.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", default=None, help="show a progress bar (default: on a TTY)")
    shown.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")

    prices = commands.add_parser(
        "prices",
        parents=[common, output],
        help="list model prices (USD per million tokens)",
        description="Catalog prices (genai-prices) of models matching PATTERN, in USD per million tokens.",
    )
    prices.add_argument("pattern", nargs="?", help="model id glob or substring, e.g. 'gpt-4o*' or sonnet")
    prices.add_argument("--provider", help="only this provider (openai, anthropic, google...)")

    budgets = commands.add_parser(
        "budgets",
        parents=[common, output],
        help="budgets saved in the store and how much of them is spent",
        description="List the budgets saved in the store (BudgetManager), or their status in the current period.",
    )
    budgets.add_argument("action", nargs="?", choices=("list", "status"), default="status")
    return parser


# ---------------------------------------------------------------------------------------------------------------
# Output: tables for people, CSV and JSON for machines


def _money(value: float) -> str:
    if value != value:  # NaN
        return "-"
    sign = "-" if value < 0 else ""
    size = abs(value)
    if size >= 1 or size == 0:
        return f"{sign}${size:,.2f}"
    if size >= 0.01:
        return f"{sign}${size:.4f}"
    return f"{sign}${size:.6f}"


def _count(value: float) -> str:
    """Token counts: exact below 10,000, then compact (12.3k, 4.5M, 1.2G)."""
    if value != value:
        return "-"
    size = abs(value)
    if size < 10_000:
        return f"{int(value):,}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= scale:
            return f"{value / scale:,.1f}{suffix}"
    return f"{int(value):,}"  # pragma: no cover - unreachable


def _cell(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value) and kind in ("text", "time")):
        return "-" if kind != "text" else "(none)"
    if kind == "money":
        return _money(float(value))
    if kind == "count":
        return _count(float(value))
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{float(value):.0%}"
    if kind == "score":
        return f"{float(value):+.1f}"
    if kind == "time":
        stamp = value
        if hasattr(stamp, "to_pydatetime"):
            stamp = stamp.to_pydatetime()
        if isinstance(stamp, datetime):
            if stamp.hour == stamp.minute == stamp.second == 0:
                return stamp.strftime("%Y-%m-%d")
            return stamp.strftime("%Y-%m-%d %H:%M")
        return str(stamp)
    if kind == "bool":
        return "yes" if value else ""
    return str(value)


_NUMERIC = ("money", "count", "int", "pct", "score", "num")


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def format_table(rows: Sequence[Sequence[Any]], columns: Sequence[tuple[str, str]], width: int = WIDTH) -> str:
    """Rows as an aligned text table no wider than ``width``: ``columns`` are ``(header, kind)`` pairs, kind one of
    text, time, money, count, int, pct, score, bool. Numbers are right-aligned; long text is cut with an ellipsis.
    """
    cells = [[_cell(v, kind) for v, (_, kind) in zip(row, columns, strict=True)] for row in rows]
    headers = [h for h, _ in columns]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    gap = 2
    text_columns = [i for i, (_, kind) in enumerate(columns) if kind == "text"]
    while sum(widths) + gap * (len(widths) - 1) > width and text_columns:
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
            value = _shorten(value, widths[i])
            parts.append(value.rjust(widths[i]) if columns[i][1] in _NUMERIC else value.ljust(widths[i]))
        lines.append((" " * gap).join(parts).rstrip())
        if n == 0:
            lines.append((" " * gap).join("-" * w for w in widths))
    return "\n".join(lines)


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
    frame: pd.DataFrame, columns: Sequence[str] | None = None, width: int = WIDTH, optional: Sequence[str] = ()
) -> str:
    """A frame as ``format_table`` text, column kinds guessed from the names analytics uses. ``optional`` columns
    are left out, last first, while the table would be wider than ``width`` with them."""
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
        rows = [row[:drop] + row[drop + 1 :] for row in rows]
        droppable = [i - 1 if i > drop else i for i in droppable]
    return format_table(rows, spec, width)


_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def spend_table(frame: pd.DataFrame) -> str:
    """A ``spend`` frame for people: keys, cost and calls, then the token columns that fit (cache ones if used)."""
    keys = [c for c in frame.columns if c not in ("cost", "calls", *_TOKEN_COLUMNS)]
    tokens = [c for c in _TOKEN_COLUMNS if c in frame and (c in _TOKEN_COLUMNS[:2] or frame[c].any())]
    return frame_table(frame, [*keys, "cost", "calls", *tokens], optional=tokens)


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready records: timestamps in ISO 8601, NaN and None as null."""
    names = [str(c) for c in frame.columns]
    return [dict(zip(names, map(_plain, row), strict=True)) for row in frame.itertuples(index=False, name=None)]


def write_frame(frame: pd.DataFrame, fmt: str, out: IO[str], columns: Sequence[str] | None = None) -> None:
    """Print ``frame`` as a table, CSV or JSON (a list of records)."""
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
        out.write(frame_table(frame, columns) + "\n")


class Progress:
    """A one-line progress bar on ``stream`` (stderr), redrawn in place; silent unless ``enabled``."""

    def __init__(self, label: str, *, enabled: bool, stream: IO[str] | None = None) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        share = 1.0 if total <= 0 else min(done / total, 1.0)
        counts = f"{done:,}/{total:,}"
        bar_width = max(10, WIDTH - 1 - len(self.label) - len(counts) - 12)
        filled = round(share * bar_width)
        line = f"{self.label} [{'#' * filled}{'.' * (bar_width - filled)}] {share:4.0%} {counts}"
        self.stream.write("\r" + line[: WIDTH - 1])
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


# ---------------------------------------------------------------------------------------------------------------
# Stores


def store_url(given: str | None) -> str:
    """The store URL to use: ``--store``, else ``$LLMCOST_STORE``, else ``./llmcost.duckdb``; a plain path ending
    in ``.duckdb`` or ``.db`` is taken as a DuckDB file."""
    url = given or os.environ.get("LLMCOST_STORE") or DEFAULT_STORE
    if "://" not in url and url.lower().endswith((".duckdb", ".db")):
        url = "duckdb://" + url
    return url


def _store_path(url: str) -> tuple[str, str] | None:
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("duckdb", "parquet") and rest:
        return scheme.lower(), rest
    return None


def open_cli_store(url: str, *, create: bool) -> CostStore:
    """Open ``url``; unless ``create``, a file or directory that does not exist is an error (not a new store)."""
    from .stores import open_store

    located = _store_path(url)
    if located is not None and not create:
        kind, path = located
        if not os.path.exists(path):
            what = "file" if kind == "duckdb" else "directory"
            raise CliError(
                f"store {what} {path!r} does not exist (from {url}); run 'llmcost demo' to make one, "
                "or pass --store / set LLMCOST_STORE"
            )
    return open_store(url)


# ---------------------------------------------------------------------------------------------------------------
# Commands


def _filtered(store: CostStore, args: argparse.Namespace, now: datetime) -> _Source:
    from .analytics import _source

    since = parse_when(args.since, now=now) if args.since else None
    until = parse_when(args.until, now=now, end_of_day=True) if args.until else None
    if since is not None and until is not None and since >= until:
        raise CliError(f"--since ({since:%Y-%m-%d %H:%M}) must be before --until ({until:%Y-%m-%d %H:%M})")
    return _source(store).where(since=since, until=until, tags=dict(args.tag) if args.tag else None)


def _heading(text: str, out: IO[str]) -> None:
    out.write(f"\n\n{text}\n")


def print_overview(src: _Source, out: IO[str], *, url: str, now: datetime, freq: str = "D") -> bool:
    """The default report: totals, breakdowns, recent periods, forecast, anomalies, advice. False when empty."""
    from . import analytics

    total = analytics.spend(src, by=())
    if total.empty:
        out.write(f"No entries in {url} for this selection.\n")
        return False
    t = total.iloc[0]
    span = src.sql(
        "SELECT timezone('UTC', min(timestamp)) AS first, timezone('UTC', max(timestamp)) AS last FROM _e"
    ).iloc[0]
    tokens = int(t.input_tokens) + int(t.output_tokens)
    shown = url if len(url) <= WIDTH - 16 else "…" + url[-(WIDTH - 17) :]
    out.write(f"llmcost report: {shown}\n")
    out.write(
        f"{_cell(span['first'], 'time')} to {_cell(span['last'], 'time')} UTC:\n{_money(float(t.cost))} over "
        f"{int(t.calls):,} calls and {_count(tokens)} tokens"
    )
    _heading("By category", out)
    out.write(frame_table(analytics.by_category(src), ["category", "cost", "calls", "input_tokens", "output_tokens"]))
    _heading("By model", out)
    models = analytics.by_model(src)
    out.write(frame_table(models.head(10), ["model", "cost", "calls", "input_tokens", "output_tokens"]))
    _heading("By resource (top 10)", out)
    out.write(frame_table(analytics.by_resource(src).head(10), ["resource", "cost", "calls", "input_tokens"]))
    tags = analytics.by_tag(src)
    if not tags.empty:
        _heading("By tag", out)
        out.write(frame_table(tags, ["tag_key", "tag_value", "cost", "calls"]))
    periods = analytics.over_time(src, freq)
    if len(periods) > 1:
        _heading("Daily spend (last 14 days)" if freq == "D" else f"Spend per period ({freq}, last 14)", out)
        out.write(_bars(periods.tail(14)))
    fc = analytics.forecast(src, "monthly", now=now).iloc[0]
    _heading("Forecast", out)
    out.write(
        f"This month ({fc.period_start:%Y-%m-%d} to {fc.period_end - timedelta(days=1):%Y-%m-%d}): "
        f"{_money(fc.spent)} so far, {_money(fc.projected)} at the current rate"
    )
    odd = analytics.anomalies(src, freq)
    odd = odd[odd["anomaly"]]
    if not odd.empty:
        _heading("Anomalies (robust score beyond 3.5)", out)
        out.write(frame_table(odd, ["period", "cost", "expected", "score"]))
    advice = analytics.recommendations(src, now=now)
    if not advice.empty:
        _heading("Cheaper models for the same work", out)
        out.write(frame_table(advice.head(8), ["resource", "model", "suggested_model", "cost", "saving"]))
    out.write("\n\n")
    return True


def _bars(periods: pd.DataFrame) -> str:
    peak = float(periods["cost"].max()) or 1.0
    lines = []
    for period, cost in zip(periods["period"], periods["cost"], strict=True):
        label = _cell(period, "time")
        amount = _money(float(cost)).rjust(11)
        room = WIDTH - len(label) - len(amount) - 4
        lines.append(f"{label}  {amount}  {'#' * round(float(cost) / peak * room)}".rstrip())
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace, out: IO[str]) -> int:
    from . import analytics

    url = store_url(args.store)
    now = datetime.now(timezone.utc)
    store = open_cli_store(url, create=False)
    try:
        src = _filtered(store, args, now)
        keys = _by_keys(args.by)
        if args.freq is not None:
            analytics._freq(args.freq)
        if args.html:
            from ._report_html import write_html_report

            page = write_html_report(src, args.html, title="llmcost report", store=url, now=now)
            print(f"wrote {page}", file=sys.stderr)
        if args.format == "table" and not keys and args.freq is None:
            print_overview(src, out, url=url, now=now)
            return 0
        frame = analytics.spend(src, by=keys or ("category",), freq=args.freq)
        if args.format == "table":
            out.write(spend_table(frame) + "\n" if not frame.empty else f"No entries in {url} for this selection.\n")
            return 0
        write_frame(frame, args.format, out)
        return 0
    finally:
        store.close()


def cmd_export(args: argparse.Namespace, out: IO[str]) -> int:
    from . import analytics

    url = store_url(args.store)
    target = Path(args.path)
    if target.is_dir():
        raise CliError(f"export path {args.path!r} is a directory; give a file name such as costs.csv")
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = Progress(f"exporting {target.name}", enabled=show)
    store = open_cli_store(url, create=False)
    try:
        src = _filtered(store, args, datetime.now(timezone.utc))
        try:
            count = analytics.export(src, target, args.format, progress=progress)
        finally:
            progress.finish()
    finally:
        store.close()
    out.write(f"wrote {count:,} entries to {target}\n")
    return 0


def _catalog_pairs() -> list[tuple[str, str, bool]]:
    """``(provider, model id, deprecated)`` of every catalog model, then every registered price's model."""
    from genai_prices import data_snapshot

    from ._prices import _user_prices

    pairs = [(p.id, m.id, bool(m.deprecated)) for p in data_snapshot.get_snapshot().providers for m in p.models]
    registered = {(price.provider or "", price.model, False) for price in _user_prices.values()}
    return pairs + sorted(registered)


def cmd_prices(args: argparse.Namespace, out: IO[str]) -> int:
    import pandas as pd

    from ._errors import UnknownModelError
    from ._prices import get_price

    pattern = (args.pattern or "").lower()
    glob = any(ch in pattern for ch in "*?[")
    wanted = args.provider.lower() if args.provider else None
    rows = []
    seen = set()
    for provider, model_id, _deprecated in _catalog_pairs():
        lowered = model_id.lower()
        if pattern and not (fnmatch.fnmatchcase(lowered, pattern) if glob else pattern in lowered):
            continue
        if wanted is not None and provider.lower() != wanted:
            continue
        try:
            price = get_price(model_id, provider or None)
        except (UnknownModelError, ValueError):
            continue
        key = (price.provider, price.model)
        if key in seen:
            continue
        seen.add(key)
        rows.append(
            (
                price.model,
                price.provider,
                float(price.input_per_mtok),
                float(price.output_per_mtok),
                None if price.cache_read_per_mtok is None else float(price.cache_read_per_mtok),
                None if price.cache_write_per_mtok is None else float(price.cache_write_per_mtok),
                price.context_window,
            )
        )
    if not rows:
        what = f"matching {args.pattern!r}" if args.pattern else "at all"
        raise CliError(f"no model {what}" + (f" from provider {args.provider!r}" if args.provider else ""))
    rows.sort(key=lambda r: (r[1] or "", r[0]))
    if args.format != "table":
        names = ["model", "provider", "input_per_mtok", "output_per_mtok", "cache_read_per_mtok"]
        frame = pd.DataFrame.from_records(rows, columns=[*names, "cache_write_per_mtok", "context_window"])
        frame["context_window"] = frame["context_window"].astype("Int64")
        write_frame(frame, args.format, out)
        return 0
    spec = [
        ("model", "text"),
        ("provider", "text"),
        ("input", "num"),
        ("output", "num"),
        ("cache rd", "num"),
        ("cache wr", "num"),
        ("context", "int"),
    ]
    shown = [(m, p, _price(i), _price(o), _price(cr), _price(cw), c) for m, p, i, o, cr, cw, c in rows]
    out.write(format_table(shown, spec) + "\n")
    out.write(f"{len(rows):,} models; prices in USD per million tokens\n")
    return 0


def _price(value: float | None) -> str:
    """A per-million-token price: at least two decimals, more when they matter (0.075, 0.0375)."""
    if value is None:
        return "-"
    text = f"{value:,.4f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


def cmd_budgets(args: argparse.Namespace, out: IO[str]) -> int:
    from ._manager import BudgetManager
    from ._tracker import CostTracker

    url = store_url(args.store)
    store = open_cli_store(url, create=False)
    tracker = CostTracker(store)
    try:
        manager = BudgetManager(tracker)
        frame = manager.status()
        if frame.empty:
            if args.format == "table":
                out.write(f"No budgets saved in {url}; create them with llmcost.BudgetManager().create(...).\n")
            else:
                write_frame(frame, args.format, out)
            return 0
        if args.action == "list":
            wanted = [c for c in ("name", "limit", "period", "category", "resource", "tags") if c in frame.columns]
        else:
            wanted = [
                c for c in ("name", "period", "limit", "spent", "remaining", "utilization", "level") if c in frame
            ]
        frame = frame[wanted]
        write_frame(frame, args.format, out)
        return 0
    finally:
        tracker.close()


def cmd_demo(args: argparse.Namespace, out: IO[str]) -> int:
    from ._demo import run_demo

    if args.days < 1 or args.days > 366:
        raise CliError(f"--days must be between 1 and 366, got {args.days}")
    url = store_url(args.store)
    store = open_cli_store(url, create=True)
    try:
        now = datetime.now(timezone.utc)
        story = run_demo(store, days=args.days, seed=args.seed, now=now)
        if args.format == "table":
            out.write(story.text() + "\n\n")
            from .analytics import _source

            print_overview(_source(store), out, url=url, now=now)
            same = " (with the same --store)" if args.store is not None else ""
            out.write(f"Next: llmcost report --html report.html{same}\n")
        else:
            from . import analytics

            write_frame(analytics.by_category(store), args.format, out)
        return 0
    finally:
        store.close()


_COMMANDS: dict[str, Callable[[argparse.Namespace, IO[str]], int]] = {
    "demo": cmd_demo,
    "report": cmd_report,
    "export": cmd_export,
    "prices": cmd_prices,
    "budgets": cmd_budgets,
}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``llmcost`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Example::

        >>> from llmcost.cli import main
        >>> main(["prices", "gpt-4o-mini", "--format", "json"])
    """
    import duckdb

    from ._errors import LlmcostError

    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(f"llmcost {version('llmcost')}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    prog = f"llmcost {args.command}"
    out = sys.stdout
    try:
        return _COMMANDS[args.command](args, out)
    except CliError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
    except BrokenPipeError:  # pragma: no cover - `llmcost report | head`
        return 0
    except (LlmcostError, ValueError, TypeError, OSError, duckdb.Error) as exc:
        if os.environ.get("LLMCOST_DEBUG"):
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 2
