"""The ``CostStore`` contract: the few methods a backend implements, and the queries built on them."""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._entry import CostEntry
from .._money import MAX_AMOUNT, MIN_AMOUNT, ZERO, tidy, to_money
from .._summary import CostSummary, summarize
from ._filters import NO_FILTERS, Filters
from ._lease import Acknowledging, close_leases
from ._ledger import BudgetScope, LeaseTerms, Ledger, LocalLedger, Renewal, Reservation, Standing

if TYPE_CHECKING:
    import pandas as pd

    from .._rows import FieldColumns

__all__ = ["CostStore", "Filters"]

_LEDGER_LOCK = threading.Lock()  # makes each store's ledger once


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
    #: Whether every ``query`` copies all of the store's entries into DuckDB first (a MemoryStore's rows, a PostgreSQL
    #: table): a caller about to query one view many times takes one copy instead (``Source.copied``).
    query_copies: bool = False
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

    def append_columns(self, columns: FieldColumns) -> None:
        """``append`` of the entries ``columns`` holds (a buffered tracker keeps its entries as columns). The
        default builds the entries and appends them; a store that can write the columns as they are overrides it.
        """
        self.append(columns.entries())

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
        """The exact total ``amount`` of entries that pass ``filters``, in ``tidy``'s form (``4``, not ``4.0``)."""
        # One form for every store (the memory store's Decimal sum said 4.0 and 2.0E-17 where DuckDB said 4, 2E-17).
        return tidy(self._total(Filters(**filters)))

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

    # -- the budget ledger ------------------------------------------------------------------------------------
    # Period budgets reserve through these, so the limit holds for every process that shares the store. A backend
    # gets an in-process ledger for free; one that several processes share overrides ``open_ledger``.

    def open_ledger(self) -> Ledger:
        """Make this store's budget ledger (called once, on first use; see ``stores._ledger``).

        The default keeps the ledger in this process and reads recorded spend with ``total()``: right for a store
        only this process writes. A store several processes share returns a ledger they all see (DuckDB and
        Parquet stores: a SQLite file beside the store).
        """
        return LocalLedger(self.total)

    def ledger(self) -> Ledger:
        """This store's budget ledger, made by ``open_ledger`` on first use. A store opened read-only cannot write
        a shared ledger: it gets one of its own process, which sees the recorded spend but not other processes'
        open reservations (enough to read budgets; such a process cannot record anyway)."""
        made = getattr(self, "_ledger_made", None)
        if made is None:
            with _LEDGER_LOCK:
                made = getattr(self, "_ledger_made", None)
                if made is None:
                    made = self._ledger_made = LocalLedger(self.total) if self.read_only else self.open_ledger()
        return made

    def reserve(self, scope: BudgetScope, amount: Decimal, *, limit: Decimal, force: bool = False) -> Reservation:
        """Reserve ``amount`` for a call in ``scope``, atomically, if ``limit`` covers it.

        ``limit`` is compared with the scope's recorded spend in the store, plus amounts settled but not yet
        written, plus every process's open reservations. The answer says whether it was ``granted`` and where the
        scope stood before it. ``force``: reserve even past the limit (a budget that only warns).

        Example::

            scope = BudgetScope("name:nightly", since=day_start, until=day_end, resource="summarize")
            r = store.reserve(scope, Decimal("0.02"), limit=Decimal("5"))
            if not r.granted:
                raise BudgetExceeded("nightly", r.spent, Decimal("5"), Decimal("0.02"), r.reserved)
        """
        _check_scope(scope)
        amount = _money_arg(amount, "amount")
        if not ZERO <= amount < MAX_AMOUNT:  # (a negative one would raise the room left for every process)
            raise ValueError(f"amount must be zero or more and below 10**20, got {amount!r}")
        return self.ledger().reserve(scope, amount, limit=_money_arg(limit, "limit"), force=force)

    def settle(
        self,
        scope: BudgetScope,
        amount: Decimal,
        *,
        reservation: Reservation | None = None,
        entry_id: str | None = None,
    ) -> Standing:
        """Count the actual ``amount`` of a call in ``scope`` in place of its ``reservation`` (if any).

        Other processes see it at once. With ``entry_id`` it is kept until the entry is written to this store (then
        the store's own total has it); with ``None`` (an entry that went to another store) until the period ends.
        Returns where the scope stands after it.

        Example::

            standing = store.settle(scope, entry.amount, reservation=r, entry_id=entry.id)
        """
        _check_scope(scope)
        amount = _stored_arg(amount, "amount")
        if reservation is not None:
            _check_reservation(reservation)
        if entry_id is not None and not isinstance(entry_id, str):
            raise TypeError(f"entry_id must be a str or None, got {entry_id!r}")
        return self.ledger().settle(scope, amount, reservation=reservation, entry_id=entry_id)

    def release(self, reservation: Reservation) -> None:
        """Drop ``reservation``: the call failed or recorded nothing that counts. A no-op if already gone.

        Example::

            try:
                response = client.chat.completions.create(...)
            except Exception:
                store.release(r)
                raise
        """
        _check_reservation(reservation)
        self.ledger().release(reservation)

    def settle_batch(
        self,
        scope: BudgetScope,
        amounts: Mapping[str, Decimal],
        *,
        elsewhere: Decimal = ZERO,
        reservation: Reservation | None,
        keep: Decimal,
        renew: LeaseTerms | None,
        limit: Decimal,
        before: Callable[[], object] | None = None,
    ) -> Renewal:
        """In one atomic step: count ``amounts`` (calls' amounts by entry id, each as ``settle`` would with that
        ``entry_id``) and ``elsewhere`` (the sum of amounts whose entries went to another store, as ``settle`` would
        with none), drop ``reservation`` (a lease) and reserve ``keep`` plus the headroom ``renew`` gets under
        ``limit`` (none without ``renew``). How a budget's lease is settled and renewed (see ``stores._lease``); only
        for a ledger whose ``leases`` is true. ``amounts`` is neither changed nor kept; ``before`` is called first,
        under the ledger's lock (see ``Ledger.settle_batch``).

        Example::

            renewal = store.settle_batch(scope, {entry.id: entry.amount}, reservation=lease, keep=Decimal(0),
                                         renew=LeaseTerms(Decimal("0.16"), Decimal("0.0025")), limit=Decimal("10"))
        """
        _check_scope(scope)
        if reservation is not None:
            _check_reservation(reservation)
        if not isinstance(amounts, Mapping):
            raise TypeError(f"amounts must be a mapping of entry id to amount, got {amounts!r}")
        if amounts and not set(map(type, amounts.values())) <= {Decimal}:  # (a lease's: Decimals all, one pass in C)
            amounts = {entry_id: _stored_arg(amount, f"amounts[{entry_id!r}]") for entry_id, amount in amounts.items()}
        keep = _money_arg(keep, "keep")
        if not ZERO <= keep < MAX_AMOUNT:
            raise ValueError(f"keep must be zero or more and below 10**20, got {keep!r}")
        return self.ledger().settle_batch(
            scope,
            amounts,
            elsewhere=_stored_arg(elsewhere, "elsewhere"),
            reservation=reservation,
            keep=keep,
            renew=renew,
            limit=_money_arg(limit, "limit"),
            before=before,
        )

    def standing(self, scope: BudgetScope, *, refresh: bool = False) -> Standing:
        """Where ``scope`` stands: ``spent`` (recorded plus settled) and ``reserved`` (open, every process);
        ``refresh`` reads the recorded spend from the store first.

        Example::

            print(store.standing(scope).spent)
        """
        _check_scope(scope)
        return self.ledger().standing(scope, refresh=refresh)

    def writing(self, columns: FieldColumns) -> AbstractContextManager[None]:
        """Around the append of the entries ``columns`` holds (a tracker's writer appends inside it, and acknowledges
        them after it): the ledger learns that they are in the store the moment the append returns, so a reading of
        recorded spend before their acknowledgement counts each of them once (see ``Ledger.writing``). A no-op while
        no budget uses the ledger.

        Example::

            with store.writing(batch):
                store.append_columns(batch)
            store.acknowledge_columns(batch)
        """
        made = self.current_ledger()
        return contextlib.nullcontext() if made is None else made.writing(columns.column("id"))

    def acknowledge(self, entries: Sequence[CostEntry]) -> None:
        """Tell the ledger that ``entries`` are now in this store (trackers call it after each write), so their
        settled amounts give way to the recorded ones. A no-op while no budget uses the ledger.

        Example::

            store.append(batch)
            store.acknowledge(batch)
        """
        made = self.current_ledger()
        if made is not None:
            self._acknowledge(made, [entry.id for entry in entries], lambda: entries)

    def acknowledge_columns(self, columns: FieldColumns) -> None:
        """``acknowledge`` of the entries ``columns`` holds (a tracker's writer calls it after each write): the leases
        and a ledger that acknowledges by id (``Ledger.by_id``) read only the entries' ids, so no ``CostEntry`` is
        built for them; another ledger gets the entries. A store that overrides ``acknowledge`` gets its entries from
        the tracker instead."""
        made = self.current_ledger()
        if made is not None:
            self._acknowledge(made, columns.column("id"), columns.entries)

    def set_aside_counted(self, entries: Sequence[CostEntry]) -> None:
        """Tell the ledger that ``entries``, of a batch being written, were set aside rather than stored (the store
        refused them, see ``set_aside``): their calls' money was spent all the same, so what budgets settled for them
        keeps counting until their period ends, and the acknowledgement of their batch leaves them out (else it
        would drop their settled amounts, and nothing in the store would count them). A no-op while no budget uses
        the ledger. ``append_or_set_aside`` calls it for the entries it sets aside, and a store that sets entries
        aside inside ``append`` calls it for those.

        Example::

            store.set_aside([entry], "PostgreSQL cannot hold text with a NUL character")
            store.set_aside_counted([entry])
        """
        made = self.current_ledger()
        if made is not None and entries:
            made.set_aside_ids([entry.id for entry in entries])

    def _acknowledge(self, made: Ledger, ids: Sequence[str], entries: Callable[[], Sequence[CostEntry]]) -> None:
        """``acknowledge`` of the entries ``ids`` (``entries()`` builds them, for a ledger that takes entries).

        The ledger first, told what this process's leases hold of them for their next batches (it never had those
        amounts; a ledger that cannot read the store counts them from then on), and the leases after it has them:
        a lease's batch between the two settles them as any entry written before its settlement (the ledger knows
        they are written), where telling the leases first let a batch drop them before the ledger counted them.
        What the leases hold is looked at under the ledger's lock (``Acknowledging``). If the ledger's step fails,
        the leases are not told: their batch settles them, as written.

        Entries set aside during the write (``set_aside_counted``) are not in the store: left out, for the ledger and
        the leases alike, whose batches settle them then as any entry not written."""
        aside = made.aside(ids)
        if aside:
            ids = [i for i in ids if i not in aside]
            built = entries
            entries = lambda: [entry for entry in built() if entry.id not in aside]  # noqa: E731
        acking = Acknowledging(self, ids)
        if made.by_id:
            made.acknowledge_ids(ids, leased=acking.held, counted=acking.tell)
        else:
            made.acknowledge(entries())
        acking.tell()  # (once: for a ledger that did not call it, or takes entries)

    def close_ledger(self) -> None:
        """Settle and release this process's budget leases on the store, then release the ledger's files and threads
        (stores call it from ``close``; it reopens on next use)."""
        made = self.current_ledger()
        if made is not None:
            close_leases(self)
            made.close()

    def current_ledger(self) -> Ledger | None:
        """The ledger if one was made (``None`` while no budget has used this store)."""
        return getattr(self, "_ledger_made", None)

    # -- context manager ----------------------------------------------------------------------------------------
    def __enter__(self) -> CostStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


# The ledger's public entry points check their arguments here (the budgets' calls pass checked Decimals: for them it
# is a type check or two, against a ledger step that costs a transaction), so bad input gets an error naming the
# field and the value, the same on every store, rather than a bare TypeError, an InvalidOperation, or a reservation
# of -1 that raised the room left for every process.
def _money_arg(value: object, field: str) -> Decimal:
    """``value`` as money: a finite ``Decimal`` as it is, anything else through ``to_money`` (a float by ``str()``),
    which names ``field`` and the value when it is no amount (``None``, ``"abc"``, NaN, infinity)."""
    if type(value) is Decimal and value.is_finite():
        return value
    return to_money(value, field)


def _stored_arg(value: object, field: str) -> Decimal:
    """``_money_arg`` of an amount the ledger keeps as stores keep amounts: below 10**20 in magnitude."""
    amount = _money_arg(value, field)
    if not MIN_AMOUNT < amount < MAX_AMOUNT:
        raise ValueError(f"{field} must be below 10**20 in magnitude (stores keep DECIMAL(38, 18)), got {value!r}")
    return amount


def _check_scope(scope: object) -> None:
    if not isinstance(scope, BudgetScope):
        raise TypeError(f"scope must be a llmcost.stores.BudgetScope, got {scope!r}")


def _check_reservation(reservation: object) -> None:
    if not isinstance(reservation, Reservation):
        raise TypeError(f"reservation must be a Reservation (what reserve returned), got {reservation!r}")


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
