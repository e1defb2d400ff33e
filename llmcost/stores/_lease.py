"""``Lease``: headroom a process reserved in a store's ledger, from which its calls reserve without a transaction.

A period budget over a shared ledger (``Ledger.leases``) pays a transaction in a file or database every process
shares for each reservation and each settlement. Far from the limit it leases instead: ``settle_batch`` reserves
several calls' worth at once, a real reservation that every other process counts, and each call then takes its
estimate from it in memory. Its actual amount is settled in memory too, kept under its entry's id, and the batch
goes to the ledger in ONE transaction that also renews the lease (or releases it): when the lease runs out, every
``RENEW_SECONDS`` of calls, when no call has used it for ``IDLE_SECONDS`` (a thread of this module settles and
releases idle leases, so a process gone quiet holds no headroom), when the budget is exited or rolls into a new
period, when the store is closed, and
at process exit.

Why this keeps the limit: every amount a lease serves stays inside the lease's reservation until its batch settles
(a call costing more than its estimate first takes the difference from the lease's unused headroom), so the ledger
never counts less than what this process committed. A call whose cost the lease cannot cover is settled at once,
with the batch, so other processes see it at once as they do call by call. The lease is granted only while it is a
small share of the room left (``LeaseTerms``), so near the limit every call reserves exactly, as without leases.

Every amount is counted once: a batch settles each entry as ``settle`` would (``Receipts.settling``); an entry the
tracker wrote and acknowledged before its batch is taken out of the batch (``Acknowledging``: the store's total has
it now), but its amount keeps its place in the lease until the batch, so the headroom is never handed out twice.

Thread-safety: a lease shares its budget's lock (ledger transactions are made holding it); the budget holds it as
it calls ``take``, ``done`` and ``drop``, which do not take it themselves.

``LocalLease`` is the budget's lease on an in-process ledger (``LocalLedger``): it leases no headroom, each of its
calls reserves and settles exactly in the ledger, which costs no transaction there.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from itertools import repeat
from typing import Any, Protocol

from .. import _state
from .._money import ZERO, atto_of, from_atto
from .._time import micros
from ._ledger import BudgetScope, LeaseTerms, LocalLedger, Renewal, Reservation, Standing

__all__ = [
    "IDLE_SECONDS",
    "LEASE_CALLS",
    "LEASE_SHARE",
    "MOST_LEASE_CALLS",
    "RENEW_SECONDS",
    "Acknowledging",
    "Lease",
    "LocalLease",
    "close_leases",
    "leased",
    "settle_idle",
]

logger = logging.getLogger("llmcost")

#: A lease is this many calls' estimates at first: one ledger transaction per ~64 calls takes the ~100 us it costs
#: to ~1.5 us a call ...
LEASE_CALLS = 64
#: ... and twice as many each time the last one ran out in less than ``FAST_SECONDS``, up to this many (halved again
#: each time one lasts longer than ``SLOW_SECONDS``). ``FAST_SECONDS`` is what bounds a lease in practice: it stops
#: growing once its calls take ~0.05-0.1 s to use it up, so it holds about a tenth of a second's worth of its calls'
#: spend (and never more than ``1/LEASE_SHARE`` of the room left), whatever this cap. (Roughly: a batch made early,
#: for a call costing more than the lease had left or a lowered limit, counts as running out fast too.) A process
#: calling as fast as a tracked call goes (~6-8 us) so pays a transaction per ~8,000-16,000 calls. Each costs the
#: calling thread 1-5 ms while a tracker's writer thread is busy (every SQLite step gives up the GIL, and waits for it
#: back): at 4,096 calls a lease that was ~0.5 us a call, a tenth of the DuckDB-budgeted call
#: (``benchmarks/bench_budget.py``).
MOST_LEASE_CALLS = 65536
FAST_SECONDS = 0.05
SLOW_SECONDS = 0.5
#: ... and at most this share of the room left (1/8): several processes can each lease a little, and a lease is
#: never a large part of what remains, so processes without one are not starved.
LEASE_SHARE = 8
#: A lease's amounts are settled (and the lease renewed) at least this often while its calls go on (seconds).
RENEW_SECONDS = 1.0
#: A lease no call has renewed for this long is settled and released (seconds): with many processes each holding
#: a lease, idle ones would otherwise keep most of the room left from those still calling.
IDLE_SECONDS = 2.0


class LeaseStore(Protocol):
    """What a lease needs of its store (a ``CostStore``; named here so that this module need not import it)."""

    def settle_batch(
        self,
        scope: BudgetScope,
        amounts: Mapping[str, Decimal],
        *,
        elsewhere: Decimal = ...,
        reservation: Reservation | None,
        keep: Decimal,
        renew: LeaseTerms | None,
        limit: Decimal,
        before: Callable[[], object] | None = ...,
    ) -> Renewal: ...

    def settle(
        self,
        scope: BudgetScope,
        amount: Decimal,
        *,
        reservation: Reservation | None = None,
        entry_id: str | None = None,
    ) -> Standing: ...


_time = time.time  # (read on every call a lease serves)


#: ``_atto_up`` of an infinite bound (a budget with no threshold left to fire is quiet below ``Infinity``): more
#: than any sum of amounts stores accept.
_ENDLESS = 10**60


def _atto_up(amount: Decimal) -> int:
    """``amount`` in 10**-18 USD, rounded up: what a lease takes for an estimate (exact for one of money's places, as
    estimates are), and its bound on ``settled`` (``quiet_settled``: an int under it is under ``amount``)."""
    if amount.is_infinite():
        return -_ENDLESS if amount < 0 else _ENDLESS
    return atto_of(amount, ROUND_CEILING)


def leased(estimate: Decimal) -> int:
    """What ``Lease.take`` takes from a lease for ``estimate``, in 10**-18 USD: the call gives it back as that
    (``done``, ``settle_call``, ``drop``).

    >>> leased(Decimal("0.0025"))
    2500000000000000
    """
    return _atto_up(estimate)


_NOT_LIVE = float("-inf")  # ``Lease.due`` of a lease that serves no calls
_NONE_HELD: tuple[list[str], Decimal] = ([], ZERO)  # ``Lease.holding_of`` of none (its list is never changed)

#: Leases of this process that may hold a reservation or amounts (``_state.open_leases``).
_OPEN: set[Lease] = _state.open_leases


class Lease:
    """Headroom leased for one ``scope`` of ``store``'s ledger, under ``limit``, guarded by ``lock``.

    ``take`` serves a call's estimate from it (``False``: it cannot; ``renew`` and try again, or reserve exactly);
    ``done`` settles the call's amount (in memory while the lease covers it) and ``drop`` gives its estimate back;
    ``renew`` settles the batch and leases again; ``close`` settles the batch and releases the lease.

    Example::

        lock = threading.RLock()
        lease = Lease(store, scope, limit=Decimal("10"), lock=lock)
        with lock:
            served = lease.renew(Decimal("0.0025")) and lease.take(Decimal("0.0025"))
        if served:
            ...  # make the call
            with lock:
                lease.done(leased(Decimal("0.0025")), entry.amount, entry.id)
    """

    def __init__(self, store: LeaseStore, scope: BudgetScope, *, limit: Decimal, lock: Any) -> None:
        self.store = store
        self.scope = scope
        self.limit = limit
        self._lock = lock
        self.reservation: Reservation | None = None
        #: The lease's own figures are ints of 10**-18 USD (``atto_of``): a call takes, gives back and settles in
        #: integer steps (a quarter of a Decimal's cost each, and no context can round them). Amounts are whole units
        #: of that (``to_money``), so they are exact; an estimate of more places is rounded up (``_atto_up``).
        #: The reservation's amount in the ledger (``inflight`` of it taken by calls in flight).
        self.amount = 0
        #: Amounts settled here, by entry id, for the next batch (handed to ``settle_batch`` as they are) ...
        self.pending: dict[str, Decimal] = {}
        self.elsewhere = ZERO  # ... and the sum of those whose entries went to another store (no id to settle under)
        #: The sum of the amounts settled here since the last batch (``elsewhere`` too), acknowledged or not (those
        #: ``acked`` are in the store's total now, the others ``pending_sum``): one addition a call (an int).
        self.settled = 0
        self.acked = ZERO  # amounts whose entries were acknowledged before their batch: they hold their place
        self._acks: deque[str] = deque()  # ids of written entries, queued by ``acknowledged_found``
        self.count = 0  # how many amounts were settled here since the last batch
        #: ``unused()``, kept as calls take and settle: the one figure a call changes as it takes (what calls in flight
        #: hold, ``inflight``, follows from it), and one subtraction settles it (an int).
        self.free = 0
        #: What a call served from the lease cost on average in its last batch (zero before one): a lease is sized
        #: for calls of at least this much, so calls that cost more than their estimates do not run it dry early.
        self.typical = ZERO
        self.standing = Standing(ZERO, ZERO)  # the scope in the ledger, after the last batch
        #: The budget's figures while the lease is its own (``view``): ``base_spent + settled`` spent and
        #: ``base_total - free`` committed, so a call served and settled here changes only ``free`` and ``settled``.
        #: From each batch's standing, or the budget's newer reading (``rebase``).
        self.base_spent = self.base_total = ZERO
        #: The budget's spend below which no threshold can have been crossed (``quiet``), and as ``settled`` reads it
        #: (an int: ``settled < quiet_settled`` exactly when ``base_spent + settled < quiet_below``).
        self.quiet_below = ZERO
        self.quiet_settled = 0
        self.renewed = 0.0  # time.monotonic() of the last batch
        #: While the lease is ``live``, when its next batch is due (``time.time()`` seconds: ``RENEW_SECONDS`` after
        #: the last), else -inf: ``take`` checks both in one comparison ...
        self.due = _NOT_LIVE
        #: ... and for calls stamped by the system clock, the sooner of that and the end of the lease's period by the
        #: same clock (-inf if the last batch was not made in the period): one comparison also checks the period.
        self.period_due = _NOT_LIVE
        self.estimate = ZERO  # the estimate of the call the lease was last renewed for
        self.calls = LEASE_CALLS  # how many calls of that estimate it asks for (grows while calls come fast)
        self.live = False  # serving calls (it has headroom, and is neither closed nor another process's)
        #: The scope's period as epoch microseconds (``None``: unbounded): the budget serves calls of it only, checked
        #: against the tracker's clock read as an int (``CostTracker.now_micros``), with no datetime made per call.
        self.since_us = None if scope.since is None else micros(scope.since)
        self.until_us = None if scope.until is None else micros(scope.until)
        self._pid = os.getpid()
        _OPEN.add(self)
        _start_settler()
        _state.register_fork_aware(_EXIT)
        _state.track_live(_EXIT)

    @property
    def inflight(self) -> Decimal:
        """The estimates of the calls in flight served from the lease: its amount less what is unused and what calls
        settled here (kept as ``free`` alone: a call changes one figure as it takes, and one as it settles)."""
        return from_atto(self.amount - self.free - self.settled)

    @property
    def pending_sum(self) -> Decimal:
        """The amounts settled here whose entries are not acknowledged yet (``elsewhere`` too)."""
        return from_atto(self.settled) - self.acked

    def idle(self, now: float) -> bool:
        """Whether the lease serves calls but none has renewed it for ``IDLE_SECONDS`` (``now``: monotonic time)."""
        return self.live and now - self.renewed > IDLE_SECONDS

    def mine(self) -> bool:
        """Whether this process made the lease (a forked child must lease anew: this one is its parent's)."""
        return self._pid == os.getpid()

    # -- figures --------------------------------------------------------------------------------------------------
    def holding(self) -> bool:
        """Whether the lease holds a reservation or amounts awaiting their batch (closing it would settle them)."""
        return self.reservation is not None or bool(self.settled) or bool(self.acked) or bool(self.elsewhere)

    def unused(self) -> Decimal:
        """Headroom not taken by calls in flight or amounts awaiting their batch."""
        return from_atto(self.free)

    def local(self) -> Decimal:
        """Amounts settled here since the last batch (what this process spent meanwhile)."""
        return from_atto(self.settled)

    def figures(self, standing: Standing | None = None) -> tuple[Decimal, Decimal]:
        """``(spent, committed)`` as this process sees the scope: the ledger's ``standing`` with this process's settled
        amounts as spent, and of its lease only the calls in flight reserved; by default ``view()``, from the last
        batch's standing or the budget's newer reading (``rebase``)."""
        with self._lock:
            # (Committed: spent, the scope's other reservations and what calls in flight took of the lease; that is
            # the scope's reservations less what the lease has unused, the amounts settled here being in spent.)
            settled, free = from_atto(self.settled), from_atto(self.free)
            if standing is None:
                return self.base_spent + settled, self.base_total - free
            self._take_acks()
            # (Acknowledged amounts are in the store's total now: spent counts only those still pending.)
            acked = self.acked
            return standing.spent + settled - acked, standing.spent + standing.reserved - free - acked

    def view(self) -> tuple[Decimal, Decimal]:
        """``(spent, committed)`` as the budget whose lease this is sees the scope: ``figures()`` (the caller holds the
        lease's lock)."""
        return self.base_spent + from_atto(self.settled), self.base_total - from_atto(self.free)

    def rebase(self, spent: Decimal, committed: Decimal) -> None:
        """The budget read the scope anew: ``view()`` is ``(spent, committed)`` now, and follows the calls from there
        (the caller holds the lease's lock)."""
        self.base_spent = spent - from_atto(self.settled)
        self.base_total = committed + from_atto(self.free)
        self.quiet_settled = _atto_up(self.quiet_below - self.base_spent)

    def relimit(self, limit: Decimal) -> None:
        """The budget's limit is ``limit`` now: the lease's next batch leases under it. A lower limit may not cover the
        headroom the lease holds (granted under the old one): it serves no more calls until that batch, which the
        budget's next call makes (settling, and leasing again under ``limit`` if there is room; else the budget
        reserves exactly). The caller holds the lease's lock."""
        if limit < self.limit:
            self.due = self.period_due = _NOT_LIVE  # (``take`` fails; ``live`` stays, so an idle lease is released)
        self.limit = limit

    def quiet(self, below: Decimal) -> None:
        """The budget's spend below which no threshold can have been crossed is ``below`` now: a call settled here
        leaving ``settled`` under ``quiet_settled`` needs no threshold check (the caller holds the lease's lock)."""
        self.quiet_below = below
        self.quiet_settled = _atto_up(below - self.base_spent)

    # -- calls ----------------------------------------------------------------------------------------------------
    # (``take``, ``done`` and ``drop`` run on every call, called by the budget holding the lease's lock: they do not
    # take it again, which would cost more than their own arithmetic.)
    def take(self, needed: Decimal, now_in_period: bool = False) -> bool:
        """Serve ``needed`` from the lease, if it is live, not due for its batch, and has that much unused (the
        caller holds the lease's lock). ``now_in_period``: and only if the system clock is in the lease's period now
        (the caller's call is stamped by it: the period checked here, with the batch's time, in one comparison)."""
        if _time() >= (self.period_due if now_in_period else self.due):  # (not live, due for its batch, or too late)
            return False
        free = self.free
        if free > 0:  # (as the ledger grants a reservation: some room, and ``needed`` within it)
            left = free - _atto_up(needed)  # (what ``_Leased`` holds of it: see ``leased``)
            if left >= 0:
                self.free = left
                return True
        return False

    def done(self, estimate: int, amount: Decimal, entry_id: str | None) -> bool:
        """Settle a call served with ``estimate`` (10**-18 USD, as it took it: ``leased``): in memory while the lease
        covers ``amount`` (its estimate given back plus what is unused; ``True``), else at once, with the batch
        (``False``). The caller holds the lease's lock."""
        atto = atto_of(amount)  # (exact: an entry's amount has money's places)
        free = self.free - (atto - estimate)  # (what is unused once the amount replaces the estimate)
        if self.live and atto >= 0 and free >= 0:
            pending = self.pending
            if entry_id is not None and entry_id not in pending:  # (``_keep``'s usual case, inline)
                pending[entry_id] = amount
                self.settled += atto
                self.free = free
                self.count += 1
            else:
                self.free += estimate
                self._keep(amount, entry_id, atto)
            return True
        self.free += estimate
        self._batch(self.live, (amount, entry_id))
        return False

    def settle_call(self, estimate: int, amount: Decimal, atto: int, entry_id: str) -> bool | None:
        """``done`` of the usual call with its quiet check, in one step: a call served with ``estimate`` whose entry
        ``entry_id`` cost ``amount`` (``atto`` in 10**-18 USD). ``True``: settled here, and no threshold can have been
        crossed (``settled`` is under ``quiet_settled``); ``False``: settled here, the budget checks its thresholds;
        ``None``: settled at once, with the batch (the budget reads its figures anew). The caller holds the lease's
        lock."""
        free = self.free - (atto - estimate)  # (as ``done``: what is unused once the amount replaces the estimate)
        if free >= 0 and atto >= 0 and self.live:
            pending = self.pending
            if entry_id not in pending:  # (``_keep``'s usual case, inline)
                pending[entry_id] = amount
                settled = self.settled = self.settled + atto
                self.free = free
                self.count += 1
                return settled < self.quiet_settled
            self.free += estimate
            self._keep(amount, entry_id, atto)
            return self.settled < self.quiet_settled
        self.free += estimate
        self._batch(self.live, (amount, entry_id))
        return None

    def drop(self, estimate: int) -> None:
        """Give back the ``estimate`` (10**-18 USD) of a call that recorded nothing that counts here (the caller holds
        the lease's lock)."""
        self.free += estimate
        if not self.live and self.reservation is not None:
            self._batch(False)  # what a closed lease still keeps shrinks to the calls left in flight

    def _keep(self, amount: Decimal, entry_id: str | None, atto: int | None = None) -> None:
        if atto is None:
            atto = atto_of(amount)
        if entry_id is None:
            self.elsewhere += amount
        else:
            pending = self.pending
            pending[entry_id] = pending[entry_id] + amount if entry_id in pending else amount
        self.settled += atto
        self.free -= atto
        self.count += 1

    def holding_of(self, ids: Sequence[str]) -> tuple[list[str], Decimal]:
        """Which of ``ids`` await this lease's batch, and the sum of their amounts (``([], 0)`` for none). Tells the
        lease nothing: see ``acknowledged_found``.

        Called by the tracker's writer as it writes, this takes no lock (nor does ``acknowledged_found``): a writer
        waiting for the budget's lock could wait for a thread that a signal interrupted while holding it, and
        SIGTERM's flush with it. (In C: the writer runs this for every entry.)"""
        pending = self.pending
        if not pending:
            return _NONE_HELD
        found = [*filter(pending.__contains__, ids)]
        if not found:
            return _NONE_HELD
        return found, sum(map(pending.get, found, repeat(ZERO)), ZERO)

    def acknowledged_found(self, found: Sequence[str]) -> None:
        """The entries of ``found`` (``holding_of``'s) are in the store, and the ledger counts them: they leave the
        lease's batch when it is next settled, their amounts keeping their place in the lease until then. It only
        queues the ids (``_take_acks`` moves them, under the lock); one the batch settled meanwhile is not found
        there, and was settled as written (the ledger knew it was)."""
        self._acks.extend(found)

    def _take_acks(self) -> None:
        """Move the amounts of queued acknowledged entries out of ``pending`` (caller holds the lock)."""
        acks, pending = self._acks, self.pending
        while acks:
            amount = pending.pop(acks.popleft(), None)
            if amount is not None:
                self.acked += amount  # (still settled here: ``settled`` is unchanged)

    # -- batches --------------------------------------------------------------------------------------------------
    def renew(self, estimate: Decimal) -> bool:
        """Settle the batch and lease headroom for calls of ``estimate`` in one transaction; whether any was granted.

        The lease asks for ``calls`` calls (``LEASE_CALLS`` at first, more while they come fast) of the larger of
        ``estimate`` and what its last batch's calls cost on average (estimates are often low), in whole estimates, at
        most ``1/LEASE_SHARE`` of the room left."""
        with self._lock:
            if self._pid != os.getpid():
                return False
            self.estimate = estimate
            self._batch(True)
            return self.live

    def close(self, wait: float | None = None) -> bool:
        """Settle the batch and release the lease (keeping only what calls in flight took); it serves no more calls.

        ``wait``: at most this many seconds for the lease's lock (``None``: as long as it takes); ``False`` when it
        was not had, and nothing was done (at exit: the reservation lapses after the ledger's lease, and the calls'
        entries count from the store once written)."""
        lock = self._lock
        if not lock.acquire(timeout=-1 if wait is None else wait):
            return False
        try:
            self.live, self.due, self.period_due = False, _NOT_LIVE, _NOT_LIVE
            if self._pid == os.getpid() and self.holding():
                self._batch(False)
            if self.reservation is None:
                _OPEN.discard(self)
        finally:
            lock.release()
        return True

    def _batch(self, renew: bool, extra: tuple[Decimal, str | None] | None = None) -> None:
        """One ledger transaction: the pending amounts (and ``extra``, a call's ``(amount, entry id)``) settled, the
        lease replaced by what calls in flight took plus new headroom if ``renew`` (else released). On failure
        nothing changed in the ledger, so everything stays pending (``extra`` too) for the next batch."""
        if self._pid != os.getpid():  # another process's lease (this is a forked child): settle ``extra`` alone
            if extra is not None:
                self.store.settle(self.scope, extra[0], entry_id=extra[1])
            return
        self._take_acks()
        # What the calls served from the lease cost (``extra`` aside: it did not fit) sizes the next lease.
        spent, count = self.local(), self.count
        if extra is not None:
            self._keep(*extra)  # settled with the batch (and pending with it if the batch fails)
        terms = None
        if renew and self.live:  # (it ran out, or is due: how long it lasted says how large the next should be)
            lasted = time.monotonic() - self.renewed
            if lasted < FAST_SECONDS:
                self.calls = min(self.calls * 2, MOST_LEASE_CALLS)
            elif lasted > SLOW_SECONDS:
                self.calls = max(self.calls // 2, LEASE_CALLS)
        if renew and self.estimate > 0:
            typical = spent / count if count else self.typical
            per_call = typical if typical > self.estimate else self.estimate
            terms = LeaseTerms(per_call * self.calls, self.estimate, LEASE_SHARE)
        inflight = self.amount - self.free - self.settled
        renewal = self.store.settle_batch(
            self.scope,
            self.pending,  # (as it is: the ledger neither changes nor keeps it, and a new one replaces it below)
            elsewhere=self.elsewhere,
            reservation=self.reservation,
            keep=from_atto(inflight),
            renew=terms,
            limit=self.limit,
            before=self._take_acks,  # (again under the ledger's lock: a writer's acknowledgement may have ended)
        )
        if count:
            self.typical = spent / count
        self.pending, self.elsewhere, self.count = {}, ZERO, 0
        self.settled, self.acked = 0, ZERO
        self.reservation = renewal.reservation
        # (Whole units: what calls in flight hold plus whole estimates, each of money's places.)
        self.amount = atto_of(renewal.reservation.amount, ROUND_FLOOR) if renewal.reservation is not None else 0
        self.free = self.amount - inflight
        standing = self.standing = renewal.standing
        self.base_spent = standing.spent
        self.base_total = standing.spent + standing.reserved
        self.quiet_settled = _atto_up(self.quiet_below - standing.spent)
        self.renewed = time.monotonic()
        self.live = renewal.headroom > 0
        self._set_due()
        if self.reservation is not None:
            _OPEN.add(self)
        else:
            _OPEN.discard(self)  # nothing left to settle or release

    def _set_due(self) -> None:
        """``due`` and ``period_due`` after a batch."""
        if not self.live:
            self.due = self.period_due = _NOT_LIVE
            return
        now = _time()
        due = self.due = now + RENEW_SECONDS
        # (Period bounds are whole seconds, exact as floats; ``now`` before the start: the system clock is not the
        # one the period was found by, and its calls check the period by the tracker's clock.)
        since, until = self.since_us, self.until_us
        if since is not None and now < since / 1e6:
            self.period_due = _NOT_LIVE
        else:
            self.period_due = due if until is None or due < until / 1e6 else until / 1e6

    def forked(self) -> None:
        """In a forked child: the lease is the parent's (its reservation and amounts are the parent's to settle)."""
        if self._pid != os.getpid():
            self.live, self.due, self.period_due = False, _NOT_LIVE, _NOT_LIVE
            self.reservation, self.amount = None, 0
            self.pending, self.elsewhere, self.count = {}, ZERO, 0
            self.settled, self.acked, self.free = 0, ZERO, 0
            self._acks.clear()
            _OPEN.discard(self)


class LocalLease(Lease):
    """A ``Lease`` on an in-process ledger (a ``LocalLedger``: ``MemoryStore``'s, and the default of any store): no
    headroom is leased and nothing waits for a batch, each call reserves and settles exactly in the ledger, with
    plain arithmetic under its lock. No other process shares the ledger, so leasing would save no transaction;
    calling exactly keeps every call checked against the scope as it stands (entries recorded outside the budget
    included), as a reservation per call does. What this saves is that protocol's objects and look-ups on every call.

    The calls in flight hold their estimates in one reservation of the ledger (``hold``), added to by each call and
    dropped by ``close`` once none is in flight (else as the last one settles: ``LocalLedger.close_hold``); the lease
    keeps serving calls after it (a budget used as a decorator closes it after every call). The budget makes it in
    place of a ``Lease`` (the same methods); it is never one of the process's open leases: it has nothing to settle at
    exit, and a forked child's copy of the ledger holds its own copy of the hold.

    Over a ``fed`` ledger (a ``MemoryStore``'s) the lease keeps its scope's ``account``, looked up once
    (``open_kept``), and a call's check and settlement are one ledger step each, under the ledger's lock alone: the
    budget calls ``ledger.take_kept(account, ...)`` for a call of the lease's period (``since_us`` to ``until_us``)
    without its own lock, and ``give_back`` once the call's row is appended (the row is counted in the same step).
    There the calls in flight hold their estimates in the account itself, with no hold (``hold`` is ``None``): each
    gives its own back. Elsewhere each call grows and settles the hold by its scope (``grow``, ``settle_held``).

    Example::

        lock = threading.RLock()
        lease = LocalLease(store, store.ledger(), scope, limit=Decimal("10"), lock=lock)
        with lock:
            served = lease.take(Decimal("0.0025"))
        if served:
            ...  # make the call
            with lock:
                lease.done(Decimal("0.0025"), entry.amount, entry.id)
    """

    def __init__(  # (no super().__init__: a LocalLease registers nothing, see above)
        self, store: LeaseStore, ledger: LocalLedger, scope: BudgetScope, *, limit: Decimal, lock: Any
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.scope = scope
        self.limit = limit
        self._lock = lock
        self.live = True
        self.standing = Standing(ZERO, ZERO)  # (unused: the figures below are the ledger's, as of the last call)
        self.spent = ZERO  # the scope's spent and reserved in the ledger after the last call settled
        self.reserved = ZERO
        #: The scope's period as epoch microseconds (``None``: unbounded): the lease serves calls of it only.
        self.since_us = None if scope.since is None else micros(scope.since)
        self.until_us = None if scope.until is None else micros(scope.until)
        #: The ledger's reservation holding the estimates of the calls in flight, and (a fed ledger) the account it is
        #: in, both for the lease's whole life: a call gives its estimate back where it took it from.
        self.account: Any = None
        self.hold: int | None = None
        if ledger.fed:
            self.account = ledger.open_kept(scope)
        else:
            self.hold = ledger.open_hold(scope)
        self._pid = os.getpid()

    def idle(self, now: float) -> bool:
        return False  # nothing is held for calls not in flight

    def mine(self) -> bool:
        return True  # (a forked child has its own copy of the ledger, and of the hold in it)

    def holding(self) -> bool:
        return False  # (only calls in flight, which settle or release themselves)

    def unused(self) -> Decimal:
        return ZERO

    def local(self) -> Decimal:
        return ZERO

    def figures(self, standing: Standing | None = None) -> tuple[Decimal, Decimal]:
        """``(spent, committed)`` of the scope: from ``standing``, or as the last call to settle left it."""
        if standing is None:
            spent = self.spent
            return spent, spent + self.reserved
        return standing.spent, standing.spent + standing.reserved

    def relimit(self, limit: Decimal) -> None:
        """The budget's limit is ``limit`` now: each call is checked against it from the next on (nothing is held
        beyond what calls in flight took)."""
        self.limit = limit

    def take(self, needed: Decimal, now_in_period: bool = False) -> bool:
        """Reserve ``needed`` in the ledger if the limit covers it (``False``: it does not; the budget then reserves
        exactly, which refuses the call or, for a budget that warns, forces it). The caller holds the lease's lock
        (and checked the call's period: ``now_in_period`` is not read)."""
        account = self.account
        if account is not None:
            # (``None``: the ledger forgot the account, an old period's; the budget reserves exactly then.)
            return self.ledger.take_kept(account, needed, self.limit) is True
        # (A hold ``close`` dropped is added again as a call grows it.)
        hold = self.hold
        assert hold is not None  # (a lease without an account has a hold)
        return self.ledger.grow(self.scope, hold, needed, limit=self.limit)

    # (``done`` and ``drop`` get the Decimal estimate a call reserved in the ledger, where a ``Lease`` gets the ints
    # it took from its headroom: each is given what its calls' tokens hold.)
    def done(self, estimate: Decimal, amount: Decimal, entry_id: str | None) -> bool:  # type: ignore[override]
        """Settle a call that took ``estimate``: its ``amount`` counted in the ledger in its place (``False``: the
        budget reads the scope's figures after it with ``figures()``). The caller holds the lease's lock."""
        self._settle(estimate, amount, entry_id)
        return False

    def drop(self, estimate: Decimal) -> None:  # type: ignore[override]
        """Give back the ``estimate`` of a call that recorded nothing that counts here."""
        self._settle(estimate, None, None)

    def _settle(self, estimate: Decimal, amount: Decimal | None, entry_id: str | None) -> None:
        """Settle a call that took ``estimate`` (``done``; ``amount`` ``None``: ``drop``), the figures kept."""
        if self.account is not None:
            standing = self.ledger.settle_kept(self.scope, self.account, estimate, amount, entry_id)
            self.spent, self.reserved = standing.spent, standing.reserved
        else:
            hold = self.hold
            assert hold is not None  # (a lease without an account has a hold)
            self.spent, self.reserved = self.ledger.settle_held(self.scope, hold, estimate, amount, entry_id)

    def renew(self, estimate: Decimal) -> bool:
        """Read where the scope stands (for ``figures``); always ``True``: the lease serves calls as long as the limit
        covers each."""
        with self._lock:
            standing = self.ledger.standing(self.scope)
            self.spent, self.reserved = standing.spent, standing.reserved
            return True

    def close(self, wait: float | None = None) -> bool:
        """Drop the hold now if no call is in flight, else as the last one settles (``LocalLedger.close_hold``; over a
        fed ledger there is none: each call in flight gives its own estimate back)."""
        if self.hold is None:
            return True
        lock = self._lock
        if not lock.acquire(timeout=-1 if wait is None else wait):
            return False
        try:
            self.ledger.close_hold(self.hold)
        finally:
            lock.release()
        return True

    def forked(self) -> None:
        """Nothing to do: a forked child's ledger is a copy, with the hold in it."""


#: What this process's leases on a store hold of entries being acknowledged: ``(lease, ids found, their sum)``.
_Holding = list[tuple[Lease, list[str], Decimal]]


class Acknowledging:
    """The acknowledgement of the written entries ``ids`` to this process's leases on ``store``: the ledger looks at
    what they hold of them (``held``) under its lock, as it counts the entries, and the leases are told once it has
    (``tell``, once; it looks for itself if the ledger did not). Looked at before the ledger's lock, a lease's batch
    could settle them in between, and the ledger counted them again.

    Example::

        acking = Acknowledging(store, ids)
        ledger.acknowledge_ids(ids, leased=acking.held, counted=acking.tell)
        acking.tell()
    """

    __slots__ = ("_held", "_ids", "_store", "_told")

    def __init__(self, store: LeaseStore, ids: Sequence[str]) -> None:
        self._store, self._ids = store, ids
        self._held: _Holding | None = None
        self._told = False

    def _holding(self) -> _Holding:
        """What the leases on the store hold of the entries for their next batches, telling them nothing."""
        held: _Holding = []
        if _OPEN:
            for lease in list(_OPEN):
                if lease.store is self._store:
                    found, amount = lease.holding_of(self._ids)
                    if found:
                        held.append((lease, found, amount))
        return held

    def held(self) -> dict[str, Decimal]:
        """What the leases hold of the entries for their next batches, by scope key, looked at now."""
        held = self._held = self._holding()
        sums: dict[str, Decimal] = {}
        for lease, _, amount in held:
            key = lease.scope.key
            sums[key] = sums.get(key, ZERO) + amount
        return sums

    def tell(self) -> None:
        """Tell the leases (once) that the entries are in the store and counted by the ledger."""
        if self._told:
            return
        self._told = True
        for lease, found, _ in self._held if self._held is not None else self._holding():
            lease.acknowledged_found(found)


def close_leases(store: LeaseStore | None = None, wait: float | None = None) -> None:
    """Settle and release this process's leases (on ``store``; ``None``: on every store), waiting at most ``wait``
    seconds for each one's lock (``None``: as long as it takes)."""
    for lease in list(_OPEN):
        if store is None or lease.store is store:
            try:
                if not lease.close(wait):
                    logger.warning("llmcost: a budget lease on %r was busy at exit: it lapses", lease.store)
            except Exception as exc:  # noqa: BLE001 - the others still settle; this one lapses after the ledger's lease
                logger.warning("llmcost: could not settle a budget lease on %r: %r", lease.store, exc)


def settle_idle() -> None:
    """Settle and release this process's idle leases (``Lease.idle``) whose lock is free at once (a busy one is in
    use, and renewed by its calls)."""
    now = time.monotonic()
    for lease in list(_OPEN):
        if lease.mine() and lease.idle(now):
            try:
                lease.close(wait=0)
            except Exception as exc:  # noqa: BLE001 - tried again on the next round; it lapses after the ledger's lease
                logger.warning("llmcost: could not settle an idle budget lease on %r: %r", lease.store, exc)


_SETTLER_ROUND = 0.5  # seconds between the settler's looks (each is a glance at ``_OPEN`` while no lease is open)


def _start_settler() -> None:
    """Start this process's thread that settles idle leases, if it is not running (a forked child starts its own)."""
    with _state.lock:
        running = _state.lease_settler
        if running is not None and running[0] == os.getpid() and running[1].is_alive():
            return
        stop = threading.Event()
        settler = threading.Thread(target=_settle_idle_forever, args=(stop,), name="llmcost-lease-settler", daemon=True)
        _state.lease_settler = (os.getpid(), settler, stop)
        settler.start()


def _settle_idle_forever(stop: threading.Event) -> None:
    while not stop.wait(_SETTLER_ROUND):
        if _OPEN:
            settle_idle()


def _stop_settler() -> None:
    """Stop this process's settler and wait for its round to end (the exit hook, before the leases settle).

    The settler is a daemon thread: left in a ledger's store read (DuckDB, which runs without the GIL) as the
    interpreter finalizes, CPython ends it with ``pthread_exit`` as it takes the GIL back, and the unwind through
    DuckDB's C++ frames aborts the process (as ``CostTracker.stop_writer`` says of the tracker's writer)."""
    running = _state.lease_settler
    if running is None or running[0] != os.getpid():
        return  # none started here (a forked child's copy is its parent's thread, which does not run in it)
    _, settler, stop = running
    stop.set()
    if settler is not threading.current_thread():
        settler.join()


#: How long exit waits for a lease's lock (a SIGTERM may interrupt the main thread while it holds one).
EXIT_WAIT_SECONDS = 0.5


class _AtExit:
    """Settles every lease at process exit (and on SIGTERM, and as a ``multiprocessing`` child ends: ``_state``
    flushes it after the trackers, ``flush_last``), and forgets them in a forked child."""

    flush_last = True

    def stop_writer(self) -> None:
        """(At exit, before ``flush``) stop the thread that settles idle leases (``_stop_settler``)."""
        _stop_settler()

    def flush(self) -> None:
        close_leases(wait=EXIT_WAIT_SECONDS)

    def close(self) -> None:
        close_leases(wait=EXIT_WAIT_SECONDS)

    def forked(self) -> None:
        for lease in list(_OPEN):
            lease.forked()


_EXIT = _AtExit()
