"""Where the row format lived before ``llmcost._rows``; kept only until ``llmcost.analytics`` imports ``_rows``.

Nothing in the stores uses it: new code imports ``llmcost._rows``.
"""

from __future__ import annotations

from .._rows import COLUMNS, ENTRIES_DDL, SCHEMA_VERSION, SQL_TYPES, TOKEN_COLUMNS, cast_select

__all__ = ["COLUMNS", "ENTRIES_DDL", "SCHEMA_VERSION", "SQL_SELECT", "SQL_TYPES", "TOKEN_COLUMNS"]

#: Typed rows from a relation named ``raw`` holding text rows (``_rows.cast_select("raw")``).
SQL_SELECT = cast_select("raw")
