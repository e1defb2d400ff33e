"""``open_store(url)``: a store from a URL."""

from __future__ import annotations

from .._errors import StoreError
from ._base import CostStore
from ._memory import MemoryStore

__all__ = ["open_store"]


def open_store(url: str | CostStore) -> CostStore:
    """Open the store ``url`` names: ``memory://``, ``duckdb:///path/costs.duckdb`` or ``parquet:///path/dir``.

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
    raise StoreError(
        f"store URL {url!r} has an unknown scheme {scheme!r}; use memory://, duckdb:///path or parquet:///dir"
    )
