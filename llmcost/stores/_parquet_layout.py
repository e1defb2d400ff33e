"""Where a ``ParquetStore`` keeps what: day directories, data files, compaction records, and how readers list and
read the files (see ``_parquet`` for the whole layout and why readers list files before records)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import attrs

from .._rows import COLUMNS, EMPTY_ROWS, SQL_TYPES, TOKEN_COLUMNS, typed_select, with_all_columns

__all__ = [
    "COLUMN_STATISTICS",
    "SCHEMA_CHECK",
    "SOURCE",
    "ColumnFacts",
    "Compaction",
    "Listing",
    "column_facts",
    "compactions",
    "day_name",
    "has_every_column",
    "is_own_schema",
    "parse_day",
    "reading",
    "sweep_temporaries",
]


def _any_columns(files: str) -> str:
    return with_all_columns(f"read_parquet({files}, union_by_name = true, hive_partitioning = false)")


def _every_column(files: str) -> str:
    return f"({typed_select(f'read_parquet({files}, hive_partitioning = false)')})"


#: Typed rows of the Parquet files passed as the first parameter (a list of paths), whatever columns each file
#: has: files written before a column was added read a typed NULL in it.
SOURCE = _any_columns("?")


def reading(current: bool, older: bool, current_files: str = "?", older_files: str = "?") -> str:
    """The relation a read selects from: typed rows of the files that hold every declared column (``current``;
    their list of paths is ``current_files``, a placeholder or an expression), then of the files written before a
    column was added (``older``, ``older_files``); ``EMPTY_ROWS`` when there are neither.

    Files that hold every column are read without ``union_by_name``, which reads the schema of every file each time
    a query is bound: over a year of daily files that took ~160 ms per bind, and a query binds its relation more
    than once; DuckDB reads the schema of the first file alone otherwise (~1 ms). Only older files, which
    ``compact()`` rewrites, still need it (``SOURCE``).

    Example::

        con.execute(f"SELECT count(*) FROM {reading(True, False)}", [paths])
    """
    parts = [_every_column(current_files)] if current else []
    if older:
        parts.append(_any_columns(older_files))
    if not parts:
        return EMPTY_ROWS
    return parts[0] if len(parts) == 1 else "(" + " UNION ALL ".join(f"SELECT * FROM {p}" for p in parts) + ")"


def day_name(day: date) -> str:
    """The directory of ``day``'s files: ``day=YYYY-MM-DD`` (hive partitioning)."""
    return f"day={day.isoformat()}"


def parse_day(name: str) -> date | None:
    """The day a directory name stands for; ``None`` for anything that is not a day directory."""
    if not name.startswith("day=") or len(name) != 14:
        return None
    try:
        return date.fromisoformat(name[4:])
    except ValueError:
        return None


def _is_visible(name: str) -> bool:
    return not name.startswith((".", "_"))


def _is_data_file(name: str) -> bool:
    """Whether ``name`` is what the store names its data files: ``part-<...>.parquet``."""
    return name.startswith("part-") and name.endswith(".parquet")


#: Per file and top-level column: its name, physical type and converted type (one query for a list of paths).
SCHEMA_CHECK = "SELECT file_name, name, type, converted_type FROM parquet_schema(?)"
# Besides the columns: the root and MAP group names writers use, and the hive partition column `day`, which engines
# reading the dataset with hive partitioning write back.
_KNOWN = frozenset(COLUMNS) | {"duckdb_schema", "schema", "key_value", "key", "value", "map", "day"}
_REQUIRED = {"id": ("BYTE_ARRAY", "UTF8"), "timestamp": ("INT64", None), "amount": (None, "DECIMAL")}


def has_every_column(columns: dict[str, tuple[str | None, str | None]]) -> bool:
    """Whether a file with ``columns`` (as ``is_own_schema`` takes them) holds every declared column and no other
    (such as the ``day`` other engines write back), so it can be read without ``union_by_name`` (see ``reading``):
    DuckDB then takes the columns from the first file and finds them by name in the others."""
    names = set(columns)
    return set(COLUMNS) <= names and not names - _KNOWN and "day" not in names


def is_own_schema(columns: dict[str, tuple[str | None, str | None]]) -> bool:
    """Whether a file with ``columns`` (name: (physical type, converted type), from ``SCHEMA_CHECK``) holds the
    store's rows: ``id`` text, ``timestamp`` 64-bit, ``amount`` decimal, and no column the row format lacks (files
    written before a column was added lack it, and read NULL there)."""
    for name, (physical, converted) in _REQUIRED.items():
        found = columns.get(name)
        if found is None or (physical and found[0] != physical) or (converted and found[1] != converted):
            return False
    return set(columns) <= _KNOWN


#: Per file and top-level column, over its row groups' statistics: whether every value is NULL (for a MAP, every
#: map NULL or empty), whether none is, whether every row group holds one value and no NULL (min and max equal, and
#: exact), and that value as text, its physical type (NULL where its leaves differ) and whether it has one leaf
#: column. Rows: see ``column_facts``. (~0.1 s of CPU for a year of daily files, most of it DuckDB reading their
#: footers; DISTINCT aggregates cost a third more.)
COLUMN_STATISTICS = """
    SELECT file_name, split_part(path_in_schema, ', ', 1) AS name,
           bool_and(coalesce(stats_null_count = num_values, false)) AS all_null,
           bool_and(coalesce(stats_null_count = 0, false)) AS no_null,
           bool_and(coalesce(stats_null_count = 0 AND stats_min_value = stats_max_value
                             AND min_is_exact IS NOT false AND max_is_exact IS NOT false, false))
               AND min(stats_min_value) = max(stats_min_value) AS one_value,
           min(stats_min_value) AS value,
           CASE WHEN min(type) = max(type) THEN min(type) END AS type,
           min(path_in_schema) = max(path_in_schema) AS one_leaf
    FROM parquet_metadata(?) GROUP BY ALL
"""
# Columns whose one value statistics can be trusted to name exactly (text, integers: no -0.0/0.0 or NaN to hide
# behind a min equal to the max), by the physical type they must have; and columns only an all-NULL one is taken of
# (doubles; ``units``, whose statistics do not tell a NULL map from an empty one, which a frame reads alike).
_ONE_VALUE = {
    **{c: "BYTE_ARRAY" for c, t in SQL_TYPES.items() if t == "VARCHAR" and c != "id"},
    **dict.fromkeys(TOKEN_COLUMNS, "INT64"),
}
_ALL_NULL = frozenset({*_ONE_VALUE, "latency_ms", "units"})
_NEVER_NULL = frozenset(_ONE_VALUE)  # (leaf columns: maps are left alone)


@attrs.frozen
class ColumnFacts:
    """What the statistics of a file (or of every file of a read, ``shared``) prove of its columns: ``constants``,
    the columns every row holds one and the same stored value in, by name (that value as text DuckDB casts to the
    column's type, or ``None`` for NULL); ``never_null``, the columns no row holds NULL in.

    Example::

        facts = ColumnFacts.shared(column_facts(rows).values())
    """

    constants: Mapping[str, str | None] = attrs.field(factory=dict)
    never_null: frozenset[str] = frozenset()

    @classmethod
    def shared(cls, each: Iterable[ColumnFacts]) -> ColumnFacts:
        """What ``each`` of the files' facts prove alike: the constants with one value in all, the columns never
        NULL in any (nothing, for no files)."""
        facts = list(each)
        if not facts:
            return cls()
        constants = dict(facts[0].constants)
        never_null = set(facts[0].never_null)
        for other in facts[1:]:
            constants = {c: v for c, v in constants.items() if other.constants.get(c, ()) == v}
            never_null &= other.never_null
        return cls(constants, frozenset(never_null))


def column_facts(rows: list[tuple[Any, ...]]) -> dict[str, ColumnFacts]:
    """Per file of ``COLUMN_STATISTICS``' ``rows``, its ``ColumnFacts``.

    Only what the statistics prove: the row groups' minimum equal to their maximum and exact, with no NULL, in a
    text or integer column; every value NULL; no NULL counted. ``id``, ``timestamp``, ``amount`` and ``tags`` are
    never taken (the frame reads them anyway, or their statistics do not tell an empty map from a NULL one). A file
    no row of which the statistics cover (none written) has no facts.

    Example::

        column_facts(con.execute(COLUMN_STATISTICS, [paths]).fetchall())
    """
    constants: dict[str, dict[str, str | None]] = {}
    never_null: dict[str, set[str]] = {}
    for file_name, name, all_null, no_null, one_value, value, physical, one_leaf in rows:
        columns = constants.setdefault(file_name, {})
        if all_null and name in _ALL_NULL:
            columns[name] = None
        elif one_value and one_leaf and physical == _ONE_VALUE.get(name) and value is not None:
            columns[name] = value
        if no_null and one_leaf and name in _NEVER_NULL:
            never_null.setdefault(file_name, set()).add(name)
    return {f: ColumnFacts(constants[f], frozenset(never_null.get(f, ()))) for f in constants}


@attrs.frozen
class Compaction:
    """A compaction in progress (or interrupted): merged file ``output`` of ``day`` replaces ``inputs``."""

    day: date
    output: str
    inputs: frozenset[str]
    record: str  # path of the record file in _compactions/


def compactions(directory: str) -> list[Compaction]:
    """The compaction records in ``directory``; unreadable ones (being written, or gone) are skipped."""
    folder = os.path.join(directory, "_compactions")
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            day = parse_day(f"day={record['day']}")
            output, inputs = record["output"], record["inputs"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            continue
        # Only the store's own file names, plain (no directory): a record naming "../x" or a foreign file (planted in a
        # shared, writable dataset) would have its compaction delete files that are not the store's to delete.
        if (
            day is not None
            and isinstance(output, str)
            and isinstance(inputs, list)
            and all(isinstance(n, str) and _plain_own(n) for n in [output, *inputs])
        ):
            found.append(Compaction(day, output, frozenset(inputs), path))
    return found


def _plain_own(name: str) -> bool:
    """Whether ``name`` is a data file name of the store's own (``_is_data_file``) with no directory in it."""
    return _is_data_file(name) and os.path.basename(name) == name and "\\" not in name


class Listing:
    """The data files of the days from ``first`` to ``last`` (``None``: open), minus the inputs of compactions whose
    merged file is already listed. Visible files in day directories that the store does not name as its own are in
    ``foreign`` (paths), never in ``by_day``.

    Example::

        files = Listing("/data/costs", date(2024, 5, 1), None).paths()
    """

    def __init__(self, directory: str, first: date | None, last: date | None) -> None:
        self.directory = directory
        self.whole = first is None and last is None  # (every day's files)
        self.by_day: dict[date, list[str]] = {}
        self.foreign: list[str] = []
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            names = []
        for name in names:
            day = parse_day(name)
            if day is None or (first is not None and day < first) or (last is not None and day > last):
                continue
            try:
                visible = sorted(filter(_is_visible, os.listdir(os.path.join(directory, name))))
            except (FileNotFoundError, NotADirectoryError):
                continue
            files = [f for f in visible if _is_data_file(f)]
            self.foreign += [os.path.join(directory, name, f) for f in visible if not _is_data_file(f)]
            if files:
                self.by_day[day] = files
        # Records are read after the files (see the ``_parquet`` docstring for why this order is safe).
        for c in compactions(directory):
            listed = self.by_day.get(c.day)
            if listed and c.output in listed:
                self.by_day[c.day] = [f for f in listed if f not in c.inputs]

    def paths(self) -> list[str]:
        """Every listed file's path, day by day."""
        return [os.path.join(self.directory, day_name(day), f) for day in sorted(self.by_day) for f in self.by_day[day]]


def sweep_temporaries(directory: str, older_than: float = 3600.0) -> None:
    """Delete temporary files that writers killed mid-write left behind (an hour old: no live writer's)."""
    cutoff = time.time() - older_than
    for name in os.listdir(directory):
        if parse_day(name) is None:
            continue
        folder = os.path.join(directory, name)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for f in os.listdir(folder):
                path = os.path.join(folder, f)
                with contextlib.suppress(FileNotFoundError):
                    if f.startswith(".part-") and f.endswith(".tmp") and os.stat(path).st_mtime < cutoff:
                        os.unlink(path)
