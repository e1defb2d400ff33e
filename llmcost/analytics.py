"""Spend analytics over any cost store: totals by key and by time, forecasts, anomalies, advice and export.

Every function takes a ``source``: a ``CostTracker`` (flushed first), a ``CostStore`` (``MemoryStore``,
``DuckDBStore``, ``ParquetStore``...) or a DataFrame as ``CostTracker.frame()`` returns it. Whatever the source,
the work is one DuckDB SQL query over a relation of its entries (``CostStore.query``): sums of money are exact
``DECIMAL(38, 18)`` and only the final figures become float64 ``cost`` columns for pandas.

Time buckets are cut in UTC and labelled by the start of the bucket. ``freq`` takes pandas-style names:
``"min"``, ``"h"``, ``"D"``, ``"W"`` (ISO weeks, starting Monday), ``"MS"`` (calendar months; ``"M"`` is taken
to mean the same), ``"QS"`` and ``"YS"``, or ``"hourly"``, ``"daily"``, ``"weekly"``, ``"monthly"``.

Example::

    from llmcost import analytics

    tracker = llmcost.get_tracker()
    analytics.by_model(tracker)                      # model, cost, calls, tokens..., most expensive first
    analytics.spend(tracker, by=("resource", "tag:team"), since=datetime(2024, 5, 1))
    analytics.over_time(tracker, freq="W")           # one row per ISO week, gaps filled with zeros
    analytics.export(tracker, "costs.parquet")
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_CEILING, Decimal
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._entry import to_tags
from ._errors import UnknownModelError
from ._money import ZERO, to_money, to_utc
from ._periods import BudgetPeriod, period_bounds, to_period
from ._tracker import CostTracker
from ._usage import Usage
from .stores._base import CostStore
from .stores._schema import COLUMNS, SQL_SELECT, TOKEN_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from ._prices import ModelPrice

__all__ = [
    "anomalies",
    "by_category",
    "by_model",
    "by_resource",
    "by_tag",
    "compare_models",
    "export",
    "forecast",
    "forecast_tasks",
    "over_time",
    "recommendations",
    "spend",
]

#: Keys ``spend(by=...)`` groups on besides ``tag:<key>``; they are column names, never user text.
GROUP_KEYS = ("category", "resource", "model", "provider")
#: The measures every grouping returns, after the group keys.
MEASURES = ("cost", "calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
#: ``anomalies`` flags a period whose robust score is beyond this (Iglewicz and Hoaglin's 3.5).
ANOMALY_THRESHOLD = 3.5
#: ``recommendations`` suggests a model only when it would cost at least this fraction less on the same usage.
MIN_SAVING = Decimal("0.2")

_TOKEN_MEASURES = MEASURES[2:]

# freq -> (DuckDB date_trunc unit, pandas frequency of the same buckets)
_FREQS: dict[str, tuple[str, str]] = {}
for _names, _unit, _pandas in (
    (("min", "T", "minute", "minutely"), "minute", "min"),
    (("h", "H", "hour", "hourly"), "hour", "h"),
    (("D", "d", "day", "daily"), "day", "D"),
    (("W", "W-MON", "w", "week", "weekly"), "week", "W-MON"),
    (("MS", "M", "ME", "month", "monthly"), "month", "MS"),
    (("QS", "Q", "quarter", "quarterly"), "quarter", "QS"),
    (("YS", "Y", "A", "AS", "year", "yearly"), "year", "YS"),
):
    for _name in _names:
        _FREQS[_name] = (_unit, _pandas)


# ---------------------------------------------------------------------------------------------------------------
# Sources: one adapter so that every function runs the same SQL whatever it is given.


class _Source:
    """Any source, as something that answers DuckDB SQL over its entries (optionally filtered).

    ``sql(body, params)`` runs ``WITH _e AS (SELECT * FROM entries WHERE <filters>) <body>``: ``body`` reads the
    relation ``_e`` (and may start with ``, name AS (...)`` to add CTEs). Values always travel as parameters.
    """

    def __init__(
        self,
        run: Callable[[str, list[Any]], pd.DataFrame],
        clock: Callable[[], datetime],
        *,
        conditions: tuple[str, ...] = (),
        params: tuple[Any, ...] = (),
        close: Callable[[], None] | None = None,
    ) -> None:
        self._run = run
        self.clock = clock
        self._conditions = conditions
        self._params = params
        self._close = close

    def sql(self, body: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        where = " AND ".join(self._conditions) or "TRUE"
        return self._run(f"WITH _e AS (SELECT * FROM entries WHERE {where}) {body}", [*self._params, *params])

    def where(
        self,
        *,
        since: datetime | date | None = None,
        until: datetime | date | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> _Source:
        """This source narrowed to ``since <= timestamp < until`` and entries carrying every tag in ``tags``.

        The narrowed source shares this one's connection and does not close it.
        """
        conditions = list(self._conditions)
        params = list(self._params)
        if since is not None:
            conditions.append("timestamp >= ?")
            params.append(_moment(since, "since"))
        if until is not None:
            conditions.append("timestamp < ?")
            params.append(_moment(until, "until"))
        for key, value in to_tags(tags).items():
            conditions.append("tags[?] = ?")
            params.extend((key, value))
        return _Source(self._run, self.clock, conditions=tuple(conditions), params=tuple(params))

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __enter__(self) -> _Source:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _moment(value: object, field: str) -> datetime:
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return to_utc(value, field)  # type: ignore[arg-type]


def _source(source: object) -> _Source:
    """Adapt ``source`` (tracker, store, frame, or an adapted source) to ``_Source``."""
    if isinstance(source, _Source):
        return _Source(source._run, source.clock, conditions=source._conditions, params=source._params)
    if isinstance(source, CostTracker):
        source.flush()
        return _Source(_store_runner(source.store), source.clock)
    if isinstance(source, CostStore):
        return _Source(_store_runner(source), _utc_now)
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return _frame_source(source)
    raise TypeError(
        f"source must be a CostTracker, a CostStore or a DataFrame from CostTracker.frame(), got {type(source)!r}"
    )


def _store_runner(store: CostStore) -> Callable[[str, list[Any]], pd.DataFrame]:
    def run(sql: str, params: list[Any]) -> pd.DataFrame:
        return store.query(sql, params)

    return run


def _frame_source(frame: pd.DataFrame) -> _Source:
    """A frame from ``frame()``/``scan()`` loaded into an in-memory DuckDB with the canonical column types."""
    import duckdb
    import pandas as pd

    for needed in ("timestamp", "amount"):
        if needed not in frame.columns:
            raise ValueError(
                f"source frame has no {needed!r} column; pass a frame from CostTracker.frame() or "
                f"CostStore.scan() (columns {', '.join(COLUMNS)}), got columns {list(frame.columns)}"
            )
    n = len(frame)
    raw: dict[str, Any] = {}
    for column in COLUMNS:
        if column in frame.columns:
            raw[column] = frame[column].reset_index(drop=True)
        elif column in TOKEN_COLUMNS:
            raw[column] = [0] * n
        elif column == "latency_ms":
            raw[column] = [float("nan")] * n
        elif column == "currency":
            raw[column] = ["USD"] * n
        else:
            raw[column] = [None] * n
    raw["amount"] = [str(to_money(a)) for a in frame["amount"]]
    raw["tags"] = [json.dumps(_tag_dict(t), ensure_ascii=False) for t in raw["tags"]]
    table = pd.DataFrame(raw, columns=list(COLUMNS))
    for column in ("id", "currency", "category", "resource", "description", "model", "provider", "pricing"):
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # naive timestamps in the frame are UTC, as everywhere in llmcost
        con.register("raw", table)
        con.execute(f"CREATE TEMP TABLE entries AS {SQL_SELECT}")
        con.unregister("raw")
    except BaseException:
        con.close()
        raise

    def run(sql: str, params: list[Any]) -> pd.DataFrame:
        return _fetch(con.execute(sql, params))

    return _Source(run, _utc_now, close=con.close)


def _tag_dict(value: object) -> dict[str, str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    if isinstance(value, str):
        return dict(json.loads(value)) if value else {}
    if isinstance(value, Mapping):
        return dict(value)
    return dict(value)  # type: ignore[call-overload]  # DuckDB map rows: [(key, value), ...]


def _text(value: object) -> str | None:
    """A string from a result frame, or None for SQL NULL (which pandas may hand back as NaN)."""
    return value if isinstance(value, str) else None


def _fetch(result: Any) -> pd.DataFrame:
    import pandas as pd

    names = [d[0] for d in result.description]
    return pd.DataFrame.from_records(result.fetchall(), columns=names)


# ---------------------------------------------------------------------------------------------------------------
# Grouping


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
            raise ValueError(
                f"by must name {', '.join(GROUP_KEYS)} or tag:<key>; got {item!r}"
                + (f" (did you mean 'tag:{item}'?)" if item not in ("period", "") else "")
            )
        if item in out:
            raise ValueError(f"by names {item!r} twice: {by!r}")
        out.append(item)
    return out


def _freq(freq: str) -> tuple[str, str]:
    found = _FREQS.get(freq) if isinstance(freq, str) else None
    if found is None:
        raise ValueError(
            f"freq must be one of min, h, D, W, MS, QS, YS (or hourly, daily, weekly, monthly); got {freq!r}"
        )
    return found


def _measures_sql() -> str:
    tokens = ", ".join(f"CAST(sum({c}) AS BIGINT) AS {c}" for c in _TOKEN_MEASURES)
    return f"CAST(sum(amount) AS DOUBLE) AS cost, count(*) AS calls, {tokens}"


def _grouped(src: _Source, keys: Sequence[str], freq: str | None) -> pd.DataFrame:
    """Rows per (period, keys...) with the measures, largest cost first; the SQL does all the work."""
    selects: list[str] = []
    params: list[Any] = []
    names: list[str] = []
    if freq is not None:
        unit = _freq(freq)[0]
        selects.append(f"date_trunc('{unit}', timezone('UTC', timestamp)) AS _k{len(selects)}")
        names.append("period")
    for key in keys:
        if key.startswith("tag:"):
            selects.append(f"tags[?] AS _k{len(selects)}")
            params.append(key[4:])
        else:
            selects.append(f"{key} AS _k{len(selects)}")  # a name from GROUP_KEYS, checked by _keys
        names.append(key)
    order = ", ".join(f"_k{i} ASC NULLS LAST" for i in range(len(selects)))
    head = ", ".join(selects) + ", " if selects else ""
    frame = src.sql(
        f"SELECT {head}{_measures_sql()} FROM _e"
        + (" GROUP BY ALL" if selects else " HAVING count(*) > 0")
        + f" ORDER BY sum(amount) DESC{', ' + order if order else ''}",
        params,
    )
    frame.columns = [*names, *MEASURES]
    return _typed(frame, names)


def _typed(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    for key in keys:
        if key == "period":
            stamps = pd.to_datetime(frame[key])
            if stamps.dt.tz is None:
                stamps = stamps.dt.tz_localize("UTC")
            frame[key] = stamps.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        else:
            frame[key] = frame[key].astype(object).where(frame[key].notna(), None)
    frame["cost"] = frame["cost"].astype("float64")
    for column in MEASURES[1:]:
        frame[column] = frame[column].astype("int64")
    return frame.reset_index(drop=True)


def spend(
    source: Any,
    by: str | Sequence[str] | None = ("category",),
    *,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
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

        >>> spend(tracker, by=("model", "tag:team"), since=datetime(2024, 5, 1))
                   model  tag:team      cost  calls  input_tokens  ...
        0         gpt-4o    search  12.40625    830       3021934  ...
    """
    keys = _keys(by)
    if freq is not None:
        _freq(freq)
    with _source(source) as base:  # the base owns a frame's connection; the narrowed view shares it
        return _grouped(base.where(since=since, until=until), keys, freq)


def by_category(source: Any) -> pd.DataFrame:
    """Spend per ``category`` (see ``spend``), most expensive first.

    Example::

        >>> by_category(tracker)[["category", "cost"]]
                category   cost
        0  llm_inference  41.25
        1        compute   3.10
    """
    return spend(source, ("category",))


def by_resource(source: Any) -> pd.DataFrame:
    """Spend per ``resource`` (see ``spend``), most expensive first; entries without one under ``None``.

    Example::

        >>> by_resource(tracker)[["resource", "cost", "calls"]]
    """
    return spend(source, ("resource",))


def by_model(source: Any) -> pd.DataFrame:
    """Spend per ``model`` (see ``spend``), most expensive first; costs recorded without a model under ``None``.

    Example::

        >>> by_model(tracker)[["model", "cost", "calls"]]
    """
    return spend(source, ("model",))


def by_tag(source: Any, key: str | None = None) -> pd.DataFrame:
    """Spend per tag value.

    With ``key``: columns ``tag_value`` then the measures (see ``spend``); entries without the key count under
    ``tag_value`` ``None``. Without: the long form, ``tag_key``, ``tag_value``, then the measures, for every key
    that any entry carries. It is ``by_tag(source, k)`` for each key ``k`` stacked: an entry with several tags
    counts once per key, and an entry without a key (untagged entries lack all of them) counts under
    ``tag_value`` ``None`` of that key, so each key's rows add up to the whole spend. With no tags anywhere the long
    form is empty. Sorted by key, then cost, largest first.

    Example::

        >>> by_tag(tracker, "team")[["tag_value", "cost"]]
          tag_value   cost
        0    search  30.10
        1      None   4.05
        >>> by_tag(tracker)[["tag_key", "tag_value", "cost"]]
    """
    if key is not None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty tag key or None, got {key!r}")
        frame = spend(source, (f"tag:{key}",))
        return frame.rename(columns={f"tag:{key}": "tag_value"})
    tokens = ", ".join(f"CAST({c} AS BIGINT) AS {c}" for c in _TOKEN_MEASURES)
    sums = ", ".join(f"sum({c}) AS {c}" for c in ("calls", "amount", *_TOKEN_MEASURES))
    token_sums = ", ".join(f"sum({c}) AS {c}" for c in _TOKEN_MEASURES)
    rest = ", ".join(f"t.{c} - sum(p.{c}) AS {c}" for c in _TOKEN_MEASURES)
    with _source(source) as src:
        frame = src.sql(
            # maps: entries grouped by their whole tag map first (few distinct maps, so unnesting them is cheap);
            # present: one row per (key, value) carried; missing: per key, what the entries without it add up to
            # (the total minus that key's tagged sums; exact in DECIMAL).
            f""", maps AS (
                SELECT tags, count(*) AS calls, sum(amount) AS amount, {token_sums}
                FROM _e GROUP BY tags
            ), present AS (
                SELECT t.e.key AS tag_key, t.e.value AS tag_value, {sums}
                FROM maps, unnest(map_entries(maps.tags)) AS t(e) GROUP BY ALL
            ), total AS (SELECT {sums} FROM maps),
            missing AS (
                SELECT p.tag_key, CAST(NULL AS VARCHAR) AS tag_value, t.calls - sum(p.calls) AS calls,
                       t.amount - sum(p.amount) AS amount, {rest}
                FROM present p, total t
                GROUP BY p.tag_key, t.calls, t.amount, {", ".join(f"t.{c}" for c in _TOKEN_MEASURES)}
            ), rows AS (SELECT * FROM present UNION ALL SELECT * FROM missing WHERE calls > 0)
            SELECT tag_key, tag_value, CAST(amount AS DOUBLE) AS cost, calls, {tokens} FROM rows
            ORDER BY tag_key, amount DESC, tag_value ASC NULLS LAST"""
        )
    frame.columns = ["tag_key", "tag_value", *MEASURES]
    return _typed(frame, ["tag_key", "tag_value"])


def over_time(source: Any, freq: str = "D", by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Spend per period: a ``period`` column (UTC start of each bucket), then the keys of ``by`` if any, then the
    measures (see ``spend``). Every period from the first to the last with spend is present, zero-filled, and with
    ``by`` every group appears in every period. Sorted by period, then cost (largest first).

    Example::

        >>> over_time(tracker, freq="D")[["period", "cost"]]
                             period   cost
        0 2024-05-14 00:00:00+00:00   3.20
        1 2024-05-15 00:00:00+00:00   0.00
        2 2024-05-16 00:00:00+00:00   5.75
    """
    import pandas as pd

    keys = _keys(by)
    pandas_freq = _freq(freq)[1]
    with _source(source) as src:
        found = _grouped(src, keys, freq)
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


# ---------------------------------------------------------------------------------------------------------------
# Forecasts and anomalies


def forecast(source: Any, period: BudgetPeriod | str = "monthly", *, now: datetime | None = None) -> pd.DataFrame:
    """What the current ``period`` (``hourly``, ``daily``, ``weekly``, ``monthly``; UTC) will cost at the current
    rate: one row with ``period_start``, ``period_end``, ``spent`` (so far) and ``projected``
    (``spent`` scaled from the time elapsed to the whole period, i.e. the run-rate).

    "Now" is the tracker's clock when ``source`` is a ``CostTracker``, else the current UTC time; ``now=`` overrides
    both.

    Example::

        >>> forecast(tracker, "monthly")        # 10 days into a 30-day month, $100 spent
                         period_start                period_end  spent  projected
        0   2024-05-01 00:00:00+00:00 2024-06-01 00:00:00+00:00  100.0      310.0
    """
    import pandas as pd

    kind = to_period(period)
    if kind is BudgetPeriod.TOTAL:
        raise ValueError("period must be hourly, daily, weekly or monthly for a run-rate forecast; got 'total'")
    with _source(source) as src:
        moment = to_utc(now, "now") if now is not None else to_utc(src.clock(), "clock()")
        start, end = period_bounds(kind, moment)
        if start is None or end is None:  # pragma: no cover - TOTAL was refused above
            raise ValueError(f"period {kind.value!r} has no bounds")
        found = src.sql(
            "SELECT sum(amount) AS spent FROM _e WHERE timestamp >= ? AND timestamp < ? AND timestamp <= ?",
            [start, end, moment],
        )
    spent = found["spent"].iloc[0] if len(found) else None
    spent = ZERO if spent is None or (isinstance(spent, float) and math.isnan(spent)) else to_money(spent)
    elapsed = Decimal((moment - start) // timedelta(microseconds=1))
    whole = Decimal((end - start) // timedelta(microseconds=1))
    projected = spent if elapsed <= 0 else spent * whole / elapsed
    return pd.DataFrame(
        {
            "period_start": pd.Series([start], dtype="datetime64[us, UTC]"),
            "period_end": pd.Series([end], dtype="datetime64[us, UTC]"),
            "spent": pd.Series([float(spent)], dtype="float64"),
            "projected": pd.Series([float(projected)], dtype="float64"),
        }
    )


def _tokens(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise TypeError(f"{field} must be a number of tokens, got {value!r}")
    amount = to_money(value, field)
    if amount < 0:
        raise ValueError(f"{field} must not be negative, got {value!r}")
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


def forecast_tasks(
    count: int,
    avg_input_tokens: float,
    avg_output_tokens: float,
    model: str,
    *,
    buffer: Decimal | float | str = Decimal("1.2"),
) -> Decimal:
    """The exact cost of ``count`` pending tasks of ``avg_input_tokens`` in and ``avg_output_tokens`` out each on
    ``model``, times a safety ``buffer`` (1.2: 20% headroom): ``cost_of(model, one task) * count * buffer``.

    Fractional averages are rounded up to whole tokens (a forecast should not undershoot).

    Example::

        >>> forecast_tasks(500, 2_000, 400, "gpt-4o-mini")    # 500 * $0.00054 * 1.2
        Decimal('0.324')
    """
    from ._prices import _tidy, cost_of

    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    factor = to_money(buffer, "buffer")
    if factor <= 0:
        raise ValueError(f"buffer must be a positive multiplier (1.2 = 20% headroom), got {buffer!r}")
    per_task = cost_of(
        model,
        input_tokens=_tokens(avg_input_tokens, "avg_input_tokens"),
        output_tokens=_tokens(avg_output_tokens, "avg_output_tokens"),
    )
    return _tidy(per_task * count * factor)


def anomalies(source: Any, freq: str = "D", *, threshold: float = ANOMALY_THRESHOLD) -> pd.DataFrame:
    """Periods whose spend is far from usual: ``period``, ``cost``, ``expected``, ``score``, ``anomaly`` (bool).

    The score is the modified z-score of Iglewicz and Hoaglin, robust to the outliers it looks for:
    ``score = (cost - median) / (1.4826 * MAD)`` over every period of ``over_time(source, freq)`` (zero-filled),
    where MAD is the median absolute deviation from the median; ``expected`` is the median. When more than half the
    periods cost the same (MAD = 0) the mean absolute deviation is used instead (``1.2533 * meanAD``), and when all
    cost the same every score is 0. ``anomaly`` is ``abs(score) > threshold`` (default 3.5).

    Example::

        >>> anomalies(tracker, freq="D").query("anomaly")
                             period   cost  expected  score  anomaly
        9 2024-05-23 00:00:00+00:00  48.10      4.95  11.62     True
    """
    import numpy as np
    import pandas as pd

    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    series = over_time(source, freq)
    costs = series["cost"].to_numpy(dtype="float64")
    if len(costs):
        median = float(np.median(costs))
        deviation = np.abs(costs - median)
        mad = float(np.median(deviation))
        if mad > 0:
            scale = 1.4826 * mad
        else:
            mean_ad = float(np.mean(deviation))
            scale = 1.2533 * mean_ad
        scores = (costs - median) / scale if scale > 0 else np.zeros_like(costs)
    else:
        median, scores = 0.0, np.zeros(0)
    return pd.DataFrame(
        {
            "period": series["period"],
            "cost": costs,
            "expected": np.full(len(costs), median, dtype="float64"),
            "score": scores.astype("float64"),
            "anomaly": np.abs(scores) > threshold,
        }
    )


# ---------------------------------------------------------------------------------------------------------------
# Models: comparison and cheaper alternatives


def compare_models(source: Any) -> pd.DataFrame:
    """Per model: ``model``, ``calls``, ``cost``, ``cost_per_call`` and ``cost_per_1k_tokens`` (input plus output
    tokens; NaN when a model recorded no tokens); most expensive first. Entries without a model are left out.

    Example::

        >>> compare_models(tracker)
                 model  calls   cost  cost_per_call  cost_per_1k_tokens
        0       gpt-4o    830  12.41       0.014947            0.004106
        1  gpt-4o-mini   2210   0.93       0.000421            0.000195
    """
    import pandas as pd

    with _source(source) as src:
        found = src.sql(
            "SELECT model, count(*) AS calls, sum(amount) AS cost, "
            "CAST(sum(input_tokens) + sum(output_tokens) AS BIGINT) AS tokens "
            "FROM _e WHERE model IS NOT NULL GROUP BY model ORDER BY sum(amount) DESC, model"
        )
    rows = []
    for model, calls, cost, tokens in found.itertuples(index=False):
        cost = to_money(cost)
        rows.append(
            (
                model,
                int(calls),
                float(cost),
                float(cost / calls),
                float(cost * 1000 / int(tokens)) if tokens else float("nan"),
            )
        )
    frame = pd.DataFrame.from_records(rows, columns=["model", "calls", "cost", "cost_per_call", "cost_per_1k_tokens"])
    frame["model"] = frame["model"].astype(object)
    frame["calls"] = frame["calls"].astype("int64")
    for column in ("cost", "cost_per_call", "cost_per_1k_tokens"):
        frame[column] = frame[column].astype("float64")
    return frame


# Model-family heuristic. A catalog id is split into a *line* (what is left after dropping dates, "latest" and
# size words: gpt-4o, claude-3-5, gemini-1.5, gpt-5) and a *rank* from its size words. Models of one line differ in
# size, not in kind: "tts", "audio", "realtime", "embedding" and the like stay in the line, so a chat model is never
# matched with a speech or embedding model.
_RANKS = {
    "ultra": 4,
    "opus": 3,
    "pro": 3,
    "large": 3,
    "max": 3,
    "sonnet": 2,
    "medium": 2,
    "plus": 2,
    "haiku": 1,
    "mini": 1,
    "small": 1,
    "flash": 1,
    "nano": 0,
    "lite": 0,
    "tiny": 0,
}
_STANDARD = 2  # an id without a size word: the line's standard model (gpt-4o, o3, gpt-5)
_SUFFIX = re.compile(r"(-(\d{4}-\d{2}-\d{2}|\d{8}|\d{3,4}|latest|v\d+(\.\d+)?))+$")
_RANK_NAMES = {4: "largest", 3: "large", 2: "standard", 1: "small", 0: "smallest"}


def _line(model_id: str) -> tuple[str, int]:
    """``(line, rank)`` of a catalog model id: ``gpt-4o-mini`` -> ``("gpt-4o", 1)``."""
    base = _SUFFIX.sub("", model_id.lower())
    parts = base.split("-")
    ranks = [_RANKS[p] for p in parts if p in _RANKS]
    line = "-".join(p for p in parts if p not in _RANKS)
    return line, (min(ranks) if ranks else _STANDARD)


@lru_cache(maxsize=64)
def _provider_models(provider: str) -> tuple[tuple[str, str, int], ...]:
    """``(id, line, rank)`` of every current (not deprecated) catalog model of ``provider``."""
    from genai_prices import data_snapshot

    for prov in data_snapshot.get_snapshot().providers:
        if prov.id == provider:
            return tuple((m.id, *_line(m.id)) for m in prov.models if not m.deprecated)
    return ()


def _bulk_cost(price: ModelPrice, usage: Usage, calls: int) -> Decimal:
    """``price`` applied to ``calls`` calls that used ``usage`` together: base prices on the summed tokens and the
    per-request fee per call. Long-context tiers are left out: they apply per call, not to a sum of calls."""
    import attrs

    per_token = attrs.evolve(price, tiers=(), request_price=None).cost(usage)
    fee = price.request_price * calls if price.request_price is not None else ZERO
    return per_token + fee


def _suggest(
    model: str, provider: str | None, usage: Usage, calls: int, largest_call: int, moment: datetime
) -> tuple[str, Decimal, str] | None:
    """The cheaper model of the same line for this usage, its cost and the reason; ``None`` when none is known."""
    from ._prices import get_price

    try:
        current = get_price(model, provider, at=moment)
    except (UnknownModelError, ValueError):
        return None
    if current.provider is None:
        return None
    line, rank = _line(current.model)
    current_cost = _bulk_cost(current, usage, calls)
    if current_cost <= 0:
        return None
    needed = current.context_window or largest_call
    best: tuple[int, Decimal, str, ModelPrice] | None = None
    for candidate, cand_line, cand_rank in _provider_models(current.provider):
        if cand_line != line or cand_rank >= rank or candidate == current.model:
            continue
        try:
            price = get_price(candidate, current.provider, at=moment)
        except (UnknownModelError, ValueError):
            continue
        if price.context_window is None or price.context_window < needed:
            continue
        cost = _bulk_cost(price, usage, calls)
        if cost > current_cost * (1 - MIN_SAVING):
            continue
        # The nearest step down (highest rank) is the safest swap; among equals, the cheapest.
        key = (cand_rank, -cost)
        if best is None or key > (best[0], -best[1]):
            best = (cand_rank, cost, candidate, price)
    if best is None:
        return None
    _, cost, candidate, price = best
    share = (1 - cost / current_cost) * 100
    reason = (
        f"{candidate} is a {_RANK_NAMES[best[0]]} model of the same {line} line as {current.model} at "
        f"{current.provider}, with a context window of {price.context_window:,} tokens "
        f"(needed: {needed:,}); priced on this resource's recorded usage "
        f"({calls:,} calls, {usage.input_tokens:,} input and {usage.output_tokens:,} output tokens) "
        f"it costs {share:.0f}% less"
    )
    return candidate, cost, reason


def recommendations(source: Any, *, now: datetime | None = None) -> pd.DataFrame:
    """Cheaper models for what each resource recorded: ``resource``, ``model``, ``suggested_model``, ``cost``
    (recorded), ``projected_cost`` (the recorded usage at the suggested model's prices), ``saving`` and ``reason``;
    largest saving first.

    The rule, per ``(resource, model)``: the model's price is looked up in the catalog; a suggestion is a current
    (not deprecated) model of the *same provider and the same line* (gpt-4o -> gpt-4o-mini, claude-3-5-sonnet ->
    claude-3-5-haiku, gemini-1.5-pro -> gemini-1.5-flash, o3 -> o3-mini, gpt-5 -> gpt-5-mini), of a smaller size,
    whose context window is at least the current model's (or the largest recorded call, when that is unknown), and
    that costs at least 20% less on the recorded tokens (``MIN_SAVING``; both priced the same way, with the
    per-million-token prices on the summed usage and any per-request fee per call). Of several, the nearest step
    down is suggested (gpt-4.1 -> gpt-4.1-mini rather than -nano). Models without a known price or line get no
    row: no recommendation is made where none is known. Prices are those in force at ``now`` (default: the
    tracker's clock, else the current time).

    Example::

        >>> recommendations(tracker)[["resource", "model", "suggested_model", "saving"]]
                  resource   model suggested_model  saving
        0  summarize-ticket  gpt-4o     gpt-4o-mini   11.66
    """
    import pandas as pd

    columns = ["resource", "model", "suggested_model", "cost", "projected_cost", "saving", "reason"]
    with _source(source) as src:
        moment = to_utc(now, "now") if now is not None else to_utc(src.clock(), "clock()")
        tokens = ", ".join(f"CAST(sum({c}) AS BIGINT) AS {c}" for c in TOKEN_COLUMNS)
        found = src.sql(
            f"SELECT resource, model, provider, count(*) AS calls, sum(amount) AS cost, {tokens}, "
            "CAST(max(input_tokens + output_tokens) AS BIGINT) AS largest "
            "FROM _e WHERE model IS NOT NULL GROUP BY ALL HAVING sum(amount) > 0 "
            "ORDER BY sum(amount) DESC, resource ASC NULLS LAST, model"
        )
    rows = []
    for rec in found.itertuples(index=False):
        usage = Usage(
            int(rec.input_tokens),
            int(rec.output_tokens),
            int(rec.cache_read_tokens),
            int(rec.cache_write_tokens),
            int(rec.reasoning_tokens),
        )
        model = _text(rec.model)
        if model is None:
            continue
        suggestion = _suggest(model, _text(rec.provider), usage, int(rec.calls), int(rec.largest), moment)
        if suggestion is None:
            continue
        suggested, projected, reason = suggestion
        cost = to_money(rec.cost)
        rows.append(
            (_text(rec.resource), model, suggested, float(cost), float(projected), float(cost - projected), reason)
        )
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame = frame.sort_values("saving", ascending=False, kind="stable").reset_index(drop=True)
    for column in ("resource", "model", "suggested_model", "reason"):
        frame[column] = frame[column].astype(object)
    for column in ("cost", "projected_cost", "saving"):
        frame[column] = frame[column].astype("float64")
    return frame


# ---------------------------------------------------------------------------------------------------------------
# Export

_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_CHUNK = 100_000  # rows per read while exporting

# One entry per row, as text where text keeps it exact: amount without trailing zeros, timestamps in ISO 8601 UTC.
_EXPORT_SELECT = (
    "SELECT id, strftime(timezone('UTC', timestamp), '%Y-%m-%dT%H:%M:%S.%fZ') AS timestamp, "
    "rtrim(rtrim(CAST(amount AS VARCHAR), '0'), '.') AS amount, currency, category, resource, description, "
    "model, provider, " + ", ".join(TOKEN_COLUMNS) + ", latency_ms, CAST(to_json(tags) AS VARCHAR) AS tags, pricing"
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


def _chunks(src: _Source) -> tuple[int, list[tuple[datetime, datetime]]]:
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


def _csv_value(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _json_record(row: Sequence[Any]) -> str:
    parts = []
    for name, value in zip(COLUMNS, row, strict=True):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            text = "null"
        elif name == "amount":
            text = str(value)  # exact decimal text as a JSON number: json.loads(..., parse_float=Decimal) keeps it
        elif name == "tags":
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
    with _source(source) as src:
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


def _pages(src: _Source, ranges: Iterable[tuple[datetime, datetime]]) -> Iterable[list[tuple[Any, ...]]]:
    for start, end in ranges:
        page = src.sql(
            f"{_EXPORT_SELECT} FROM _e WHERE timestamp >= ? AND timestamp < ? ORDER BY _e.timestamp, id",
            [start, end],
        )
        yield list(page.itertuples(index=False, name=None))


def _write(
    src: _Source,
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
                writer.writerows([[_csv_value(v) for v in row] for row in rows])
                written += len(rows)
                if progress is not None:
                    progress(written, total)
        else:
            out.write("[")
            for rows in _pages(src, ranges):
                for row in rows:
                    out.write(",\n" if written else "\n")
                    out.write(_json_record(row))
                    written += 1
                if progress is not None:
                    progress(written, total)
            out.write("\n]\n" if written else "]\n")
    return written


def _write_parquet(
    src: _Source,
    tmp: Path,
    total: int,
    ranges: list[tuple[datetime, datetime]],
    progress: Callable[[int, int], object] | None,
) -> int:
    import duckdb
    import pandas as pd

    from .stores._schema import ENTRIES_DDL

    written = 0
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(ENTRIES_DDL)
        cast = (
            "SELECT id, CAST(timestamp AS TIMESTAMPTZ), CAST(amount AS DECIMAL(38, 18)), currency, category, "
            "resource, description, model, provider, "
            + ", ".join(f"CAST({c} AS BIGINT)" for c in TOKEN_COLUMNS)
            + ", CAST(latency_ms AS DOUBLE), CAST(CAST(tags AS JSON) AS MAP(VARCHAR, VARCHAR)), pricing FROM page"
        )
        for rows in _pages(src, ranges):
            page = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
            for column in page.columns:
                if page[column].dtype == object:
                    page[column] = page[column].where(page[column].notna(), None)
            con.register("page", page)
            con.execute(f"INSERT INTO entries {cast}")
            con.unregister("page")
            written += len(rows)
            if progress is not None:
                progress(written, total)
        literal = "'" + str(tmp).replace("'", "''") + "'"  # the user's own path, quoted as an SQL string
        con.execute(f"COPY (SELECT * FROM entries ORDER BY timestamp, id) TO {literal} (FORMAT parquet)")
    finally:
        con.close()
    return written
