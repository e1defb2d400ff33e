"""``export``: one row per entry to a CSV, JSON or Parquet file, written in chunks and moved into place at the end.

Rows are read as ``llmcost._rows.TEXT_COLUMNS`` (exact text) and written with the row format's own encoders
(``json_record``, ``cast_select``); only the CSV cell rule lives here.

Example::

    >>> export(tracker, "costs.csv")
    90
    >>> Path("costs.csv").read_text().split(",")[:5]
    ['id', 'timestamp', 'amount', 'currency', 'category']
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._rows import COLUMNS, ENTRIES_DDL, TEXT_COLUMNS, cast_select, json_record
from .._time import When
from ._output import OutputFile
from ._source import Source, as_source

if TYPE_CHECKING:
    import duckdb

__all__ = ["csv_row", "export", "insert_text_rows"]

_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_CHUNK = 100_000  # rows per read while exporting

#: One entry per row, as text where text keeps it exact (the row format's ``TEXT_COLUMNS``); read ``_e`` (see
#: ``Source.sql``) with it.
EXPORT_SELECT = "SELECT " + TEXT_COLUMNS


def _export_format(path: Path, format: str | None) -> str:
    if format is not None:
        if not isinstance(format, str) or format.lower() not in ("csv", "json", "parquet"):
            raise ValueError(f"format must be 'csv', 'json' or 'parquet', got {format!r}")
        return format.lower()
    found = _FORMATS.get(path.suffix.lower())
    if found is None and str(path) == "-":
        return "csv"
    if found is None:
        raise ValueError(
            f"cannot tell the export format from the file name {str(path)!r}; "
            "use a .csv, .json or .parquet suffix or pass format="
        )
    return found


def _chunks(src: Source) -> tuple[int, list[tuple[datetime, datetime | None]]]:
    """The entry count and ``[start, end)`` time ranges of about ``_CHUNK`` entries each, from hourly counts; the
    last range has no end (``None``)."""
    counts = src.sql(
        "SELECT date_trunc('hour', timezone('UTC', timestamp)) AS hour, count(*) AS n FROM _e GROUP BY 1 ORDER BY 1"
    )
    total = int(counts["n"].sum()) if len(counts) else 0
    ranges: list[tuple[datetime, datetime | None]] = []
    start: datetime | None = None
    size = 0
    hours = [h.to_pydatetime() if hasattr(h, "to_pydatetime") else h for h in counts["hour"]]
    for i, (hour, n) in enumerate(zip(hours, counts["n"], strict=True)):
        hour = hour.replace(tzinfo=timezone.utc)
        if start is None:
            start = hour
        size += int(n)
        # Not after the last hour: its end may be past the calendar (the hour after 9999-12-31 23:00 is none), and
        # the last range takes everything from its start on anyway.
        if size >= _CHUNK and i < len(hours) - 1:
            ranges.append((start, hour + timedelta(hours=1)))
            start, size = None, 0
    if start is not None:
        ranges.append((start, None))
    return total, ranges


def csv_row(row: Sequence[Any]) -> list[object]:
    """An ``EXPORT_SELECT`` row as CSV cells: NULL (or NaN) as an empty cell, everything else as it is.

    >>> csv_row(("01hx", "2024-05-01T00:00:00.000000Z", "0.5", None))
    ['01hx', '2024-05-01T00:00:00.000000Z', '0.5', '']
    """
    return ["" if value is None or (isinstance(value, float) and math.isnan(value)) else value for value in row]


def export(
    source: Any,
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    progress: Callable[[int, int], object] | None = None,
    since: When | None = None,
    until: When | None = None,
) -> int:
    """Write one row per entry to ``path`` and return how many were written; oldest first.

    ``format`` is ``"csv"``, ``"json"`` or ``"parquet"``, by default from the suffix (``.csv``, ``.json``,
    ``.parquet``). CSV and JSON hold the amount as exact decimal text (a number in JSON), timestamps in ISO 8601
    UTC and tags as JSON text (an object in JSON: a list of records). Parquet keeps the store's types
    (``DECIMAL(38, 18)``, ``TIMESTAMP WITH TIME ZONE``, ``MAP``) and is written by DuckDB. The file is written
    next to ``path`` and moved into place at the end, so a failed export leaves no half file; it gets the
    permissions of any new file under the umask. ``"-"`` writes to standard output, and an existing link, named
    pipe or device (``/dev/stdout``) is written through, never replaced. ``progress`` is called with
    ``(written, total)`` after each chunk. ``since``/``until`` narrow the entries as in ``spend``.

    Example::

        export(tracker, "costs-may.csv")
        pandas.read_parquet(export(store, "costs.parquet") and "costs.parquet")
    """
    target = Path(os.fspath(path))
    kind = _export_format(target, format)
    output = OutputFile(path)
    # (Read a chunk at a time: from a store whose every query copies all its entries, from one copy of them.)
    with as_source(source) as base, base.where(since=since, until=until).copied() as src:
        total, ranges = _chunks(src)
        with output as tmp:
            return _write(src, kind, tmp, total, ranges, progress)


def _pages(src: Source, ranges: Iterable[tuple[datetime, datetime | None]]) -> Iterable[list[tuple[Any, ...]]]:
    for start, end in ranges:
        if end is None:
            page = src.sql(f"{EXPORT_SELECT} FROM _e WHERE timestamp >= ? ORDER BY _e.timestamp, id", [start])
        else:
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
    ranges: list[tuple[datetime, datetime | None]],
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
    ranges: list[tuple[datetime, datetime | None]],
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
    types: the text rows are the ``raw`` relation that ``_rows.cast_select`` reads.

    >>> import duckdb
    >>> con = duckdb.connect()
    >>> _ = con.execute(ENTRIES_DDL)
    >>> with as_source(store) as src:
    ...     rows = list(src.sql(EXPORT_SELECT + " FROM _e").itertuples(index=False))
    >>> insert_text_rows(con, rows)
    >>> con.execute("SELECT count(*), sum(amount) FROM entries").fetchone()
    (90, Decimal('30.488000000000000000'))
    """
    import pandas as pd

    page = pd.DataFrame.from_records(list(rows), columns=list(COLUMNS))
    for column in page.columns:
        if page[column].dtype == object:
            page[column] = page[column].where(page[column].notna(), None)
    con.register("raw", page)
    try:
        con.execute(f"INSERT INTO entries {cast_select('raw')}")
    finally:
        con.unregister("raw")
