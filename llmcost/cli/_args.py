"""Reading the command line: the ``llmcost`` argument parser, and times (``--since``/``--until``) and tags
(``--tag``) as the user writes them.

Example::

    >>> build_parser().parse_args(["report", "--by", "model,tag:team", "--since", "7d"]).by
    ['model,tag:team']
    >>> parse_when("2024-05-31", now=datetime.now(timezone.utc), end_of_day=True)
    datetime.datetime(2024, 6, 1, 0, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from datetime import datetime
from typing import NoReturn

from .._time import parse_when as read_when
from ._reprice_args import add_reprice_commands

__all__ = ["CliError", "build_parser", "by_keys", "parse_when"]


class CliError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2), not usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_when(text: str, *, now: datetime, end_of_day: bool = False) -> datetime:
    """A ``--since``/``--until`` value as an aware UTC datetime: ``llmcost._time.parse_when`` (the reader
    ``llmcost.analytics`` uses too), with a value it cannot read as a ``CliError``.

    Example::

        >>> parse_when("7d", now=datetime(2024, 5, 17, tzinfo=timezone.utc))
        datetime.datetime(2024, 5, 10, 0, 0, tzinfo=datetime.timezone.utc)
    """
    try:
        return read_when(text, now=now, end_of_day=end_of_day)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _tag_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def input_file(path: str, name: str) -> str:
    """``path``, a file a command reads (an invoice), if it is one; else a ``CliError`` naming ``name`` (the option
    or argument that gave it) and the path, before any other work: the reader's own error said only "No such file
    or directory".

    >>> input_file("/nonexistent/invoice.csv", "--invoice")
    Traceback (most recent call last):
    ...
    llmcost.cli._args.CliError: --invoice: no file '/nonexistent/invoice.csv' (give the path of the invoice file)
    """
    if os.path.isdir(path):
        raise CliError(f"{name}: {path!r} is a directory, not a file (give the path of the invoice file)")
    if not os.path.exists(path):
        raise CliError(f"{name}: no file {path!r} (give the path of the invoice file)")
    return path


def by_keys(values: Sequence[str] | None) -> list[str]:
    """The group keys of repeated, comma-separated ``--by`` options, in order, checked as analytics checks them;
    a ``CliError`` naming ``--by`` otherwise.

    >>> by_keys(["model,tag:team", "resource"])
    ['model', 'tag:team', 'resource']
    >>> by_keys(["Model"])
    Traceback (most recent call last):
    ...
    llmcost.cli._args.CliError: --by must name category, resource, model, provider or tag:<key>; got 'Model' (did ...
    """
    from ..analytics._spend import group_keys

    out: list[str] = []
    for value in values or ():
        out.extend(part.strip() for part in value.split(",") if part.strip())
    try:
        group_keys(out)
    except ValueError as exc:  # analytics names its parameter ("by must name ..."); here it is the option
        raise CliError(f"--{exc}") from None
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``llmcost`` parser: one sub-command per command, each with ``--store`` and ``--format``; a usage error is
    one line on stderr and exit status 2.

    >>> build_parser().parse_args(["prices", "gpt-4o*"]).pattern
    'gpt-4o*'
    """
    common = _Parser(add_help=False)
    common.add_argument(
        "--store",
        metavar="URL",
        help="where costs are kept: duckdb:///path/costs.duckdb, parquet:///path/dir or memory:// "
        "(default: $LLMCOST_STORE, else ./llmcost.duckdb)",
    )
    output = _Parser(add_help=False)
    output.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="table (default), or csv/json for machines"
    )
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
    demo.add_argument(
        "--append",
        action="store_true",
        help="add the simulated history to a store that already holds entries (refused otherwise)",
    )

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
    export.add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        default="-",
        help="file to write (.csv, .json or .parquet); - or none: standard output (CSV unless --format)",
    )
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
    add_reprice_commands(commands, common=common, window=window, report=report)

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="serve the REST API, Prometheus metrics and a live dashboard (extra llmcost[server])",
        description="Serve the store over HTTP: records, summaries, budgets, reservations and forecasts as JSON "
        "under /api/v1/costs, Prometheus metrics at /metrics, a live dashboard at /, OpenAPI at /openapi.json. "
        "With LLMCOST_API_TOKEN set, every route but /healthz needs 'Authorization: Bearer <token>'; a host other "
        "than loopback is refused without it.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    serve.add_argument(
        "--refresh", type=float, default=5.0, metavar="SECONDS", help="how often the dashboard updates (default 5)"
    )
    return parser
