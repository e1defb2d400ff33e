"""The commands: ``report``, ``export``, ``prices``, ``budgets`` and ``demo``, each ``(args, out) -> exit status``.

Tables, the overview and the progress bar come from ``llmcost._report``; the figures from ``llmcost.analytics``.

Example::

    >>> from llmcost.cli._args import build_parser
    >>> cmd_report(build_parser().parse_args(["report", "--by", "tag:team", "--since", "2024-05-14"]), sys.stdout)
    tag:team     cost  calls   input  output
    --------  -------  -----  ------  ------
    search     $10.44     12  320.0k   4,000
    support     $3.12     32    1.4M   20.0k
    (none)    $0.4800      4  120.0k   8,000
    0
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .._report._format import format_table, per_mtok, spend_table, write_frame
from ._args import CliError, by_keys, input_file, parse_when
from ._store import open_cli_store, shown_url, store_url

if TYPE_CHECKING:
    import pandas as pd

    from ..analytics._source import Source
    from ..stores import CostStore

__all__ = ["cmd_budgets", "cmd_demo", "cmd_export", "cmd_prices", "cmd_report", "cmd_serve", "filtered"]


def _short(url: str, room: int = 40) -> str:
    """A store URL cut from the left to ``room`` characters, so that a line naming it fits 80 columns."""
    return url if len(url) <= room else "…" + url[-(room - 1) :]


def _window(args: argparse.Namespace, now: datetime) -> tuple[datetime | None, datetime | None]:
    since = parse_when(args.since, now=now) if args.since else None
    until = parse_when(args.until, now=now, end_of_day=True) if args.until else None
    if since is not None and until is not None and since >= until:
        raise CliError(f"--since ({since:%Y-%m-%d %H:%M}) must be before --until ({until:%Y-%m-%d %H:%M})")
    return since, until


def filtered(store: CostStore, args: argparse.Namespace, now: datetime) -> Source:
    """``store`` narrowed to the ``--since``, ``--until`` and ``--tag`` options of ``args``.

    >>> from llmcost.cli._args import build_parser
    >>> args = build_parser().parse_args(["report", "--since", "7d", "--tag", "team=search"])
    >>> filtered(store, args, tracker.clock()).sql("SELECT min(timestamp) AS first, sum(amount) AS spent FROM _e")
                          first  spent
    0 2024-05-11 10:00:00+00:00  18.27
    """
    from ..analytics._source import as_source

    since, until = _window(args, now)
    return as_source(store).where(since=since, until=until, tags=dict(args.tag) if args.tag else None)


def _window_words(since: datetime | None, until: datetime | None) -> str | None:
    """The ``--since``/``--until`` window in words, for the report to say what its periods cover."""
    if since is not None and until is not None:
        return f"from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC"
    if since is not None:
        return f"since {since:%Y-%m-%d %H:%M} UTC"
    if until is not None:
        return f"before {until:%Y-%m-%d %H:%M} UTC"
    return None


def cmd_report(args: argparse.Namespace, out: IO[str]) -> int:
    """``llmcost report``: the overview (text and/or HTML, computed once), or one table grouped by ``--by``.

    >>> from llmcost.cli._args import build_parser
    >>> cmd_report(build_parser().parse_args(["report", "--html", "report.html", "--format", "csv"]), sys.stdout)
    category,cost,calls,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens
    compute,24.00,10,0,0,0,0
    llm_inference,6.488,80,2900000,68000,0,0
    0
    """
    from .._report._html import write_html
    from .._report._overview import compute_overview
    from .._report._text import render_text
    from ..analytics._freq import parse_freq

    url = store_url(args.store)
    shown = shown_url(url)  # what the header, the page and messages name: never a password
    now = datetime.now(timezone.utc)
    if (getattr(args, "invoice", None) or getattr(args, "reprice", None)) and not args.html:
        raise CliError("--invoice and --reprice add sections to the HTML report: give --html FILE too")
    if getattr(args, "invoice", None) and args.tag:
        # The invoice bills every call, tagged or not: recorded spend narrowed by tag would read as unrecorded calls.
        raise CliError("--invoice compares the whole invoice with what was recorded and cannot be narrowed by --tag")
    if getattr(args, "invoice", None):
        input_file(args.invoice, "--invoice")  # before the work of the overview
    store = open_cli_store(url, create=False)
    try:
        from ..analytics._source import as_source

        since, until = _window(args, now)
        tags = dict(args.tag) if args.tag else None
        src = as_source(store).where(since=since, until=until, tags=tags)
        keys = by_keys(args.by)
        if args.freq is not None:
            try:
                parse_freq(args.freq)
            except ValueError as exc:  # named as the option, as --by is
                raise CliError(f"--{exc}") from None
        text_overview = args.format == "table" and not keys and args.freq is None
        if args.html:
            from ..analytics._output import OutputFile

            OutputFile(args.html)  # a path that cannot be written fails before the work of the overview
        if args.html or text_overview:
            # "This month" is the whole month whatever --since/--until say; the periods are the selection's.
            overview = compute_overview(
                src,
                store=shown,
                now=now,
                month=as_source(store).where(tags=tags),
                month_scope="entries tagged " + ", ".join(f"{k}={v}" for k, v in tags.items()) if tags else None,
                window=_window_words(since, until),
            )
            if args.html:
                extra = _repricing_sections(src, as_source(store), args, (since, until))
                page = write_html(overview, args.html, title="llmcost report", extra=extra)
                print(f"wrote {page}", file=sys.stderr)
            if text_overview:
                out.write(render_text(overview))
                return 0
        from ..analytics._spend import exact_spend

        # Money in CSV and JSON is exact text; the table shows the same sums.
        frame = exact_spend(src, by=keys or ("category",), freq=args.freq)
        if args.freq is not None:  # periods in order, the largest cost first within each
            frame = frame.sort_values("period", kind="stable").reset_index(drop=True)
        if args.format == "table":
            out.write(
                spend_table(frame) + "\n" if not frame.empty else f"No entries in {_short(shown)} for this selection.\n"
            )
            return 0
        write_frame(frame, args.format, out)
        return 0
    finally:
        store.close()


def _repricing_sections(
    src: Source, whole: Source, args: argparse.Namespace, window: tuple[datetime | None, datetime | None]
) -> list[str]:
    """The HTML sections ``--reprice FILE`` (over ``src``, the report's selection) and ``--invoice FILE`` ask for
    (what-if, then reconciliation). The reconciliation is over ``whole`` (the store) narrowed by ``reconcile`` to
    the whole UTC days of ``window``, as the invoice bills them."""
    from .. import analytics
    from .._report._repricing import reconcile_section, reprice_section

    sections = []
    if getattr(args, "reprice", None):
        sections.append(
            reprice_section(analytics.reprice(src, args.reprice), title=f"What if: {Path(args.reprice).name}")
        )
    if getattr(args, "invoice", None):
        since, until = window
        sections.append(reconcile_section(analytics.reconcile(whole, args.invoice, since=since, until=until)))
    return sections


def cmd_export(args: argparse.Namespace, out: IO[str]) -> int:
    """``llmcost export PATH``: every (filtered) entry to a file, with a progress bar on a terminal.

    >>> from llmcost.cli._args import build_parser
    >>> cmd_export(build_parser().parse_args(["export", "costs.parquet", "--tag", "team=search"]), sys.stdout)
    wrote 30 entries to costs.parquet
    0
    """
    from .. import analytics
    from .._report._text import Progress
    from ..analytics._output import OutputFile

    url = store_url(args.store)
    target = Path(args.path)
    streamed = OutputFile(args.path).streamed  # a directory or a missing directory fails here, before any work
    if args.format is None and args.path != "-" and target.suffix.lower() not in (".csv", ".json", ".parquet", ".pq"):
        raise CliError(
            f"cannot tell the export format from the file name {args.path!r}; "
            "use a .csv, .json or .parquet suffix or pass --format csv|json|parquet"
        )
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = Progress(f"exporting {'to stdout' if args.path == '-' else target.name}", enabled=show)
    store = open_cli_store(url, create=False)
    try:
        src = filtered(store, args, datetime.now(timezone.utc))
        try:
            count = analytics.export(src, args.path, args.format, progress=progress)
        finally:
            progress.finish()
    finally:
        store.close()
    where = "standard output" if args.path == "-" else args.path
    # When the data goes to stdout, a pipe or a device, the note goes to stderr so that it never mixes with it.
    print(f"wrote {count:,} entries to {where}", file=sys.stderr if streamed else out)
    return 0


def _catalog_pairs() -> list[tuple[str, str, bool]]:
    """``(provider, model id, deprecated)`` of every catalog model, then every registered price's model."""
    from .._catalog import catalog_models
    from .._prices import registered_prices

    registered = {(price.provider or "", price.model, False) for price in registered_prices()}
    return catalog_models() + sorted(registered)


def cmd_prices(args: argparse.Namespace, out: IO[str]) -> int:
    """``llmcost prices [PATTERN]``: catalog prices in USD per million tokens.

    >>> from llmcost.cli._args import build_parser
    >>> cmd_prices(build_parser().parse_args(["prices", "claude-3-5-*", "--provider", "anthropic"]), sys.stdout)
    model                    provider   input  output  cache rd  cache wr  context
    -----------------------  ---------  -----  ------  --------  --------  -------
    claude-3-5-haiku-latest  anthropic   0.80    4.00      0.08      1.00  200,000
    claude-3-5-sonnet        anthropic   3.00   15.00      0.30      3.75  200,000
    2 models; prices in USD per million tokens
    0
    """
    import pandas as pd

    from .._errors import UnknownModelError
    from .._prices import get_price

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
                price.input_per_mtok,
                price.output_per_mtok,
                price.cache_read_per_mtok,
                price.cache_write_per_mtok,
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
    shown = [
        (m, p, *(per_mtok(None if v is None else float(v)) for v in (i, o, cr, cw)), c)
        for m, p, i, o, cr, cw, c in rows
    ]
    out.write(format_table(shown, spec, whole=(0, 1)) + "\n")  # model ids and providers are never cut
    out.write(f"{len(rows):,} models; prices in USD per million tokens\n")
    return 0


def cmd_budgets(args: argparse.Namespace, out: IO[str]) -> int:
    """``llmcost budgets [list|status]``: the budgets saved in the store, or how much of each is spent.

    >>> from llmcost.cli._args import build_parser
    >>> cmd_budgets(build_parser().parse_args(["budgets", "status"]), sys.stdout)
    name       period   limit  spent  remaining  utilization
    ---------  ------  ------  -----  ---------  -----------
    llm-total  total   $50.00  $6.49     $43.51          13%
    0
    """
    from .._manager import BudgetManager
    from .._tracker import CostTracker

    url = store_url(args.store)
    store = open_cli_store(url, create=False)
    tracker = CostTracker(store)
    try:
        manager = BudgetManager(tracker)
        frame = manager.status() if args.action != "list" else _definitions(manager)
        if args.action != "list":
            # Chosen before the empty case, so that CSV and JSON have the same columns with budgets or without.
            frame = frame[["name", "period", "limit", "spent", "remaining", "utilization"]]
        if frame.empty:
            if args.format == "table":
                out.write(
                    f"No budgets saved in {_short(shown_url(url))}.\n"
                    "Create them with llmcost.BudgetManager().create(...).\n"
                )
            else:
                write_frame(frame, args.format, out)
            return 0
        if args.action == "list" and args.format == "table":
            # What each counts in one column (a terminal's 80 columns hold no more), every filter named.
            counts = frame[["model", "category", "resource", "tags"]].apply(_counts, axis=1)
            alerts = frame["thresholds"].map(lambda ts: "/".join(f"{t * 100:g}" for t in ts) + "%" if ts else "none")
            frame = frame[["name", "period", "limit"]].assign(counts=counts, alerts_at=alerts)
        # A name cut short names no budget, nor a filter cut short what it counts: these wrap instead.
        write_frame(frame, args.format, out, whole=("name", "counts", "alerts_at"))
        return 0
    finally:
        tracker.close()


def _definitions(manager: Any) -> pd.DataFrame:
    """The saved budgets' definitions, one row each: name, period, limit, what they count (model, category,
    resource, tags; ``None`` for any) and their alert thresholds."""
    import pandas as pd

    rows = [
        {
            "name": b.name,
            "period": b.period.value if b.period else None,
            "limit": b.limit,
            "model": b.model,
            "category": b.category,
            "resource": b.resource,
            "tags": dict(b.tags) or None,
            "thresholds": list(b.thresholds),
        }
        for b in manager.list()
    ]
    columns = ["name", "period", "limit", "model", "category", "resource", "tags", "thresholds"]
    return pd.DataFrame(rows, columns=columns)


def _counts(row: Any) -> str:
    """A definition's filters in words: ``model=gpt-4o resource=ranker``, ``team=search``; ``everything``."""
    parts = [f"{field}={row[field]}" for field in ("model", "category", "resource") if isinstance(row[field], str)]
    parts += [f"{key}={value}" for key, value in (row["tags"] if isinstance(row["tags"], dict) else {}).items()]
    return " ".join(parts) or "everything"


def cmd_demo(args: argparse.Namespace, out: IO[str]) -> int:
    """``llmcost demo``: simulate traffic into an empty store (or any, with ``--append``), then print the overview.

    >>> from llmcost.cli._args import build_parser
    >>> args = build_parser().parse_args(["demo", "--store", "demo.duckdb", "--days", "1", "--format", "csv"])
    >>> cmd_demo(args, io.StringIO())       # its figures depend on today's date: not shown
    0
    >>> cmd_demo(args, sys.stdout)
    Traceback (most recent call last):
    ...
    llmcost.cli._args.CliError: the store duckdb://demo.duckdb already holds entries; the demo fills an empty store, ...
    """
    import shlex

    from .._demo import run_demo
    from .._report._text import Progress

    if args.days < 1 or args.days > 366:
        raise CliError(f"--days must be between 1 and 366, got {args.days}")
    url = store_url(args.store)
    shown = shown_url(url)  # what the overview and messages name: never a password
    store = open_cli_store(url, create=True)
    try:
        held = len(store.entries(limit=1))
        if held and not args.append:
            raise CliError(
                f"the store {shown} already holds entries; the demo fills an empty store, so that its report shows "
                "only the simulated history: pass --store NEW.duckdb, or --append to add another history to it"
            )
        now = datetime.now(timezone.utc)
        progress = Progress(f"simulating {args.days} days", enabled=sys.stderr.isatty())
        try:
            story = run_demo(store, days=args.days, seed=args.seed, now=now, progress=progress)
        finally:
            progress.finish()
        if args.format == "table":
            from .._report._overview import compute_overview
            from .._report._text import render_text

            out.write(story.text() + "\n\n")
            out.write(render_text(compute_overview(store, store=shown, now=now)))
            if url.lower().startswith("memory:"):
                out.write(
                    "A memory:// store ends with the demo. To keep the history and explore it:\n"
                    "  llmcost demo --store demo.duckdb\n"
                    "  llmcost report --html report.html --store demo.duckdb\n"
                )
            else:
                given = f" --store {shlex.quote(args.store)}" if args.store is not None else ""
                next_step = f"Next: llmcost report --html report.html{given}"
                # A long store path, or a URL with a password (never printed): said in words, so the report stays
                # 80 columns wide and the password stays out of it.
                if len(next_step) > 80 or shown != url:
                    next_step = "Next: llmcost report --html report.html, with the same --store"
                out.write(next_step + "\n")
        else:
            from ..analytics._spend import exact_spend

            write_frame(exact_spend(store, ("category",)), args.format, out)
        return 0
    finally:
        store.close()


def cmd_serve(args: argparse.Namespace, out: IO[str]) -> int:
    """``llmcost serve``: the REST API, metrics and dashboard over the store, until interrupted (Ctrl-C).

    Example (it serves until interrupted, so it is not run as a doctest)::

        cmd_serve(build_parser().parse_args(["serve", "--store", "costs.duckdb", "--port", "8765"]), sys.stdout)
    """
    try:
        from ..server._run import TOKEN_VARIABLE, host_in_url, listen, serve_on
        from ..server._security import check_bind
    except ImportError as exc:
        raise CliError(f"llmcost serve needs the server extra: pip install 'llmcost[server]' ({exc})") from None

    if not 0.2 <= args.refresh <= 3600:
        raise CliError(f"--refresh must be between 0.2 and 3600 seconds, got {args.refresh}")
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be between 0 and 65535, got {args.port}")
    token = os.environ.get(TOKEN_VARIABLE) or None
    check_bind(args.host, token=token)
    url = store_url(args.store)
    # Bound before the banner: a port in use is then one error line (exit 2), not "serving on..." and uvicorn's
    # log with its exit status 3.
    sock = listen(args.host, args.port)
    try:
        store = open_cli_store(url, create=True)
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]  # the one bound, for --port 0
    where = f"http://{host_in_url(args.host)}:{port}/"  # (http://[::1]:8765/: an IPv6 host in brackets)
    print(f"llmcost serve: {shown_url(url)} on {where} (Ctrl-C to stop)", file=sys.stderr)
    serve_on(sock, store, token=token, refresh_seconds=args.refresh)
    return 0
