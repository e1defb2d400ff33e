"""Where entries are kept: the ``CostStore`` contract and its backends.

``open_store(url)`` opens a store from a URL: ``memory://``, ``duckdb:///path/costs.duckdb`` or
``parquet:///path/dir``, ``postgresql://user@host/db``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._rows import COLUMNS, SCHEMA_VERSION
from ._base import CostStore
from ._filters import Filters
from ._ledger import BudgetScope, Ledger, Reservation, Standing
from ._memory import MemoryStore
from ._open import open_store

if TYPE_CHECKING:
    from ._duckdb import DuckDBStore
    from ._parquet import ParquetStore
    from ._postgres import PostgresStore

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "BudgetScope",
    "CostStore",
    "DuckDBStore",
    "Filters",
    "Ledger",
    "MemoryStore",
    "ParquetStore",
    "PostgresStore",
    "Reservation",
    "Standing",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # The durable stores (and what they import) load on first use, so `import llmcost` stays light.
    if name == "DuckDBStore":
        from ._duckdb import DuckDBStore

        return DuckDBStore
    if name == "ParquetStore":
        from ._parquet import ParquetStore

        return ParquetStore
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
