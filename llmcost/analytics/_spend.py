"""Spend grouped by key and by time: ``spend``, ``by_category``, ``by_resource``, ``by_model``, ``by_tag``,
``over_time``.

Each is one DuckDB query over the source's entries (see ``_source``): sums of money are exact ``DECIMAL(38, 18)``
and only the final figures become float64 ``cost`` columns for pandas. A store that can sum the groups in its own
database (``spend_groups``: PostgreSQL) does, and DuckDB only orders its few rows and casts their sums, with the same
expressions, so the frame is the same either way.

Example::

    >>> spend(tracker, by=("model",))[["model", "cost", "calls"]]
                   model    cost  calls
    0               None  24.000     10
    1             gpt-4o   5.180     40
    2  claude-3-5-sonnet   1.200     10
    3        gpt-4o-mini   0.108     30
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .. import _state
from .._model_price import tidy
from .._time import When
from ..stores._filters import Filters
from ..stores._sql import FRACTION_SUM, WHOLE_SUM, split_order, split_text, sum_value, with_split_sums
from ._freq import parse_freq
from ._source import MODEL_SQL, Source, as_source

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "GROUP_KEYS",
    "MEASURES",
    "by_category",
    "by_model",
    "by_resource",
    "by_tag",
    "exact_spend",
    "group_keys",
    "over_time",
    "spend",
]

#: Keys ``spend(by=...)`` groups on besides ``tag:<key>``; they are column names, never user text.
GROUP_KEYS = ("category", "resource", "model", "provider")
_GROUP_SQL = {"model": MODEL_SQL}
#: The measures every grouping returns, after the group keys.
MEASURES = ("cost", "calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")

_TOKEN_MEASURES = MEASURES[2:]


def _keys(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    items = [by] if isinstance(by, str) else list(by)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"by must be a str or a sequence of str, got {by!r}")
        if item.startswith("tag:"):
            if not item[4:]:
                raise ValueError(f"by names a tag without a key: {item!r}; write tag:<key>, e.g. 'tag:team'")
        elif item not in GROUP_KEYS:
            raise ValueError(f"by must name {', '.join(GROUP_KEYS)} or tag:<key>; got {item!r}{_guess(item)}")
        if item in out:
            raise ValueError(f"by names {item!r} twice: {by!r}")
        out.append(item)
    return out


def _guess(item: str) -> str:
    """What a ``by`` key that is none of ``GROUP_KEYS`` probably meant: a known key in other case (``Model``) before
    a tag of that name; nothing for ``period``, which ``freq`` adds, or an empty key.

    >>> _guess("Model"), _guess("team"), _guess("period")
    (" (did you mean 'model'?)", " (did you mean 'tag:team'?)", '')
    """
    known = next((key for key in GROUP_KEYS if key == item.strip().casefold()), None)
    if known is not None:
        return f" (did you mean {known!r}?)"
    return f" (did you mean 'tag:{item}'?)" if item not in ("period", "") else ""


def group_keys(by: str | Sequence[str] | None) -> list[str]:
    """The group keys ``by`` names, checked as ``spend`` checks them (``None``: no keys).

    >>> group_keys(("model", "tag:team"))
    ['model', 'tag:team']
    """
    return _keys(by)


def _measures_sql(exact: bool = False, *, split: bool = False) -> str:
    """The measures' SQL; with ``split`` the cost is a split sum's text (``sum_value`` reads it, ``_typed`` does)."""
    tokens = ", ".join(f"CAST(sum({c}) AS BIGINT) AS {c}" for c in _TOKEN_MEASURES)
    cost = "sum(amount)" if exact else "CAST(sum(amount) AS DOUBLE)"
    if split:
        cost = split_text(WHOLE_SUM, FRACTION_SUM)
    return f"{cost} AS cost, count(*) AS calls, {tokens}"


def _grouped(src: Source, keys: Sequence[str], freq: str | None, *, exact: bool = False) -> pd.DataFrame:
    """Rows per (period, keys...) with the measures, largest cost first; the SQL does all the work (in the store's
    own database when it offers ``spend_groups``, see ``_pushed_down``)."""
    names = (["period"] if freq is not None else []) + list(keys)
    frame = _pushed_down(src, keys, freq, exact=exact)
    if frame is None:
        frame = _in_duckdb(src, keys, freq, exact=exact)
    return _typed(frame, names, exact=exact, columns=[*names, *MEASURES])


def _in_duckdb(src: Source, keys: Sequence[str], freq: str | None, *, exact: bool) -> pd.DataFrame:
    selects: list[str] = []
    params: list[Any] = []
    if freq is not None:
        unit = parse_freq(freq)[0]
        selects.append(f"date_trunc('{unit}', timezone('UTC', timestamp)) AS _k{len(selects)}")
    for key in keys:
        if key.startswith("tag:"):
            selects.append(f"tags[?] AS _k{len(selects)}")
            params.append(key[4:])
        else:
            selects.append(f"{_GROUP_SQL.get(key, key)} AS _k{len(selects)}")  # a name from GROUP_KEYS
    head = ", ".join(selects) + ", " if selects else ""

    def run(split: bool) -> pd.DataFrame:
        order = split_order(WHOLE_SUM, FRACTION_SUM) if split else "sum(amount)"
        return src.sql(
            f"SELECT {head}{_measures_sql(exact, split=split)} FROM _e"
            + (" GROUP BY ALL" if selects else " HAVING count(*) > 0")
            + f" ORDER BY {order} DESC{_then_by_keys(len(selects))}",
            params,
        )

    return with_split_sums(run)


def _then_by_keys(n: int) -> str:
    """The ties' order after the cost: each key ascending, missing values last."""
    return "".join(f", _k{i} ASC NULLS LAST" for i in range(n))


@runtime_checkable
class _SpendGroups(Protocol):
    """A store that sums spend per group in its own database (``PostgresStore.spend_groups``)."""

    def spend_groups(
        self, keys: Sequence[str], filters: Filters = ..., *, unit: str | None = None
    ) -> list[tuple[Any, ...]] | None: ...


def _pushed_down(src: Source, keys: Sequence[str], freq: str | None, *, exact: bool) -> pd.DataFrame | None:
    """The grouping summed by the store itself, when it offers ``spend_groups`` and the source's narrowing is one
    ``Filters``; ``None`` otherwise (or when the store declines), and the rows go through DuckDB.

    The store returns unordered groups with exact sums; ordering them and turning sums into float64 happen here in
    DuckDB with the very expressions of the DuckDB path, so both give the same frame to the last bit.
    """
    store, filters = src.store, src.filters()
    if not isinstance(store, _SpendGroups) or filters is None:
        return None
    unit = parse_freq(freq)[0] if freq is not None else None
    rows = store.spend_groups(keys, filters, unit=unit)
    if rows is None:
        return None
    import pandas as pd

    from ..stores._sql import fetch_frame

    n = len(keys) + (unit is not None)
    types = ["TIMESTAMP" if unit is not None and i == 0 else "VARCHAR" for i in range(n)]
    columns = [f"_k{i} {t}" for i, t in enumerate(types)]
    columns += ["amount DECIMAL(38, 18)", "calls BIGINT", *(f"{c} BIGINT" for c in _TOKEN_MEASURES)]
    con = _scratch()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"CREATE TEMP TABLE g ({', '.join(columns)})")
        if rows:
            # Sums as plain decimal text (never exponent notation), cast to DECIMAL(38, 18) on insert.
            staged = pd.DataFrame.from_records(
                [(*r[:n], format(r[n], "f"), *r[n + 1 :]) for r in rows], columns=[c.split()[0] for c in columns]
            )
            con.register("staged", staged)
            con.execute("INSERT INTO g SELECT * FROM staged")
        keys_sql = "".join(f"_k{i}, " for i in range(n))
        tokens = ", ".join(f"CAST({c} AS BIGINT) AS {c}" for c in _TOKEN_MEASURES)
        cost = "amount" if exact else "CAST(amount AS DOUBLE)"
        return fetch_frame(
            con,
            f"SELECT {keys_sql}{cost} AS cost, calls, {tokens} FROM g ORDER BY amount DESC{_then_by_keys(n)}",
            None,
        )
    finally:
        con.close()


#: ``(pid, connection)``: this process's in-memory DuckDB for ordering pushed-down rows (see ``_scratch``).
_SCRATCH: list[tuple[int, Any]] = []
_SCRATCH_LOCK = threading.Lock()


def _scratch() -> Any:
    """A new connection (close it after) to this process's in-memory scratch DuckDB: opening a database costs tens
    of milliseconds, a connection to an open one nothing. Each connection has its own temporary tables, so threads do
    not meet; a forked child opens its own database (DuckDB's is not to be shared across a fork).
    """
    import duckdb

    with _SCRATCH_LOCK:
        if not _SCRATCH or _SCRATCH[-1][0] != os.getpid():
            con = duckdb.connect()
            # Never freed, here or in a forked child, where freeing a parent's connection (as the child exits and
            # this list goes) would crash it. It is an in-memory database meant to last as long as the process.
            _state.keep_until_exit([con])
            _SCRATCH.append((os.getpid(), con))  # a parent's stays in the list, untouched
        return _SCRATCH[-1][1].cursor()


def _typed(
    frame: pd.DataFrame, keys: Sequence[str], *, exact: bool = False, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """``frame`` (the ``keys`` then the ``MEASURES``; its columns named ``columns`` in order, where given) with its
    final types, as a new frame: keys as objects with ``None`` for missing (``period`` as ``datetime64[us, UTC]``),
    ``cost`` float64 (exact ``Decimal`` objects with ``exact``), the counts int64. Built in one go from the columns'
    arrays: renaming and then setting each column of a small frame in turn cost ~3 ms a query, ~1 ms this way."""
    import pandas as pd

    names = list(frame.columns) if columns is None else list(columns)
    data: dict[str, Any] = {}
    for name, (_, column) in zip(names, frame.items(), strict=True):
        if name == "period" and name in keys:
            stamps = pd.to_datetime(column)
            if stamps.dt.tz is None:
                stamps = stamps.dt.tz_localize("UTC")
            data[name] = stamps.dt.tz_convert("UTC").astype("datetime64[us, UTC]").array
        elif name in keys:
            data[name] = pd.Series(column.to_numpy(dtype=object, na_value=None), dtype=object, copy=False)
        elif name == "cost" and exact:
            data[name] = pd.Series([tidy(sum_value(c)) for c in column], dtype=object)
        elif name == "cost" and not pd.api.types.is_float_dtype(column.dtype):
            # split sums' text (past 10**20): read exactly, then rounded once
            data[name] = pd.Series([float(sum_value(c)) for c in column], dtype="float64").to_numpy()
        elif name == "cost":
            data[name] = column.to_numpy(dtype="float64")
        elif name in MEASURES:
            data[name] = column.to_numpy(dtype="int64")
        else:
            data[name] = column.array
    return pd.DataFrame(data, columns=names)


def spend(
    source: Any,
    by: str | Sequence[str] | None = ("category",),
    *,
    since: When | None = None,
    until: When | None = None,
    freq: str | None = None,
) -> pd.DataFrame:
    """Spend per group: the group keys as columns, then ``cost`` (float64, from exact sums), ``calls``,
    ``input_tokens``, ``output_tokens``, ``cache_read_tokens``, ``cache_write_tokens``; most expensive first.

    ``by`` names ``category``, ``resource``, ``model``, ``provider`` or ``tag:<key>`` (one or several; ``()`` or
    ``None`` gives one total row). A ``tag:<key>`` column holds the entry's value for that key, ``None`` for entries
    without it. ``since`` is inclusive, ``until`` exclusive (naive datetimes and dates are UTC). With ``freq``
    (``"h"``, ``"D"``, ``"W"``, ``"MS"``...) there is one row per period and group, and a ``period`` column first
    (UTC start of the bucket); only periods with spend appear (``over_time`` fills the gaps).

    Example::

        >>> frame = spend(tracker, by=("model", "tag:team"), since=datetime(2024, 5, 14))
        >>> frame[["model", "tag:team", "cost", "calls", "input_tokens"]]
                       model tag:team    cost  calls  input_tokens
        0               None   search  9.6000      4             0
        1             gpt-4o  support  3.0800     20       1200000
        2             gpt-4o   search  0.8400      8        320000
        3  claude-3-5-sonnet     None  0.4800      4        120000
        4        gpt-4o-mini  support  0.0432     12        240000
    """
    keys = _keys(by)
    if freq is not None:
        parse_freq(freq)
    with as_source(source) as base:  # the base owns a frame's connection; the narrowed view shares it
        return _grouped(base.where(since=since, until=until), keys, freq)


def exact_spend(
    source: Any,
    by: str | Sequence[str] | None = ("category",),
    *,
    since: When | None = None,
    until: When | None = None,
    freq: str | None = None,
    category: str | None = None,
    resource: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """``spend`` with ``cost`` as exact ``Decimal`` objects (trailing zeros dropped) instead of float64, narrowed
    further to ``category``, ``resource`` and ``tags`` when given: for machine output, where money travels as exact
    text (the command line's CSV and JSON, ``llmcost serve``).

    Example::

        >>> exact_spend(tracker, by=("model",), category="llm_inference")[["model", "cost"]]
                       model   cost
        0             gpt-4o   5.18
        1  claude-3-5-sonnet    1.2
        2        gpt-4o-mini  0.108
    """
    keys = _keys(by)
    if freq is not None:
        parse_freq(freq)
    with as_source(source) as base:
        narrowed = base.where(since=since, until=until, tags=tags, category=category, resource=resource)
        return _grouped(narrowed, keys, freq, exact=True)


def by_category(source: Any, *, since: When | None = None, until: When | None = None) -> pd.DataFrame:
    """Spend per ``category`` (see ``spend``), most expensive first.

    Example::

        >>> by_category(tracker)[["category", "cost", "calls"]]
                category    cost  calls
        0        compute  24.000     10
        1  llm_inference   6.488     80
    """
    return spend(source, ("category",), since=since, until=until)


def by_resource(source: Any, *, since: When | None = None, until: When | None = None) -> pd.DataFrame:
    """Spend per ``resource`` (see ``spend``), most expensive first; entries without one under ``None``.

    Example::

        >>> by_resource(tracker)[["resource", "cost", "calls"]]
                resource    cost  calls
        0        gpu-box  24.000     10
        1    support-bot   3.188     50
        2  search-rerank   2.100     20
        3      summarize   1.200     10
    """
    return spend(source, ("resource",), since=since, until=until)


def by_model(source: Any, *, since: When | None = None, until: When | None = None) -> pd.DataFrame:
    """Spend per ``model`` (see ``spend``), most expensive first; costs recorded without a model under ``None``.

    Example::

        >>> by_model(tracker)[["model", "cost", "calls"]]
                       model    cost  calls
        0               None  24.000     10
        1             gpt-4o   5.180     40
        2  claude-3-5-sonnet   1.200     10
        3        gpt-4o-mini   0.108     30
    """
    return spend(source, ("model",), since=since, until=until)


def by_tag(
    source: Any, key: str | None = None, *, since: When | None = None, until: When | None = None
) -> pd.DataFrame:
    """Spend per tag value.

    With ``key``: columns ``tag_value`` then the measures (see ``spend``); entries without the key count under
    ``tag_value`` ``None``. Without: the long form, ``tag_key``, ``tag_value``, then the measures, for every key
    that any entry carries. It is ``by_tag(source, k)`` for each key ``k`` stacked: an entry with several tags
    counts once per key, and an entry without a key (untagged entries lack all of them) counts under
    ``tag_value`` ``None`` of that key, so each key's rows add up to the whole spend. With no tags anywhere the long
    form is empty. Sorted by key, then cost, largest first.

    Example::

        >>> by_tag(tracker, "team")[["tag_value", "cost", "calls"]]
          tag_value    cost  calls
        0    search  26.100     30
        1   support   3.188     50
        2      None   1.200     10
    """
    if key is not None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty tag key or None, got {key!r}")
        frame = spend(source, (f"tag:{key}",), since=since, until=until)
        return frame.rename(columns={f"tag:{key}": "tag_value"})
    tokens = ", ".join(f"CAST({c} AS BIGINT) AS {c}" for c in _TOKEN_MEASURES)
    token_sums = ", ".join(f"sum({c}) AS {c}" for c in _TOKEN_MEASURES)
    rest = ", ".join(f"t.{c} - sum(p.{c}) AS {c}" for c in _TOKEN_MEASURES)

    def run(split: bool) -> pd.DataFrame:
        # Money is the column ``amount``, or past 10**20 the two exact parts ``w`` and ``f`` of a split sum
        # (``with_split_sums``), each summed and subtracted apart: sums are linear, so the parts stay exact.
        money = ("w", "f") if split else ("amount",)
        entry_sums = f"{WHOLE_SUM} AS w, {FRACTION_SUM} AS f" if split else "sum(amount) AS amount"
        sums = ", ".join(f"sum({c}) AS {c}" for c in ("calls", *money, *_TOKEN_MEASURES))
        missing = ", ".join(f"t.{c} - sum(p.{c}) AS {c}" for c in money)
        cost = split_text("w", "f") if split else "CAST(amount AS DOUBLE)"
        order = split_order("w", "f") if split else "amount"
        return base.where(since=since, until=until).sql(
            # maps: entries grouped by their whole tag map first (few distinct maps, so unnesting them is cheap);
            # present: one row per (key, value) carried; missing: per key, what the entries without it add up to
            # (the total minus that key's tagged sums; exact in DECIMAL).
            f""", maps AS (
                SELECT tags, count(*) AS calls, {entry_sums}, {token_sums}
                FROM _e GROUP BY tags
            ), present AS (
                SELECT t.e.key AS tag_key, t.e.value AS tag_value, {sums}
                FROM maps, unnest(map_entries(maps.tags)) AS t(e) GROUP BY ALL
            ), total AS (SELECT {sums} FROM maps),
            missing AS (
                SELECT p.tag_key, CAST(NULL AS VARCHAR) AS tag_value, t.calls - sum(p.calls) AS calls,
                       {missing}, {rest}
                FROM present p, total t
                GROUP BY p.tag_key, t.calls, {", ".join(f"t.{c}" for c in (*money, *_TOKEN_MEASURES))}
            ), rows AS (SELECT * FROM present UNION ALL SELECT * FROM missing WHERE calls > 0)
            SELECT tag_key, tag_value, {cost} AS cost, calls, {tokens} FROM rows
            ORDER BY tag_key, {order} DESC, tag_value ASC NULLS LAST"""
        )

    with as_source(source) as base:
        frame = with_split_sums(run)
    return _typed(frame, ["tag_key", "tag_value"], columns=["tag_key", "tag_value", *MEASURES])


def over_time(
    source: Any,
    freq: str = "D",
    by: str | Sequence[str] | None = None,
    *,
    since: When | None = None,
    until: When | None = None,
) -> pd.DataFrame:
    """Spend per period: a ``period`` column (UTC start of each bucket), then the keys of ``by`` if any, then the
    measures (see ``spend``). Every period from the first to the last with spend is present, zero-filled, and with
    ``by`` every group appears in every period. Sorted by period, then cost (largest first).

    Example::

        >>> over_time(tracker, freq="D", since="2024-05-13")[["period", "cost", "calls"]]
                             period    cost  calls
        0 2024-05-13 00:00:00+00:00  2.7408      7
        1 2024-05-14 00:00:00+00:00  5.8208     27
        2 2024-05-15 00:00:00+00:00  2.7408      7
        3 2024-05-16 00:00:00+00:00  2.7408      7
        4 2024-05-17 00:00:00+00:00  2.7408      7
    """
    import pandas as pd

    keys = _keys(by)
    pandas_freq = parse_freq(freq)[1]
    with as_source(source) as base:
        found = _grouped(base.where(since=since, until=until), keys, freq)
    if found.empty:
        return found
    periods = pd.date_range(found["period"].min(), found["period"].max(), freq=pandas_freq)
    if keys:
        groups = found[keys].drop_duplicates()
        grid = pd.merge(pd.DataFrame({"period": periods}), groups, how="cross")
    else:
        grid = pd.DataFrame({"period": periods})
    on = ["period", *keys]
    # None keys do not match in a merge; a placeholder stands in for them while aligning.
    marker = object()
    left = grid.copy()
    right = found.copy()
    for key in keys:
        left[key] = left[key].map(lambda v: marker if v is None else v)
        right[key] = right[key].map(lambda v: marker if v is None else v)
    merged = left.merge(right, on=on, how="left")
    for key in keys:
        merged[key] = merged[key].map(lambda v: None if v is marker else v).astype(object)
    merged["cost"] = merged["cost"].fillna(0.0)
    for column in MEASURES[1:]:
        merged[column] = merged[column].fillna(0)
    merged = merged.sort_values(
        ["period", "cost", *keys], ascending=[True, False, *([True] * len(keys))], na_position="last", kind="stable"
    )
    return _typed(merged[[*on, *MEASURES]], on)
