"""``open_store(url)``: a store from a URL."""

from __future__ import annotations

import os
import re

from .._errors import StoreError
from ._base import CostStore
from ._memory import MemoryStore

__all__ = ["open_store", "store_url"]

_PLAIN_HINT = (
    "use memory://, duckdb:///path/costs.duckdb, parquet:///path/dir, a path ending in .duckdb or an existing directory"
)


#: A libpq keyword/value connection string (``host=db dbname=costs user=app``), whole: never a store path.
_KEYWORD_DSN = re.compile(r"\s*(?:\w+\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s']*)\s*)+")
_DSN_KEYWORD = re.compile(r"(?:^|\s)(?:host|hostaddr|dbname|user|port|password|service)\s*=")  # (one at least)
#: Its password's value (quoted or not), left out of the message that refuses it.
_DSN_PASSWORD = re.compile(r"(password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)")

#: The schemes ``open_store`` knows, so that one written without its ``//`` is caught, not taken as a file name.
_SCHEMES = ("memory", "duckdb", "parquet", "postgresql", "postgres")


def store_url(location: str | os.PathLike[str]) -> str:
    """The store URL ``location`` stands for: a URL as it is; a plain path ending in ``.duckdb`` or ``.db`` as a
    DuckDB file (``duckdb://<path>``); a path to an existing directory as a Parquet store (``parquet://<path>``).
    ``open_store``, ``configure``, ``CostTracker`` and the command line's ``--store`` all read locations with it.
    A known scheme without its ``//`` (``duckdb:costs.duckdb``) raises ``StoreError`` showing the URL meant.

    Example::

        >>> store_url("costs.duckdb"), store_url("memory://")
        ('duckdb://costs.duckdb', 'memory://')
    """
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if not isinstance(location, str):
        raise TypeError(f"store must be a URL, a path or a CostStore, got {location!r}")
    if "://" in location:
        return location
    scheme, colon, rest = location.partition(":")
    if colon and scheme.lower() in _SCHEMES:
        # ``duckdb:costs.duckdb`` used to be taken as a plain path, a file of that very name. Only the known schemes
        # are refused: a Windows drive (``C:\\costs.duckdb``) is a path still.
        right = "memory://" if scheme.lower() == "memory" else f"{scheme}://{rest}"
        raise StoreError(f"store URL {location!r} lacks the // after {scheme + ':'!r}; write {right!r}")
    if location.lower().endswith((".duckdb", ".db")):
        return "duckdb://" + location
    if location and os.path.isdir(location):
        return "parquet://" + location
    if _KEYWORD_DSN.fullmatch(location) and _DSN_KEYWORD.search(location):
        # (A PostgreSQL connection string given where a store URL goes: its password kept out of the message, which
        # ends up in logs.)
        shown = _DSN_PASSWORD.sub(r"\1***", location)
        raise StoreError(
            f"store {shown!r} is a PostgreSQL connection string, not a store URL; give it as a URL "
            "(postgresql://user@host:5432/dbname) or pass PostgresStore(dsn)"
        )
    raise StoreError(
        f"store URL {location!r} has no scheme, and as a path it is neither a .duckdb file nor an existing "
        f"directory; {_PLAIN_HINT}"
    )


def _location(url: str, rest: str) -> str:
    """The file system path in ``rest`` (what follows ``scheme://``): ``/abs/path`` or ``relative/path``."""
    if "?" in rest or "#" in rest:
        raise StoreError(f"store URL {url!r} must not carry a query or fragment; give just the path")
    if not rest or rest == "/":
        raise StoreError(f"store URL {url!r} names no path; use e.g. duckdb:///abs/path.duckdb or duckdb://rel.duckdb")
    return rest


def open_store(url: str | os.PathLike[str] | CostStore) -> CostStore:
    """Open the store ``url`` names: ``memory://``, ``duckdb:///path/costs.duckdb``, ``parquet:///path/dir`` or
    ``postgresql://user@host:5432/db`` (also ``postgres://``; the whole URL is the libpq DSN); or a plain path to a
    ``.duckdb``/``.db`` file or to an existing directory (a Parquet store), see ``store_url``.

    A ``CostStore`` is returned as it is. An unknown scheme raises ``StoreError``.

    Example::

        store = llmcost.open_store("duckdb:///tmp/costs.duckdb")
    """
    if isinstance(url, CostStore):
        return url
    url = store_url(url)
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "memory":
        return MemoryStore()
    if scheme == "duckdb":
        from ._duckdb import DuckDBStore

        return DuckDBStore(_location(url, rest))
    if scheme == "parquet":
        from ._parquet import ParquetStore

        return ParquetStore(_location(url, rest))
    if scheme in ("postgresql", "postgres"):
        from ._postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(
        f"store URL {url!r} has an unknown scheme {scheme!r}; use memory://, duckdb:///path, parquet:///dir or "
        "postgresql://host/db"
    )
