"""The one row shape every store keeps, and conversions between entries and pandas frames.

Every backend stores and returns the columns of ``COLUMNS``; ``scan()`` frames carry ``amount`` as exact
``Decimal`` objects, ``timestamp`` as ``datetime64[us, UTC]`` and ``tags`` as plain dicts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._entry import CostEntry, FrozenTags
from .._usage import Usage

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "ENTRIES_DDL",
    "SCHEMA_VERSION",
    "SQL_SELECT",
    "TOKEN_COLUMNS",
    "entries_to_frame",
    "entry_row",
    "frame_to_entries",
    "sql_frame",
]

#: Bumped whenever the stored row shape changes; stores migrate older files on open.
SCHEMA_VERSION = 1

TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
COLUMNS = (
    "id",
    "timestamp",
    "amount",
    "currency",
    "category",
    "resource",
    "description",
    "model",
    "provider",
    *TOKEN_COLUMNS,
    "latency_ms",
    "tags",
    "pricing",
)

#: DuckDB column types of the canonical row; money is exact DECIMAL(38, 18).
SQL_TYPES = {
    "id": "VARCHAR",
    "timestamp": "TIMESTAMPTZ",
    "amount": "DECIMAL(38, 18)",
    "currency": "VARCHAR",
    "category": "VARCHAR",
    "resource": "VARCHAR",
    "description": "VARCHAR",
    "model": "VARCHAR",
    "provider": "VARCHAR",
    "input_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "cache_read_tokens": "BIGINT",
    "cache_write_tokens": "BIGINT",
    "reasoning_tokens": "BIGINT",
    "latency_ms": "DOUBLE",
    "tags": "MAP(VARCHAR, VARCHAR)",
    "pricing": "VARCHAR",
}

ENTRIES_DDL = "CREATE TABLE IF NOT EXISTS entries (" + ", ".join(f'"{c}" {SQL_TYPES[c]}' for c in COLUMNS) + ")"

#: Turns a frame made by ``sql_frame`` (registered in DuckDB as ``raw``) into canonical typed rows.
SQL_SELECT = (
    "SELECT id, CAST(timestamp AS TIMESTAMPTZ) AS timestamp, CAST(amount AS DECIMAL(38, 18)) AS amount, "
    "currency, category, resource, description, model, provider, "
    + ", ".join(f"CAST({c} AS BIGINT) AS {c}" for c in TOKEN_COLUMNS)
    + ", CAST(latency_ms AS DOUBLE) AS latency_ms, "
    "CAST(CAST(tags AS JSON) AS MAP(VARCHAR, VARCHAR)) AS tags, pricing FROM raw"
)


def entry_row(entry: CostEntry) -> tuple[Any, ...]:
    """The canonical row of ``entry`` as plain Python values (tags as a dict)."""
    u = entry.usage
    return (
        entry.id,
        entry.timestamp,
        entry.amount,
        entry.currency,
        entry.category.value,
        entry.resource,
        entry.description,
        entry.model,
        entry.provider,
        u.input_tokens,
        u.output_tokens,
        u.cache_read_tokens,
        u.cache_write_tokens,
        u.reasoning_tokens,
        entry.latency_ms,
        dict(entry.tags),
        entry.pricing,
    )


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).astype("datetime64[us, UTC]")
    for col in TOKEN_COLUMNS:
        frame[col] = frame[col].astype("int64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    return frame


def entries_to_frame(entries: Iterable[CostEntry]) -> pd.DataFrame:
    """One row per entry with the ``COLUMNS``; ``amount`` stays an exact ``Decimal``."""
    import pandas as pd

    rows = [entry_row(e) for e in entries]
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    for col in ("amount", "tags", "resource", "model", "provider"):
        frame[col] = frame[col].astype(object)
    return _typed(frame)


def sql_frame(entries: Sequence[CostEntry]) -> pd.DataFrame:
    """Rows for DuckDB ingestion: ``amount`` as text, ``tags`` as JSON text; pair with ``SQL_SELECT``."""
    import pandas as pd

    rows = []
    for e in entries:
        row = list(entry_row(e))
        row[2] = str(e.amount)
        row[15] = json.dumps(row[15], ensure_ascii=False)
        rows.append(row)
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    for col in (
        "id",
        "amount",
        "currency",
        "category",
        "resource",
        "description",
        "model",
        "provider",
        "tags",
        "pricing",
    ):
        frame[col] = frame[col].astype(object)
    return _typed(frame)


def _none(value: Any) -> Any:
    # pandas turns missing strings into None or NaN depending on dtype.
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value


def _tags(value: Any) -> FrozenTags:
    if value is None or (isinstance(value, float) and value != value):
        return FrozenTags()
    if isinstance(value, str):
        return FrozenTags(json.loads(value))
    if isinstance(value, dict):
        return FrozenTags(value)
    # DuckDB may hand maps back as lists of (key, value) pairs or {"key": [...], "value": [...]}.
    if isinstance(value, list):
        return FrozenTags(dict(value))
    return FrozenTags(dict(value))


def frame_to_entries(frame: pd.DataFrame) -> list[CostEntry]:
    """Rebuild ``CostEntry`` objects from a frame with the ``COLUMNS`` (as ``scan()`` returns)."""
    out = []
    for rec in frame.itertuples(index=False):
        amount = rec.amount if isinstance(rec.amount, Decimal) else Decimal(str(rec.amount))
        latency = _none(rec.latency_ms)
        out.append(
            CostEntry(
                id=rec.id,
                timestamp=rec.timestamp.to_pydatetime(),
                amount=amount,
                currency=rec.currency,
                category=rec.category,
                resource=_none(rec.resource),
                description=_none(rec.description) or "",
                model=_none(rec.model),
                provider=_none(rec.provider),
                usage=Usage(
                    int(rec.input_tokens),
                    int(rec.output_tokens),
                    int(rec.cache_read_tokens),
                    int(rec.cache_write_tokens),
                    int(rec.reasoning_tokens),
                ),
                latency_ms=latency,
                tags=_tags(rec.tags),
                pricing=rec.pricing,
            )
        )
    return out
