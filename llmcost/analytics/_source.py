"""The source adapter: a tracker, a store or a frame, as something that answers DuckDB SQL over its entries.

Every analytics function, the reports and the command line run their SQL through a ``Source``, so that the same
query gives the same answer whatever holds the entries. A store answers through ``CostStore.query``; a frame from
``CostTracker.frame()`` or ``CostStore.scan()`` is loaded into an in-memory DuckDB first.

Example::

    >>> with as_source(tracker) as src:
    ...     src.where(since=datetime(2024, 5, 14)).sql("SELECT count(*) AS n, sum(amount) AS spent FROM _e")
        n    spent
    0  48  14.0432
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from .._entry import to_category, to_tags
from .._money import to_money, to_utc
from .._rows import COLUMNS, TOKEN_COLUMNS, cast_select
from .._time import parse_when
from .._tracker import CostTracker
from ..stores._base import CostStore
from ..stores._filters import NO_FILTERS, Filters

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MODEL_SQL", "Source", "as_source", "frame_as_raw"]

#: The model an entry counts under wherever analytics group by model: the catalog's id where there is one
#: (``gpt-4o-mini-2024-07-18`` under ``gpt-4o-mini``), else the id as recorded.
MODEL_SQL = "coalesce(canonical_model, model)"


class Source:
    """Any source, as something that answers DuckDB SQL over its entries (optionally filtered).

    ``sql(body, params)`` runs ``WITH _e AS (SELECT * FROM entries WHERE <filters>) <body>``: ``body`` reads the
    relation ``_e`` (and may start with ``, name AS (...)`` to add CTEs). Values always travel as parameters.
    ``clock`` is the tracker's clock for a tracker, else the current UTC time. A source made from a frame owns an
    in-memory DuckDB connection: use it as a context manager (or ``close()`` it).

    Example::

        >>> with as_source(store) as src:
        ...     src.sql("SELECT model, sum(amount) AS spent FROM _e WHERE canonical_model = ? GROUP BY model",
        ...             ["gpt-4o"])
                       model spent
        0  gpt-4o-2024-08-06  5.18
    """

    def __init__(
        self,
        run: Callable[[str, list[Any]], pd.DataFrame],
        clock: Callable[[], datetime],
        *,
        conditions: tuple[str, ...] = (),
        params: tuple[Any, ...] = (),
        close: Callable[[], None] | None = None,
        bounds: tuple[datetime | None, datetime | None] = (None, None),
        store: CostStore | None = None,
        filters: Filters | None = NO_FILTERS,
    ) -> None:
        self._run = run
        self.clock = clock
        self._conditions = conditions
        self._params = params
        self._close = close
        self._bounds = bounds
        #: The store whose entries this source reads (``None`` for a frame): analytics asks it to answer a query
        #: itself where it can (``PostgresStore.spend_groups``).
        self.store = store
        self._filters = filters

    def filters(self) -> Filters | None:
        """This source's narrowing (``where``'s since, until, tags, category and resource) as store ``Filters``, for
        a store that answers a query itself; ``None`` when one ``Filters`` cannot say it (two values of one tag key).

        >>> as_source(store).where(category="compute").filters().category
        frozenset({'compute'})
        """
        return self._filters

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """The ``(since, until)`` this source is narrowed to by ``where`` (``None``: open on that side).

        >>> as_source(store).where(since="2024-05-01").bounds()
        (datetime.datetime(2024, 5, 1, 0, 0, tzinfo=datetime.timezone.utc), None)
        """
        return self._bounds

    def sql(self, body: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """The frame ``body`` gives over this source's (filtered) entries, the relation ``_e``."""
        where = " AND ".join(self._conditions) or "TRUE"
        return self._run(f"WITH _e AS (SELECT * FROM entries WHERE {where}) {body}", [*self._params, *params])

    def where(
        self,
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        tags: Mapping[str, str] | None = None,
        category: str | None = None,
        resource: str | None = None,
    ) -> Source:
        """This source narrowed to ``since <= timestamp < until``, entries carrying every tag in ``tags``, and (when
        given) that ``category`` and ``resource``.

        ``since`` and ``until`` take the forms of the command line (``llmcost._time.parse_when``): datetimes (naive
        is UTC), ``date`` objects (UTC midnight), text dates (an ``until`` of ``"2024-05-31"`` includes that whole
        day, as ``--until`` does), ISO datetimes, ``"today"``,
        ``"yesterday"``, or a span before this source's clock (``"7d"``, ``"24h"``).

        The narrowed source shares this one's connection and does not close it; ``where()`` with no filter is a
        view of this source that leaves the connection to its owner.
        """
        conditions = list(self._conditions)
        params = list(self._params)
        start, end = self._bounds
        if since is not None:
            moment = _moment(since, "since", self.clock)
            conditions.append("timestamp >= ?")
            params.append(moment)
            start = moment if start is None else max(start, moment)
        if until is not None:
            moment = _moment(until, "until", self.clock, end_of_day=True)
            conditions.append("timestamp < ?")
            params.append(moment)
            end = moment if end is None else min(end, moment)
        for key, value in to_tags(tags).items():
            conditions.append("tags[?] = ?")
            params.extend((key, value))
        if category is not None:
            conditions.append("category = ?")
            params.append(to_category(category).value)
        if resource is not None:
            conditions.append("resource = ?")
            params.append(resource)
        narrowed = _narrowed(self._filters, (start, end), tags, category, resource)
        return Source(
            self._run,
            self.clock,
            conditions=tuple(conditions),
            params=tuple(params),
            bounds=(start, end),
            store=self.store,
            filters=narrowed,
        )

    def copied(self) -> Source:
        """This source over a copy of its entries taken now, in an in-memory DuckDB, where its store copies every
        entry for each query (``CostStore.query_copies``: a MemoryStore, a PostgresStore) and the view is one
        ``Filters`` can say; else a view of this source as it is. For a caller about to query it many times (an export
        reads it a chunk at a time): one copy, not one per query. Close it after use.

        >>> with as_source(llmcost.MemoryStore()).copied() as src:
        ...     src.sql("SELECT count(*) AS n FROM _e")["n"].item()
        0
        """
        store, filters = self.store, self._filters
        if store is None or filters is None or not store.query_copies:
            return self.where()
        wanted = {f.name: getattr(filters, f.name) for f in attrs.fields(Filters)}
        frame = store.scan(**{name: value for name, value in wanted.items() if value is not None})
        return _frame_source(frame, clock=self.clock, bounds=self._bounds)

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _narrowed(
    filters: Filters | None,
    bounds: tuple[datetime | None, datetime | None],
    tags: Mapping[str, str] | None,
    category: str | None,
    resource: str | None,
) -> Filters | None:
    """``filters`` narrowed as ``Source.where`` narrows its SQL (``None``: not expressible as one ``Filters``)."""
    if filters is None:
        return None
    try:
        wanted = dict(filters.tags or {})
        for key, tag in to_tags(tags).items():
            if wanted.setdefault(key, tag) != tag:
                return None  # tags[k] = a AND tags[k] = b: only the SQL says it (with no rows)
        changes: dict[str, Any] = {"since": bounds[0], "until": bounds[1], "tags": wanted or None}
        # One value per call; the sets intersect as the SQL's ANDed conditions do.
        for field, one in (("category", category), ("resource", resource)):
            if one is not None:
                mine = getattr(Filters(**{field: one}), field)
                have = getattr(filters, field)
                changes[field] = mine if have is None else have & mine
        return attrs.evolve(filters, **changes)
    except (TypeError, ValueError):  # a value Filters does not take: the SQL path answers
        return None


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _moment(value: object, field: str, clock: Callable[[], datetime], *, end_of_day: bool = False) -> datetime:
    if isinstance(value, str):
        return parse_when(value, now=to_utc(clock(), "clock()"), end_of_day=end_of_day, field=field)
    if isinstance(value, date) and not isinstance(value, datetime):  # a date object is its midnight, as before
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return to_utc(value, field)  # type: ignore[arg-type]


def as_source(source: object) -> Source:
    """Adapt ``source`` (a ``CostTracker``, flushed first; a ``CostStore``; a frame; or a ``Source``) to ``Source``.

    A ``Source`` given comes back as a view that does not close the original's connection.

    Example::

        >>> with as_source(tracker.frame(category="compute")) as src:
        ...     src.sql("SELECT count(*) AS n, sum(amount) AS spent FROM _e")
            n                  spent
        0  10  24.000000000000000000
    """
    if isinstance(source, Source):
        return source.where()
    if isinstance(source, CostTracker):
        source.flush()
        return Source(_store_runner(source.store), source.clock, store=source.store)
    if isinstance(source, CostStore):
        return Source(_store_runner(source), _utc_now, store=source)
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


def _frame_source(
    frame: pd.DataFrame,
    *,
    clock: Callable[[], datetime] = _utc_now,
    bounds: tuple[datetime | None, datetime | None] = (None, None),
) -> Source:
    """A frame from ``frame()``/``scan()`` loaded into an in-memory DuckDB with the canonical column types (``clock``
    and ``bounds``: those of the source it was copied from, if any)."""
    import duckdb

    table = frame_as_raw(frame)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # naive timestamps in the frame are UTC, as everywhere in llmcost
        con.register("raw", table)
        con.execute(f"CREATE TEMP TABLE entries AS {cast_select('raw')}")
        con.unregister("raw")
    except BaseException:
        con.close()
        raise

    def run(sql: str, params: list[Any]) -> pd.DataFrame:
        return _fetch(con.execute(sql, params))

    return Source(run, clock, close=con.close, bounds=bounds)


def frame_as_raw(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame from ``frame()``/``scan()`` as text rows ``_rows.cast_select("raw")`` reads: every column of
    ``COLUMNS``, missing ones filled with their defaults, ``amount`` as exact decimal text and ``tags`` as JSON text.

    Example::

        >>> frame_as_raw(tracker.frame())[["amount", "tags"]].iloc[0].tolist()
        ['0.0036', '{"team": "support"}']
    """
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
    raw["units"] = [json.dumps(_tag_dict(u)) if _tag_dict(u) else None for u in raw["units"]]
    table = pd.DataFrame(raw, columns=list(COLUMNS))
    for column in ("id", "currency", "category", "resource", "description", "model", "provider", "pricing",
                   "units", "service_tier", "canonical_model"):  # fmt: skip
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    return table


def _tag_dict(value: object) -> dict[str, str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    if isinstance(value, str):
        return dict(json.loads(value)) if value else {}
    if isinstance(value, Mapping):
        return dict(value)
    return dict(value)  # type: ignore[call-overload]  # DuckDB map rows: [(key, value), ...]


def _fetch(result: Any) -> pd.DataFrame:
    import pandas as pd

    names = [d[0] for d in result.description]
    return pd.DataFrame.from_records(result.fetchall(), columns=names)
