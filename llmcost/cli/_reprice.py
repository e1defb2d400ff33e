"""``llmcost reprice`` and ``llmcost reconcile``, each ``(args, out) -> exit status``.

Example::

    >>> cmd_reconcile(build_parser().parse_args(["reconcile", "costs.json"]), sys.stdout)
    0
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import IO

from .._report._format import write_frame
from .._report._repricing import reconcile_text, reprice_text
from ._args import CliError, by_keys, parse_when
from ._commands import filtered
from ._store import open_cli_store, store_url

__all__ = ["cmd_reconcile", "cmd_reprice"]


def cmd_reprice(args: argparse.Namespace, out: IO[str]) -> int:
    """``llmcost reprice``: the recorded usage under ``--prices``, ``--at`` or ``--swap``.

    >>> cmd_reprice(build_parser().parse_args(["reprice", "--swap", "gpt-4o=gpt-4o-mini"]), sys.stdout)
    """
    from .. import analytics

    if args.prices and args.swap:
        raise CliError("give --prices or --swap, not both")
    prices: object = args.prices
    if args.swap:
        swap = {}
        for pair in args.swap:
            source, sep, target = pair.partition("=")
            if not sep or not source.strip() or not target.strip():
                raise CliError(f"--swap expects FROM=TO, e.g. gpt-4o=gpt-4o-mini; got {pair!r}")
            swap[source.strip()] = target.strip()
        prices = swap
    now = datetime.now(timezone.utc)
    at = parse_when(args.at, now=now) if args.at else None
    store = open_cli_store(store_url(args.store), create=False)
    try:
        frame = analytics.reprice(filtered(store, args, now), prices, at=at, by=by_keys(args.by) or ("model",))
    finally:
        store.close()
    if args.format in ("text", "table"):
        out.write(reprice_text(frame))
    else:
        write_frame(frame, args.format, out)
    return 0


def cmd_reconcile(args: argparse.Namespace, out: IO[str]) -> int:
    """``llmcost reconcile INVOICE``: recorded spend against the invoice, per day and model.

    >>> cmd_reconcile(build_parser().parse_args(["reconcile", "costs.json"]), sys.stdout)
    """
    from .. import analytics

    store = open_cli_store(store_url(args.store), create=False)
    try:
        frame = analytics.reconcile(store, args.invoice, provider=args.provider, project_tag=args.project_tag)
    finally:
        store.close()
    if args.format in ("text", "table"):
        out.write(reconcile_text(frame))
    else:
        write_frame(frame, args.format, out)
    return 0
