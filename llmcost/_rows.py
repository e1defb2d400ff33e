"""The stored row of a ``CostEntry``: its columns, their types, and every encoding of entries as rows.

This module is the one owner of the row format. The stores, their spill files and analytics build and read rows
only through it, and always by column name. The columns are the ``CostEntry`` fields of the same names, except the
token counts, which are the fields of ``CostEntry.usage``; each encoding below follows a column's SQL type. So
adding a field is one edit here (its line in ``SQL_TYPES``, after adding it to ``CostEntry``) plus a migration step
in ``stores/_migrate.py``.

The encodings, each a way in paired with a way out:

* DuckDB ingest: ``ingest_columns`` makes NumPy arrays that a store registers as ``RAW`` (and ``TAG_MAPS``);
  ``INGEST_SELECT`` turns them into rows of exactly the declared types. NumPy only: writing never imports pandas or
  pyarrow (slow to import, and impossible at interpreter exit, when trackers flush).
* DuckDB reads: ``READ_COLUMNS`` selects rows that ``entries_from_columns`` and ``frame_from_arrays`` rebuild.
* Text rows (amount as exact text, tags as JSON text), as exports write them: ``TEXT_COLUMNS`` selects them,
  ``json_record`` writes one as a JSON object, ``cast_select`` types such rows again.
* pandas frames as ``scan()`` returns them: ``entries_to_frame``, ``frame_to_entries``, ``frame_from_arrays``.
* JSON lines (spill files): ``entry_to_json`` and ``entry_from_json``.

pandas is imported only inside the functions that build or read frames. The module is longer than most on
purpose: it is the one home of the row format, and splitting it would scatter the format again.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import chain, repeat
from operator import attrgetter, floordiv, sub
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from ._entry import EMPTY_TAGS, CostCategory, CostEntry, FrozenTags, trusted_entry
from ._time import EPOCH, from_micros, micros
from ._usage import NO_UNITS, Units, Usage, trusted_usage

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "CODED_GROUPS",
    "COLUMNS",
    "DEFAULTED_COLUMNS",
    "EMPTY_ROWS",
    "ENTRIES_DDL",
    "INGEST_SELECT",
    "INGEST_SELECT_TAGS_PARAM",
    "INSERT_COLUMNS",
    "OBJECT_COLUMNS",
    "PARAM_TAG_MAPS",
    "RAW",
    "READ_COLUMNS",
    "SCHEMA_VERSION",
    "SQL_TYPES",
    "TAG_MAPS",
    "TEXT_COLUMNS",
    "TOKEN_COLUMNS",
    "UNIT_COLUMNS",
    "Coded",
    "FieldColumns",
    "TagCache",
    "cast_select",
    "entries_from_columns",
    "entries_to_frame",
    "entry_from_json",
    "entry_row",
    "entry_to_json",
    "frame_from_arrays",
    "frame_to_entries",
    "from_micros",
    "ingest_arrays",
    "ingest_columns",
    "ingest_field_columns",
    "json_record",
    "micros",
    "objects_of",
    "read_expression",
    "typed_select",
    "units_of",
    "with_all_columns",
]

#: Bumped whenever the stored row shape changes; stores migrate older files on open (``stores/_migrate.py``).
SCHEMA_VERSION = 3

#: The token counts, named as the fields of ``Usage`` (and in their order).
TOKEN_COLUMNS: tuple[str, ...] = tuple(a.name for a in attrs.fields(Usage) if a.name != "units")
#: Columns read from ``CostEntry.usage``: the token counts and ``units`` (a map of usage name to count).
UNIT_COLUMNS: tuple[str, ...] = (*TOKEN_COLUMNS, "units")

#: Every stored column and its DuckDB type, in stored order. Money is exact DECIMAL(38, 18).
SQL_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "id": "VARCHAR",
        "timestamp": "TIMESTAMPTZ",
        "amount": "DECIMAL(38, 18)",
        "currency": "VARCHAR",
        "category": "VARCHAR",
        "resource": "VARCHAR",
        "description": "VARCHAR",
        "model": "VARCHAR",
        "provider": "VARCHAR",
        **dict.fromkeys(TOKEN_COLUMNS, "BIGINT"),
        "latency_ms": "DOUBLE",
        "tags": "MAP(VARCHAR, VARCHAR)",
        "pricing": "VARCHAR",
        # Added in schema version 2 (ALTER TABLE appends, so they come last). ``units``: NULL when empty.
        "units": "MAP(VARCHAR, BIGINT)",
        "service_tier": "VARCHAR",
        # Added in schema version 3: the catalog's id of the model that priced the entry (NULL: none).
        "canonical_model": "VARCHAR",
    }
)
COLUMNS: tuple[str, ...] = tuple(SQL_TYPES)

_CATEGORY = {c.value: c for c in CostCategory}
# Text fields that are never None, and what a row that lacks them (written before they were added) reads as.
_DEFAULTS = {a.name: str(a.default) for a in attrs.fields(CostEntry) if isinstance(a.default, str)}
# ``trusted_entry``'s parameters by name, so rows feed it by column name whatever its argument order.
_TRUSTED_ARGS = tuple(inspect.signature(trusted_entry).parameters)


def _q(name: str) -> str:
    return f'"{name}"'


# -- SQL ----------------------------------------------------------------------------------------------------------
ENTRIES_DDL = "CREATE TABLE IF NOT EXISTS entries (" + ", ".join(f"{_q(c)} {t}" for c, t in SQL_TYPES.items()) + ")"

#: The column list of ``INSERT INTO entries (...)``, in stored order.
INSERT_COLUMNS = ", ".join(map(_q, COLUMNS))

#: No rows, every column typed: what a read over no files selects from.
EMPTY_ROWS = "(SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {_q(c)}" for c, t in SQL_TYPES.items()) + " WHERE FALSE)"

_EXACT_TEXT = "rtrim(rtrim(CAST(amount AS VARCHAR), '0'), '.')"  # DECIMAL(38, 18) text always has a point


def _select_list(exprs: Mapping[str, str], cast: bool = False) -> str:
    if cast:
        return ", ".join(f"CAST({exprs.get(c, _q(c))} AS {t}) AS {_q(c)}" for c, t in SQL_TYPES.items())
    return ", ".join(f"{exprs.get(c, _q(c))} AS {_q(c)}" for c in COLUMNS)


def typed_select(source: str, exprs: Mapping[str, str] = MappingProxyType({})) -> str:
    """``SELECT`` every column from ``source``, cast to its declared type; ``exprs`` gives a column's expression
    where it is not the source column of that name.

    Whatever DuckDB inferred for the source (a NumPy array of only ``None`` reads as INTEGER), the rows come out
    exactly typed, so every file and table holds the declared schema. ``source`` is SQL the caller wrote.

    Example::

        con.execute(f"INSERT INTO entries {typed_select('staged')}")
    """
    return f"SELECT {_select_list(exprs, cast=True)} FROM {source}"


def cast_select(source: str) -> str:
    """Typed rows from relation ``source`` that has the ``COLUMNS`` as text rows may hold them: ``amount`` exact text
    (or a number), ``tags`` JSON text (or a map), ``timestamp`` anything DuckDB casts to TIMESTAMPTZ.

    Example::

        con.execute(f"CREATE TEMP TABLE entries AS {cast_select('page')}")
    """
    return typed_select(source, {"tags": 'CAST("tags" AS JSON)', "units": 'CAST("units" AS JSON)'})


def with_all_columns(source: str) -> str:
    """Relation ``source`` (such as Parquet files written before a column was added, read with
    ``union_by_name``) as a parenthesised subquery of typed rows, a typed NULL standing in for each missing column.

    Example::

        con.execute(f"SELECT sum(amount) FROM {with_all_columns('read_parquet(?, union_by_name = true)')}", [files])
    """
    return f"({typed_select(f'(SELECT * FROM {EMPTY_ROWS} UNION ALL BY NAME SELECT * FROM {source})')})"


#: Names under which ``ingest_columns`` arrays are registered in a DuckDB connection.
RAW = "llmcost_raw"
TAG_MAPS = "llmcost_tag_maps"


def _ingest_select(tag_maps: str) -> str:
    return typed_select(
        RAW,
        {
            "timestamp": "make_timestamptz(timestamp_us)",
            "tags": f"{tag_maps}[tag_index + 1]",
            "units": 'CAST(CAST("units" AS VARCHAR) AS JSON)',
        },
    )


#: Typed rows from the arrays ``ingest_columns`` made, registered as ``RAW`` and ``TAG_MAPS``.
INGEST_SELECT = _ingest_select(
    f"(SELECT list(CAST(CAST(tags AS JSON) AS MAP(VARCHAR, VARCHAR)) ORDER BY i) FROM {TAG_MAPS})"
)

#: The same rows from ``RAW`` alone, the distinct tag maps' JSON texts (``ingest_columns(...)[1]["tags"]`` as a list)
#: being the first parameter: cheaper per statement while a batch has few distinct maps (``PARAM_TAG_MAPS`` or
#: fewer), though DuckDB turns a long list parameter into maps much more slowly than a table.
INGEST_SELECT_TAGS_PARAM = _ingest_select("CAST(CAST(CAST(? AS VARCHAR[]) AS JSON[]) AS MAP(VARCHAR, VARCHAR)[])")

#: Most distinct tag maps worth passing as a parameter (measured: a wash at ~50, twice as slow at 1,000).
PARAM_TAG_MAPS = 32

#: What reads select: timestamps as epoch microseconds and amounts as exact text without trailing zeros, so nothing
#: depends on the session time zone or goes through a float; tags as JSON text, which DuckDB hands to Python ten
#: times faster than a MAP and which repeats, so each distinct map is parsed once. A field that is never None reads
#: its default (0 tokens) where the row has NULL (a file written before the column was added).
_READ_EXPRS: Mapping[str, str] = MappingProxyType(
    {
        **{c: f"coalesce({_q(c)}, '{d.replace(chr(39), chr(39) * 2)}')" for c, d in _DEFAULTS.items()},
        **{c: f"coalesce({_q(c)}, 0)" for c in TOKEN_COLUMNS},
        "timestamp": 'epoch_us("timestamp")',
        "amount": _EXACT_TEXT,
        "tags": 'CAST(CAST("tags" AS JSON) AS VARCHAR)',
        "units": 'CAST(CAST("units" AS JSON) AS VARCHAR)',
    }
)
READ_COLUMNS = _select_list(_READ_EXPRS)
#: Columns ``READ_COLUMNS`` reads as their default where a row holds NULL: where none does, they read as stored.
DEFAULTED_COLUMNS: tuple[str, ...] = (*_DEFAULTS, *TOKEN_COLUMNS)


def read_expression(column: str) -> str:
    """The expression ``READ_COLUMNS`` selects ``column`` with (``'"model"'`` for a column read as it is).

    Example::

        con.execute(f"SELECT DISTINCT {read_expression('amount')} FROM entries")
    """
    return _READ_EXPRS.get(column, _q(column))


#: Columns whose values repeat from row to row, in the groups a frame reads through one dictionary each (see
#: ``_sql.read_frame``): the short text columns together (few distinct combinations), the amount, the two maps.
CODED_GROUPS: tuple[tuple[str, ...], ...] = (
    (
        "currency",
        "category",
        "resource",
        "description",
        "model",
        "provider",
        "pricing",
        "service_tier",
        "canonical_model",
    ),
    ("amount",),
    ("tags", "units"),
)

#: Rows as text where text keeps them exact, for exports: amount without trailing zeros, timestamps in ISO 8601 UTC,
#: tags as JSON text. ``json_record`` writes such a row as a JSON object.
TEXT_COLUMNS = _select_list(
    {
        "timestamp": "strftime(timezone('UTC', \"timestamp\"), '%Y-%m-%dT%H:%M:%S.%fZ')",
        "amount": _EXACT_TEXT,
        "tags": 'CAST(to_json("tags") AS VARCHAR)',
        "units": 'CAST(to_json("units") AS VARCHAR)',
    }
)


# -- entries as plain values ----------------------------------------------------------------------------------------
def _plain(name: str, value: Any) -> Any:
    """A field's value as rows hold it: the category's text, tags as a dict, anything else as it is."""
    if name == "category":
        return value.value
    if name == "tags" or name == "units":
        return dict(value)
    return value


def entry_row(entry: CostEntry) -> tuple[Any, ...]:
    """``entry`` as plain Python values in ``COLUMNS`` order (tags as a dict, the category as text).

    Example::

        dict(zip(COLUMNS, entry_row(entry)))["input_tokens"]
    """
    usage = entry.usage
    return tuple(_plain(c, getattr(usage if c in UNIT_COLUMNS else entry, c)) for c in COLUMNS)


def _columns_of(entries: Sequence[CostEntry]) -> dict[str, list[Any]]:
    """Each column's field values for ``entries``, by name (C-level loops: this runs on every write)."""
    usages = list(map(attrgetter("usage"), entries))
    return {c: list(map(attrgetter(c), usages if c in UNIT_COLUMNS else entries)) for c in COLUMNS}


def _units_text(units: Units) -> str | None:
    """``units`` as JSON text, ``None`` when empty (stored as NULL)."""
    return json.dumps(dict(units)) if units else None  # any empty Units (unpickled ones too), not only NO_UNITS


def units_of(value: Any) -> Units:
    """``Usage.units`` from how a row holds them: JSON text, a mapping, DuckDB's ``(key, value)`` pairs, or
    ``None``/NaN (no units; rows written before the column was added)."""
    if value is None or (isinstance(value, float) and value != value) or isinstance(value, Units):
        return value if isinstance(value, Units) else NO_UNITS
    if isinstance(value, str):
        value = json.loads(value)
        if value is None:
            return NO_UNITS
    data = dict(value)
    return Units({str(k): int(v) for k, v in data.items()}) if data else NO_UNITS


def entry_to_json(entry: CostEntry) -> str:
    """``entry`` as one line of JSON keyed by column name, which ``entry_from_json`` reads back into an equal entry.

    Example::

        assert entry_from_json(entry_to_json(entry)) == entry
    """
    record = dict(zip(COLUMNS, entry_row(entry), strict=True))
    record["timestamp"] = entry.timestamp.isoformat()
    record["amount"] = str(entry.amount)
    return json.dumps(record, ensure_ascii=False)


def entry_from_json(line: str) -> CostEntry:
    """The entry ``entry_to_json`` wrote, validated again on the way in. Columns the line lacks (written before
    they were added) take the field's default; lines of older llmcost kept the token counts as a ``usage`` list."""
    record: dict[str, Any] = json.loads(line)
    if "usage" in record:
        record.update(zip(TOKEN_COLUMNS, record.pop("usage"), strict=True))
    fields = {c: record[c] for c in COLUMNS if c in record and c not in UNIT_COLUMNS}
    fields["timestamp"] = datetime.fromisoformat(fields["timestamp"])
    usage = Usage(**{c: record.get(c, 0) for c in TOKEN_COLUMNS}, units=units_of(record.get("units")))
    return CostEntry(**fields, usage=usage)


def json_record(row: Sequence[Any]) -> str:
    """A ``TEXT_COLUMNS`` row as a JSON object: the amount as an exact JSON number (``json.loads(...,
    parse_float=Decimal)`` keeps it), tags as an object, NULL and NaN as ``null``.

    Example::

        out.write(json_record(con.execute(f"SELECT {TEXT_COLUMNS} FROM entries").fetchone()))
    """
    parts = []
    for name, value in zip(COLUMNS, row, strict=True):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            text = "null"
        elif name in ("amount", "tags", "units"):
            text = str(value)  # exact decimal text, and JSON text already
        else:
            text = json.dumps(value.item() if hasattr(value, "item") else value, ensure_ascii=False)
        parts.append(f"{json.dumps(name)}: {text}")
    return "{" + ", ".join(parts) + "}"


# -- DuckDB ingest ------------------------------------------------------------------------------------------------
def objects_of(values: Sequence[Any]) -> np.ndarray:
    """``values`` as a 1-d NumPy object array (never a 2-d one, whatever the values are)."""
    import numpy as np

    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _tag_index(maps: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
    """Each map's index into a list of the distinct maps as JSON text (index 0 is the empty map).

    Equal maps share one index, so DuckDB parses each distinct map once. Entries with equal tags usually hold the
    same object (``intern_tags``), so maps are told apart by ``id()`` first and only each distinct object is hashed
    (``FrozenTags`` caches its hash); the loops run in C (``map``, ``dict``).
    """
    import numpy as np

    ids = list(map(id, maps))
    by_id = dict(zip(ids, maps, strict=True))  # distinct objects, all alive in ``maps``: the ids are theirs
    distinct: dict[FrozenTags, int] = {EMPTY_TAGS: 0}
    texts = ["{}"]
    index_of = {}
    for i, tags in by_id.items():
        key = tags if isinstance(tags, FrozenTags) else FrozenTags(tags)  # plain dicts: entries built unvalidated
        found = distinct.get(key)
        if found is None:
            found = distinct[key] = len(texts)
            texts.append(json.dumps(dict(key), ensure_ascii=False))
        index_of[i] = found
    return np.fromiter(map(index_of.__getitem__, ids), np.int32, len(ids)), texts


# How ``ingest_columns`` reads each column: (name, getter, read from ``entry.usage``, SQL type), in stored order.
_INGEST_PLAN = tuple((name, attrgetter(name), name in UNIT_COLUMNS, t) for name, t in SQL_TYPES.items())
_USAGE = attrgetter("usage")
_MICROSECOND = timedelta(microseconds=1)


def _units_column(units: list[Units]) -> np.ndarray:
    """``units`` as JSON texts, ``None`` for empty ones. Nearly every entry has ``NO_UNITS``; counting them is one
    C-level pass (identity first), which spares a Python call per entry when all of them do."""
    import numpy as np

    if units.count(NO_UNITS) == len(units):
        return np.full(len(units), None, dtype=object)
    return np.fromiter(map(_units_text, units), object, len(units))


@attrs.frozen
class FieldColumns:
    """Entries as one tuple per ``trusted_entry`` field (in its parameter order), rather than as objects.

    A tracker's buffer keeps older entries this way: a tuple of atomic values is one object the garbage collector
    soon stops tracking, where every ``CostEntry`` is a container that full collections walk again. ``entries()``
    builds the entries back, equal field for field.

    Example::

        columns = FieldColumns.of(entries)
        assert columns.entries() == list(entries)
    """

    fields: tuple[tuple[Any, ...], ...]

    @classmethod
    def of(cls, entries: Sequence[CostEntry]) -> FieldColumns:
        """The columns of ``entries`` (C-level: ``attrgetter`` and ``zip``)."""
        return cls(tuple(zip(*map(_ENTRY_FIELDS, entries), strict=True)))

    @classmethod
    def joined(cls, parts: Sequence[FieldColumns]) -> FieldColumns:
        """The rows of ``parts``, one after another."""
        if len(parts) == 1:
            return parts[0]
        parts = [p for p in parts if p.fields]
        if not parts:
            return cls(())
        return cls(tuple(tuple(chain.from_iterable(column)) for column in zip(*(p.fields for p in parts), strict=True)))

    def __len__(self) -> int:
        return len(self.fields[0]) if self.fields else 0

    def column(self, name: str) -> tuple[Any, ...]:
        """The values of field ``name`` (``()`` when empty)."""
        return self.fields[_FIELD_INDEX[name]] if self.fields else ()

    def entries(self) -> list[CostEntry]:
        """The entries again."""
        return list(map(trusted_entry, *self.fields)) if self.fields else []


_ENTRY_FIELDS = attrgetter(*_TRUSTED_ARGS)
_FIELD_INDEX = {name: k for k, name in enumerate(_TRUSTED_ARGS)}


def ingest_field_columns(columns: FieldColumns) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``ingest_columns`` of the entries ``columns`` holds, read from the columns (no entry is built)."""
    usages = columns.column("usage")
    return _ingest(
        lambda name, get, of_usage: map(get, usages) if of_usage else iter(columns.column(name)), len(columns)
    )


def ingest_columns(entries: Sequence[CostEntry]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The NumPy arrays to register as ``RAW`` and ``TAG_MAPS`` for ``INGEST_SELECT`` (see ``ingest_arrays``).

    This runs on every write (on the tracker's writer thread, holding the GIL the recording threads want), so each
    column goes from the entries' attributes straight into its array in one C-level pass (``map`` into
    ``np.fromiter``), with no intermediate lists; timestamps become exact epoch microseconds as ``timedelta``
    floor divisions.

    Example::

        raw, tag_maps = ingest_columns(entries)
    """
    usages = list(map(_USAGE, entries))
    return _ingest(lambda name, get, of_usage: map(get, usages if of_usage else entries), len(entries))


def _ingest(
    values_of: Callable[[str, Any, bool], Iterator[Any]], n: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``ingest_columns``'s arrays, from ``values_of(name, getter, of_usage)``: each column's ``n`` values."""
    import numpy as np

    raw: dict[str, np.ndarray] = {}
    texts: list[str] = []
    for name, get, of_usage, sql_type in _INGEST_PLAN:
        values = values_of(name, get, of_usage)
        if name == "timestamp":
            raw["timestamp_us"] = np.fromiter(
                map(floordiv, map(sub, values, repeat(EPOCH)), repeat(_MICROSECOND)), np.int64, n
            )
        elif name == "tags":
            raw["tag_index"], texts = _tag_index(list(values))
        elif name == "units":
            raw[name] = _units_column(list(values))
        elif sql_type == "BIGINT":
            raw[name] = np.fromiter(values, np.int64, n)
        elif sql_type == "DOUBLE":
            raw[name] = np.asarray(list(values), dtype=np.float64)  # None becomes NaN, which DuckDB reads as NULL
        elif sql_type.startswith("DECIMAL"):
            raw[name] = np.fromiter(map(str, values), object, n)  # exact text
        else:  # text; a CostCategory is a str enum, which DuckDB reads as its value
            raw[name] = np.fromiter(values, object, n)
    return raw, {"i": np.arange(len(texts), dtype=np.int32), "tags": objects_of(texts)}


def ingest_arrays(
    columns: Mapping[str, Any], tag_texts: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The arrays to register as ``RAW`` and ``TAG_MAPS`` for ``INGEST_SELECT``, from one array or list per column
    as a store may keep them: ``timestamp`` as epoch microseconds, ``tags`` as indices into ``tag_texts`` (JSON
    texts of the distinct maps), ``amount`` as ``Decimal`` objects or text, ``units`` as JSON text (or mappings),
    ``None`` for missing values.

    ``RAW`` names the timestamps ``timestamp_us`` (the Parquet store splits batches by day with them) and the tags
    ``tag_index``; amounts travel as exact text.

    Example::

        raw, tag_maps = ingest_arrays({**columns, "timestamp": micros, "tags": indices}, ["{}", '{"a": "b"}'])
    """
    import numpy as np

    raw: dict[str, np.ndarray] = {}
    for name, sql_type in SQL_TYPES.items():
        column = columns[name]
        if name == "timestamp":
            raw["timestamp_us"] = np.asarray(column, dtype=np.int64)
        elif name == "tags":
            raw["tag_index"] = np.asarray(column, dtype=np.int32)
        elif name == "units":
            raw[name] = objects_of([u if u is None or isinstance(u, str) else _units_text(units_of(u)) for u in column])
        elif sql_type == "BIGINT":
            raw[name] = np.asarray(column, dtype=np.int64)
        elif sql_type == "DOUBLE":
            raw[name] = np.asarray(column, dtype=np.float64)  # None becomes NaN, which DuckDB reads as NULL
        elif sql_type.startswith("DECIMAL"):
            raw[name] = objects_of(list(map(str, column)))
        else:  # text; a CostCategory is a str enum, which DuckDB reads as its value
            raw[name] = objects_of(column)
    return raw, {"i": np.arange(len(tag_texts), dtype=np.int32), "tags": objects_of(tag_texts)}


# -- DuckDB reads -------------------------------------------------------------------------------------------------
class TagCache:
    """Tag maps from their JSON text (as ``READ_COLUMNS`` selects them), each distinct text parsed once.

    Example::

        tags = TagCache(FrozenTags)
        tags('{"team": "search"}')
    """

    def __init__(self, make: Any) -> None:
        self.make = make
        self.seen: dict[str | None, Any] = {None: make({}), "{}": make({})}

    def __call__(self, text: str | None) -> Any:
        got = self.seen.get(text)
        if got is None:
            got = self.seen[text] = self.make(json.loads(text))  # type: ignore[arg-type]
        return got


def _frozen(data: dict[str, str]) -> FrozenTags:
    return FrozenTags(data) if data else EMPTY_TAGS


def entries_from_columns(columns: Mapping[str, Sequence[Any]]) -> list[CostEntry]:
    """Entries from one list per column, as DuckDB returns ``READ_COLUMNS`` (``None`` for NULL), each field taken
    from the column of its name.

    Example::

        entries_from_columns({k: v.tolist() for k, v in con.execute(sql).fetchnumpy().items()})
    """
    fields: dict[str, Any] = {c: columns[c] for c in COLUMNS if c not in UNIT_COLUMNS}
    fields["timestamp"] = map(from_micros, fields["timestamp"])
    fields["amount"] = map(Decimal, fields["amount"])
    fields["category"] = map(_CATEGORY.__getitem__, fields["category"])
    fields["tags"] = map(TagCache(_frozen), fields["tags"])
    fields["usage"] = map(trusted_usage, *(columns[c] for c in TOKEN_COLUMNS), map(_UnitsCache(), columns["units"]))
    return list(map(trusted_entry, *(fields[name] for name in _TRUSTED_ARGS)))


class _UnitsCache:
    """``units_of`` with each distinct JSON text parsed once (most rows have none, or repeat few)."""

    def __init__(self) -> None:
        self.seen: dict[Any, Units] = {None: NO_UNITS}

    def __call__(self, text: Any) -> Units:
        try:
            got = self.seen.get(text)
        except TypeError:  # not hashable: a mapping or pairs
            return units_of(text)
        if got is None:
            got = self.seen[text] = units_of(text)
        return got


def _listed(array: Any) -> list[Any]:
    return array.tolist() if hasattr(array, "tolist") else list(array)


class Coded:
    """A column given as its distinct values and, per row, the index of the row's value: row ``i`` holds
    ``values[codes[i]]``. ``frame_from_arrays`` converts each distinct value once and rows share the result.

    Example::

        Coded(np.array([0, 1, 0]), ["gpt-4o", "gpt-4o-mini"])
    """

    __slots__ = ("codes", "values")

    def __init__(self, codes: np.ndarray, values: Sequence[Any]) -> None:
        self.codes = codes
        self.values = values


#: Columns a frame keeps as Python objects with ``None`` for missing (not the NaN a string column would hold); the
#: other text columns get the dtype pandas infers for text.
OBJECT_COLUMNS = ("amount", "resource", "model", "provider", "tags", "units", "service_tier", "canonical_model")
_OBJECT_COLUMNS = OBJECT_COLUMNS


def frame_from_arrays(arrays: Mapping[str, Any]) -> pd.DataFrame:
    """The canonical ``scan()`` frame from one array per column: ``timestamp`` as epoch microseconds, ``amount``
    as ``Decimal`` objects or exact text, ``tags`` and ``units`` as dicts or JSON text (``READ_COLUMNS`` as
    DuckDB's ``fetchnumpy`` returns them, masked arrays for NULLs, will do); a text column may also come as the
    pandas array of the string dtype pandas would infer for it.

    The frame: ``timestamp`` ``datetime64[us, UTC]``, ``amount`` exact ``Decimal`` objects, ``tags`` dicts,
    ``resource``/``model``/``provider`` objects with ``None`` for missing, token counts int64, ``latency_ms``
    float64 with NaN for missing.

    A column may come as ``Coded`` (distinct values and per-row codes): each distinct value is converted once, and
    rows with equal values share the object (``Decimal`` amounts, and tag and unit dicts, as equal tags already
    shared theirs). The frame takes over the NumPy arrays it is given (it may keep them without a copy): callers
    pass arrays they do not use afterwards.

    Example::

        frame_from_arrays(con.execute(f"SELECT {READ_COLUMNS} FROM entries").fetchnumpy())
    """
    import numpy as np
    import pandas as pd

    tags = TagCache(dict)
    data: dict[str, Any] = {}
    for name, sql_type in SQL_TYPES.items():
        given = arrays[name]
        array = given.values if isinstance(given, Coded) else given
        column: Any
        if name == "timestamp":  # (epoch microseconds are UTC wall times: localized, not converted or scaled)
            micros = _own(np.asarray(array, dtype=np.int64)).view("datetime64[us]")
            column = pd.Series(micros, copy=False).dt.tz_localize("UTC").array
        elif name == "amount":  # (Decimals already, as a coded read's distinct amounts are: checked in C, kept)
            listed = _listed(array)
            if not all(map(isinstance, listed, repeat(Decimal))):
                listed = [a if isinstance(a, Decimal) else Decimal(a) for a in listed]
            column = objects_of(listed)
        elif name == "tags":
            column = objects_of([t if isinstance(t, dict) else tags(t) for t in _listed(array)])
        elif name == "units":
            units = _UnitsCache()
            column = objects_of([dict(units(u)) for u in _listed(array)])
        elif sql_type == "BIGINT":
            column = _own(np.asarray(array, dtype=np.int64))
        elif sql_type == "DOUBLE":  # (a masked array's NULLs as NaN; a plain array kept as it is, no view copied)
            plain = type(array) is np.ndarray and array.dtype == np.float64
            column = _own(np.asarray(array) if plain else np.ma.filled(np.ma.asarray(array, dtype=np.float64), np.nan))
        elif isinstance(array, pd.api.extensions.ExtensionArray):
            column = array  # text already in the dtype pandas infers for it (see ``_sql.read_frame``)
        else:
            column = objects_of(_listed(array))
        if isinstance(given, Coded):
            column = _expand(name, column, given.codes)
        data[name] = column
    for name in _OBJECT_COLUMNS:  # as Series, so pandas does not infer (and convert) a string dtype first
        data[name] = pd.Series(data[name], dtype=object, copy=False)
    # Every array above is the frame's own; not copying them into consolidated blocks saves a second copy of each
    # (~0.6 s and the memory of the object columns at a million rows).
    return pd.DataFrame(data, columns=list(COLUMNS), copy=False)


def _own(column: np.ndarray) -> np.ndarray:
    """``column`` as an array the frame may keep: the frame shares its arrays' memory, so a fresh array is kept as it
    is (one handed over, as ``fetchnumpy`` makes them), and a view (of Arrow memory, of a caller's array) is copied."""
    return column if column.flags.writeable and column.flags.owndata else column.copy()


def _expand(name: str, distinct: np.ndarray, codes: np.ndarray) -> Any:
    """A column's values per row from its ``distinct`` values (an object array) and the rows' ``codes``.

    Text columns the frame leaves to pandas get the dtype pandas infers for their values (its string dtype in pandas
    3, object before), built from the few distinct values and taken per row, which spares pandas converting a
    million Python strings.
    """
    import pandas as pd

    if name in _OBJECT_COLUMNS or not len(distinct):
        return _objects(distinct, codes)
    dtype = pd.DataFrame({name: distinct})[name].dtype  # what the frame would infer from these values
    if pd.api.types.is_object_dtype(dtype):
        return _objects(distinct, codes)
    return pd.array(distinct, dtype=dtype).take(codes)


def _objects(distinct: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The object array of ``distinct[codes]``; one value (a column no row differs in, such as ``units`` unused)
    filled in, a quarter of the time of the take (every code is 0)."""
    import numpy as np

    if len(distinct) != 1:
        return distinct[codes]
    column = np.empty(len(codes), dtype=object)
    column.fill(distinct[0])  # the one object in every row, as the take shares it
    return column


# -- pandas frames ------------------------------------------------------------------------------------------------
def entries_to_frame(entries: Iterable[CostEntry]) -> pd.DataFrame:
    """One row per entry with the ``COLUMNS`` (see ``frame_from_arrays`` for the types).

    Example::

        entries_to_frame(tracker.entries()).groupby("model")["amount"].sum()
    """
    columns = _columns_of(list(entries))
    columns["timestamp"] = list(map(micros, columns["timestamp"]))
    columns["category"] = [c.value for c in columns["category"]]
    columns["tags"] = list(map(dict, columns["tags"]))
    columns["units"] = list(map(dict, columns["units"]))
    return frame_from_arrays(columns)


def _missing(value: Any) -> bool:
    # pandas holds missing values as None or NaN depending on dtype.
    return value is None or (isinstance(value, float) and value != value)


def _tags_of(value: Any) -> Any:
    if _missing(value):
        return {}
    if isinstance(value, str):
        return json.loads(value)
    return dict(value)  # a mapping, or DuckDB's list of (key, value) pairs


def frame_to_entries(frame: pd.DataFrame) -> list[CostEntry]:
    """Rebuild ``CostEntry`` objects, validated, from a frame with the ``COLUMNS`` (as ``scan()`` returns).

    Missing text takes the field's default (``""`` for ``description``), missing ``latency_ms`` is ``None``.

    Example::

        assert frame_to_entries(store.scan()) == store.entries()
    """
    fields: dict[str, list[Any]] = {}
    for name, sql_type in SQL_TYPES.items():
        values = frame[name].tolist()
        if name == "timestamp":
            values = [t.to_pydatetime() for t in values]
        elif name == "amount":
            values = [a if isinstance(a, Decimal) else Decimal(str(a)) for a in values]
        elif name == "tags":
            values = list(map(_tags_of, values))
        elif name == "units":
            values = list(map(units_of, values))
        elif sql_type == "BIGINT":
            values = list(map(int, values))
        else:
            values = [_DEFAULTS.get(name) if _missing(v) else v for v in values]
        fields[name] = values
    counts = zip(*(fields.pop(c) for c in TOKEN_COLUMNS), strict=True)
    fields["usage"] = [
        Usage(**dict(zip(TOKEN_COLUMNS, row, strict=True)), units=units)
        for row, units in zip(counts, fields.pop("units"), strict=True)
    ]
    names = list(fields)
    return [CostEntry(**dict(zip(names, row, strict=True))) for row in zip(*fields.values(), strict=True)]
