"""The SQL the DuckDB and Parquet stores share: filters as a parameterised ``WHERE``, the fast way entries go into
DuckDB, and the way rows come back out exactly.

User values (resources, models, tag keys and values, times) only ever travel as parameters; the SQL text is built
from fixed column names and placeholder counts alone.

Ingest goes column by column: each ``CostEntry`` field becomes one NumPy array (ids and strings as Python objects,
timestamps as epoch microseconds, amounts as exact decimal text), and distinct tag maps are sent once each and
looked up by index. DuckDB scans the arrays directly (no pandas frame in between) and ``INGEST_SELECT`` turns them
into canonical typed rows. ``INGEST_SELECT_TAGS_PARAM`` does the same with the few distinct tag maps of a typical
batch passed as a parameter instead of a second registered table, which saves ~3 ms of fixed cost per statement.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._entry import EMPTY_TAGS, CostCategory, CostEntry, FrozenTags
from .._usage import Usage
from ._base import Filters
from ._schema import COLUMNS, TOKEN_COLUMNS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "INGEST_SELECT",
    "INGEST_SELECT_TAGS_PARAM",
    "PARAM_TAG_MAPS",
    "RAW",
    "READ_COLUMNS",
    "TAG_MAPS",
    "fetch_frame",
    "from_micros",
    "ingest_columns",
    "read_entries",
    "read_frame",
    "read_total",
    "select_sql",
    "where_sql",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CATEGORY = {c.value: c for c in CostCategory}
MICROS_PER_DAY = 86_400_000_000

#: Names under which ``ingest_columns`` arrays are registered in a DuckDB connection.
RAW = "llmcost_raw"
TAG_MAPS = "llmcost_tag_maps"

_TOKENS = ", ".join(TOKEN_COLUMNS)


def _ingest_select(tag_maps: str) -> str:
    """Canonical typed rows from the arrays registered as ``RAW``, tags looked up in the list ``tag_maps``."""
    return (
        'SELECT id, make_timestamptz(timestamp_us) AS "timestamp", CAST(amount AS DECIMAL(38, 18)) AS amount, '
        f"currency, category, resource, description, model, provider, {_TOKENS}, latency_ms, "
        f"{tag_maps}[tag_index + 1] AS tags, pricing FROM {RAW}"
    )


#: Canonical typed rows from the arrays registered as ``RAW`` and ``TAG_MAPS``.
INGEST_SELECT = _ingest_select(
    f"(SELECT list(CAST(CAST(tags AS JSON) AS MAP(VARCHAR, VARCHAR)) ORDER BY i) FROM {TAG_MAPS})"
)

#: The same rows from ``RAW`` alone, with the distinct tag maps' JSON texts (``ingest_columns(...)[1]["tags"]`` as a
#: list) as the first parameter. Cheaper per statement than ``INGEST_SELECT`` while the batch has few distinct maps
#: (``PARAM_TAG_MAPS`` or fewer); DuckDB turns a long list parameter into maps much more slowly than a table.
INGEST_SELECT_TAGS_PARAM = _ingest_select("CAST(CAST(CAST(? AS VARCHAR[]) AS JSON[]) AS MAP(VARCHAR, VARCHAR)[])")

#: Most distinct tag maps worth passing as a parameter (measured: a wash at ~50, twice as slow at 1,000).
PARAM_TAG_MAPS = 32

#: What reads select: timestamps as epoch microseconds and amounts as exact text without trailing zeros, so nothing
#: depends on the session time zone or goes through a float; tags as JSON text, which DuckDB hands to Python ten
#: times faster than a MAP and which repeats, so each distinct map is parsed once.
READ_COLUMNS = (
    'id, epoch_us("timestamp") AS "timestamp", '
    "rtrim(rtrim(CAST(amount AS VARCHAR), '0'), '.') AS amount, currency, category, resource, description, model, "
    f"provider, {_TOKENS}, latency_ms, CAST(CAST(tags AS JSON) AS VARCHAR) AS tags, pricing"
)

#: Column list for ``INSERT INTO entries (...)``, in ``COLUMNS`` order.
INSERT_COLUMNS = ", ".join(f'"{c}"' for c in COLUMNS)


def where_sql(filters: Filters) -> tuple[str, list[Any]]:
    """``filters`` (all but ``limit``) as ``(" WHERE ...", params)``; ``("", [])`` when nothing filters."""
    conds: list[str] = []
    params: list[Any] = []
    if filters.since is not None:
        conds.append('"timestamp" >= ?')
        params.append(filters.since)
    if filters.until is not None:
        conds.append('"timestamp" < ?')
        params.append(filters.until)
    for column, wanted in (
        ("category", filters.category),
        ("resource", filters.resource),
        ("model", filters.model),
        ("provider", filters.provider),
    ):
        if wanted is None:
            continue
        if not wanted:
            conds.append("FALSE")
            continue
        values = sorted(wanted)
        conds.append(f"{column} IN ({', '.join('?' * len(values))})")
        params.extend(values)
    if filters.tags:
        for key, value in sorted(filters.tags.items()):
            conds.append("tags[?] = ?")
            params.extend((key, value))
    if not conds:
        return "", params
    return " WHERE " + " AND ".join(conds), params


def select_sql(source: str, filters: Filters, columns: str = READ_COLUMNS) -> tuple[str, list[Any]]:
    """``SELECT columns FROM source`` with ``filters``, in (timestamp, id) order, limited; and its params.

    ``source`` is a table name or a parenthesised subquery chosen by the store, never a user value.
    """
    where, params = where_sql(filters)
    sql = f"SELECT {columns} FROM {source}{where}"
    if filters.limit is not None:
        sql += ' ORDER BY "timestamp", id LIMIT ?'
        params.append(filters.limit)
    else:
        sql += ' ORDER BY "timestamp", id'
    return sql, params


def read_total(con: Any, source: str, filters: Filters, source_params: Sequence[Any] = ()) -> Decimal:
    """The exact sum of ``amount`` over ``source`` rows that pass ``filters`` (``limit`` included).

    ``source_params`` are the parameters of placeholders inside ``source`` itself (they come first).
    """
    if filters.limit is not None:
        inner, params = select_sql(source, filters, 'amount, "timestamp", id')
        sql = f"SELECT CAST(sum(amount) AS VARCHAR) FROM ({inner})"
    else:
        where, params = where_sql(filters)
        sql = f"SELECT CAST(sum(amount) AS VARCHAR) FROM {source}{where}"
    ((text,),) = con.execute(sql, [*source_params, *params]).fetchall()
    return to_decimal(text) if text is not None else Decimal(0)


def to_decimal(text: str) -> Decimal:
    """DuckDB's text of a DECIMAL as a ``Decimal`` without trailing zeros (``'1.500'`` -> ``Decimal('1.5')``)."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return Decimal(text)


# -- ingest -------------------------------------------------------------------------------------------------------
def _tag_index(entries: Sequence[CostEntry]) -> tuple[np.ndarray, list[str]]:
    """Each entry's index into a list of distinct tag maps as JSON text (index 0 is the empty map).

    Equal maps share one index, so DuckDB parses each distinct map once. Entries with equal tags usually hold the
    same object (``intern_tags``), so maps are told apart by ``id()`` first and only each distinct object's items
    are compared; the loops run in C (``map``, ``dict.fromkeys``).
    """
    import numpy as np

    objects = [e.tags for e in entries]
    ids = list(map(id, objects))
    by_id = dict(zip(ids, objects, strict=True))  # distinct objects; all alive in ``entries``, so ids are theirs
    try:
        keys = {i: tuple(t._data.items()) for i, t in by_id.items()}
    except AttributeError:  # tags that are not FrozenTags (entries built without validation)
        keys = {i: tuple(dict(t).items()) for i, t in by_id.items()}
    distinct: dict[tuple[tuple[str, str], ...], int] = {(): 0}
    texts = ["{}"]
    for key in keys.values():
        if key not in distinct:
            distinct[key] = len(texts)
            texts.append(json.dumps(dict(key), ensure_ascii=False))
    index_of = {i: distinct[key] for i, key in keys.items()}
    return np.fromiter(map(index_of.__getitem__, ids), np.int32, len(ids)), texts


def ingest_columns(entries: Sequence[CostEntry]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The arrays to register as ``RAW`` and ``TAG_MAPS`` for ``INGEST_SELECT``.

    ``RAW`` also carries ``timestamp_us`` (int64 epoch microseconds), which the Parquet store uses to split a batch
    by day.
    """
    import numpy as np
    import pandas as pd

    n = len(entries)
    stamps = [e.timestamp for e in entries]
    try:
        micros = pd.DatetimeIndex(stamps).as_unit("us").asi8
    except (ValueError, TypeError):  # mixed tzinfo objects: convert each to UTC
        micros = pd.to_datetime(stamps, utc=True).as_unit("us").asi8
    usages = [e.usage for e in entries]
    tag_index, tag_texts = _tag_index(entries)

    raw: dict[str, np.ndarray] = {
        "id": objects_of([e.id for e in entries]),
        "timestamp_us": np.asarray(micros, dtype=np.int64),
        "amount": objects_of([str(e.amount) for e in entries]),
        "currency": objects_of([e.currency for e in entries]),
        # CostCategory is a str enum: DuckDB reads each member as its value.
        "category": objects_of([e.category for e in entries]),
        "resource": objects_of([e.resource for e in entries]),
        "description": objects_of([e.description for e in entries]),
        "model": objects_of([e.model for e in entries]),
        "provider": objects_of([e.provider for e in entries]),
        "input_tokens": np.fromiter([u.input_tokens for u in usages], np.int64, n),
        "output_tokens": np.fromiter([u.output_tokens for u in usages], np.int64, n),
        "cache_read_tokens": np.fromiter([u.cache_read_tokens for u in usages], np.int64, n),
        "cache_write_tokens": np.fromiter([u.cache_write_tokens for u in usages], np.int64, n),
        "reasoning_tokens": np.fromiter([u.reasoning_tokens for u in usages], np.int64, n),
        # NumPy turns None into NaN, which DuckDB's NumPy scan reads as NULL.
        "latency_ms": np.array([e.latency_ms for e in entries], dtype=np.float64),
        "tag_index": tag_index,
        "pricing": objects_of([e.pricing for e in entries]),
    }
    tag_maps = {"i": np.arange(len(tag_texts), dtype=np.int32), "tags": objects_of(tag_texts)}
    return raw, tag_maps


def objects_of(values: list[Any]) -> np.ndarray:
    """``values`` as a 1-d NumPy object array (never a 2-d one, whatever the values are)."""
    import numpy as np

    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


@contextlib.contextmanager
def registered(
    con: Any, columns: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], *, tag_maps: bool = True
) -> Iterator[Any]:
    """``ingest_columns`` arrays registered in ``con`` as ``RAW`` and (unless ``tag_maps`` is off, for
    ``INGEST_SELECT_TAGS_PARAM``) ``TAG_MAPS`` for the ``with`` block."""
    names = (RAW, TAG_MAPS) if tag_maps else (RAW,)
    con.register(RAW, columns[0])
    try:
        if tag_maps:
            con.register(TAG_MAPS, columns[1])
        yield con
    finally:
        for name in names:
            with contextlib.suppress(Exception):  # a broken connection is dropped by the store anyway
                con.unregister(name)


# -- reading ------------------------------------------------------------------------------------------------------
def from_micros(micros: int) -> datetime:
    """Epoch microseconds as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=micros)


def _columns(con: Any, sql: str, params: Sequence[Any]) -> dict[str, list[Any]]:
    """Run ``sql`` and return its columns as Python lists (``None`` for NULL)."""
    return {name: array.tolist() for name, array in con.execute(sql, params).fetchnumpy().items()}


class _TagCache:
    """Tag maps from their JSON text, each distinct text parsed once."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.seen: dict[str | None, Any] = {None: make({}), "{}": make({})}

    def __call__(self, text: str | None) -> Any:
        got = self.seen.get(text)
        if got is None:
            got = self.seen[text] = self.make(json.loads(text))  # type: ignore[arg-type]
        return got


def read_entries(con: Any, sql: str, params: Sequence[Any]) -> list[CostEntry]:
    """Run ``sql`` (selecting ``READ_COLUMNS``) and rebuild its rows as ``CostEntry`` objects."""
    c = _columns(con, sql, params)
    tags = _TagCache(lambda d: FrozenTags(d) if d else EMPTY_TAGS)
    trusted = CostEntry._trusted
    out: list[CostEntry] = []
    for row in zip(
        c["id"],
        c["timestamp"],
        c["amount"],
        c["currency"],
        c["category"],
        c["resource"],
        c["description"],
        c["model"],
        c["provider"],
        c["input_tokens"],
        c["output_tokens"],
        c["cache_read_tokens"],
        c["cache_write_tokens"],
        c["reasoning_tokens"],
        c["latency_ms"],
        c["tags"],
        c["pricing"],
        strict=True,
    ):
        entry = trusted(
            row[0],
            _EPOCH + timedelta(microseconds=row[1]),
            Decimal(row[2]),
            _CATEGORY[row[4]],
            row[5],
            row[6],
            row[7],
            row[8],
            Usage(row[9], row[10], row[11], row[12], row[13]),
            row[14],
            tags(row[15]),
            row[16],
        )
        if row[3] != "USD":
            object.__setattr__(entry, "currency", row[3])
        out.append(entry)
    return out


def read_frame(con: Any, sql: str, params: Sequence[Any]) -> pd.DataFrame:
    """Run ``sql`` (selecting ``READ_COLUMNS``) into the canonical ``scan()`` frame.

    Same dtypes as ``MemoryStore.scan``: ``timestamp`` is ``datetime64[us, UTC]``, ``amount`` exact ``Decimal``
    objects, ``tags`` dicts, ``resource``/``model``/``provider`` objects with ``None`` for missing.
    """
    import numpy as np
    import pandas as pd

    arrays = con.execute(sql, params).fetchnumpy()
    tags = _TagCache(dict)
    data: dict[str, Any] = {}
    for name in COLUMNS:
        array = arrays[name]
        if name == "timestamp":
            data[name] = pd.to_datetime(np.asarray(array, dtype=np.int64), unit="us", utc=True).as_unit("us")
        elif name == "amount":
            data[name] = objects_of([Decimal(a) for a in array.tolist()])
        elif name == "tags":
            data[name] = objects_of([tags(t) for t in array.tolist()])
        elif name in TOKEN_COLUMNS:
            data[name] = np.asarray(array, dtype=np.int64)
        elif name == "latency_ms":
            data[name] = np.ma.filled(np.ma.asarray(array, dtype=np.float64), np.nan)
        else:
            data[name] = objects_of(array.tolist())
    frame = pd.DataFrame(data, columns=list(COLUMNS))
    for name in _OBJECT_COLUMNS:  # keep None for missing, not the NaN a string column would hold
        frame[name] = pd.Series(data[name], index=frame.index, dtype=object)
    return frame


_OBJECT_COLUMNS = ("amount", "resource", "model", "provider", "tags")


def fetch_frame(con: Any, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> pd.DataFrame:
    """Run the user's ``sql`` and return a frame in which DECIMAL columns hold exact ``Decimal`` objects and
    TIMESTAMP WITH TIME ZONE columns are ``datetime64[us, UTC]`` (no ``pytz`` needed, nothing through floats)."""
    import pandas as pd

    rel = con.sql(sql, params=params)
    if rel is None:  # a statement without a result
        return pd.DataFrame()
    names = list(rel.columns)
    kinds = [t.id for t in rel.types]
    exprs = []
    for pos, kind in enumerate(kinds, start=1):
        if kind == "timestamp with time zone":
            exprs.append(f"epoch_us(#{pos})")
        elif kind == "decimal":
            exprs.append(f"CAST(#{pos} AS VARCHAR)")
        else:
            exprs.append(f"#{pos}")
    positional = [f"{e} AS c{pos}" for pos, e in enumerate(exprs)]
    frame = rel.project(", ".join(positional)).df()
    out = {}
    for pos, kind in enumerate(kinds):
        col = frame[f"c{pos}"]
        if kind == "timestamp with time zone":
            mask = col.isna()
            ts = pd.to_datetime(col.fillna(0).astype("int64").to_numpy(), unit="us", utc=True)
            series = pd.Series(ts, index=frame.index).astype("datetime64[us, UTC]")
            out[pos] = series.mask(mask)
        elif kind == "decimal":
            out[pos] = pd.Series(
                objects_of([None if v is None or v != v else to_decimal(v) for v in col.tolist()]),
                index=frame.index,
                dtype=object,
            )
        else:
            out[pos] = col
    result = pd.concat([out[i] for i in range(len(kinds))], axis=1, ignore_index=True) if kinds else pd.DataFrame()
    result.columns = names
    return result
