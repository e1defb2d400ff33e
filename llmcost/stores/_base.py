"""The ``CostStore`` contract: the few methods a backend implements, and the queries built on them."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._entry import CostEntry
from .._summary import CostSummary, summarize
from ._filters import NO_FILTERS, Filters

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CostStore", "Filters"]


class CostStore(abc.ABC):
    """Where entries and budget definitions are kept. Subclass it for a new backend.

    A backend implements ``append``, ``_entries``, ``_total``, ``close`` and the three budget-definition methods;
    ``scan``, ``entries``, ``total``, ``summary`` and ``query`` take keyword filters (see ``Filters``) and are built
    on those. DuckDB-backed stores override ``_scan``, ``_summary`` and ``query`` to push the work into SQL.

    Example::

        store = llmcost.open_store("duckdb:///var/lib/costs.duckdb")
        store.total(since=datetime(2024, 5, 1), tags={"team": "search"})
    """

    #: The URL ``open_store`` understands for this store (``memory://`` and the like).
    url: str = ""
    #: Whether trackers should batch entries for this store (writes are costly) or hand over each one at once.
    buffered: bool = True
    #: Whether the store was opened read-only, because this process cannot write it (file permissions, a read-only
    #: mount). Reads work as usual; an ``append`` is spilled (see ``append``), other writes raise ``StoreError``.
    read_only: bool = False

    # -- writing ------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def append(self, entries: Sequence[CostEntry]) -> None:
        """Add ``entries``, all of them or none. When this returns, they are acknowledged: durable stores have them
        on disk, in the store or (when it cannot be written) in a spill file that the next open replays.

        Raises ``StoreError`` when an entry can never be stored (a value beyond the stored types; nothing of the
        batch is added, so the caller can append the others and ``set_aside`` that one), or when the entries could
        be kept nowhere at all.
        """

    def flush(self) -> None:  # noqa: B027 - optional hook, a no-op for stores that do not buffer
        """Write out anything the store itself holds in memory (a no-op for most stores)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release files and connections; the store may be opened again later."""

    # -- entries set aside ------------------------------------------------------------------------------------------
    def set_aside(self, entries: Sequence[CostEntry], reason: str, *, error: BaseException | str | None = None) -> None:
        """Keep ``entries`` that this store could not take, with ``reason`` (and the ``error`` that stopped them),
        so they are never lost. They are not part of the store's entries; ``dead_letters()`` shows them.

        This default keeps them in memory (right for ``MemoryStore``); file stores write an fsynced JSON-lines
        file per call under ``<store path>.dead-letter/`` (or a per-user fallback, see docs/stores.md) and warn of
        them whenever the store is opened. Raises ``StoreError`` only if they can be kept nowhere.

        Example::

            try:
                store.append([entry])
            except llmcost.StoreError as exc:
                store.set_aside([entry], "append refused it", error=exc)
            store.dead_letters()[0]["reason"]     # 'append refused it'
        """
        from ._dead_letter import dead_letter_record

        kept = self.__dict__.setdefault("_dead_letter_records", [])
        kept.extend(dead_letter_record(e, reason, error) for e in entries)

    def dead_letters(self) -> list[dict[str, Any]]:
        """What ``set_aside`` kept: one ``{"reason": str, "error": str | None, "entry": record}`` per entry, where
        ``record`` is the entry's JSON record (column name to value, as ``llmcost.stores.COLUMNS``), or its
        ``repr()`` text where it could not be encoded.

        Example::

            for letter in store.dead_letters():
                print(letter["reason"], letter["entry"]["id"])
        """
        return list(self.__dict__.get("_dead_letter_records", ()))

    # -- reading ------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _entries(self, filters: Filters) -> list[CostEntry]:
        """Entries that pass ``filters``, in (timestamp, id) order, at most ``filters.limit`` of them."""

    @abc.abstractmethod
    def _total(self, filters: Filters) -> Decimal:
        """The exact sum of ``amount`` over entries that pass ``filters``."""

    def _scan(self, filters: Filters) -> pd.DataFrame:
        from .._rows import entries_to_frame

        return entries_to_frame(self._entries(filters))

    def _summary(self, filters: Filters) -> CostSummary:
        return summarize(self._entries(filters), filters.since, filters.until)

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

    def summary(self, **filters: Any) -> CostSummary:
        """Exact totals of the entries that pass ``filters``: overall, by category, resource, model and tag, with
        the calls and tokens; ``start``/``end`` are ``since``/``until``.

        Example::

            store.summary(since=datetime(2024, 5, 1), tags={"team": "search"}).by_model
        """
        return self._summary(Filters(**filters))

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run DuckDB ``sql`` against a relation named ``entries`` holding this store's rows.

        ``amount`` is ``DECIMAL(38, 18)`` and ``tags`` a ``MAP(VARCHAR, VARCHAR)``; pass values as ``params``
        (``?`` or ``$name`` placeholders), never by formatting them into ``sql``. DECIMAL results come back as
        ``Decimal`` objects (cast to DOUBLE in SQL for floats).

        Example::

            store.query("SELECT model, sum(amount) AS cost FROM entries WHERE timestamp >= ? GROUP BY model",
                        [since])
        """
        from .._rows import ingest_columns

        return query_rows(ingest_columns(self._entries(NO_FILTERS)), sql, params)

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


def query_rows(columns: Any, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> pd.DataFrame:
    """Run the user's ``sql`` in a fresh in-memory DuckDB against a table ``entries`` made of ``columns``
    (``_rows.ingest_columns`` arrays): how stores without a DuckDB of their own answer ``query``."""
    import duckdb

    from .._rows import INGEST_SELECT
    from ._sql import fetch_frame, registered

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        with registered(con, columns):
            con.execute(f"CREATE TEMP TABLE entries AS {INGEST_SELECT}")
        return fetch_frame(con, sql, params)
    finally:
        con.close()
