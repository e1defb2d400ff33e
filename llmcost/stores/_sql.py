"""The SQL the DuckDB and Parquet stores share: filters as a parameterised ``WHERE``, totals and summaries pushed
into DuckDB, entries in and out through the row encodings of ``llmcost._rows``.

User values (resources, models, tag keys and values, times) only ever travel as parameters; the SQL text is built
from fixed column names and placeholder counts alone.
"""

from __future__ import annotations

import contextlib
import decimal
import itertools
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from .._entry import CostEntry
from .._money import tidy, to_money, wide_context
from .._rows import (
    CODED_GROUPS,
    COLUMNS,
    DEFAULTED_COLUMNS,
    OBJECT_COLUMNS,
    RAW,
    READ_COLUMNS,
    SQL_TYPES,
    TAG_MAPS,
    TOKEN_COLUMNS,
    Coded,
    entries_from_columns,
    frame_from_arrays,
    objects_of,
    read_expression,
)
from .._summary import CostSummary, ordered
from .._usage import Usage
from ._filters import Filters

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "FRACTION_SUM",
    "WHOLE_SUM",
    "QueryFrames",
    "fetch_frame",
    "read_entries",
    "read_frame",
    "read_summary",
    "read_total",
    "registered",
    "select_sql",
    "split_order",
    "split_text",
    "sum_value",
    "to_decimal",
    "where_sql",
]


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
    if filters.model is not None:  # the id as returned or the canonical one
        if filters.model:
            values = sorted(filters.model)
            marks = ", ".join("?" * len(values))
            conds.append(f"(model IN ({marks}) OR canonical_model IN ({marks}))")
            params.extend(values + values)
        else:
            conds.append("FALSE")
    if filters.tags:
        for key, value in sorted(filters.tags.items()):
            conds.append("tags[?] = ?")
            params.extend((key, value))
    if not conds:
        return "", params
    return " WHERE " + " AND ".join(conds), params


def select_sql(
    source: str, filters: Filters, columns: str = READ_COLUMNS, *, ordered: bool = True
) -> tuple[str, list[Any]]:
    """``SELECT columns FROM source`` with ``filters``, in (timestamp, id) order, limited; and its params.

    ``source`` is a table name or a parenthesised subquery chosen by the store, never a user value. With
    ``ordered`` off the rows come in any order unless ``limit`` needs the order to pick them.
    """
    where, params = where_sql(filters)
    sql = f"SELECT {columns} FROM {source}{where}"
    if filters.limit is not None:
        sql += ' ORDER BY "timestamp", id LIMIT ?'
        params.append(filters.limit)
    elif ordered:
        sql += ' ORDER BY "timestamp", id'
    return sql, params


def to_decimal(text: str) -> Decimal:
    """DuckDB's text of a DECIMAL as a ``Decimal`` without trailing zeros (``'1.500'`` -> ``Decimal('1.5')``)."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return Decimal(text)


#: ``sum(amount)`` as text. DuckDB sums DECIMAL(38, 18) in DECIMAL(38, 18), so a running sum that reaches 10**20
#: (two amounts of 6E+19, each one storable) raises ``OutOfRangeException``. Then the sum is asked again as
#: ``_SPLIT_SUM``: the whole dollars in DECIMAL(38, 0) (room for 10**18 amounts of the largest size) and the
#: fractions apart, as the text ``"whole fraction"`` that ``sum_value`` adds exactly in Python. Only a sum that
#: overflows pays for the second pass; the others run as before (``with_split_sums``).
_SUM = "CAST(sum(amount) AS VARCHAR)"
#: The two parts of a split sum of ``amount``, each exact in its own type (see ``_SUM``).
WHOLE_SUM = "sum(CAST(trunc(amount) AS DECIMAL(38, 0)))"
FRACTION_SUM = "sum(amount - trunc(amount))"


def split_text(whole: str, fraction: str) -> str:
    """SQL for the text ``"whole fraction"`` of a split sum's two parts, which ``sum_value`` reads exactly."""
    return f"CAST({whole} AS VARCHAR) || ' ' || CAST({fraction} AS VARCHAR)"


def split_order(whole: str, fraction: str) -> str:
    """SQL for a key that sorts split sums as their totals sort (``whole + fraction`` itself may not fit a DECIMAL).

    The fraction's floor moves into the whole, leaving a remainder in [0, 1), so comparing the pair (a struct
    compares field by field) is comparing the sums, exactly.
    """
    return (
        f"{{'w': {whole} + CAST(floor({fraction}) AS DECIMAL(38, 0)), "
        f"'r': CAST({fraction} - floor({fraction}) AS DECIMAL(38, 18))}}"
    )


_SPLIT_SUM = split_text(WHOLE_SUM, FRACTION_SUM)


def sum_value(value: object) -> Decimal:
    """A sum of money from a query as an exact ``Decimal`` in ``tidy``'s form, the one every store returns:
    ``_SUM``'s text, a split sum's ``"whole fraction"`` text, or another value (a DECIMAL's ``Decimal``) as
    ``to_money`` reads it; ``None`` (the sum of no rows) is 0.

    >>> sum_value("60000000000000000000.000000000000000000 60000000000000000000.5")
    Decimal('120000000000000000000.5')
    """
    if value is None:
        return Decimal(0)
    if not isinstance(value, str):
        return tidy(to_money(value, "sum"))
    whole, _, fraction = value.partition(" ")
    if not fraction:
        return tidy(Decimal(value))
    with wide_context():  # a sum past 10**20 with 18 places has more digits than the default context's 28
        return tidy(Decimal(whole) + Decimal(fraction))


_T = TypeVar("_T")


def with_split_sums(run: Callable[[bool], _T]) -> _T:
    """``run(False)``, the query with plain ``sum(amount)``; when a sum overflows DECIMAL(38, 18) (past 10**20),
    ``run(True)``, the query with its sums split (``WHOLE_SUM`` and ``FRACTION_SUM``; see ``_SUM``)."""
    import duckdb

    try:
        return run(False)
    except duckdb.OutOfRangeException:
        return run(True)


def _exact_sums(con: Any, sql: str, params: Sequence[Any]) -> list[Any]:
    """The rows of ``sql`` (whose sums of ``amount`` are written ``{sum}``), summed in DECIMAL(38, 18), or split
    (``_SPLIT_SUM``) when a sum passes 10**20."""
    return with_split_sums(
        lambda split: con.execute(sql.format(sum=_SPLIT_SUM if split else _SUM), params).fetchall()  # type: ignore[no-any-return]
    )


def read_total(con: Any, source: str, filters: Filters, source_params: Sequence[Any] = ()) -> Decimal:
    """The exact sum of ``amount`` over ``source`` rows that pass ``filters`` (``limit`` included).

    ``source_params`` are the parameters of placeholders inside ``source`` itself (they come first).
    """
    inner, params = select_sql(source, filters, "amount", ordered=False)
    sql = "SELECT {sum} FROM (" + inner.replace("{", "{{").replace("}", "}}") + ")"
    ((text,),) = _exact_sums(con, sql, [*source_params, *params])
    return sum_value(text)


_TOKEN_SUMS = ", ".join(f"CAST(sum({c}) AS BIGINT) AS {c}" for c in TOKEN_COLUMNS)
_NO_TOKENS = ", ".join(f"CAST(NULL AS BIGINT) AS {c}" for c in TOKEN_COLUMNS)


def _grouped(kind: int, key: str) -> str:
    return (
        f"SELECT {kind} AS kind, CAST({key} AS VARCHAR) AS k, CAST(NULL AS VARCHAR) AS v, "
        f"{{sum}} AS total, count(*) AS calls, {_NO_TOKENS} FROM e GROUP BY {key}"
    )


# One pass over the filtered rows (materialised once), one result row per group: kind 0 is the whole, 1-3 the
# category, resource and model groups (models by their canonical id where there is one), 4 the (tag key, tag value)
# groups. Sums stay exact (``{sum}``: ``_SUM``, or ``_SPLIT_SUM`` past 10**20).
_SUMMARY = " UNION ALL ".join(
    [
        "SELECT 0 AS kind, CAST(NULL AS VARCHAR) AS k, CAST(NULL AS VARCHAR) AS v, {sum} "
        f"AS total, count(*) AS calls, {_TOKEN_SUMS} FROM e",
        _grouped(1, "category"),
        _grouped(2, "resource"),
        _grouped(3, "coalesce(canonical_model, model)"),
        "SELECT 4, t.key, t.value, {sum}, count(*), "
        f"{_NO_TOKENS} FROM (SELECT unnest(map_entries(tags)) AS t, amount FROM e) GROUP BY t.key, t.value",
    ]
)


def read_summary(con: Any, source: str, filters: Filters, source_params: Sequence[Any] = ()) -> CostSummary:
    """The exact ``CostSummary`` of ``source`` rows that pass ``filters``, summed in DuckDB (``limit`` included).

    ``source_params`` are the parameters of placeholders inside ``source`` itself (they come first).
    """
    columns = "amount, category, resource, model, canonical_model, tags, " + ", ".join(TOKEN_COLUMNS)
    inner, params = select_sql(source, filters, columns, ordered=False)
    inner = inner.replace("{", "{{").replace("}", "}}")  # (no braces in it today: the store's SQL, ``?`` params)
    rows = _exact_sums(con, f"WITH e AS MATERIALIZED ({inner}) {_SUMMARY}", [*source_params, *params])
    groups: list[dict[Any, Decimal]] = [{}, {}, {}]
    by_tag: dict[str, dict[str, Decimal]] = {}
    total, calls, usage = Decimal(0), 0, Usage()
    for kind, key, value, text, count, *tokens in rows:
        amount = sum_value(text)
        if kind == 0:
            total, calls = amount, count
            counts = [t or 0 for t in tokens]  # in TOKEN_COLUMNS order
            usage = Usage(counts[0], counts[1], counts[2], counts[3], counts[4])
        elif kind == 4:
            by_tag.setdefault(key, {})[value] = amount
        else:
            groups[kind - 1][key] = amount
    return CostSummary(
        total=total,
        calls=calls,
        usage=usage,
        by_category=ordered(groups[0]),
        by_resource=ordered(groups[1]),
        by_model=ordered(groups[2]),
        by_tag={k: ordered(v) for k, v in sorted(by_tag.items())},
        start=filters.since,
        end=filters.until,
    )


# -- entries in -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def registered(
    con: Any, columns: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], *, tag_maps: bool = True
) -> Iterator[Any]:
    """``_rows.ingest_columns`` arrays registered in ``con`` as ``RAW`` and (unless ``tag_maps`` is off, for
    ``INGEST_SELECT_TAGS_PARAM``) ``TAG_MAPS`` for the ``with`` block. DuckDB scans NumPy arrays directly: no
    pandas, no pyarrow."""
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


# -- entries out ----------------------------------------------------------------------------------------------------
def read_entries(con: Any, sql: str, params: Sequence[Any]) -> list[CostEntry]:
    """Run ``sql`` (selecting ``READ_COLUMNS``) and rebuild its rows as ``CostEntry`` objects."""
    arrays = con.execute(sql, params).fetchnumpy()
    return entries_from_columns({name: array.tolist() for name, array in arrays.items()})


def _q(name: str) -> str:
    return f'"{name}"'


_CODED = frozenset(c for group in CODED_GROUPS for c in group)
_NO_CONSTANTS: Mapping[str, str | None] = MappingProxyType({})


def _hashes(groups: Sequence[Sequence[str]]) -> list[str]:
    """One hash per group of columns, per row (``_h0``, ``_h1``...): what a row's values are matched by."""
    return [f"hash({', '.join(map(_q, group))}) AS _h{g}" for g, group in enumerate(groups)]


def _distinct_sql(groups: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """Per group: each distinct combination of its columns' stored values, with its hash, read as READ_COLUMNS reads
    them. Distinct first, then the read expressions over the few distinct rows (an amount's exact text per row was
    most of the amount query's time)."""
    return tuple(
        f"SELECT hash({', '.join(map(_q, group))}) AS _h, "
        + ", ".join(f"{read_expression(c)} AS {_q(c)}" for c in group)
        + f" FROM (SELECT DISTINCT {', '.join(map(_q, group))} FROM ({{rows}}))"
        for group in groups
    )


# Per row: the columns that differ from row to row as READ_COLUMNS reads them, and one hash per coded group.
_ROW_COLUMNS = ", ".join(
    [f"{read_expression(c)} AS {_q(c)}" for c in COLUMNS if c not in _CODED] + _hashes(CODED_GROUPS)
)
_DISTINCT = _distinct_sql(CODED_GROUPS)


def read_frame(
    con: Any,
    source: str,
    filters: Filters,
    source_params: Sequence[Any] = (),
    *,
    one_scan: bool = False,
    constants: Mapping[str, str | None] = _NO_CONSTANTS,
    never_null: frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """The canonical ``scan()`` frame (``_rows.frame_from_arrays``) of ``source`` rows that pass ``filters``.

    ``source_params`` are the parameters of placeholders inside ``source`` itself (they come first). ``one_scan``
    reads every column in one scan where pandas keeps text in Arrow (``_one_scan_frame``): for sources each scan of
    which decodes files again, such as Parquet files; a DuckDB table is read faster by the queries below.

    Most columns repeat from row to row (a few models, resources, tag maps; amounts less so), and making a Python
    object per row and column was most of a frame's time and memory. So the rows come with one hash per group of such
    columns (``_rows.CODED_GROUPS``), and one query per group returns its distinct values with their hashes: each
    value becomes a Python object once and rows share it (``_rows.Coded``). The distinct values are exact (grouped
    by value, not by hash), so a row's value is the one value with the row's hash; two distinct values with one
    hash, or a row whose hash they lack, make the frame come from plain rows instead (``READ_COLUMNS``). Where pandas
    keeps text in Arrow, two queries do: the rows with their string-dtype texts and amounts as stored (Arrow finds the
    distinct amounts), and the distinct values of the other columns by one hash (``_arrow_frame``).

    The rows are selected without ``ORDER BY`` and put in (timestamp, id) order here (``_time_order``): a store's
    rows are mostly stored in that order already, and a sort inside DuckDB took about as long as the query itself
    and held every selected row once more.

    What a store knows of every row of ``source`` (from its files' statistics) spares the one scan work:
    ``constants`` are columns every row holds one and the same stored value in, by name (that value as text DuckDB
    casts to the column's type, or ``None`` for NULL), not read but made once and repeated (``_constant_arrays``);
    ``never_null`` columns hold no NULL, so those read with their default where NULL (``DEFAULTED_COLUMNS``) are
    read as stored (~0.01 s of CPU each at 1M rows).
    """
    import numpy as np
    import pandas as pd

    inner, params = select_sql(source, filters, "*", ordered=False)  # ordered and limited when ``limit`` is set
    args = [*source_params, *params]
    text = _text_dtype()
    if getattr(text, "storage", None) == "pyarrow":
        if one_scan:  # as many rows as the source holds, the filters aside: cheap (Parquet metadata)
            ((rows,),) = con.execute(f"SELECT count(*) FROM {source}", list(source_params)).fetchall()
            frame = _one_scan_frame(con, inner, args, text, rows, constants=constants, never_null=never_null)
        else:
            frame = _arrow_frame(con, inner, args, text)
        return frame if frame is not None else _plain_frame(con, source, filters, source_params)
    # Unordered: a store's rows mostly come in time order already, and sorting them here costs far less than a
    # sort inside DuckDB, which holds every selected row once more while it sorts.
    rows = dict(con.execute(f"SELECT {_ROW_COLUMNS} FROM ({inner})", args).fetchnumpy())  # text as Python objects
    order = _time_order(rows["timestamp"], rows["id"])
    if order is not None:
        rows = {name: column[order] for name, column in rows.items()}
    arrays: dict[str, Any] = {c: rows[c] for c in COLUMNS if c not in _CODED}
    for g, group in enumerate(CODED_GROUPS):
        distinct = con.execute(_DISTINCT[g].format(rows=inner), args).fetchnumpy()
        known = pd.Index(np.asarray(distinct["_h"], dtype=np.uint64))
        if not known.is_unique:
            return _plain_frame(con, source, filters, source_params)  # two values with one hash
        codes = known.get_indexer(np.asarray(rows.pop(f"_h{g}"), dtype=np.uint64))  # the hashes go once used
        if len(codes) and codes.min() < 0:
            return _plain_frame(con, source, filters, source_params)  # rows written between the two queries
        for column in group:
            arrays[column] = Coded(codes, distinct[column].tolist())
    return frame_from_arrays(arrays)


# The Arrow read (where pandas keeps text in Arrow): one query returns each row's own values, the text the frame keeps
# in pandas' string dtype as it is (coalesced as ``READ_COLUMNS`` does), the amount as stored (Arrow finds its
# distinct values, by value), and per group of the columns the frame keeps as Python objects (``_HASHED``: a few
# models and resources; the tag and unit maps) one hash; one more query per group returns its distinct values with
# their hashes. The rows' Arrow batch stays in memory whole while any of its columns does, so texts made Python
# objects go by hash (each would cost its text per row at the frame's peak). The maps have a query of their own:
# grouping by them is dear, and by them with the texts dearer still (~0.3 s at 1M rows, against ~0.2 s). This is the
# read of a DuckDB table, which its queries read fast; over Parquet files each query decodes its columns again (the
# three queries were ~40% of a 1M-row frame's time), and ``_one_scan_frame`` reads them once instead.
_MAPS = next(group for group in CODED_GROUPS if "tags" in group)
_HASHED = (tuple(c for c in COLUMNS if c in OBJECT_COLUMNS and c != "amount" and c not in _MAPS), _MAPS)
_ARROW_COLUMNS = ", ".join(
    [f"{_q(c) if c == 'amount' else read_expression(c)} AS {_q(c)}" for c in COLUMNS if c not in (*_HASHED[0], *_MAPS)]
    + _hashes(_HASHED)
)
_ARROW_DISTINCT = _distinct_sql(_HASHED)
_AMOUNTS = "llmcost_amounts"  # the distinct amounts, registered for their exact text
_AMOUNT_TEXT = f"SELECT {read_expression('amount')} AS amount FROM {_AMOUNTS} ORDER BY i"


def _text_dtype() -> Any:
    """The dtype pandas gives a column of text (its string dtype in pandas 3, with Arrow storage where pyarrow is
    installed; object before)."""
    import numpy as np
    import pandas as pd

    return pd.DataFrame({"id": np.array(["x"], dtype=object)})["id"].dtype


def _arrow_frame(con: Any, inner: str, args: Sequence[Any], text: Any) -> pd.DataFrame | None:
    """The frame of ``inner``'s rows read through Arrow (see ``_ARROW_COLUMNS``); ``None`` when it must come from
    plain rows instead: no rows (pandas infers an empty frame's dtypes itself), two distinct values with one hash, or
    a row whose hash the distinct values lack (rows written between the two queries)."""
    import numpy as np
    import pandas as pd

    # Text as Arrow's large strings, the type pandas keeps its strings in: they go into the frame without a copy.
    con.execute("SET arrow_large_buffer_size = true")
    try:
        table = con.sql(f"SELECT {_ARROW_COLUMNS} FROM ({inner})", params=list(args)).to_arrow_table()
    finally:
        con.execute("RESET arrow_large_buffer_size")
    if not table.num_rows:
        return None
    # (The batch DuckDB hands over is freed whole, once none of its columns is referenced: the ids and the string
    # columns the frame keeps hold it to the end.)
    columns = dict(zip(table.column_names, table.columns, strict=True))
    del table
    ids = pd.array(columns.pop("id"), dtype=text)
    order = _time_order(_numpy(columns["timestamp"]), ids)
    arrays: dict[str, Any] = {"id": ids if order is None else ids.take(order)}
    hashes = [np.asarray(_numpy(columns.pop(f"_h{g}")), dtype=np.uint64) for g in range(len(_HASHED))]
    for name in list(columns):
        column = columns.pop(name)
        if name == "timestamp":
            arrays[name] = _numpy(column) if order is None else _numpy(column)[order]  # read, not kept, by the frame
        elif name == "amount":
            arrays[name] = _amounts(con, column, order)
        elif _is_text(column.type):
            arrays[name] = _kept_text(column, order, text)
        else:
            values = _fresh(column)
            arrays[name] = values if order is None else values[order]
        del column
    for g, group in enumerate(_HASHED):
        distinct = con.execute(_ARROW_DISTINCT[g].format(rows=inner), list(args)).fetchnumpy()
        known = pd.Index(np.asarray(distinct["_h"], dtype=np.uint64))
        if not known.is_unique:
            return None  # two values with one hash
        codes = known.get_indexer(hashes[g])
        hashes[g] = codes  # the hashes go once used
        if codes.min() < 0:
            return None  # rows written between the two queries
        if order is not None:
            codes = codes[order]
        for name in group:
            arrays[name] = Coded(codes, distinct[name].tolist())
    return frame_from_arrays(arrays)


# The one-scan Arrow read (``read_frame(one_scan=True)``, for sources each scan of which decodes files again: the four
# queries of the hash read, and the three of ``_arrow_frame``, were most of a Parquet frame's time). Every column comes
# from one scan, streamed in record batches; the columns the frame keeps as Python objects (a few models and resources,
# the tag and unit maps as ``READ_COLUMNS`` reads them) are found by value in Arrow, so there are no hashes to collide
# and no second query for a write to race. Each group of batches is made into what the frame keeps (NumPy copies of the
# numbers, and of the amounts' integers while they fit in 64 bits (``_Amounts``), Arrow copies of the texts the frame
# keeps as text, per-row codes into each other column's distinct values) and dropped: DuckDB frees a batch whole once
# none of its columns is referenced, so batches kept to the end would hold every column's rows at the frame's peak (the
# ~60 MB of the numbers' Arrow copies, say).
_ONE_SCAN_CODED = tuple(c for c in COLUMNS if c in OBJECT_COLUMNS and c != "amount")
_ONE_SCAN_READ = {c: f"{_q(c) if c == 'amount' else read_expression(c)} AS {_q(c)}" for c in COLUMNS}
_ONE_SCAN_COLUMNS = ", ".join(_ONE_SCAN_READ.values())
# Read even where the source's statistics say they hold one value: the rows' order, and amounts found by value.
_ALWAYS_READ = frozenset({"id", "timestamp", "amount"})
# Rows made into the frame's arrays at a time (Parquet batches come one per file, or smaller): the batches of a group
# are held until it is done, so smaller groups hold less (measured at 1M rows: 32K rows ~400 MB peak and ~50K page
# faults; 128K ~420 MB and ~58K; 512K ~500 MB and ~90K), at no cost in time down to 8K.
_GROUP_ROWS = 1 << 15
_SCAN_AHEAD = "32MB"


class _Filled:
    """One column's rows as one NumPy array of its own, filled a group of rows at a time: made up front for as many
    rows as the source holds (a filter or limit can only select fewer), so groups are copied into it once and never
    joined; grown should more rows come.

    (Fresh memory costs its pages' faults, a tenth of a frame's time, and joining groups touched every page twice.)
    """

    def __init__(self, dtype: Any, rows: int) -> None:
        import numpy as np

        self.array = np.empty(rows, dtype)  # pages are touched, and counted, only once written
        self.size = 0

    def next(self, rows: int) -> np.ndarray:
        """The view of the next ``rows`` rows, to fill."""
        import numpy as np

        end = self.size + rows
        if end > len(self.array):
            grown = np.empty(max(end, 2 * len(self.array)), self.array.dtype)
            grown[: self.size] = self.array[: self.size]
            self.array = grown
        part = self.array[self.size : end]
        self.size = end
        return part

    def result(self) -> np.ndarray:
        """The rows filled, as an array of their own."""
        return self.array if self.size == len(self.array) else self.array[: self.size].copy()


class _Distinct:
    """One column's distinct values, found by value across groups of rows: each group's Arrow dictionary becomes
    codes into one list of Python values (``None`` for NULL), each value made a Python object once."""

    def __init__(self, rows: int) -> None:
        import numpy as np

        self.index: dict[Any, int] = {}
        self.codes = _Filled(np.int32, rows)

    def add(self, column: Any) -> None:
        """Code the rows of ``column`` (an Arrow chunked array)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        codes = self.codes.next(len(column))
        index = self.index
        if column.null_count == len(column):  # a column no row has a value in yet (``units``, say): one code
            codes[:] = index.setdefault(None, len(index))
            return
        encoded = pc.dictionary_encode(column)  # the chunks share one dictionary
        values = encoded.chunk(0).dictionary.to_pylist()
        indices = pa.chunked_array([chunk.indices for chunk in encoded.chunks], type=pa.int32())
        if column.null_count:
            values.append(None)  # a NULL's code: one past the last value
            indices = pc.fill_null(indices, len(values) - 1)
        lookup = np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int32)
        np.take(lookup, indices.to_numpy(), out=codes)

    def coded(self, order: np.ndarray | None) -> Coded:
        """The column's values as ``Coded`` (in ``order`` where given)."""
        codes = self.codes.result()
        return Coded(codes if order is None else codes[order], list(self.index))


def _one_scan_frame(
    con: Any,
    inner: str,
    args: Sequence[Any],
    text: Any,
    rows: int,
    *,
    constants: Mapping[str, str | None] = _NO_CONSTANTS,
    never_null: frozenset[str] = frozenset(),
) -> pd.DataFrame | None:
    """The frame of ``inner``'s rows from one streamed scan (see ``_ONE_SCAN_COLUMNS``), ``rows`` being how many
    rows its source holds, the ``constants`` (see ``read_frame``) left out of the scan and the ``never_null``
    columns read as stored; ``None`` when there are no rows (pandas infers an empty frame's dtypes itself, from
    plain rows)."""
    import pandas as pd
    import pyarrow as pa

    numbers: dict[str, _Filled] = {}
    texts: dict[str, list[Any]] = {}
    amounts = _Amounts(rows)
    constants = {name: value for name, value in constants.items() if name not in _ALWAYS_READ}
    distinct = {name: _Distinct(rows) for name in _ONE_SCAN_CODED if name not in constants}
    scanned = _ONE_SCAN_COLUMNS
    if constants or never_null:
        scanned = ", ".join(
            f"{_q(name)} AS {_q(name)}" if name in never_null and name in DEFAULTED_COLUMNS else read
            for name, read in _ONE_SCAN_READ.items()
            if name not in constants
        )
    # Text as Arrow's large strings, the type pandas keeps its strings in: they go into the frame without a copy.
    # DuckDB scans ahead into a buffer while a group is made into arrays here, on the other core where there is one
    # (measured at 1M rows, a quiet minute: 32 MB, ~0.65 s and ~420 MB peak; its default 10 MB, 0.65-0.99 s and
    # ~395 MB). No progress bar: the scan stays open meanwhile.
    settings = (
        "arrow_large_buffer_size = true",
        f"streaming_buffer_size = '{_SCAN_AHEAD}'",
        "enable_progress_bar = false",
    )
    for setting in settings:
        con.execute(f"SET {setting}")
    try:
        constant_row = _constant_row(con, constants) if constants else None
        rel = con.sql(f"SELECT {scanned} FROM ({inner})", params=list(args))
        # (``to_arrow_reader`` where DuckDB has it: DuckDB 2 deprecates ``fetch_arrow_reader``, older ones lack it)
        reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
        group: list[Any] = []
        grouped = 0
        for batch in itertools.chain(reader(_GROUP_ROWS), [None]):
            if batch is not None:
                group.append(batch)
                grouped += batch.num_rows
                if grouped < _GROUP_ROWS:
                    continue
            if not group:
                break
            table = pa.Table.from_batches(group)
            group, grouped = [], 0
            for name, column in zip(table.column_names, table.columns, strict=True):
                if name in distinct:
                    distinct[name].add(column)
                elif name == "amount":
                    amounts.add(column)
                elif _is_text(column.type):
                    texts.setdefault(name, []).append(pa.concat_arrays(column.chunks))  # a copy: the batches go
                else:
                    if name not in numbers:
                        numbers[name] = _Filled(column.type.to_pandas_dtype(), rows)
                    part, at = numbers[name].next(len(column)), 0
                    for chunk in column.chunks:  # (NULLs, of latency_ms, come as NaN)
                        part[at : at + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
                        at += len(chunk)
            del table, column
    finally:
        for setting in settings:
            con.execute(f"RESET {setting.split()[0]}")
    if not numbers:
        return None
    timestamps = numbers.pop("timestamp").result()
    # The constants' arrays (``_constant_arrays``: zeros untouched, texts made from their buffers), then the memory
    # the groups' Arrow copies left free given back before the frame's objects are made.
    arrays: dict[str, Any] = {} if constant_row is None else _constant_arrays(constant_row, len(timestamps), text)
    pa.default_memory_pool().release_unused()
    ids = pd.array(pa.chunked_array(texts.pop("id")), dtype=text)
    order = _time_order(timestamps, ids)
    arrays["id"] = ids if order is None else ids.take(order)
    arrays["timestamp"] = timestamps if order is None else timestamps[order]
    for name in list(numbers):
        values = numbers.pop(name).result()
        arrays[name] = values if order is None else values[order]
    arrays["amount"] = amounts.coded(con, order)
    for name in list(texts):
        column = pa.chunked_array(texts.pop(name))
        arrays[name] = _kept_text(column, order, text)
        del column
    for name, found in distinct.items():
        arrays[name] = found.coded(order)
    return frame_from_arrays(arrays)


def _constant_row(con: Any, constants: Mapping[str, str | None]) -> Any:
    """One Arrow row holding each of ``constants`` as the scan would read it: the stored value cast to its column's
    declared type, then read by the scan's own expression (``_ONE_SCAN_READ``), in the session's settings."""
    names = list(constants)
    stored = ", ".join(f"CAST(? AS {SQL_TYPES[name]}) AS {_q(name)}" for name in names)
    read = ", ".join(_ONE_SCAN_READ[name] for name in names)
    return con.sql(f"SELECT {read} FROM (SELECT {stored})", params=[constants[name] for name in names]).to_arrow_table()


def _constant_arrays(row: Any, rows: int, text: Any) -> dict[str, Any]:
    """The frame's arrays of ``rows`` rows for the columns of the one Arrow ``row`` (``_constant_row``), as the scan's
    groups would have made them: codes into the one value for the columns kept as objects (rows share it), the one
    text repeated in Arrow for the text columns, the one number repeated for the others.

    Zeros (codes, counts, an empty text's offsets) come from ``np.zeros``, whose memory the system hands over
    zeroed and untouched: a million rows of them cost no page faults until written, and a frame never writes them.
    """
    import numpy as np
    import pyarrow as pa

    arrays: dict[str, Any] = {}
    for name, column in zip(row.column_names, row.columns, strict=True):
        if name in _ONE_SCAN_CODED:
            arrays[name] = Coded(np.zeros(rows, np.int32), column.to_pylist())
        elif _is_text(column.type):
            value = column[0].as_py()  # (never NULL: such columns read their default where NULL)
            nulls = pa.chunked_array([pa.nulls(rows, column.type)])
            repeated = _repeated_text(value, rows) if value is not None else nulls
            arrays[name] = _kept_text(repeated, None, text)
        else:  # (NULL, of latency_ms, as NaN)
            value = column.to_numpy(zero_copy_only=False)
            zero = value.dtype.kind in "iu" and value[0] == 0
            arrays[name] = np.zeros(rows, value.dtype) if zero else np.full(rows, value[0], dtype=value.dtype)
    return arrays


def _repeated_text(value: str, rows: int) -> Any:
    """``value`` in each of ``rows`` rows as an Arrow chunked array of large strings, made from its buffers: the
    offsets (zeros, untouched, for an empty text) and the text repeated (Arrow's ``repeat`` appends row by row)."""
    import numpy as np
    import pyarrow as pa

    data = value.encode()
    size = len(data)
    offsets = np.arange(0, (rows + 1) * size, size, dtype=np.int64) if size else np.zeros(rows + 1, np.int64)
    array = pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(data * rows))
    return pa.chunked_array([array])


def _amounts(con: Any, column: Any, order: np.ndarray | None) -> Coded:
    """The Arrow column of amounts as stored (DECIMAL(38, 18)) as codes (in ``order`` where given) into its distinct
    amounts, found by value in Arrow, each as the exact text of the plain read: made by the very expression of
    ``READ_COLUMNS``, in DuckDB; or, where every amount is under ~9.2 in size, as the ``Decimal`` that text makes,
    from its integer (``_small_amounts``)."""
    import numpy as np
    import pyarrow as pa

    small = _small_amounts(column)
    if small is not None:
        codes, exact = small
        return Coded(codes if order is None else codes[order], exact)
    codes, amounts = _dictionary(column, order)
    con.register(_AMOUNTS, pa.table({"i": np.arange(len(amounts)), "amount": amounts}))
    try:
        exact = con.execute(_AMOUNT_TEXT).fetchnumpy()["amount"]
    finally:
        con.unregister(_AMOUNTS)
    return Coded(codes, exact.tolist())


_SCALE = 18  # of the stored DECIMAL(38, 18)
_EXACT = decimal.Context(prec=38)  # scales a 64-bit integer (19 digits at most) without rounding


def _small_amounts(column: Any) -> tuple[np.ndarray, list[Decimal]] | None:
    """The Arrow column of amounts as stored (DECIMAL(38, 18), no NULL) as per-row codes into its distinct amounts,
    each the ``Decimal`` the plain read's text makes (``READ_COLUMNS``: trailing zeros of the fraction, then the
    point, trimmed: ``0.5``, ``100``, ``0``); ``None`` unless every amount's unscaled integer fits in 64 bits
    (|amount| < ~9.22, as the cost of a call mostly is), or on a big-endian machine (see ``_low_words`` and
    ``_small_decimals``)."""
    import numpy as np

    parts = _column_low_words(column)
    if parts is None:
        return None
    return _small_decimals(np.concatenate(parts) if parts else np.empty(0, np.int64))


def _column_low_words(column: Any) -> list[np.ndarray] | None:
    """``_low_words`` of each chunk of ``column``; ``None`` where some chunk has none."""
    parts = []
    for chunk in column.chunks:
        part = _low_words(chunk)
        if part is None:
            return None
        parts.append(part)
    return parts


def _low_words(chunk: Any) -> np.ndarray | None:
    """An Arrow array of amounts as stored (DECIMAL(38, 18), no NULL) as their unscaled integers (a view of its
    memory); ``None`` where some integer needs more than 64 bits, or on a big-endian machine.

    Each 128-bit amount is two 64-bit words, the high one only the low one's sign where the integer fits."""
    import numpy as np
    import pyarrow as pa

    if sys.byteorder != "little" or chunk.null_count or chunk.type != pa.decimal128(38, _SCALE):
        return None
    words = np.frombuffer(chunk.buffers()[1], dtype=np.int64)[2 * chunk.offset : 2 * (chunk.offset + len(chunk))]
    low, high = words[0::2], words[1::2]
    if not bool((high == (low >> 63)).all()):  # some amount needs the high word
        return None
    return low


def _small_decimals(low: np.ndarray) -> tuple[np.ndarray, list[Decimal]]:
    """Amounts as their unscaled 64-bit integers (``_low_words``) as per-row codes into their distinct amounts, each
    the ``Decimal`` the plain read's text makes (see ``_small_amounts``).

    The integers are found by value with Arrow's 64-bit hash (a third of the time of hashing the 16-byte values),
    and each distinct integer's trailing decimal zeros, at most the scale, are stripped in NumPy, exactly (integer
    division of multiples of ten). ``Decimal(digits).scaleb(exponent)`` then holds the very digits and exponent of
    the trimmed text (``Decimal(5).scaleb(-1)`` is ``Decimal("0.5")``), in a context of its own whose precision
    (38 digits) no 64-bit integer reaches: nothing is rounded, whatever the caller's context says.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(pa.array(low))
    codes = encoded.indices.to_numpy()
    digits = encoded.dictionary.to_numpy().copy()
    exponents = np.full(len(digits), -_SCALE, dtype=np.int64)
    for _ in range(_SCALE):
        zero = digits % 10 == 0  # (0 too: it reads "0", digits 0 and exponent 0)
        if not zero.any():
            break
        digits[zero] //= 10
        exponents[zero] += 1
    # (~22 ms for 100,000 distinct amounts, mapped in C; a list comprehension ~26, from "<digits>E<exponent>" text ~40)
    return codes, list(map(Decimal.scaleb, map(Decimal, digits.tolist()), exponents.tolist(), itertools.repeat(_EXACT)))


class _Amounts:
    """The amounts of a one-scan read, a group of rows at a time: while every amount's unscaled integer fits in 64
    bits (``_low_words``), only those integers are kept, in one array filled as groups come (8 bytes a row, where
    Arrow copies of the stored amounts took 16 and were joined again); from the first group with a larger amount
    (or a NULL) on, Arrow copies of every group, the earlier groups' made again from their integers."""

    def __init__(self, rows: int) -> None:
        import numpy as np

        self.low: _Filled | None = _Filled(np.int64, rows)
        self.copies: list[Any] = []

    def add(self, column: Any) -> None:
        """Keep the amounts of ``column`` (an Arrow chunked array of amounts as stored)."""
        import pyarrow as pa

        if self.low is not None:
            parts = _column_low_words(column)
            if parts is not None:
                target, at = self.low.next(len(column)), 0
                for part in parts:
                    target[at : at + len(part)] = part
                    at += len(part)
                return
            self.copies = [_wide(self.low.result())]
            self.low = None
        self.copies.append(pa.concat_arrays(column.chunks))  # a copy: the batches go

    def coded(self, con: Any, order: np.ndarray | None) -> Coded:
        """The amounts as ``_amounts`` codes them (in ``order`` where given)."""
        import pyarrow as pa

        if self.low is None:
            return _amounts(con, pa.chunked_array(self.copies), order)
        codes, exact = _small_decimals(self.low.result())
        self.low = None
        return Coded(codes if order is None else codes[order], exact)


def _wide(low: np.ndarray) -> Any:
    """Amounts as their unscaled 64-bit integers as the Arrow DECIMAL(38, 18) array of the stored amounts."""
    import numpy as np
    import pyarrow as pa

    words = np.empty((len(low), 2), dtype=np.int64)
    words[:, 0] = low
    words[:, 1] = low >> 63
    return pa.Array.from_buffers(pa.decimal128(38, _SCALE), len(low), [None, pa.py_buffer(words)])


def _kept_text(column: Any, order: np.ndarray | None, text: Any) -> Any:
    """An Arrow column of text the frame keeps in the string dtype, as that dtype's array (in ``order`` where given):
    the column goes in as it is, no Python object per row."""
    import pandas as pd

    if column.null_count:  # (never: coalesced) each distinct value made once
        codes, values = _dictionary(column, order)
        return Coded(codes, [*values.to_pylist(), None])
    values = pd.array(column, dtype=text)
    return values if order is None else values.take(order)


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _numpy(column: Any) -> np.ndarray:
    """An Arrow column of numbers without NULLs as a NumPy array (a view where it is one chunk: not to be kept)."""
    import numpy as np

    if column.num_chunks == 1:
        return column.chunk(0).to_numpy()
    return np.asarray(column)


def _dictionary(column: Any, order: np.ndarray | None) -> tuple[np.ndarray, Any]:
    """An Arrow column as per-row codes (in ``order`` where given) into its distinct values, found by value in
    Arrow; a NULL's code is one past the last distinct value."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column)  # the chunks share one dictionary
    distinct = encoded.chunk(0).dictionary if encoded.num_chunks else pa.array([], type=column.type)
    parts = [pc.fill_null(chunk.indices, len(distinct)).to_numpy() for chunk in encoded.chunks]
    codes = np.concatenate(parts) if len(parts) != 1 else parts[0]
    return (codes if order is None else codes[order]), distinct


def _time_order(timestamps: Any, ids: Any) -> np.ndarray | None:
    """The positions that put rows in (timestamp, id) order, as ``ORDER BY "timestamp", id`` does; ``None`` when
    they are in that order already. ``ids`` is a NumPy array of strings or a pandas string array; both compare
    strings by code point, as DuckDB compares VARCHAR by UTF-8 bytes."""
    import numpy as np

    times = np.asarray(timestamps, dtype=np.int64)
    if len(times) < 2 or bool((times[1:] > times[:-1]).all()):
        return None
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    same = ordered[1:] == ordered[:-1]
    if same.any():  # rows with one timestamp: rank their ids, and sort by (timestamp, that rank)
        tied = np.zeros(len(times), dtype=bool)
        tied[1:] |= same
        tied[:-1] |= same
        where = order[tied]
        rank = np.zeros(len(times), dtype=np.int64)
        rank[where[np.asarray(ids[where].argsort(kind="stable"))]] = np.arange(len(where))
        order = np.lexsort((rank, times))
    if bool((order[1:] > order[:-1]).all()):
        return None
    return order


def _fresh(column: Any) -> np.ndarray:
    """An Arrow column as a NumPy array of its own, copied once: the frame keeps such an array as it is, where a
    view of Arrow memory it copies, and a column of many chunks (a scan over many Parquet files) would be copied
    twice, once to join the chunks and once more for the frame."""
    import numpy as np

    chunks = [chunk.to_numpy(zero_copy_only=False) for chunk in column.chunks]
    if len(chunks) > 1:
        return np.concatenate(chunks)
    return chunks[0].copy() if chunks else column.to_numpy()


def _plain_frame(con: Any, source: str, filters: Filters, source_params: Sequence[Any]) -> pd.DataFrame:
    """The frame from every row's values (``READ_COLUMNS``), each made a Python object per row."""
    sql, params = select_sql(source, filters)
    return frame_from_arrays(con.execute(sql, [*source_params, *params]).fetchnumpy())


def fetch_frame(con: Any, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> pd.DataFrame:
    """Run the user's ``sql`` and return a frame in which DECIMAL columns hold exact ``Decimal`` objects and
    TIMESTAMP WITH TIME ZONE columns are ``datetime64[us, UTC]`` (no ``pytz`` needed, nothing through floats)."""
    return _fetched(con, sql, params)[0]


#: The column types ``fetch_frame`` converts; a result without them is the frame DuckDB's ``df()`` makes.
_CONVERTED = frozenset({"timestamp with time zone", "decimal"})


def _is_plain(kinds: Sequence[str]) -> bool:
    """Whether a result of columns of these type ids is fetched as DuckDB makes it (nothing to convert)."""
    return bool(kinds) and not _CONVERTED.intersection(kinds)


def _fetched(con: Any, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> tuple[pd.DataFrame, bool]:
    """``fetch_frame``'s frame, and whether it is DuckDB's own ``df()`` of the result (nothing converted)."""
    import pandas as pd

    rel = con.sql(sql, params=params)
    if rel is None:  # a statement without a result
        return pd.DataFrame(), False
    names = list(rel.columns)
    kinds = [t.id for t in rel.types]
    if _is_plain(kinds):
        # Nothing to convert: fetch the relation as bound (a projection over it would bind the query again, which
        # over many Parquet files is most of a query's time). Names are set again, since DuckDB renames duplicates.
        frame = rel.df()
        if list(frame.columns) != names:  # (naming a frame's columns again costs ~1 ms)
            frame.columns = names
        return frame, True
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
    return result, False


class QueryFrames:
    """``fetch_frame`` for a store that is asked the same queries again (analytics, reports, dashboards).

    ``fetch_frame`` binds a query first, for its column types, and then runs it, which binds it again: ~1 ms a
    query, 2-3 ms for analytics' larger ones. The queries (text, and how many parameters or which names) whose
    results had nothing to convert are remembered, and run again as plain DuckDB runs them: one ``execute``, then
    ``df()``. Their result's types are checked all the same: one that needs converting after all (a parameter of
    another type, a schema changed by a migration) is fetched again by ``fetch_frame`` and forgotten, so the frame
    is always ``fetch_frame``'s. Not thread-safe: the caller holds its connection's lock.

    Example::

        frames = QueryFrames()
        frames.fetch(con, "SELECT model, count(*) AS n FROM entries GROUP BY model", None)  # bound, then run
        frames.fetch(con, "SELECT model, count(*) AS n FROM entries GROUP BY model", None)  # run once
    """

    def __init__(self, *, size: int = 256) -> None:
        self._size = size
        self._plain: dict[tuple[str, object], None] = {}  # insertion-ordered: the oldest is dropped when full

    def fetch(self, con: Any, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> pd.DataFrame:
        """``fetch_frame(con, sql, params)``."""
        key = (sql, _shape(params))
        if key[1] is None:  # parameters of another kind: fetch_frame says what it makes of them
            return fetch_frame(con, sql, params)
        if key in self._plain:
            con.execute(sql, params)
            description = con.description
            if description is not None and _is_plain([d[1].id for d in description]):
                frame = con.df()
                names = [d[0] for d in description]
                if list(frame.columns) != names:  # DuckDB renames duplicates, as in fetch_frame
                    frame.columns = names
                return frame
            if description is not None:
                con.complete()  # the connection takes no other statement while a result is open
            del self._plain[key]
        frame, plain = _fetched(con, sql, params)
        if plain:
            if len(self._plain) >= self._size:
                del self._plain[next(iter(self._plain))]
            self._plain[key] = None
        return frame


def _shape(params: object) -> object:
    """What of ``params`` a query's binding depends on besides value types: their number, or their names (``None``
    for parameters neither a list nor a mapping)."""
    if params is None:
        return 0
    if isinstance(params, Mapping):
        return tuple(params)
    if isinstance(params, (list, tuple)):
        return len(params)
    return None
