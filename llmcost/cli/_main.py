"""``main``: parse the arguments, run the command, and turn every expected failure into one line on stderr.

Example::

    >>> main(["prices", "gpt-4o-mini", "--format", "json"])
    0
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO

from ._args import CliError, build_parser
from ._commands import cmd_budgets, cmd_demo, cmd_export, cmd_prices, cmd_report, cmd_serve

__all__ = ["main"]

_COMMANDS: dict[str, Callable[[argparse.Namespace, IO[str]], int]] = {
    "demo": cmd_demo,
    "report": cmd_report,
    "export": cmd_export,
    "prices": cmd_prices,
    "budgets": cmd_budgets,
    "serve": cmd_serve,
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
