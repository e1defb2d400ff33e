"""``open_store(url)``: a store from a URL."""

from __future__ import annotations

from .._errors import StoreError
from ._base import CostStore
from ._memory import MemoryStore

__all__ = ["open_store"]


def _location(url: str, rest: str) -> str:
    """The file system path in ``rest`` (what follows ``scheme://``): ``/abs/path`` or ``relative/path``."""
    if "?" in rest or "#" in rest:
        raise StoreError(f"store URL {url!r} must not carry a query or fragment; give just the path")
    if not rest or rest == "/":
        raise StoreError(f"store URL {url!r} names no path; use e.g. duckdb:///abs/path.duckdb or duckdb://rel.duckdb")
    return rest


def open_store(url: str | CostStore) -> CostStore:
    """Open the store ``url`` names: ``memory://``, ``duckdb:///path/costs.duckdb``, ``parquet:///path/dir`` or
    ``postgresql://user@host:5432/db`` (also ``postgres://``; the whole URL is the libpq DSN).

    A ``CostStore`` is returned as it is. An unknown scheme raises ``StoreError``.

    Example::

        store = llmcost.open_store("duckdb:///tmp/costs.duckdb")
    """
    if isinstance(url, CostStore):
        return url
    if not isinstance(url, str):
        raise TypeError(f"store must be a URL string or a CostStore, got {url!r}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise StoreError(
            f"store URL {url!r} has no scheme; use memory://, duckdb:///path/costs.duckdb or parquet:///path/dir"
        )
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
        f"store URL {url!r} has an unknown scheme {scheme!r}; use memory://, duckdb:///path, parquet:///dir or postgresql://host/db"
    )
