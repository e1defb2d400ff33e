"""``PostgresLedger``: the budget ledger of a ``PostgresStore``, in the database itself, for every host that shares it.

One table, ``llmcost_ledger_holds``: each open reservation (``entry`` NULL, with a lease ``expires_at`` on the
server's clock) and each settled amount (``entry`` the id of the entry it stands for; ``''`` for an entry that went
to another store). A scope's standing is read in ONE statement, so from one snapshot:

    spent    = recorded spend in ``llmcost_entries`` that matches the scope (the store's own WHERE builder)
             + settled amounts of the scope whose entry is NOT in ``llmcost_entries`` (an anti-join on the id)
    reserved = the scope's reservations whose lease has not run out

Why the anti-join rather than acknowledgements (``SqliteLedger``'s design): PostgreSQL appends are transactional,
so in any one snapshot an entry is either in ``llmcost_entries`` (counted as recorded, its settled amount skipped) or
not (its settled amount counted): every amount is counted exactly once, on every host, with no window of double
counting and nothing cached. ``acknowledge`` only deletes settled rows that no longer count (housekeeping).

``reserve`` is one transaction: ``pg_advisory_xact_lock`` on a hash of the scope key (every reserver of the scope,
on any host, queues there; other scopes never wait), then the standing read in a fresh READ COMMITTED snapshot taken
after the lock was granted, then the insert if the limit covers it. ``settle`` deletes the reservation and inserts
the settled amount in one transaction (unless the entry is in the table already): all hosts see it at commit.

Leases: a reservation expires ``lease`` seconds after it was made unless renewed; a heartbeat thread renews this
process's reservations every third of the lease (``expires_at = now() + lease``), so those of a killed process stop
counting within a lease. Expired reservations, settled amounts whose entries are in the table, and periods older than
a budget's last two are deleted by a sweep at most every quarter lease. A budget's leased headroom
(``settle_batch``) is one such reservation, renewed and expiring alike.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from decimal import Decimal, localcontext
from typing import Any

from .. import _state
from .._entry import CostEntry
from .._errors import StoreError
from .._money import ZERO
from .._time import seconds_arg
from ._filters import Filters
from ._ledger import (
    DEFAULT_LEASE,
    BudgetScope,
    LeaseTerms,
    Ledger,
    Receipts,
    Renewal,
    Reservation,
    Standing,
    headroom,
    start_heartbeat,
)

__all__ = ["HOLDS", "LEDGER_DDL", "PostgresLedger"]


HOLDS = "llmcost_ledger_holds"
_FOREVER = ""  # the entry of a settled amount whose entry went to another store: counted until its period goes
#: Entries ``held_unwritten`` keeps track of at most (~100 bytes each); beyond, it forgets them all.
_HELD_KEPT = 65_536

LEDGER_DDL: tuple[str, ...] = (
    f"CREATE TABLE IF NOT EXISTS {HOLDS} ("
    " id bigserial PRIMARY KEY, scope text NOT NULL, budget text NOT NULL, since timestamptz,"
    " amount NUMERIC(38, 18) NOT NULL, entry text, holder text NOT NULL, expires_at timestamptz)",
    f"CREATE INDEX IF NOT EXISTS {HOLDS}_scope ON {HOLDS} (scope)",
    f"CREATE INDEX IF NOT EXISTS {HOLDS}_entry ON {HOLDS} (entry) WHERE entry IS NOT NULL",
    f"CREATE INDEX IF NOT EXISTS {HOLDS}_holder ON {HOLDS} (holder) WHERE entry IS NULL",
)

_SWEEP = (
    f"DELETE FROM {HOLDS} WHERE entry IS NULL AND expires_at <= now()",
    f"DELETE FROM {HOLDS} h USING {{table}} e WHERE h.entry = e.id",
    # Keep each budget's last two periods (a process whose clock is a little behind may still settle in the one
    # before): compared with the budget's own periods, never with the server's clock (clients' clocks may differ).
    f"DELETE FROM {HOLDS} h USING (SELECT budget, since, dense_rank() OVER (PARTITION BY budget ORDER BY since DESC)"
    f" AS n FROM (SELECT DISTINCT budget, since FROM {HOLDS} WHERE since IS NOT NULL) AS d) AS old"
    " WHERE old.n > 2 AND h.budget = old.budget AND h.since = old.since",
)


def _holder_id() -> str:
    """This process's name in the ledger: host, pid, and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class PostgresLedger(Ledger):
    """A ledger in the ``PostgresStore``'s database, atomic for every process on every host that shares it.

    ``run(body, what=...)`` runs ``body(cursor)`` in one transaction of the store (with its retries); ``where``
    turns ``Filters`` into the store's ``(" WHERE ...", params)`` on ``table``; ``lease`` is how many seconds a
    reservation outlives a process that stopped renewing it.

    Example::

        ledger = PostgresLedger(store_run, where=where_sql, table="llmcost_entries", lease=60)
        r = ledger.reserve(scope, Decimal("0.02"), limit=Decimal("1"))
    """

    leases = True

    def __init__(
        self,
        run: Callable[..., Any],
        *,
        where: Callable[[Filters], tuple[str, list[Any]]],
        table: str,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        self.lease = seconds_arg(lease, "lease")
        self._run = run
        self._where = where
        self._table = table
        self._lock = _state.FlushLock()  # (as ``SqliteLedger``'s: a SIGTERM's flush acknowledges entries here)
        self._pid = os.getpid()
        self._holder = _holder_id()
        self._beating: threading.Event | None = None
        self._swept = 0.0
        self.receipts = Receipts()
        #: Reservations whose release failed (the database could not be reached): deleted by the next heartbeat that
        #: reaches it. Else that heartbeat would renew them with this process's others, for as long as it runs.
        self._unreleased: set[int] = set()
        #: The entries whose amounts this process settled, by scope key, until they are acknowledged as written (or
        #: set aside): ``held_unwritten``. ``_held_in`` maps each back to its scopes, so that a write forgets its
        #: entries in steps per entry, however many accounts there are.
        self._held: dict[str, set[str]] = {}
        self._held_in: dict[str, tuple[str, ...]] = {}
        # (Their own lock: ``_lock`` is held by the heartbeat for a database round trip, which a budget opening and
        # the writer's acknowledgement must not wait for. A ``FlushLock``, as SIGTERM's flush acknowledges here.)
        self._held_lock = _state.FlushLock()

    def _forked(self) -> None:
        """In a forked child, forget the parent's name, heartbeat and receipts: none is ours."""
        if self._pid != os.getpid():
            self._pid, self._holder, self._beating, self.receipts = os.getpid(), _holder_id(), None, Receipts()
            self._unreleased = set()
            self._held, self._held_in = {}, {}

    def _standing(self, cur: Any, scope: BudgetScope) -> tuple[Decimal, Decimal]:
        """``(spent, reserved)`` of ``scope``, in one statement (one snapshot)."""
        where, params = self._where(scope.filters())
        cur.execute(
            f"SELECT (SELECT coalesce(sum(amount), 0) FROM {self._table}{where})"
            f" + (SELECT coalesce(sum(h.amount), 0) FROM {HOLDS} h WHERE h.scope = %s AND h.entry IS NOT NULL"
            f" AND NOT EXISTS (SELECT 1 FROM {self._table} e WHERE e.id = h.entry)),"
            f" (SELECT coalesce(sum(amount), 0) FROM {HOLDS}"
            " WHERE scope = %s AND entry IS NULL AND expires_at > now())",
            [*params, scope.key, scope.key],
        )
        spent, reserved = cur.fetchone()
        return Decimal(spent), Decimal(reserved)

    def _sweep_due(self) -> bool:
        now = time.monotonic()
        if now - self._swept < self.lease / 4:
            return False
        self._swept = now
        return True

    # -- the heartbeat ------------------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        """Renew this process's leases every third of the lease, from a daemon thread, while the ledger lives."""
        with self._lock:
            if self._beating is None:
                self._beating = start_heartbeat(self, self.lease / 3)

    def beat(self, stop: threading.Event | None = None) -> None:
        """Renew this process's reservations: ``lease`` more seconds from now, on the server's clock (unless
        ``stop`` is set: the ledger was closed, and its store's connection with it, which a beat must not reopen)."""
        with self._lock:
            if stop is not None and stop.is_set():
                return
            self._renew()

    def _renew(self) -> None:
        self._forked()
        holder, lease = self._holder, self.lease
        gone = list(self._unreleased)

        def body(cur: Any) -> None:
            if gone:  # (released while the database could not be reached: released now, not renewed)
                cur.execute(f"DELETE FROM {HOLDS} WHERE id = ANY(%s) AND entry IS NULL", [gone])
            cur.execute(
                f"UPDATE {HOLDS} SET expires_at = now() + make_interval(secs => %s) "
                "WHERE holder = %s AND entry IS NULL AND expires_at > now()",
                [lease, holder],
            )

        self._run(body, what="renew budget reservations in")
        if gone:
            self._unreleased.difference_update(gone)

    # -- Ledger -------------------------------------------------------------------------------------------------
    def begin(self) -> None:
        self.receipts.use()

    def reserve(self, scope: BudgetScope, amount: Decimal, *, limit: Decimal, force: bool = False) -> Reservation:
        self._forked()
        self.receipts.use()
        sweep = self._sweep_due()
        holder, lease = self._holder, self.lease

        def body(cur: Any) -> tuple[Decimal, Decimal, int | None]:
            if sweep:
                for statement in _SWEEP:
                    cur.execute(statement.format(table=self._table))
            # Every reserver of this scope on any host queues here until this transaction ends; the next
            # statement's snapshot is taken after the lock is granted, so it sees every commit before it.
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [scope.key])
            spent, reserved = self._standing(cur, scope)
            with localcontext() as ctx:
                ctx.prec = 80
                room = limit - spent - reserved
            if not (force or (room > 0 and amount <= room)):
                return spent, reserved, None
            if not amount:
                return spent, reserved, 0
            cur.execute(
                f"INSERT INTO {HOLDS} (scope, budget, since, amount, entry, holder, expires_at) "
                "VALUES (%s, %s, %s, %s, NULL, %s, now() + make_interval(secs => %s)) RETURNING id",
                [scope.key, scope.budget, scope.since, amount, holder, lease],
            )
            return spent, reserved, int(cur.fetchone()[0])

        spent, reserved, rid = self._run(body, what="reserve budget in")
        if rid:
            self._start_heartbeat()
        return Reservation(scope.key, amount, rid is not None, spent, reserved, rid or None)

    def settle(
        self,
        scope: BudgetScope,
        amount: Decimal,
        *,
        reservation: Reservation | None = None,
        entry_id: str | None = None,
    ) -> Standing:
        self._forked()
        self.receipts.use()
        keep = entry_id is None or self.receipts.settling(entry_id)  # False: written and acknowledged already
        entry = _FOREVER if entry_id is None else entry_id
        rid = reservation.id if reservation is not None else None

        def body(cur: Any) -> tuple[Decimal, Decimal]:
            if rid is not None:
                cur.execute(f"DELETE FROM {HOLDS} WHERE id = %s AND entry IS NULL", [rid])
            if keep:
                # Not if the entry is in the table already (a background flush wrote it first): counted there.
                cur.execute(
                    f"INSERT INTO {HOLDS} (scope, budget, since, amount, entry, holder, expires_at) "
                    f"SELECT %s, %s, %s, %s, %s, %s, NULL WHERE NOT EXISTS (SELECT 1 FROM {self._table} WHERE id = %s)",
                    [scope.key, scope.budget, scope.since, amount, entry, self._holder, entry],
                )
            return self._standing(cur, scope)

        try:
            spent, reserved = self._run(body, what="settle a budget reservation in")
        except StoreError:
            if rid is not None:  # (as in ``release``: never renewed while the caller counts the amount itself)
                with self._lock:
                    self._unreleased.add(rid)
            raise
        if keep and entry_id is not None:
            self._hold(scope.key, (entry_id,))
        return Standing(spent, reserved)

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
        self._forked()
        self.receipts.use()
        if before is not None:
            before()
        # Not those written and acknowledged already (the anti-join would skip them anyway; the insert checks too).
        written = self.receipts.settling_all(amounts.keys())
        entries = [i for i in amounts if i not in written] if written else list(amounts)
        kept = [amounts[i] for i in entries] if written else list(amounts.values())
        if elsewhere:  # (entries of another store: one row of their sum, counted until the period's account goes)
            entries.append(_FOREVER)
            kept.append(elsewhere)
        sweep = renew is not None and self._sweep_due()
        holder, lease = self._holder, self.lease
        rid = reservation.id if reservation is not None else None

        def body(cur: Any) -> tuple[Decimal, Decimal, Decimal, int | None]:
            if sweep:
                for statement in _SWEEP:
                    cur.execute(statement.format(table=self._table))
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [scope.key])  # (as ``reserve``)
            if rid is not None:
                cur.execute(f"DELETE FROM {HOLDS} WHERE id = %s AND entry IS NULL", [rid])
            if kept:
                # Not those whose entry is in the table already (a background flush wrote it first): counted there.
                cur.execute(
                    f"INSERT INTO {HOLDS} (scope, budget, since, amount, entry, holder, expires_at) "
                    "SELECT %s, %s, %s, b.amount, b.entry, %s, NULL"
                    " FROM unnest(%s::numeric[], %s::text[]) AS b(amount, entry)"
                    f" WHERE NOT EXISTS (SELECT 1 FROM {self._table} e WHERE e.id = b.entry)",
                    [scope.key, scope.budget, scope.since, holder, kept, entries],
                )
            spent, reserved = self._standing(cur, scope)
            with localcontext() as ctx:
                ctx.prec = 80
                grant = headroom(renew, limit - spent - reserved - keep)
                amount = keep + grant
            if not amount:
                return spent, reserved, grant, None
            cur.execute(
                f"INSERT INTO {HOLDS} (scope, budget, since, amount, entry, holder, expires_at) "
                "VALUES (%s, %s, %s, %s, NULL, %s, now() + make_interval(secs => %s)) RETURNING id",
                [scope.key, scope.budget, scope.since, amount, holder, lease],
            )
            return spent, reserved, grant, int(cur.fetchone()[0])

        try:
            spent, reserved, grant, made = self._run(body, what="settle a budget lease in")
        except StoreError:
            if rid is not None and renew is None:
                # A lease being released (closed, idle, its budget exited): released by the next heartbeat that
                # reaches the database, as in ``release``; the lease no longer serves calls, and nothing may retry
                # its batch while the process lives. (One being renewed keeps it: its next batch replaces it.)
                with self._lock:
                    self._unreleased.add(rid)
            raise
        held = entries[:-1] if elsewhere else entries  # (not ``elsewhere``'s row: it has no entry)
        if held:
            self._hold(scope.key, held)
        if made is None:
            return Renewal(None, grant, Standing(spent, reserved))
        self._start_heartbeat()
        with localcontext() as ctx:
            ctx.prec = 80
            amount = keep + grant
            return Renewal(
                Reservation(scope.key, amount, True, spent, reserved, made), grant, Standing(spent, reserved + amount)
            )

    def release(self, reservation: Reservation) -> None:
        if reservation.id is None:
            return
        rid = reservation.id
        try:
            self._run(
                lambda cur: cur.execute(f"DELETE FROM {HOLDS} WHERE id = %s AND entry IS NULL", [rid]),
                what="release a budget reservation in",
            )
        except StoreError:
            # The database cannot be reached: released by the next heartbeat that reaches it (``_renew``), so the
            # heartbeat never keeps it held meanwhile. Raised still: the caller's count of it is its own to keep.
            with self._lock:
                self._unreleased.add(rid)
            raise

    def standing(self, scope: BudgetScope, *, refresh: bool = False) -> Standing:
        # Always read afresh: recorded spend is read in the same statement as the ledger's own amounts.
        self.receipts.use()
        spent, reserved = self._run(lambda cur: self._standing(cur, scope), what="read the budget ledger of")
        return Standing(spent, reserved)

    def acknowledge(self, entries: Sequence[CostEntry]) -> None:
        """Delete the settled amounts of ``entries`` this process settled (they no longer count: the anti-join
        skips them already; this keeps the table small). The sweep deletes any others."""
        self._forked()
        if not self.receipts.used or not entries:
            return
        mine = self.receipts.acknowledged(entries)
        if mine:
            self._unhold(mine)
            self._run(
                lambda cur: cur.execute(f"DELETE FROM {HOLDS} WHERE entry = ANY(%s)", [mine]),
                what="update the budget ledger of",
            )

    def held_unwritten(self, scope: BudgetScope) -> Collection[str]:
        """(``Ledger.held_unwritten``) the entries whose amounts this process settled in ``scope``'s account and that
        are not acknowledged as written: ``_standing`` counts their settled rows until the entries are in the table
        (a lease's calls, settled in its batches), so a budget need not write them before it reads that spend."""
        self._forked()
        with self._held_lock:
            held = self._held.get(scope.key)
            return frozenset(held) if held else ()

    def _hold(self, key: str, ids: Sequence[str]) -> None:
        """Note ``ids`` as settled in the scope with ``key`` (committed: ``_standing`` counts them until written)."""
        with self._held_lock:
            # Not those acknowledged meanwhile (between the settle's commit and here): their acknowledgement found
            # nothing to forget. It notes them as written before it takes this lock, so each is one or the other.
            written = self.receipts.written(ids)
            if written:
                ids = [entry for entry in ids if entry not in written]
            if len(self._held_in) + len(ids) > _HELD_KEPT:
                # Never acknowledged (written by another process that settled them too, say): forgotten, which costs
                # at most a write a budget would not have needed (``held_unwritten`` is only ever a saving).
                self._held, self._held_in = {}, {}
            held = self._held.setdefault(key, set())
            held.update(ids)
            held_in = self._held_in
            for entry in ids:
                scopes = held_in.get(entry)
                if scopes is None:
                    held_in[entry] = (key,)
                elif key not in scopes:
                    held_in[entry] = (*scopes, key)

    def _unhold(self, ids: Collection[str]) -> None:
        """Forget ``ids`` (acknowledged as written, or set aside: never to be) in every scope they were settled in."""
        with self._held_lock:
            held, held_in = self._held, self._held_in
            for entry in ids:
                for key in held_in.pop(entry, ()):
                    found = held.get(key)
                    if found is not None:
                        found.discard(entry)
                        if not found:
                            del held[key]

    def set_aside_ids(self, ids: Sequence[str]) -> None:
        """Entries set aside (``Ledger.set_aside_ids``): their settled rows stay, counted by the anti-join (their
        entries never reach the table) until the sweep drops their period, as for any settled amount."""
        self._forked()
        self.receipts.set_aside(ids)
        self._unhold(ids)

    def aside(self, ids: Collection[str]) -> Collection[str]:
        return self.receipts.aside(ids)

    def close(self) -> None:
        """Stop the heartbeat (this process's reservations lapse after a lease unless it is used again)."""
        with self._lock:
            if self._beating is not None:
                self._beating.set()
                self._beating = None
