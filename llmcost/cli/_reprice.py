"""``llmcost reprice`` and ``llmcost reconcile``, each ``(args, out) -> exit status``.

Example::

    >>> from llmcost.cli._args import build_parser
    >>> cmd_reconcile(build_parser().parse_args(["reconcile", "openai-costs.json", "--format", "csv"]), sys.stdout)
    day,model,project,calls,recorded,billed,delta,delta_pct,status,likely_cause,repriced
    2024-05-14,gpt-4o-2024-08-06,,22,3.29,3.29,0.00,0.0,match,,3.29
    2024-05-14,gpt-4o-mini-2024-07-18,,3,0.0108,0.0108,0.00,0.0,match,,0.0108
    2024-05-15,gpt-4o-2024-08-06,,2,0.21,0.21,0.00,0.0,match,,0.21
    2024-05-15,gpt-4o-mini-2024-07-18,,3,0.0108,0.0144,-0.0036,-0.25,under,billed more than the recorded calls cost ...
    0
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import IO

from .._report._format import write_frame
from .._report._repricing import reconcile_text, reprice_text
from ._args import CliError, by_keys, input_file, parse_when
from ._commands import filtered
from ._store import open_cli_store, store_url

__all__ = ["cmd_reconcile", "cmd_reprice"]


def cmd_reprice(args: argparse.Namespace, out: IO[str]) -> int:
    """``llmcost reprice``: the recorded usage under ``--prices``, ``--at`` or ``--swap``.

    >>> from llmcost.cli._args import build_parser
    >>> cmd_reprice(build_parser().parse_args(["reprice", "--swap", "gpt-4o=gpt-4o-mini"]), sys.stdout)
    model              calls  recorded  repriced   delta  delta %
    -----------------  -----  --------  --------  ------  -------
    (none)                10    $24.00    $24.00   $0.00       0%
    gpt-4o                40     $5.18   $0.3108  -$4.87     -94%
    claude-3-5-sonnet     10     $1.20     $1.20   $0.00       0%
    gpt-4o-mini           30   $0.1080   $0.1080   $0.00       0%
    recorded $30.49, repriced $25.62 (-16.0%)
    0
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

    >>> from llmcost.cli._args import build_parser
    >>> cmd_reconcile(build_parser().parse_args(["reconcile", "anthropic-costs.csv"]), sys.stdout)
    day         model                       recorded   billed  delta  status
    ----------  --------------------------  --------  -------  -----  ------
    2024-05-14  claude-3-5-sonnet-20241022   $0.1200  $0.1200  $0.00  match
    2024-05-15  claude-3-5-sonnet-20241022   $0.1200  $0.1200  $0.00  match
    recorded $0.2400, billed $0.2400
    0
    """
    from .. import analytics

    input_file(args.invoice, "INVOICE")
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
