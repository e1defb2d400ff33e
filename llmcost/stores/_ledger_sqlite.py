"""``SqliteLedger``: the budget ledger of a DuckDB or Parquet store, in a small SQLite file beside it.

Why SQLite: it ships with Python, and a ``BEGIN IMMEDIATE`` transaction takes the database's write lock at once,
so a reservation is one atomic check-and-insert for every process on the host, in tens of microseconds (WAL mode,
``synchronous=NORMAL``: readers never block, commits do not fsync). The DuckDB file cannot serve: DuckDB locks it
for a whole process, and a write there costs ~10 ms with a checkpoint. A lock file plus a JSON file would need a
read-modify-write per call and a crash could leave it half written; SQLite's journal makes every step atomic.

Tables: ``accounts`` (one row per budget scope and period: recorded spend as last read from the store, the
acknowledgement generation it was read at, and running sums of reserved and settled amounts), ``holds`` (each open
reservation, ``entry`` NULL; each settled amount awaiting its entry's acknowledgement, ``entry`` its id; and each
lease batch's settled amounts as ONE row, ``entry`` ``'*'``, holding the sum of those not acknowledged yet),
``holders`` (each process with holds and when it was last seen alive), ``meta`` (the acknowledgement generation).

Why one row per batch: a row per settled amount made a batch of 64 calls write 64 index entries and its
acknowledgement delete them again, most of a batch's cost. Which entries a batch row holds, and for how much, only
the process that settled them needs to know (only it acknowledges them): it keeps that in memory (``_Batches``),
and an acknowledgement reduces the row by the amounts of its entries now written, deleting it with the last one.
A process that dies leaves its batch rows as it leaves settled rows: counted until the period's account goes.

An acknowledgement makes recorded spend stale (entries were written): the writer that acknowledges reads the spend
of the scopes its entries were settled in, and of those this process used in the last ``refresh`` seconds, again,
right after the acknowledgement (and after telling the leases: ``counted``) and outside any lock, and stores it
(``_read_after``), so that the next batch (on the calls' path, holding the ledger's lock) need not read the store. The
writer tells the ledger what it wrote by the entries' ids alone (``acknowledge_ids``: no ``CostEntry`` is built).
Where it could not (another acknowledgement came in between, or a batch came before it stored the spend), the next
use reads the spend before its transaction,
outside the lock, and takes it if no acknowledgement came since (``_spend_first``): a store read never holds the
ledger's lock that every process waits for (with several processes writing a DuckDB file it takes 0.2-1 s).

Between a write and its acknowledgement an entry is in the store's total and still settled here. In this process
that never counts it twice: a tracker's writer appends inside ``writing``, which holds ``_store_lock`` across the
append and then marks the batch's ids written (``_written``), and every read of recorded spend takes the same lock
and notes the ids written at that moment (``_recorded``); an account's base is the spend less what the ledger still
holds settled for those ids (``_base``), and a settle of an entry already written adds nothing (as for one already
acknowledged). The acknowledgement then drops the settled amounts, takes the ids out of ``_written`` and bumps the
generation, so the base is read again. What remains: a reading in ANOTHER process (or through another store object
on the same path in this one) does not know this process's ``_written``, so for the instant between this process's
append and its acknowledgement it may count those entries twice (too much spent, never too little: at worst a call is
refused that would have fitted), and keep that base until the acknowledgement bumps the generation. Closing that
would need the mark to be atomic with the store's commit for every process (the ids in the store's own
transaction, or a lock across processes held over each append); neither is simple enough to be safe here. A budget's
``Lease`` keeps the amounts it settled in memory until its next batch and drops them at the acknowledgement
(``stores._lease``): its figures read in the window may count those entries twice as well.

A store that cannot be read (a DuckDB file another program keeps locked, a lost mount: appends spill and are
acknowledged all the same): the accounts count from their last reading. An acknowledgement moves the settled
amounts it drops into the base rather than forgetting them, with what this process's leases held of the written
entries (``leased``), and entries written before they were settled join the base at their settlement; so the base
plus the settled amounts counts each call once until a reading succeeds. The calls' path tries the store again
``refresh`` seconds after a failed read, then less and less often (``_unreadable``), not at every call: each failed
read waits the store's ``retry_timeout``. The writer tells the ledger what the leases held of the written entries
before it tells the leases (``CostStore._acknowledge``), so no lease drops an amount the ledger does not count yet.

Leases: a process renews its ``holders`` row at each reservation and from a heartbeat thread every third of the
lease; a reservation whose holder has not been seen for a lease (it was killed) is released by the next reading of
a scope that counts reservations (``standing``), by the next reservation anyone makes that it would refuse, and
every quarter lease by any reservation (a budget's leased headroom, ``settle_batch``, is one such reservation, swept
alike): no reading counts it after the lease.
Settled amounts are not released that way (the money was spent): they stay until their period's account is
dropped, when a later period of the same budget opens.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from decimal import Decimal, localcontext
from typing import Any, TypeVar

from .. import _state
from .._entry import CostEntry
from .._errors import StoreError
from .._money import ZERO
from .._time import seconds_arg
from ._ledger import (
    DEFAULT_LEASE,
    REFRESH_SECONDS,
    BudgetScope,
    LeaseTerms,
    Ledger,
    Receipts,
    Renewal,
    Reservation,
    Standing,
    filter_kwargs,
    headroom,
    start_heartbeat,
)

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover - Windows: SQLite's busy handler alone orders the processes
    fcntl = None

__all__ = ["SqliteLedger"]

logger = logging.getLogger("llmcost")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    scope TEXT PRIMARY KEY, budget TEXT NOT NULL, since TEXT, filters TEXT NOT NULL,
    base TEXT NOT NULL, gen INTEGER NOT NULL, read_at REAL NOT NULL, reserved TEXT NOT NULL, settled TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_budget ON accounts (budget, since);
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY, scope TEXT NOT NULL, holder TEXT NOT NULL, amount TEXT NOT NULL, entry TEXT
);
CREATE INDEX IF NOT EXISTS holds_holder ON holds (holder, entry);
CREATE TABLE IF NOT EXISTS holders (holder TEXT PRIMARY KEY, seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v REAL NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('gen', 0), ('swept', 0);
"""
_FOREVER = ""  # the entry of a settled amount that no acknowledgement will clear (its entry went to another store)
_BATCH = "*"  # the entry of a lease batch's row (no entry id is "*": ids are hex digits, or given by an importer)
_CHUNK = 500  # ids per IN (...) list
#: At most this many scopes used lately (besides those of the batch rows written) have their spend read at an
#: acknowledgement: each is a query of the store.
_FRESH_USED = 8
#: Scopes whose lease was released that the ledger remembers as such (``_released``), at most.
_RELEASED_KEPT = 10_000
#: The longest wait, in seconds, between two tries to read a store whose spend could not be read (``_unreadable``).
_MOST_UNREADABLE_WAIT = 60.0


_GEN = "SELECT v FROM meta WHERE k = 'gen'"  # the acknowledgement generation

_LOAD = """
SELECT a.base, a.gen, a.read_at, a.reserved, a.settled,
       (SELECT v FROM meta WHERE k = 'gen'), (SELECT v FROM meta WHERE k = 'swept')
FROM (SELECT 1) LEFT JOIN accounts AS a ON a.scope = ?
"""


#: Recorded spend read outside a transaction: ``(acknowledgement generation read before it, when, spend, the ids of
#: this process's entries in it not acknowledged yet)``.
_Spend = tuple[float, float, Decimal, frozenset[str]]
_NONE_WRITTEN: frozenset[str] = frozenset()


class _SpendDue(Exception):
    """(``_load`` with ``defer``) the account's recorded spend is due: read it outside the transaction first."""

    def __init__(self, gen: float) -> None:
        super().__init__(gen)
        self.gen = gen


class _Account:
    """One scope's numbers as read in a transaction (``new``: not in the ledger yet), with the ledger's state."""

    __slots__ = (
        "base",
        "dirty",
        "gen",
        "ledger_gen",
        "new",
        "now",
        "read_at",
        "reserved",
        "scope",
        "settled",
        "swept",
    )

    def __init__(self, scope: BudgetScope, row: tuple[Any, ...], now: float) -> None:
        self.scope = scope
        self.now = now
        self.new = row[0] is None
        self.base = ZERO if self.new else Decimal(row[0])
        self.gen = -1 if self.new else row[1]
        self.read_at = 0.0 if self.new else row[2]
        self.reserved = ZERO if self.new else Decimal(row[3])
        self.settled = ZERO if self.new else Decimal(row[4])
        self.ledger_gen, self.swept = row[5], row[6]
        self.dirty = self.new


class _Batches:
    """Which settled amounts each of this process's batch rows holds: per row, ``[amount, amounts, scope]`` (what it
    holds still, and of which entries: ``{entry id: amount}``, a copy of the lease's mapping).

    Nothing is indexed per entry as a batch settles (on the calls' path): an acknowledgement looks for its written
    entries row by row, with set operations in C over the few rows not yet written whole (a flush writes whole
    batches, so most rows go at once). An entry settled in several scopes is in several rows, each found alike."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: dict[int, list[Any]] = {}

    def add(self, row: int, scope: BudgetScope, amounts: dict[str, Decimal], total: Decimal) -> None:
        """Row ``row`` of ``scope`` holds ``amounts`` (by entry id; kept as it is), ``total`` in all."""
        self.rows[row] = [total, amounts, scope]

    def scopes(self, written: AbstractSet[str]) -> list[BudgetScope]:
        """The scopes of the rows that hold any of the entries ``written``."""
        found = {held[2].key: held[2] for held in self.rows.values() if not held[1].keys().isdisjoint(written)}
        return list(found.values())

    def of_scope(self, key: str) -> set[str]:
        """The entries the rows of the scope with ``key`` hold."""
        return {entry for held in self.rows.values() if held[2].key == key for entry in held[1]}

    def holding(self, written: AbstractSet[str]) -> set[str]:
        """Those of ``written`` that some row holds."""
        found: set[str] = set()
        for held in self.rows.values():
            found.update(held[1].keys() & written)
        return found

    def written(self, written: AbstractSet[str]) -> dict[int, tuple[Decimal, int]]:
        """For the written entries ``written``: per batch row that holds any, the amount and number of its entries
        among them. Changes nothing (``forget`` does)."""
        out: dict[int, tuple[Decimal, int]] = {}
        for row, (amount, amounts, _) in self.rows.items():
            if len(amounts) <= len(written) and amounts.keys() <= written:  # (the usual case: the row written whole)
                out[row] = (amount, len(amounts))
                continue
            hit = amounts.keys() & written
            if hit:
                out[row] = (sum(map(amounts.__getitem__, hit), ZERO), len(hit))
        return out

    def forget(self, written: AbstractSet[str], rows: dict[int, tuple[Decimal, int]]) -> None:
        """``written``'s entries are acknowledged: what ``rows`` (``written``'s answer) held of them goes."""
        held_rows = self.rows
        for row, (amount, n) in rows.items():
            held = held_rows.get(row)
            if held is None:
                continue
            amounts = held[1]
            if n >= len(amounts):
                del held_rows[row]  # its last entries
                continue
            for entry_id in amounts.keys() & written:
                del amounts[entry_id]
            held[0] -= amount

    def held_in(self, key: str, written: AbstractSet[str]) -> Decimal:
        """What the rows of the scope ``key`` hold of the entries ``written``."""
        found = ZERO
        for _, amounts, scope in self.rows.values():
            if scope.key == key and not amounts.keys().isdisjoint(written):
                found += sum(map(amounts.__getitem__, amounts.keys() & written), ZERO)
        return found

    def left(self, row: int) -> tuple[Decimal, int]:
        """What ``row`` holds still: its amount and number of entries."""
        held = self.rows.get(row)
        return (held[0], len(held[1])) if held is not None else (ZERO, 0)


def _holder_id() -> str:
    """This process's name in the ledger: host, pid, and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _exact(method: Callable[..., T]) -> Callable[..., T]:
    """Run ``method`` with a Decimal context that never rounds a sum of amounts."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with localcontext() as ctx:
            ctx.prec = 80
            return method(*args, **kwargs)

    return wrapper


class SqliteLedger(Ledger):
    """A ledger in the SQLite file ``path``, shared by every process on the host that opens it.

    ``total(**filters)`` reads the store's recorded spend; ``lease`` is how long a dead process's reservations are
    kept (seconds); ``refresh`` how often recorded spend is read again without an acknowledgement; ``timeout`` how
    long to wait for the ledger's lock.

    Exact in this process between a write and its acknowledgement (``writing``); a reading in another process in that
    instant may count this process's written entries twice until they are acknowledged, as may a ``Lease``'s figures
    (see the module docstring).

    Example::

        ledger = SqliteLedger("/data/costs.duckdb.ledger", total=store.total, lease=60)
        r = ledger.reserve(scope, Decimal("0.02"), limit=Decimal("1"))
    """

    def __init__(
        self,
        path: str,
        *,
        total: Callable[..., Decimal],
        lease: float = DEFAULT_LEASE,
        refresh: float = REFRESH_SECONDS,
        timeout: float = 120.0,
    ) -> None:
        self.path = path
        self.lease = seconds_arg(lease, "lease")
        self._total = total
        self._refresh = refresh
        self._timeout = timeout
        # A SIGTERM's flush acknowledges written entries here: while the main thread holds this lock (a transaction),
        # the signal waits for it (``FlushLock``), else the flush would wait for a thread that waits for it.
        self._lock = _state.FlushLock(reentrant=True)
        self._con: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._holder = _holder_id()
        self._beating: threading.Event | None = None
        self._renewed = 0.0  # when this process last wrote its holders row
        self._queue_fd: int | None = None
        self.receipts = Receipts()
        # Written entries whose acknowledgement failed, tried again with the next: the ids settled here one by one,
        # and those held by batch rows.
        self._unacknowledged: list[str] = []
        self._unacknowledged_held: set[str] = set()
        self._batches = _Batches()  # what this process's batch rows hold
        #: Reservations whose release failed: released by the next heartbeat that can write the ledger (``beat``).
        self._unreleased: set[int] = set()
        #: The scopes this process used lately, by key, with when (``time.monotonic()``): their recorded spend is read
        #: at each acknowledgement (``_fresh_scopes``), so their next use, on the calls' path, need not read it.
        self._used: dict[str, tuple[BudgetScope, float]] = {}
        #: The scopes whose lease this process released and has not used since, by key: an acknowledgement of
        #: entries their batch rows hold does not read their spend (``_fresh_scopes``); forgotten past
        #: ``_RELEASED_KEPT`` (then read so again: only an acknowledgement's cost changes).
        self._released: set[str] = set()
        #: Held by a tracker's writer across an append and the marking of its entries in ``_written``, and by every
        #: read of recorded spend here: a read sees a batch either not yet in the store or in it and marked.
        self._store_lock = _state.FlushLock(reentrant=True)
        #: The ids of this process's entries that are in the store but not acknowledged here yet (changed under
        #: ``_written_lock``): a reading of recorded spend leaves their settled amounts out (``_base``).
        self._written: set[str] = set()
        self._written_lock = _state.new_lock()
        #: Until when (``time.monotonic()``) the calls' path does not try to read recorded spend again, after a read
        #: failed (0.0: the last read succeeded): see ``_read_spend``.
        self._unreadable_until = 0.0
        self._unreadable_wait = 0.0  # (seconds: the last wait set after a failed read)

    leases = True

    # -- plumbing -----------------------------------------------------------------------------------------------
    def _forked(self) -> None:
        """In a forked child, forget the parent's connection, queue file, holds and heartbeat: none is ours."""
        if self._pid != os.getpid():
            self._con, self._beating, self.receipts, self._renewed = None, None, Receipts(), 0.0
            self._unacknowledged, self._unacknowledged_held, self._batches, self._used = [], set(), _Batches(), {}
            self._written = set()  # (the parent's writer writes those; its locks are free here, see ``_state``)
            self._unreleased, self._released = set(), set()
            self._unreadable_until = 0.0
            self._queue_fd = None  # the parent's open file: an flock on it would be shared with the parent
            self._pid, self._holder = os.getpid(), _holder_id()

    def _connection(self) -> sqlite3.Connection:
        """This process's connection, opened (and the schema made) on first use."""
        self._forked()
        if self._con is None:
            con = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
            try:
                # Switching to WAL does not wait for a lock held by another process opening the file at the same
                # moment: try again for a while (on POSIX the queue's flock already keeps openers apart).
                deadline = time.monotonic() + self._timeout
                while True:
                    try:
                        con.execute("PRAGMA journal_mode=WAL")
                        break
                    except sqlite3.OperationalError as exc:
                        if "locked" not in str(exc) or time.monotonic() > deadline:
                            raise
                        time.sleep(0.01)
                con.execute("PRAGMA synchronous=NORMAL")
                con.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            except BaseException:
                con.close()
                raise
            self._con = con
        return self._con

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: the ledger's write lock for every process, held to the end.

        Processes queue on an ``flock`` of ``<path>-lock`` first (POSIX): the kernel wakes the next one the moment
        the lock is free, where SQLite's own busy handler would sleep a millisecond or more between tries, which
        cuts throughput several times over when processes contend. SQLite's lock stays the guarantee.
        """
        with self._lock:
            queued = None
            try:
                self._forked()
                queued = self._queue()
                con = self._connection()
                con.execute("BEGIN IMMEDIATE")
            except BaseException as exc:
                if queued is not None:
                    fcntl.flock(queued, fcntl.LOCK_UN)
                if isinstance(exc, (OSError, sqlite3.Error)):
                    raise StoreError(f"could not lock the budget ledger {self.path}: {exc}") from exc
                raise
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                raise
            finally:
                if queued is not None:
                    fcntl.flock(queued, fcntl.LOCK_UN)

    def _queue(self) -> int | None:
        """Take this process's place in the queue for the ledger (``None`` where ``flock`` is not available)."""
        if fcntl is None:
            return None
        if self._queue_fd is None:
            self._queue_fd = os.open(self.path + "-lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._queue_fd, fcntl.LOCK_EX)
        return self._queue_fd

    def _load(
        self,
        con: sqlite3.Connection,
        scope: BudgetScope,
        *,
        refresh: bool = False,
        fresh: _Spend | None = None,
        defer: bool = False,
    ) -> _Account:
        """``scope``'s account and the ledger's state, in one query; recorded spend read again when due (the
        account is new, an acknowledgement happened since, it is older than ``refresh`` seconds, or asked): taken
        from ``fresh`` if no acknowledgement came since it was read, else read now or, with ``defer``, left to be read
        outside the transaction (``_SpendDue``: see ``_spend_first``)."""
        row = con.execute(_LOAD, (scope.key,)).fetchone()
        now = time.time()
        account = _Account(scope, row, now)
        if (
            refresh
            or account.new
            or account.gen != account.ledger_gen
            or not 0 <= now - account.read_at <= self._refresh
        ):
            if fresh is not None and not refresh and fresh[0] == account.ledger_gen:
                account.base, account.read_at = self._base(con, scope.key, fresh[2], fresh[3]), fresh[1]
            elif defer and not refresh and not self.spend_unreadable():
                raise _SpendDue(account.ledger_gen)
            else:
                recorded = self._read_spend(scope, now=refresh)
                if recorded is None:
                    # The store cannot be read now: the account counts from its last reading, to which each
                    # acknowledgement since added what it took off the settled amounts (``_to_base``), and stays due
                    # (read again once the store answers). A new account counts from zero till then.
                    return account
                account.base, account.read_at = self._base(con, scope.key, *recorded), now
            account.gen, account.dirty = account.ledger_gen, True
        return account

    def _spend_first(self, scope: BudgetScope, attempt: Callable[[_Spend | None, bool], T]) -> T:
        """Run the transaction ``attempt(fresh, defer)``; if it finds ``scope``'s recorded spend due (``_SpendDue``,
        raised by its first statement, so nothing was written), read the spend outside the transaction and run it
        again with it.

        Why: reading the store (milliseconds, and 0.2-1 s while other processes write a DuckDB file) inside the
        transaction held the ledger's lock that every process waits for; read here, only this process waits. The
        spend read is used if no acknowledgement came in between (the entries of every acknowledgement up to the
        generation read were written before it), else read inside, as before."""
        self._used[scope.key] = (scope, time.monotonic())
        self._released.discard(scope.key)
        try:
            return attempt(None, True)
        except _SpendDue as due:
            read_at = time.time()
            recorded = self._read_spend(scope)  # (``None``: the transaction counts from the last reading)
            return attempt(None if recorded is None else (due.gen, read_at, *recorded), False)

    def _read_spend(self, scope: BudgetScope, *, now: bool = False) -> tuple[Decimal, frozenset[str]] | None:
        """``_recorded`` for a transaction of the calls' path, or ``None`` where the store cannot be read: it failed
        (a DuckDB file another program keeps locked, a Parquet directory on a lost mount) within the last
        ``refresh`` seconds (unless ``now``: a reading asked for, ``standing(refresh=True)``), or fails now.

        Why not raise: a budget that cannot read its spend let every call through (a failing budget never fails the
        user's call), so a locked store passed the limit by as much as was spent while it stayed locked. Counted
        from the last reading plus what was settled since (``_to_base`` keeps acknowledged amounts in it), the
        limit holds. Why not try at every call: each failed read waits the store's ``retry_timeout``."""
        if not now and self.spend_unreadable():
            return None
        try:
            recorded = self._recorded(scope)
        except Exception as exc:  # noqa: BLE001 - counted from the last reading (see above)
            self._unreadable(exc)
            return None
        self._readable()
        return recorded

    def spend_unreadable(self) -> bool:
        return self._unreadable_until > time.monotonic()  # (a read failed, not to be tried again yet: ``_unreadable``)

    def _unreadable(self, exc: BaseException) -> None:
        """Note that a read of recorded spend failed with ``exc`` (warned once, until a read succeeds again): not
        tried again for ``refresh`` seconds, twice that after the next failure, and so on up to
        ``_MOST_UNREADABLE_WAIT`` (a file locked for an hour would otherwise hold a call every ``refresh`` seconds for
        the store's ``retry_timeout``)."""
        first = not self._unreadable_until
        wait = self._refresh if first else min(self._unreadable_wait * 2, max(self._refresh, _MOST_UNREADABLE_WAIT))
        self._unreadable_wait = wait
        self._unreadable_until = time.monotonic() + wait
        if first:
            logger.warning(
                "llmcost: budgets on %s cannot read the store's recorded spend (%r); they count from its last "
                "reading plus what was settled since, and read it again in %ss (less often while it fails)",
                self.path,
                exc,
                self._refresh,
            )

    def _readable(self) -> None:
        """Note that a read of recorded spend succeeded (after failures: said once)."""
        if self._unreadable_until:
            self._unreadable_until = 0.0
            logger.warning("llmcost: budgets on %s read the store's recorded spend again", self.path)

    def _recorded(self, scope: BudgetScope) -> tuple[Decimal, frozenset[str]]:
        """``scope``'s recorded spend read now, with the ids of this process's entries in it that are not acknowledged
        yet (written by a tracker's writer, ``writing``, whose acknowledgement has not reached the ledger).

        Read under ``_store_lock``, which the writer holds across its append and the marking of its entries: so an
        entry of this process is in the spend read exactly when it is among the ids returned."""
        with self._store_lock:
            spend = self._total(**filter_kwargs(scope))
            return spend, self._written_now()

    def _written_now(self) -> frozenset[str]:
        """The ids in ``_written`` now (a copy: acknowledgements take ids out of it)."""
        with self._written_lock:
            return frozenset(self._written) if self._written else _NONE_WRITTEN

    def _base(self, con: sqlite3.Connection, key: str, spend: Decimal, written: AbstractSet[str]) -> Decimal:
        """The account base of scope ``key`` from its recorded ``spend`` read with ``written`` (``_recorded``): the
        spend less what the ledger holds settled in the scope for those entries, which their acknowledgement has not
        dropped yet. So ``base + settled`` counts each entry once, in the window between a write and its
        acknowledgement as outside it; the acknowledgement bumps the generation, and the base is read again.

        This process's settled amounts are in its batch rows (``_batches``) and in rows of one entry each; an entry
        settled later in the window is not added to them (``settle`` and ``settle_batch`` find it in ``_written``)."""
        if not written:
            return spend
        held = self._batches.held_in(key, written)
        rows = con.execute(
            "SELECT entry, amount FROM holds WHERE holder = ? AND scope = ? AND entry NOT IN (?, ?)",
            (self._holder, key, _FOREVER, _BATCH),
        )
        held += sum((Decimal(amount) for entry, amount in rows if entry in written), ZERO)
        return spend - held

    def writing(self, ids: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        if not self.receipts.used:  # (no budget here yet: nothing settled that the entries' write could double)
            return contextlib.nullcontext()
        return self._writing(ids)

    @contextlib.contextmanager
    def _writing(self, ids: Sequence[str]) -> Iterator[None]:
        """Hold ``_store_lock`` across the caller's append of ``ids``; once it returns, mark them written (a failed
        append marks nothing: the entries stay with the tracker). Readings of recorded spend wait for an append in
        flight here (a DuckDB store's reads wait for its writes in this process anyway)."""
        self._forked()
        with self._store_lock:
            yield
            aside = self.receipts.aside(ids)  # (set aside during the append: not in the store, their amounts count)
            with self._written_lock:
                self._written.update(ids)
                if aside:
                    self._written.difference_update(aside)

    def _save(self, con: sqlite3.Connection, account: _Account) -> None:
        """Write ``account`` back; a new period's account drops the budget's periods before the last one (a process
        whose clock is a little behind may still settle a call in the last one)."""
        scope = account.scope
        if not account.new:  # the numbers only: no index changes, so the fewest pages written
            con.execute(
                "UPDATE accounts SET base = ?, gen = ?, read_at = ?, reserved = ?, settled = ? WHERE scope = ?",
                (
                    str(account.base),
                    account.gen,
                    account.read_at,
                    str(account.reserved),
                    str(account.settled),
                    scope.key,
                ),
            )
            return
        since = scope.since.isoformat() if scope.since is not None else None
        con.execute(
            "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scope.key,
                scope.budget,
                since,
                scope.describe(),
                str(account.base),
                account.gen,
                account.read_at,
                str(account.reserved),
                str(account.settled),
            ),
        )
        if since is not None:
            last = "SELECT max(since) FROM accounts WHERE budget = ?1 AND since < ?2"
            older = f"SELECT scope FROM accounts WHERE budget = ?1 AND since < ({last})"
            con.execute(f"DELETE FROM holds WHERE scope IN ({older})", (scope.budget, since))
            con.execute(f"DELETE FROM accounts WHERE budget = ?1 AND since < ({last})", (scope.budget, since))

    def _add(self, con: sqlite3.Connection, scope: str, column: str, amount: Decimal) -> None:
        """Add ``amount`` to ``column`` of another scope's account (holds that outlived their period)."""
        row = con.execute(f"SELECT {column} FROM accounts WHERE scope = ?", (scope,)).fetchone()
        if row is not None:
            value = str(Decimal(row[0]) + amount)
            con.execute(f"UPDATE accounts SET {column} = ? WHERE scope = ?", (value, scope))

    def _to_base(self, con: sqlite3.Connection, scope: str, settled: Decimal, leased: Decimal) -> None:
        """Move ``settled`` of ``scope``'s settled amounts into its base, and add ``leased`` (what this process's
        leases held for their next batches) to it: their entries are in the store now.

        The acknowledgement bumps the generation, so the next use reads the base again from the store; until then,
        and for as long as the store cannot be read (``_read_spend``), the account still counts them. Taking them
        off the settled amounts alone made a store that could not be read (spilled entries acknowledged, a locked
        file) forget every call acknowledged since its last reading."""
        row = con.execute("SELECT base, settled FROM accounts WHERE scope = ?", (scope,)).fetchone()
        if row is not None:
            base, left = str(Decimal(row[0]) + settled + leased), str(Decimal(row[1]) - settled)
            con.execute("UPDATE accounts SET base = ?, settled = ? WHERE scope = ?", (base, left, scope))

    def _expired(self, con: sqlite3.Connection, now: float) -> bool:
        """Whether some process holding reservations has not been seen for a lease (one look at the few rows of
        ``holders``, one per process with reservations)."""
        return con.execute("SELECT 1 FROM holders WHERE seen < ? LIMIT 1", (now - self.lease,)).fetchone() is not None

    def _sweep(self, con: sqlite3.Connection, now: float) -> None:
        """Release the reservations of processes not seen for a lease."""
        dead = [h for (h,) in con.execute("SELECT holder FROM holders WHERE seen < ?", (now - self.lease,))]
        for holder in dead:
            rows = con.execute("SELECT scope, amount FROM holds WHERE holder = ? AND entry IS NULL", (holder,))
            for scope, amount in rows.fetchall():
                self._add(con, scope, "reserved", -Decimal(amount))
            con.execute("DELETE FROM holds WHERE holder = ? AND entry IS NULL", (holder,))
            con.execute("DELETE FROM holders WHERE holder = ?", (holder,))
            logger.warning("llmcost: released the budget reservations of %s, not seen for %ss", holder, self.lease)
        con.execute("UPDATE meta SET v = ? WHERE k = 'swept'", (now,))

    def _drop(self, con: sqlite3.Connection, reservation: Reservation | None, account: _Account) -> None:
        """Delete ``reservation``'s hold (if it is still there) and take it off its account."""
        if reservation is None or reservation.id is None:
            return
        row = con.execute(
            "DELETE FROM holds WHERE id = ? AND entry IS NULL RETURNING scope, amount", (reservation.id,)
        ).fetchone()
        if row is None:
            return
        if row[0] == account.scope.key:
            account.reserved -= Decimal(row[1])
        else:
            self._add(con, row[0], "reserved", -Decimal(row[1]))

    def _start_heartbeat(self) -> None:
        """Renew this process's lease every third of it, from a daemon thread, while the ledger lives."""
        if self._beating is None:
            self._beating = start_heartbeat(self, self.lease / 3)

    def beat(self, stop: threading.Event | None = None) -> None:
        """Renew this process's lease on its reservations (not once ``stop`` is set: the ledger was closed)."""
        with self._lock:
            if stop is not None and stop.is_set():
                return
            if self._unreleased:
                self._release_unreleased()
            con = self._connection()
            con.execute("UPDATE holders SET seen = ? WHERE holder = ?", (time.time(), self._holder))

    def _release_unreleased(self) -> None:
        """Release the reservations whose release failed (``_unreleased``; caller holds the lock): else this
        process's heartbeat keeps them alive with its others, their headroom taken for as long as it runs."""
        gone = list(self._unreleased)
        with self._transaction() as con:
            for rid in gone:
                row = con.execute(
                    "DELETE FROM holds WHERE id = ? AND entry IS NULL RETURNING scope, amount", (rid,)
                ).fetchone()
                if row is not None:
                    self._add(con, row[0], "reserved", -Decimal(row[1]))
        self._unreleased.difference_update(gone)

    def _failed_release(self, reservation: Reservation | None) -> None:
        """A step that was to release ``reservation`` failed (the ledger could not be written): released by the next
        heartbeat that can, never kept alive by it meanwhile (the caller counts the amount itself)."""
        if reservation is not None and reservation.id is not None:
            with self._lock:
                self._unreleased.add(reservation.id)

    def _use(self) -> None:
        """A budget uses the ledger in this process (after a fork: in this child, whose receipts start afresh)."""
        self._forked()
        self.receipts.use()

    # -- Ledger -------------------------------------------------------------------------------------------------
    def begin(self) -> None:
        self._use()

    @_exact
    def reserve(self, scope: BudgetScope, amount: Decimal, *, limit: Decimal, force: bool = False) -> Reservation:
        self._use()

        def attempt(fresh: _Spend | None, defer: bool) -> Reservation:
            with self._transaction() as con:
                account = self._load(con, scope, fresh=fresh, defer=defer)
                now = account.now
                if now - account.swept >= self.lease / 4:
                    self._sweep(con, now)
                    # (the sweep may have released reservations of this scope)
                    account = self._load(con, scope, fresh=fresh, defer=defer)
                spent, reserved = account.base + account.settled, account.reserved
                room = limit - spent - reserved
                granted = force or (room > 0 and amount <= room)
                if not granted and reserved and self._expired(con, now):
                    # Refused while a process not seen for a lease still holds reservations (swept every quarter
                    # lease only): released first, so a call a reading (``standing``) says fits is not refused.
                    self._sweep(con, now)
                    account = self._load(con, scope, fresh=fresh, defer=defer)
                    spent, reserved = account.base + account.settled, account.reserved
                    room = limit - spent - reserved
                    granted = room > 0 and amount <= room
                rid = None
                if granted and amount:
                    rid = self._hold(con, account, amount)
                if account.dirty:
                    self._save(con, account)
            if rid is not None:
                self._start_heartbeat()
            return Reservation(scope.key, amount, granted, spent, reserved, rid)

        return self._spend_first(scope, attempt)

    def _hold(self, con: sqlite3.Connection, account: _Account, amount: Decimal) -> int:
        """Insert a reservation of ``amount`` in ``account`` (this process's, renewing its ``holders`` row when due)."""
        now = account.now
        if now - self._renewed > self.lease / 3:  # the heartbeat renews it in between
            con.execute("INSERT OR REPLACE INTO holders VALUES (?, ?)", (self._holder, now))
            self._renewed = now
        rid: int = con.execute(
            "INSERT INTO holds (scope, holder, amount, entry) VALUES (?, ?, ?, NULL) RETURNING id",
            (account.scope.key, self._holder, str(amount)),
        ).fetchone()[0]
        account.reserved += amount
        account.dirty = True
        return rid

    @_exact
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
        self._use()

        def attempt(fresh: _Spend | None, defer: bool) -> Renewal:
            with self._lock:  # (the batch row is known in memory before an acknowledgement can look for it)
                if before is not None:
                    # (Under the lock an acknowledgement holds from its step until it has told the leases: the
                    # entries it counted leave ``amounts`` here, not settled again or read for as written.)
                    before()
                with self._transaction() as con:
                    account = self._load(con, scope, fresh=fresh, defer=defer)
                    if renew is not None and account.now - account.swept >= self.lease / 4:
                        self._sweep(con, account.now)
                        # (the sweep may have released reservations of this scope)
                        account = self._load(con, scope, fresh=fresh, defer=defer)
                    # The batch row's entries and their amounts (copied in C: the caller's mapping is not kept),
                    # without those written before this settles them (counted in the store's total): acknowledged, or
                    # written and not acknowledged yet (looked for after the account's spend was read, which has any
                    # of them written by then). (Which entries a batch row holds is kept in ``_batches``, not as
                    # settled receipts: an entry settled in a batch and alone in another scope leaves both when it is
                    # written.)
                    written = self.receipts.written(amounts.keys())
                    if self._written:
                        written |= self._written_now() & amounts.keys()
                    held = {i: a for i, a in amounts.items() if i not in written} if written else dict(amounts)
                    # Entries set aside (never in the store, never acknowledged) count as those of another store do,
                    # apart from the batch row, which would otherwise keep them (and itself) in ``_batches`` for good.
                    others = elsewhere
                    aside = self.receipts.aside(held.keys())
                    if aside:
                        others = elsewhere + sum(map(held.pop, aside), ZERO)
                    self._drop(con, reservation, account)
                    batch, total = None, ZERO
                    if held:
                        total = sum(held.values(), ZERO)
                        batch = con.execute(
                            "INSERT INTO holds (scope, holder, amount, entry) VALUES (?, ?, ?, ?) RETURNING id",
                            (scope.key, self._holder, str(total), _BATCH),
                        ).fetchone()[0]
                        account.settled += total
                    if others:  # (entries of another store: no acknowledgement clears them, so apart from the batch)
                        con.execute(
                            "INSERT INTO holds (scope, holder, amount, entry) VALUES (?, ?, ?, ?)",
                            (scope.key, self._holder, str(others), _FOREVER),
                        )
                        account.settled += others
                    found = self._read_spend(scope) if written else None
                    if found is not None:  # entries written before they were settled: spend read again (they are in it)
                        con.execute("UPDATE meta SET v = v + 1 WHERE k = 'gen'")
                        spend, now_written = found
                        # (The batch row is not in ``_batches`` yet: what it holds of entries written since is left
                        # out here.)
                        late = now_written & held.keys()
                        account.base = self._base(con, scope.key, spend, now_written) - sum(
                            map(held.__getitem__, late), ZERO
                        )
                        account.gen, account.read_at = account.ledger_gen + 1, account.now
                    elif written:  # (the store cannot be read: counted in the base, where the next reading has them)
                        con.execute("UPDATE meta SET v = v + 1 WHERE k = 'gen'")  # (a reading taken before is stale)
                        account.base += sum(map(amounts.__getitem__, written), ZERO)
                    spent, reserved = account.base + account.settled, account.reserved
                    grant = headroom(renew, limit - spent - reserved - keep)
                    rid = self._hold(con, account, keep + grant) if keep + grant else None
                    self._save(con, account)
                if batch is not None:  # (committed: the row is there for acknowledgements to reduce)
                    self._batches.add(batch, scope, held, total)
            made = None
            if rid is not None:
                self._start_heartbeat()
                made = Reservation(scope.key, keep + grant, True, spent, reserved, rid)
            return Renewal(made, grant, Standing(spent, account.reserved))

        try:
            renewal = self._spend_first(scope, attempt)
        except (StoreError, sqlite3.Error):
            if renew is None:  # (a lease being released: see ``PostgresLedger.settle_batch``)
                self._failed_release(reservation)
            raise
        if renew is None:
            # A lease released (its budget's block ended; or a renewal with nothing to lease): no batch of it reads the
            # scope's spend on the calls' path now, so acknowledgements need not read it for it (``_fresh_scopes``).
            # Its next use reads it, if stale, and is a use again. (A budget entered per request, per user, released
            # its lease at each exit: the next request's flush read the spend of the last ``_FRESH_USED`` users
            # again, 2-3 ms each on a DuckDB file, 60% of a request.)
            self._used.pop(scope.key, None)
            released = self._released
            if len(released) >= _RELEASED_KEPT:
                released.clear()
            released.add(scope.key)
        return renewal

    @_exact
    def settle(
        self,
        scope: BudgetScope,
        amount: Decimal,
        *,
        reservation: Reservation | None = None,
        entry_id: str | None = None,
    ) -> Standing:
        self._use()

        def attempt(fresh: _Spend | None, defer: bool) -> Standing:
            with self._transaction() as con:
                account = self._load(con, scope, fresh=fresh, defer=defer)
                self._drop(con, reservation, account)
                if entry_id is None or (entry_id not in self._written and self.receipts.settling(entry_id)):
                    con.execute(
                        "INSERT INTO holds (scope, holder, amount, entry) VALUES (?, ?, ?, ?)",
                        (scope.key, self._holder, str(amount), _FOREVER if entry_id is None else entry_id),
                    )
                    account.settled += amount
                elif (found := self._read_spend(scope)) is not None:
                    # The entry was written before it was settled: recorded spend read again, it is in there now.
                    con.execute("UPDATE meta SET v = v + 1 WHERE k = 'gen'")
                    account.base = self._base(con, scope.key, *found)
                    account.gen, account.read_at = account.ledger_gen + 1, account.now
                else:  # (the store cannot be read: counted in the base, where the next reading has it)
                    con.execute("UPDATE meta SET v = v + 1 WHERE k = 'gen'")  # (a reading taken before is stale)
                    account.base += amount
                    account.dirty = True
                self._save(con, account)
            return Standing(account.base + account.settled, account.reserved)

        try:
            return self._spend_first(scope, attempt)
        except (StoreError, sqlite3.Error):
            self._failed_release(reservation)
            raise

    @_exact
    def release(self, reservation: Reservation) -> None:
        if reservation.id is None:
            return
        try:
            with self._transaction() as con:
                row = con.execute(
                    "DELETE FROM holds WHERE id = ? AND entry IS NULL RETURNING scope, amount", (reservation.id,)
                ).fetchone()
                if row is not None:
                    self._add(con, row[0], "reserved", -Decimal(row[1]))
        except (StoreError, sqlite3.Error):
            self._failed_release(reservation)
            raise

    @_exact
    def standing(self, scope: BudgetScope, *, refresh: bool = False) -> Standing:
        self._use()

        def attempt(fresh: _Spend | None, defer: bool) -> Standing:
            with self._transaction() as con:
                account = self._load(con, scope, refresh=refresh, fresh=fresh, defer=defer)
                if account.reserved and self._expired(con, account.now):
                    # A reading never counts the reservations of a process not seen for a lease (killed): they are
                    # released now, as the next reservation would release them (as PostgreSQL leaves them out).
                    self._sweep(con, account.now)
                    account = self._load(con, scope, refresh=refresh, fresh=fresh, defer=defer)
                if account.dirty:
                    self._save(con, account)
            return Standing(account.base + account.settled, account.reserved)

        return self._spend_first(scope, attempt)

    by_id = True

    def acknowledge(self, entries: Sequence[CostEntry]) -> None:
        self.acknowledge_ids([entry.id for entry in entries])

    @_exact
    def acknowledge_ids(
        self,
        ids: Sequence[str],
        *,
        leased: Callable[[], Mapping[str, Decimal]] | None = None,
        counted: Callable[[], object] | None = None,
    ) -> None:
        if not self.receipts.used or not ids:
            if counted is not None:
                counted()
            return
        with self._lock:
            # With those whose acknowledgement failed before (their entries are in the store: their settled amounts
            # must go, or they would count twice for the rest of the period). ``alone``: settled one by one, in rows
            # of their own; ``written``: every written id, looked for in the batch rows.
            alone = [*self._unacknowledged, *self.receipts.acknowledged_ids(ids)]
            written = {*ids, *self._unacknowledged_held} if self._unacknowledged_held else set(ids)
            self._unacknowledged, self._unacknowledged_held = [], set()
            scopes = self._fresh_scopes(written)  # (before the batch rows that hold them are forgotten)
            try:
                # (What the leases hold, looked at under the lock: no batch of this process settles them meanwhile.)
                self._forget_written(alone, written, leased() if leased is not None else None)
            except BaseException:  # tried again with the next acknowledgement
                self._unacknowledged = [*alone, *self._unacknowledged]
                held = self._batches.holding(written)
                self._unacknowledged_held.update(held)
                with self._written_lock:  # (those tried again stay written, their settled amounts left out till then)
                    self._written.difference_update(written.difference(held, alone))
                raise
            if counted is not None:
                counted()  # (still under the lock: no batch of this process comes between the step and the leases)
        if scopes:
            self._read_after(scopes)

    @_exact
    def set_aside_ids(self, ids: Sequence[str]) -> None:
        """Entries set aside (``Ledger.set_aside_ids``): settled one by one, their rows stay, counted until their
        period's account goes; what batch rows hold of them moves, in one transaction, to a row of their own that
        no acknowledgement clears (the account's settled sum is unchanged), so the batch rows still go as their other
        entries are acknowledged."""
        self._forked()
        with self._lock:
            self.receipts.set_aside(ids)
            aside = set(ids)
            if self._written:
                with self._written_lock:
                    self._written.difference_update(aside)
            batches = self._batches
            in_rows = batches.written(aside)
            if not in_rows:
                return
            with self._transaction() as con:
                for row, (amount, n) in in_rows.items():
                    held, left = batches.left(row)
                    if left <= n:  # (nothing else in the row: it goes)
                        found = con.execute(
                            "DELETE FROM holds WHERE id = ? AND entry = ? RETURNING scope, amount", (row, _BATCH)
                        ).fetchone()
                        amount = Decimal(found[1]) if found is not None else amount
                    else:
                        found = con.execute(
                            "UPDATE holds SET amount = ? WHERE id = ? AND entry = ? RETURNING scope",
                            (str(held - amount), row, _BATCH),
                        ).fetchone()
                    if found is not None:  # (else its period's account was dropped, and the row with it)
                        con.execute(
                            "INSERT INTO holds (scope, holder, amount, entry) VALUES (?, ?, ?, ?)",
                            (found[0], self._holder, str(amount), _FOREVER),
                        )
            batches.forget(aside, in_rows)

    def aside(self, ids: Collection[str]) -> Collection[str]:
        return self.receipts.aside(ids)

    def held_unwritten(self, scope: BudgetScope) -> Collection[str]:
        """(``Ledger.held_unwritten``) the entries this process's batch rows of ``scope`` hold: a lease's calls,
        settled in its batches, whose amounts the account counts until they are acknowledged."""
        self._forked()
        with self._lock:
            return self._batches.of_scope(scope.key)

    @_exact
    def _read_after(self, scopes: Sequence[BudgetScope]) -> None:
        """After an acknowledgement: read the recorded spend of ``scopes`` (``_fresh_totals``) and store it in their
        accounts if no acknowledgement came since it was read (else they are read again by their next use), less
        what the ledger still holds of entries written and not acknowledged (``_base``)."""
        fresh = self._fresh_totals(scopes)
        if fresh is None:
            return
        gen, read_at, totals, others = fresh
        try:
            with self._lock:
                if self._connection().execute(_GEN).fetchone()[0] != gen:
                    return  # (stale already: no write transaction, with the lock every process queues for, for it)
                with self._transaction() as con:
                    if con.execute(_GEN).fetchone()[0] != gen:
                        return
                    for key, spend in totals.items():
                        con.execute(
                            "UPDATE accounts SET base = ?, gen = ?, read_at = ? WHERE scope = ?",
                            (str(self._base(con, key, spend, others)), gen, read_at, key),
                        )
        except Exception as exc:  # noqa: BLE001 - the accounts are read again by their next use, as before
            logger.debug("llmcost: budget ledger: could not store the spend read at an acknowledgement: %r", exc)

    def _fresh_scopes(self, written: AbstractSet[str]) -> list[BudgetScope]:
        """The scopes whose recorded spend an acknowledgement of ``written`` reads (caller holds the lock): those of
        the batch rows that hold any of them, and those this process used in the last ``refresh`` seconds, the last
        ``_FRESH_USED`` of them (a lease's next batch, or the next exact reservation, would otherwise read it on the
        calls' path: any acknowledgement makes every account's spend stale). A scope leaves them as its lease is
        released (``settle_batch`` with nothing to renew) and comes back with its next use; a batch row's scope
        whose lease was released is read at its next use too. (Budgets entered per request, per user: a write of
        the buffer, made by a request as its user's budget opens, holds the entries of the users since the last
        write, and reading each user's spend then made that one request wait for them all.)"""
        released = self._released
        found = {scope.key: scope for scope in self._batches.scopes(written) if scope.key not in released}
        now = time.monotonic()
        lately = []
        for key, (scope, when) in list(self._used.items()):
            if now - when > self._refresh:
                del self._used[key]
            else:
                lately.append((when, key, scope))
        if len(lately) > _FRESH_USED:  # (a process with many budgets: the others read theirs at their next use)
            lately = sorted(lately, key=lambda used: used[0])[-_FRESH_USED:]
        for _, key, scope in lately:
            found[key] = scope
        return list(found.values())

    def _fresh_totals(
        self, scopes: Sequence[BudgetScope]
    ) -> tuple[float, float, dict[str, Decimal], frozenset[str]] | None:
        """The recorded spend of ``scopes`` read now (after the write being acknowledged), with the acknowledgement
        generation read just before, the time and the ids written and not acknowledged when it was read (see
        ``_recorded``): ``(gen, read_at, {scope key: spend}, written)``, or ``None`` (no scope, or a read failed: the
        accounts are then read again by their next use, as after any acknowledgement).

        Why here: an acknowledgement makes every account's recorded spend stale, and reading it again (a query of
        the store, milliseconds on a large one) fell to the next call to settle a batch, inside the ledger's lock
        that every process waits for. Read here, outside any lock, by the writer that wrote the entries, it is
        stored whenever no other acknowledgement came in between (``_read_after``)."""
        if not scopes or self.spend_unreadable():  # (read again by the calls' path, ``refresh`` seconds after)
            return None
        try:
            with self._lock:
                gen = self._connection().execute(_GEN).fetchone()[0]
            read_at = time.time()
            with self._store_lock:
                totals = {scope.key: self._total(**filter_kwargs(scope)) for scope in scopes}
                written = self._written_now()
        except Exception as exc:  # noqa: BLE001 - the accounts are read again by their next use, as before
            logger.debug("llmcost: budget ledger: could not read recorded spend at an acknowledgement: %r", exc)
            if not isinstance(exc, sqlite3.Error):  # (the store's read failed, not the ledger's)
                self._unreadable(exc)
            return None
        self._readable()
        return gen, read_at, totals, written

    def _forget_written(
        self,
        alone: list[str],
        written: AbstractSet[str],
        leased: Mapping[str, Decimal] | None = None,
    ) -> None:
        """Take the settled amounts of the written entries off the ledger (``alone``: those settled one by one; and
        what batch rows hold of ``written``) into the accounts' bases (``_to_base``), with what leases held of them
        (``leased``, by scope), in one transaction that also bumps the acknowledgement generation (every account
        reads its spend again at its next use, unless ``_read_after`` stores it first). The entries leave
        ``_written``. Caller holds the lock."""
        batches = self._batches
        in_rows = batches.written(written)
        with self._transaction() as con:
            gone: dict[str, Decimal] = {}  # per scope: one update of its account, however many entries
            for start in range(0, len(alone), _CHUNK):
                ids = alone[start : start + _CHUNK]
                marks = ",".join("?" * len(ids))
                rows = con.execute(
                    f"DELETE FROM holds WHERE holder = ? AND entry IN ({marks}) RETURNING scope, amount",
                    (self._holder, *ids),
                ).fetchall()
                for scope, amount in rows:
                    gone[scope] = gone.get(scope, ZERO) + Decimal(amount)
            for row, (amount, n) in in_rows.items():
                held, left = batches.left(row)
                if left <= n:  # its last entries: the row goes
                    found = con.execute(
                        "DELETE FROM holds WHERE id = ? AND entry = ? RETURNING scope, amount", (row, _BATCH)
                    ).fetchone()
                    amount = Decimal(found[1]) if found is not None else amount
                else:
                    found = con.execute(
                        "UPDATE holds SET amount = ? WHERE id = ? AND entry = ? RETURNING scope",
                        (str(held - amount), row, _BATCH),
                    ).fetchone()
                if found is not None:  # (else its period's account was dropped, and the row with it)
                    gone[found[0]] = gone.get(found[0], ZERO) + amount
            for scope in {*gone, *leased} if leased else gone:
                self._to_base(con, scope, gone.get(scope, ZERO), leased.get(scope, ZERO) if leased else ZERO)
            con.execute("UPDATE meta SET v = v + 1 WHERE k = 'gen'")
        batches.forget(written, in_rows)
        if self._written:
            with self._written_lock:
                self._written.difference_update(written, alone)

    def close(self) -> None:
        """Stop the heartbeat and close the connection (the ledger reopens on its next use)."""
        with self._lock:
            if self._beating is not None:
                self._beating.set()
                self._beating = None
            con, self._con = self._con, None
            fd, self._queue_fd = self._queue_fd, None
            if self._pid == os.getpid():
                if con is not None:
                    with contextlib.suppress(sqlite3.Error):
                        con.close()
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
