"""``main``: parse the arguments, run the command, and turn every expected failure into one line on stderr.

Example::

    >>> main(["report", "--by", "category", "--format", "csv"])
    category,cost,calls,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens
    compute,24.00,10,0,0,0,0
    llm_inference,6.488,80,2900000,68000,0,0
    0
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO

from ._args import CliError, build_parser
from ._commands import cmd_budgets, cmd_demo, cmd_export, cmd_prices, cmd_report, cmd_serve
from ._reprice import cmd_reconcile, cmd_reprice

__all__ = ["main"]

_COMMANDS: dict[str, Callable[[argparse.Namespace, IO[str]], int]] = {
    "demo": cmd_demo,
    "report": cmd_report,
    "export": cmd_export,
    "prices": cmd_prices,
    "budgets": cmd_budgets,
    "reprice": cmd_reprice,
    "reconcile": cmd_reconcile,
    "serve": cmd_serve,
}


# DuckDB's kinds are capitalised words, with lowercase ones inside: "Out of Range Error", "Not implemented Error".
_SQL_ERROR_KIND = re.compile(r"^(?:[A-Z][A-Za-z]*(?: [A-Za-z]+)* Error|[A-Za-z]+Exception): ")


def clean_message(text: str) -> str:
    r"""An error message without what only a developer can read: DuckDB's ``Catalog Error:``-style prefixes, the
    SQL it quotes (``LINE 1: ... ^^^``) and the lines after the first, on one line.

    >>> clean_message("Binder Error: No files found\nLINE 1: SELECT * FROM read_parquet('x')\n ^")
    'No files found'
    """
    first = re.split(r"\n|\s+LINE \d+:", text.strip(), maxsplit=1)[0]
    while True:
        stripped = _SQL_ERROR_KIND.sub("", first, count=1)
        if stripped == first:
            break
        first = stripped
    return " ".join(first.split()).rstrip("!")


def _one_line(exc: BaseException) -> str:
    """``exc`` as one line for a person: no ``[Errno N]``, no SQL, the path it is about."""
    if isinstance(exc, OSError) and exc.strerror:
        text = " ".join(exc.strerror.split())
        if exc.filename and str(exc.filename) not in text:
            text = f"{text}: {exc.filename}"
        return text
    text = clean_message(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return text


def _arithmetic(exc: ArithmeticError) -> str:
    """``exc`` told as a figure that could not be computed: decimal's own message is only a list of its signals
    (``[<class 'decimal.InvalidOperation'>]``), so it is named instead.

    >>> from decimal import InvalidOperation
    >>> _arithmetic(InvalidOperation([InvalidOperation]))
    'a figure is too large to compute exactly (decimal.InvalidOperation); check the amounts and prices given'
    """
    import decimal

    if isinstance(exc, decimal.DecimalException):
        kind = type(exc).__name__
        return f"a figure is too large to compute exactly (decimal.{kind}); check the amounts and prices given"
    return f"cannot compute a figure: {_one_line(exc)}"


#: The codecs error handler of ``_degrading``: registered by that name on first use, not at import.
_DEGRADE = "llmcost-degrade"


def _degrade(exc: UnicodeError) -> tuple[str, int]:
    """The codecs error handler of ``_degrading``: the ellipsis that cut text ends with as ``...``, any other
    character the encoding lacks as ``?``.

    >>> codecs.register_error(_DEGRADE, _degrade)
    >>> "gpt-4o… für".encode("ascii", errors=_DEGRADE)
    b'gpt-4o... f?r'
    """
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    lacking = exc.object[exc.start : exc.end]
    return "".join("..." if char == "\u2026" else "?" for char in lacking), exc.end


@contextlib.contextmanager
def _degrading(stream: IO[str]) -> Iterator[None]:
    """While the command runs, let ``stream`` write what its encoding lacks (``_degrade``) instead of failing the
    whole command on one character: a report's ellipsis or a model name on an ASCII or Latin-1 stdout
    (``PYTHONIOENCODING=ascii``, ``LANG=C`` on an older Python). A UTF stream, a stream whose error handler the
    user chose, and one that cannot be reconfigured are left as they are; the stream's own handler is put back
    after (``main`` may run in a longer process). Files the commands write (``--html``, ``export``) are UTF-8
    whatever this stream is."""
    encoding = getattr(stream, "encoding", None)
    reconfigure = getattr(stream, "reconfigure", None)
    errors = getattr(stream, "errors", None)
    try:
        utf = not isinstance(encoding, str) or codecs.lookup(encoding).name.startswith("utf")
    except LookupError:
        utf = True  # (an encoding Python does not know: nothing to say about what it lacks)
    if utf or errors != "strict" or reconfigure is None:
        yield
        return
    codecs.register_error(_DEGRADE, _degrade)
    reconfigure(errors=_DEGRADE)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # (closed meanwhile: nothing more is written to it)
            reconfigure(errors=errors)


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckDB's report of a Ctrl-C that came while a query ran: DuckDB turns the SIGINT into an
    ``InterruptException``, or, from the query that fetches a result, a bare ``RuntimeError("Query interrupted")``
    (so ``except KeyboardInterrupt`` never sees it). Any other ``RuntimeError`` is a bug, and stays a traceback.

    >>> _interrupted(RuntimeError("Query interrupted")), _interrupted(RuntimeError("dictionary changed size"))
    (True, False)
    """
    import duckdb

    if isinstance(exc, duckdb.InterruptException):
        return True
    return type(exc) is RuntimeError and str(exc) == "Query interrupted"


def _store_problem(args: argparse.Namespace, exc: BaseException) -> str:
    """A database error, told as what it means to the user: the store at this URL cannot be read."""
    from ._store import shown_url, store_url

    try:
        url = shown_url(store_url(getattr(args, "store", None)))
    except Exception:  # noqa: BLE001 - only to name the store in a message; the error being told is ``exc``
        url = getattr(args, "store", None) or "the store"
    reason = clean_message(str(exc))
    if "in-memory database in read-only mode" in reason or "not a valid DuckDB database" in reason:
        reason = "it is not a DuckDB database file"
    return (
        f"cannot read the store {url}: {reason}; pass --store with a llmcost store "
        "(a .duckdb file or a Parquet store directory)"
    )


def _from_environment(args: argparse.Namespace, text: str) -> str:
    """``text``, an error message, with where the store URL came from when ``$LLMCOST_STORE`` gave it (no
    ``--store``) and the message names that store: a user who never typed the URL would look for it in vain.

    >>> import argparse, os
    >>> os.environ["LLMCOST_STORE"] = "/srv/costs.duckdb"
    >>> _from_environment(argparse.Namespace(store=None), "could not open /srv/costs.duckdb: permission denied")
    'could not open /srv/costs.duckdb: permission denied (the store URL came from $LLMCOST_STORE=/srv/costs.duckdb)'
    >>> del os.environ["LLMCOST_STORE"]
    """
    from ._store import shown_url, store_url

    raw = os.environ.get("LLMCOST_STORE")
    if not raw or not hasattr(args, "store") or args.store:
        return text
    names = {raw.strip(), shown_url(raw.strip())}
    with contextlib.suppress(Exception):  # (a URL store_url refuses is named in the message as it was given)
        url = store_url(None)
        names |= {url, shown_url(url), url.partition("://")[2], os.path.abspath(url.partition("://")[2])}
    if not any(name and name in text for name in names):
        return text
    return f"{text} (the store URL came from $LLMCOST_STORE={shown_url(raw.strip())})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``llmcost`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Example::

        >>> from llmcost.cli import main
        >>> main(["export", "recent.csv", "--since", "2024-05-17T11:00"])
        wrote 2 entries to recent.csv
        0
        >>> main(["report", "--store", "missing.duckdb"])
        2
    """
    import duckdb

    from .._errors import LlmcostError

    parser = build_parser()
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
        with _degrading(out):
            return _COMMANDS[args.command](args, out)
    except CliError as exc:
        print(f"{prog}: error: {_from_environment(args, str(exc))}", file=sys.stderr)
    except BrokenPipeError:  # pragma: no cover - `llmcost report | head`
        return 0
    except (RuntimeError, duckdb.InterruptException) as exc:
        if not _interrupted(exc):
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except duckdb.OutOfRangeException as exc:  # the data were read; a figure from them outgrew its type
        if os.environ.get("LLMCOST_DEBUG"):
            raise
        print(f"{prog}: error: a figure is too large to compute: {_one_line(exc)}", file=sys.stderr)
    except duckdb.Error as exc:  # the store's files could not be read as a store
        if os.environ.get("LLMCOST_DEBUG"):
            raise
        print(f"{prog}: error: {_from_environment(args, _store_problem(args, exc))}", file=sys.stderr)
    except (LlmcostError, ValueError, TypeError, OSError) as exc:
        if os.environ.get("LLMCOST_DEBUG"):
            raise
        print(f"{prog}: error: {_from_environment(args, _one_line(exc))}", file=sys.stderr)
    except ArithmeticError as exc:
        # What validation at the edges missed (an amount or price too large to compute with exactly, a division
        # by zero): still one line, never a traceback. decimal's own message is a list of signal classes.
        if os.environ.get("LLMCOST_DEBUG"):
            raise
        print(f"{prog}: error: {_arithmetic(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 2
