"""Which store a command reads: ``--store``, else ``$LLMCOST_STORE``, else ``./llmcost.duckdb``; and opening it
without creating one by mistake.

Example::

    >>> store_url("costs.duckdb")
    'duckdb://costs.duckdb'
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from ._args import CliError

if TYPE_CHECKING:
    from ..stores import CostStore

__all__ = ["DEFAULT_STORE", "open_cli_store", "shown_url", "store_url"]

DEFAULT_STORE = "duckdb://llmcost.duckdb"


def store_url(given: str | None) -> str:
    """The store URL to use: ``--store``, else ``$LLMCOST_STORE``, else ``./llmcost.duckdb``; a plain path is read
    as ``open_store`` and ``configure`` read it (``llmcost.stores._open.store_url``): ending in ``.duckdb`` or
    ``.db``, a DuckDB file; an existing directory, a Parquet store.

    >>> store_url("memory://")
    'memory://'
    """
    from ..stores._open import store_url as resolve

    return resolve(given or os.environ.get("LLMCOST_STORE") or DEFAULT_STORE)


def shown_url(url: str) -> str:
    """``url`` as the command line prints or embeds it (headers, the HTML page, messages): a database URL without
    its password (as ``PostgresStore.url`` shows it), any other URL as it is. docs/postgres.md promises that
    llmcost never logs a password, and a report header or a page passed around is as good as a log.

    >>> shown_url("postgresql://app:secret@db:5432/costs"), shown_url("duckdb://costs.duckdb")
    ('postgresql://app@db:5432/costs', 'duckdb://costs.duckdb')
    """
    scheme = url.partition("://")[0].lower()
    if scheme not in ("postgresql", "postgres"):
        return url
    from ..stores._postgres import redacted_url

    return redacted_url(url)  # read as libpq reads it; a URL it cannot read is named without any of its parts


def _store_path(url: str) -> tuple[str, str] | None:
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("duckdb", "parquet") and rest:
        return scheme.lower(), rest
    return None


def open_cli_store(url: str, *, create: bool) -> CostStore:
    """Open ``url``; unless ``create``, a file or directory that does not exist is an error (not a new store).

    >>> open_cli_store("duckdb://llmcost.duckdb", create=False).total(category="compute")
    Decimal('24')
    >>> open_cli_store("duckdb://missing.duckdb", create=False)
    Traceback (most recent call last):
    ...
    llmcost.cli._args.CliError: store file 'missing.duckdb' does not exist (from duckdb://missing.duckdb); run ...
    """
    from ..stores import open_store

    located = _store_path(url)
    if located is not None and not create:
        kind, path = located
        if not os.path.exists(path):
            what = "file" if kind == "duckdb" else "directory"
            raise CliError(
                f"store {what} {path!r} does not exist (from {url}); run 'llmcost demo' to make one, "
                "or pass --store / set LLMCOST_STORE"
            )
        if kind == "parquet" and os.path.isdir(path):
            from ..stores._parquet import is_parquet_store

            # Opening a ParquetStore on a writable directory makes it one (_llmcost.json, _lock): a reading
            # command must leave any other directory as it found it.
            if not is_parquet_store(path):
                raise CliError(
                    f"directory {path!r} is not an llmcost Parquet store (no _llmcost.json, no day=... partitions; "
                    f"from {url}); pass --store with a store, or run 'llmcost demo' to make one"
                )
    if create:
        if located is not None and located[0] == "parquet" and os.path.isdir(located[1]):
            from ..stores._parquet import is_parquet_store

            path = located[1]
            # ``demo`` and ``serve`` make a new store where there is none: in an empty directory, not among files of
            # someone else's (a project's root, given as ``--store .``), which would gain _llmcost.json, _lock and
            # day=... directories.
            with os.scandir(path) as found:
                others = any(True for _ in found)
            if others and not is_parquet_store(path):
                raise CliError(
                    f"directory {path!r} holds other files and is not an llmcost Parquet store (from {url}); pass "
                    "--store with a store, a new directory, or an empty one"
                )
        return open_store(url)
    # A reading command writes nothing: a PostgreSQL store that cannot be reached would log that appends spill
    # until it is back, a second line about writes there are none of, before the read fails with its own error.
    store_logger = logging.getLogger("llmcost")
    quiet = _DropSpillNotice()
    store_logger.addFilter(quiet)
    try:
        return open_store(url)
    finally:
        store_logger.removeFilter(quiet)


class _DropSpillNotice(logging.Filter):
    """Drops the store's "appends will spill" notice (for a reading command, which appends nothing)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "appends will spill" not in record.getMessage()
