"""The arguments of ``llmcost reprice`` and ``llmcost reconcile``, and the report's ``--invoice`` and ``--reprice``
options; ``_args.build_parser`` adds them with one call.

Example::

    >>> from llmcost.cli._args import build_parser
    >>> build_parser().parse_args(["reconcile", "costs.json", "--format", "json"]).invoice
    'costs.json'
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_reprice_commands"]

_FORMATS = ("text", "table", "csv", "json")


def add_reprice_commands(
    commands: Any,
    *,
    common: argparse.ArgumentParser,
    window: argparse.ArgumentParser,
    report: argparse.ArgumentParser,
) -> None:
    """Add ``reprice`` and ``reconcile`` to ``commands`` (the sub-parsers action) and the HTML sections' options
    to ``report``."""
    reprice = commands.add_parser(
        "reprice",
        parents=[common, window],
        help="what the recorded usage would cost under other prices, at another date, or on another model",
        description="Price the recorded usage again: under a price file (--prices), at the catalog prices of "
        "another date (--at), or with one model's usage priced as another's (--swap). Without options: at the "
        "current catalog's prices of each call's day, to show where recorded amounts disagree with it.",
    )
    reprice.add_argument("--prices", metavar="FILE", help="price file (TOML or JSON, as llmcost.load_prices reads)")
    reprice.add_argument("--at", metavar="WHEN", help="price every call at the prices in force then (2025-01-01)")
    reprice.add_argument(
        "--swap", metavar="FROM=TO", action="append", default=[], help="price FROM's usage as model TO (repeatable)"
    )
    reprice.add_argument(
        "--by", metavar="KEYS", action="append", help="group by model (default), provider, resource, tag:KEY..."
    )
    reprice.add_argument("--format", choices=_FORMATS, default="text", help="text (default), or csv/json")

    reconcile = commands.add_parser(
        "reconcile",
        parents=[common],
        help="recorded spend against a provider's invoice, per day and model",
        description="Compare the recorded spend with what the provider billed: the OpenAI organization costs JSON, "
        "the Anthropic cost report JSON or console cost CSV, or a CSV with date, model, amount [, project].",
    )
    reconcile.add_argument("invoice", metavar="INVOICE", help="the invoice file (JSON or CSV)")
    reconcile.add_argument("--provider", help="the provider of a plain CSV invoice (default: every provider)")
    reconcile.add_argument(
        "--project-tag", default="project", metavar="KEY", help="tag holding the invoice's project (default project)"
    )
    reconcile.add_argument("--format", choices=_FORMATS, default="text", help="text (default), or csv/json")

    report.add_argument("--invoice", metavar="FILE", help="with --html: add a reconciliation against this invoice")
    report.add_argument("--reprice", metavar="FILE", help="with --html: add a what-if under this price file")
