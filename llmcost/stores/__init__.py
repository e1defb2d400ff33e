"""Where entries are kept: the ``CostStore`` contract and its backends.

``open_store(url)`` opens a store from a URL: ``memory://``, ``duckdb:///path/costs.duckdb`` or
``parquet:///path/dir``.
"""

from __future__ import annotations

from ._base import CostStore, Filters
from ._duckdb import DuckDBStore
from ._memory import MemoryStore
from ._open import open_store
from ._parquet import ParquetStore
from ._schema import COLUMNS, SCHEMA_VERSION

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "CostStore",
    "DuckDBStore",
    "Filters",
    "MemoryStore",
    "ParquetStore",
    "open_store",
]
