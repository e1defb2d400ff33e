"""The ``CostStore`` contract and the ``Filters`` every query takes."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from .._entry import CostEntry, FrozenTags, to_category, to_tags
from .._money import to_utc

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CostStore", "Filters"]


def _names(field: str, value: object) -> frozenset[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable):
        raise TypeError(f"{field} must be a str or a collection of str, got {value!r}")
    out = []
    for item in items:
        if field == "category":
            out.append(to_category(item).value)
        elif isinstance(item, str):
            out.append(item)
        else:
            raise TypeError(f"{field} must be a str or a collection of str, got {value!r}")
    return frozenset(out)


def _categories(value: object) -> frozenset[str] | None:
    return _names("category", value)


def _resources(value: object) -> frozenset[str] | None:
    return _names("resource", value)


def _models(value: object) -> frozenset[str] | None:
    return _names("model", value)


def _providers(value: object) -> frozenset[str] | None:
    return _names("provider", value)


def _since(value: object) -> datetime | None:
    return None if value is None else to_utc(value, "since")  # type: ignore[arg-type]


def _until(value: object) -> datetime | None:
    return None if value is None else to_utc(value, "until")  # type: ignore[arg-type]


def _tag_filter(value: object) -> FrozenTags | None:
    return None if value is None else to_tags(value)


def _limit(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"limit must be a non-negative int or None, got {value!r}")
    return value


@attrs.frozen
class Filters:
    """Which entries a query covers. Every field is optional; set fields must all match.

    ``since`` is inclusive and ``until`` exclusive. ``category``, ``resource``, ``model`` and ``provider`` take one
    value or a collection of values (any of them matches). ``tags`` matches entries that carry every given key with
    the given value. ``limit`` keeps the first rows in time order.

    Example::

        Filters(since=datetime(2024, 5, 1), category="llm_inference", tags={"team": "search"})
    """

    since: datetime | None = attrs.field(default=None, converter=_since)
    until: datetime | None = attrs.field(default=None, converter=_until)
    category: frozenset[str] | None = attrs.field(default=None, converter=_categories)
    resource: frozenset[str] | None = attrs.field(default=None, converter=_resources)
    model: frozenset[str] | None = attrs.field(default=None, converter=_models)
    provider: frozenset[str] | None = attrs.field(default=None, converter=_providers)
    tags: FrozenTags | None = attrs.field(default=None, converter=_tag_filter)
    limit: int | None = attrs.field(default=None, converter=_limit)

    def matches(self, entry: CostEntry) -> bool:
        """Whether ``entry`` passes every filter but ``limit``."""
        if self.since is not None and entry.timestamp < self.since:
            return False
        if self.until is not None and entry.timestamp >= self.until:
            return False
        if self.category is not None and entry.category.value not in self.category:
            return False
        if self.resource is not None and entry.resource not in self.resource:
            return False
        if self.model is not None and entry.model not in self.model:
            return False
        if self.provider is not None and entry.provider not in self.provider:
            return False
        if self.tags:
            tags = entry.tags
            for key, value in self.tags.items():
                if tags.get(key) != value:
                    return False
        return True

    @property
    def is_empty(self) -> bool:
        """True when no filter is set (``limit`` included)."""
        return self == _NO_FILTERS


_NO_FILTERS = Filters()


class CostStore(abc.ABC):
    """Where entries and budget definitions are kept. Subclass it for a new backend.

    A backend implements ``append``, ``_entries``, ``_total``, ``close`` and the three budget-definition methods;
    ``scan``, ``entries``, ``total`` and ``query`` take keyword filters (see ``Filters``) and are built on those.
    DuckDB-backed stores override ``_scan``, ``_total`` and ``query`` to push the work into SQL.

    Example::

        store = llmcost.open_store("duckdb:///var/lib/costs.duckdb")
        store.total(since=datetime(2024, 5, 1), tags={"team": "search"})
    """

    #: The URL ``open_store`` understands for this store (``memory://`` and the like).
    url: str = ""
    #: Whether trackers should batch entries for this store (writes are costly) or hand over each one at once.
    buffered: bool = True

    # -- writing ------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def append(self, entries: Sequence[CostEntry]) -> None:
        """Add ``entries``. When this returns, they are acknowledged: durable stores have them on disk."""

    def flush(self) -> None:  # noqa: B027 - optional hook, a no-op for stores that do not buffer
        """Write out anything the store itself holds in memory (a no-op for most stores)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release files and connections; the store may be opened again later."""

    # -- reading ------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _entries(self, filters: Filters) -> list[CostEntry]:
        """Entries that pass ``filters``, in (timestamp, id) order, at most ``filters.limit`` of them."""

    @abc.abstractmethod
    def _total(self, filters: Filters) -> Decimal:
        """The exact sum of ``amount`` over entries that pass ``filters``."""

    def _scan(self, filters: Filters) -> pd.DataFrame:
        from ._schema import entries_to_frame

        return entries_to_frame(self._entries(filters))

    def entries(self, **filters: Any) -> list[CostEntry]:
        """Entries that pass the keyword ``filters`` (see ``Filters``), oldest first."""
        return self._entries(Filters(**filters))

    def scan(self, **filters: Any) -> pd.DataFrame:
        """Entries that pass ``filters`` as a pandas frame, one row per entry, with the columns of
        ``llmcost.stores.COLUMNS``; ``amount`` holds exact ``Decimal`` values."""
        return self._scan(Filters(**filters))

    def total(self, **filters: Any) -> Decimal:
        """The exact total ``amount`` of entries that pass ``filters``."""
        return self._total(Filters(**filters))

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run DuckDB ``sql`` against a relation named ``entries`` holding this store's rows.

        ``amount`` is ``DECIMAL(38, 18)`` and ``tags`` a ``MAP(VARCHAR, VARCHAR)``; pass values as ``params``
        (``?`` or ``$name`` placeholders), never by formatting them into ``sql``. DECIMAL results come back as
        ``Decimal`` objects (cast to DOUBLE in SQL for floats).

        Example::

            store.query("SELECT model, sum(amount) AS cost FROM entries WHERE timestamp >= ? GROUP BY model",
                        [since])
        """
        import duckdb

        from ._schema import SQL_SELECT, sql_frame
        from ._sql import fetch_frame

        raw = sql_frame(self._entries(_NO_FILTERS))  # noqa: F841 - read by DuckDB's replacement scan
        con = duckdb.connect()
        try:
            con.execute(f"CREATE TEMP TABLE entries AS {SQL_SELECT}")
            return fetch_frame(con, sql, params)
        finally:
            con.close()

    # -- budget definitions -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def save_budget(self, name: str, definition: str) -> None:
        """Keep (or replace) the budget definition ``definition`` (JSON text) under ``name``."""

    @abc.abstractmethod
    def load_budgets(self) -> dict[str, str]:
        """Every saved budget definition, by name."""

    @abc.abstractmethod
    def delete_budget(self, name: str) -> bool:
        """Forget the budget ``name``; return whether it existed."""

    # -- context manager ----------------------------------------------------------------------------------------
    def __enter__(self) -> CostStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
