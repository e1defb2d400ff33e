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


#: A libpq keyword of a connection string (``host=db dbname=costs user=app``), at its start or after a space.
_DSN_KEYWORD = re.compile(r"(?:^|\s)(?:host|hostaddr|dbname|user|port|password|service)\s*=")
#: A password in a message: a keyword's value (quoted or not), or a URL's (``scheme://user:password@host``, with or
#: without the ``//``). Each pattern matches in one pass (no nested repeats): it runs on whatever a user passed.
_PASSWORDS = (
    (re.compile(r"(password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|(?:\\.|[^\s\\])+)"), r"\1***"),
    (re.compile(r"([:/][^/@\s:]*:)[^@\s/]*(@)"), r"\1***\2"),
)


def _shown(location: str) -> str:
    """``location`` for a message, without any password it carries (messages end up in logs).

    >>> _shown("host=db password='s3 cret' dbname=costs"), _shown("postgresql://app:s3cret@db/costs")
    ('host=db password=*** dbname=costs', 'postgresql://app:***@db/costs')
    """
    for pattern, replacement in _PASSWORDS:
        location = pattern.sub(replacement, location)
    return location


def _is_connection_string(location: str) -> bool:
    """Whether ``location`` reads as a libpq connection string: a keyword of one, and a password or a second
    keyword (so that a file named ``user=bob.duckdb`` is a path still)."""
    found = _DSN_KEYWORD.findall(location)
    return len(found) > 1 or (len(found) == 1 and "password" in found[0])


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
    if _is_connection_string(location):
        # A PostgreSQL connection string given where a store URL goes (checked first: one ending in ``.db``, or with
        # a ``://`` in its password, is no path or URL either).
        raise StoreError(
            f"store {_shown(location)!r} is a PostgreSQL connection string, not a store URL; give it as a URL "
            "(postgresql://user@host:5432/dbname) or pass PostgresStore(dsn)"
        )
    if "://" in location:
        return location
    scheme, colon, rest = location.partition(":")
    if colon and scheme.lower() in _SCHEMES:
        # ``duckdb:costs.duckdb`` used to be taken as a plain path, a file of that very name. Only the known schemes
        # are refused: a Windows drive (``C:\\costs.duckdb``) is a path still.
        right = "memory://" if scheme.lower() == "memory" else f"{scheme}://{rest}"
        raise StoreError(f"store URL {_shown(location)!r} lacks the // after {scheme + ':'!r}; write {_shown(right)!r}")
    if location.lower().endswith((".duckdb", ".db")):
        return "duckdb://" + location
    if location and os.path.isdir(location):
        return "parquet://" + location
    raise StoreError(
        f"store URL {_shown(location)!r} has no scheme, and as a path it is neither a .duckdb file nor an existing "
        f"directory; {_PLAIN_HINT}"
    )


def _location(url: str, rest: str) -> str:
    """The file system path in ``rest`` (what follows ``scheme://``): ``/abs/path`` or ``relative/path``."""
    if "?" in rest or "#" in rest:
        raise StoreError(f"store URL {_shown(url)!r} must not carry a query or fragment; give just the path")
    if not rest or rest == "/":
        raise StoreError(
            f"store URL {_shown(url)!r} names no path; use e.g. duckdb:///abs/path.duckdb or duckdb://rel.duckdb"
        )
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
        f"store URL {_shown(url)!r} has an unknown scheme {scheme!r}; use memory://, duckdb:///path, parquet:///dir or "
        "postgresql://host/db"
    )
