"""``export``: one row per entry to a CSV, JSON or Parquet file, written in chunks and moved into place at the end.

The row encodings (``EXPORT_SELECT``, ``csv_row``, ``json_record``, ``insert_text_rows``) are row-format
conversions: they belong with the one owner of the row format and move there when that exists.

Example::

    >>> export(tracker, "costs.csv")
    830
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..stores._schema import COLUMNS, ENTRIES_DDL, SQL_SELECT, TOKEN_COLUMNS
from ._source import Source, as_source

if TYPE_CHECKING:
    import duckdb

__all__ = ["EXPORT_SELECT", "csv_row", "export", "insert_text_rows", "json_record"]

_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_CHUNK = 100_000  # rows per read while exporting

#: One entry per row, as text where text keeps it exact: amount without trailing zeros, timestamps in ISO 8601 UTC,
#: tags as JSON text; the columns of ``COLUMNS``, in order. Read ``_e`` (see ``Source.sql``) with it.
EXPORT_SELECT = (
    "SELECT id, strftime(timezone('UTC', timestamp), '%Y-%m-%dT%H:%M:%S.%fZ') AS timestamp, "
    "rtrim(rtrim(CAST(amount AS VARCHAR), '0'), '.') AS amount, currency, category, resource, description, "
    "model, provider, " + ", ".join(TOKEN_COLUMNS) + ", latency_ms, CAST(to_json(tags) AS VARCHAR) AS tags, pricing, "
    "CAST(to_json(units) AS VARCHAR) AS units, service_tier"
)


def _export_format(path: Path, format: str | None) -> str:
    if format is not None:
        if not isinstance(format, str) or format.lower() not in ("csv", "json", "parquet"):
            raise ValueError(f"format must be 'csv', 'json' or 'parquet', got {format!r}")
        return format.lower()
    found = _FORMATS.get(path.suffix.lower())
    if found is None:
        raise ValueError(
            f"cannot tell the export format from the file name {str(path)!r}; "
            "use a .csv, .json or .parquet suffix or pass format="
        )
    return found


def _chunks(src: Source) -> tuple[int, list[tuple[datetime, datetime]]]:
    """The entry count and ``[start, end)`` time ranges of about ``_CHUNK`` entries each, from hourly counts."""
    counts = src.sql(
        "SELECT date_trunc('hour', timezone('UTC', timestamp)) AS hour, count(*) AS n FROM _e GROUP BY 1 ORDER BY 1"
    )
    total = int(counts["n"].sum()) if len(counts) else 0
    ranges: list[tuple[datetime, datetime]] = []
    start: datetime | None = None
    size = 0
    hours = [h.to_pydatetime() if hasattr(h, "to_pydatetime") else h for h in counts["hour"]]
    for hour, n in zip(hours, counts["n"], strict=True):
        hour = hour.replace(tzinfo=timezone.utc)
        if start is None:
            start = hour
        size += int(n)
        if size >= _CHUNK:
            ranges.append((start, hour + timedelta(hours=1)))
            start, size = None, 0
    if start is not None:
        ranges.append((start, hours[-1].replace(tzinfo=timezone.utc) + timedelta(hours=1)))
    return total, ranges


def csv_row(row: Sequence[Any]) -> list[object]:
    """An ``EXPORT_SELECT`` row as CSV cells: NULL (or NaN) as an empty cell, everything else as it is.

    >>> csv_row(("01hx", "2024-05-01T00:00:00.000000Z", "0.5", None))
    ['01hx', '2024-05-01T00:00:00.000000Z', '0.5', '']
    """
    return ["" if value is None or (isinstance(value, float) and math.isnan(value)) else value for value in row]


def json_record(row: Sequence[Any]) -> str:
    """An ``EXPORT_SELECT`` row as one JSON object (text): ``amount`` an exact JSON number, ``tags`` an object.

    >>> json_record(row)[:40]
    '{"id": "01hx...", "timestamp": "2024-05-0'
    """
    parts = []
    for name, value in zip(COLUMNS, row, strict=True):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            text = "null"
        elif name == "amount":
            text = str(value)  # exact decimal text as a JSON number: json.loads(..., parse_float=Decimal) keeps it
        elif name in ("tags", "units"):
            text = str(value)  # already JSON
        else:
            text = json.dumps(value.item() if hasattr(value, "item") else value, ensure_ascii=False)
        parts.append(f"{json.dumps(name)}: {text}")
    return "{" + ", ".join(parts) + "}"


def export(
    source: Any,
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    progress: Callable[[int, int], object] | None = None,
) -> int:
    """Write one row per entry to ``path`` and return how many were written; oldest first.

    ``format`` is ``"csv"``, ``"json"`` or ``"parquet"``, by default from the suffix (``.csv``, ``.json``,
    ``.parquet``). CSV and JSON hold the amount as exact decimal text (a number in JSON), timestamps in ISO 8601
    UTC and tags as JSON text (an object in JSON: a list of records). Parquet keeps the store's types
    (``DECIMAL(38, 18)``, ``TIMESTAMP WITH TIME ZONE``, ``MAP``) and is written by DuckDB. The file is written
    next to ``path`` and moved into place at the end, so a failed export leaves no half file. ``progress`` is
    called with ``(written, total)`` after each chunk.

    Example::

        export(tracker, "costs-may.csv")
        pandas.read_parquet(export(store, "costs.parquet") and "costs.parquet")
    """
    target = Path(os.fspath(path))
    kind = _export_format(target, format)
    if not target.parent.exists():
        raise FileNotFoundError(f"cannot export to {str(target)!r}: directory {str(target.parent)!r} does not exist")
    with as_source(source) as src:
        total, ranges = _chunks(src)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            written = _write(src, kind, tmp, total, ranges, progress)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return written


def _pages(src: Source, ranges: Iterable[tuple[datetime, datetime]]) -> Iterable[list[tuple[Any, ...]]]:
    for start, end in ranges:
        page = src.sql(
            f"{EXPORT_SELECT} FROM _e WHERE timestamp >= ? AND timestamp < ? ORDER BY _e.timestamp, id",
            [start, end],
        )
        yield list(page.itertuples(index=False, name=None))


def _write(
    src: Source,
    kind: str,
    tmp: Path,
    total: int,
    ranges: list[tuple[datetime, datetime]],
    progress: Callable[[int, int], object] | None,
) -> int:
    written = 0
    if progress is not None:
        progress(0, total)
    if kind == "parquet":
        return _write_parquet(src, tmp, total, ranges, progress)
    with tmp.open("w", encoding="utf-8", newline="") as out:
        if kind == "csv":
            import csv

            writer = csv.writer(out)
            writer.writerow(COLUMNS)
            for rows in _pages(src, ranges):
                writer.writerows([csv_row(row) for row in rows])
                written += len(rows)
                if progress is not None:
                    progress(written, total)
        else:
            out.write("[")
            for rows in _pages(src, ranges):
                for row in rows:
                    out.write(",\n" if written else "\n")
                    out.write(json_record(row))
                    written += 1
                if progress is not None:
                    progress(written, total)
            out.write("\n]\n" if written else "]\n")
    return written


def _write_parquet(
    src: Source,
    tmp: Path,
    total: int,
    ranges: list[tuple[datetime, datetime]],
    progress: Callable[[int, int], object] | None,
) -> int:
    import duckdb

    written = 0
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(ENTRIES_DDL)
        for rows in _pages(src, ranges):
            insert_text_rows(con, rows)
            written += len(rows)
            if progress is not None:
                progress(written, total)
        literal = "'" + str(tmp).replace("'", "''") + "'"  # the user's own path, quoted as an SQL string
        con.execute(f"COPY (SELECT * FROM entries ORDER BY timestamp, id) TO {literal} (FORMAT parquet)")
    finally:
        con.close()
    return written


def insert_text_rows(con: duckdb.DuckDBPyConnection, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``EXPORT_SELECT`` rows into the ``entries`` table (``ENTRIES_DDL``) of ``con``, back in the store's
    types: the text rows are the ``raw`` relation that ``SQL_SELECT`` reads.

    >>> insert_text_rows(con, [row])
    """
    import pandas as pd

    page = pd.DataFrame.from_records(list(rows), columns=list(COLUMNS))
    for column in page.columns:
        if page[column].dtype == object:
            page[column] = page[column].where(page[column].notna(), None)
    con.register("raw", page)
    try:
        con.execute(f"INSERT INTO entries {SQL_SELECT}")
    finally:
        con.unregister("raw")
