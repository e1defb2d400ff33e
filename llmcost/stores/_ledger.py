"""The budget ledger: reservations and settled amounts that every process sharing a store sees.

A period budget asks its store's ledger, before each call, to *reserve* the call's estimate in the budget's
``BudgetScope`` (its filters and current period). The ledger grants it only if the limit still covers

    spent = recorded spend in the store that matches the scope   (``base``, read with ``store.total``)
          + settled amounts whose entries are not in the store yet (recorded, still in a tracker's buffer)
    plus    open reservations of every process,

and records the reservation in the same atomic step. After the call the budget *settles* the actual amount: the
reservation is replaced by a settled amount kept under the entry's id, so other processes see the real cost at once
(an overage included). When the tracker has written the entry, the store *acknowledges* it: the settled amount goes
and the next check reads ``base`` again, now with the entry in it. So every amount is counted exactly once: first
as a reservation, then as settled, then as recorded. Between a write and its acknowledgement an entry is both in
the store and settled: the writer's own ledger knows it is written the moment the append returns (``writing``), and
its readings of recorded spend leave such entries' settled amounts out. Another process that reads recorded spend in
that instant (or another ledger object in this one) may count the entry twice until the acknowledgement: the ledger
errs towards refusing, never towards overspending (see ``SqliteLedger``).

``base`` is read again when any acknowledgement happened since it was read, and every ``refresh`` seconds (for
writers that do not use the ledger). A new period starts from the store's recorded spend of that period.

A process may also *lease* headroom (``settle_batch`` with ``renew``): one reservation of several calls' worth,
from which its calls reserve locally, their amounts settled later in a batch, each under its entry's id as
``settle`` does, in the same transaction that renews or releases the lease (see ``_lease``). To every other process
the lease is an open reservation like any other, so the limit holds exactly as it does call by call.

``LocalLedger`` keeps all this in one process (``MemoryStore``, and the default of any ``CostStore``), where a
budget reserves and settles each call through one *hold* of its own (``open_hold``, ``grow``, ``settle_held``: the
same bookkeeping as ``reserve``/``settle``, as plain arithmetic under the ledger's lock; see ``_lease.LocalLease``),
or, over a ``fed`` ledger, in the scope's account itself (``take_kept``, ``give_back``: one addition each);
a fed ledger may also lend a plain scope's account to one budget as ints (``lend``, ``LentAccount``): its calls then
reserve and settle there with no step of the ledger, until any other step takes it back;
``_ledger_sqlite.SqliteLedger`` keeps it in a SQLite file beside a DuckDB or Parquet store, for every process on
the host. Both share ``Receipts``, the per-process bookkeeping of which entries this process settled (a ``fed``
``LocalLedger`` keeps those ids itself, under the lock it holds as appends reach it).
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from decimal import ROUND_DOWN, Context, Decimal, localcontext
from decimal import getcontext as _getcontext
from functools import reduce
from itertools import islice, repeat
from operator import is_, itemgetter
from typing import Any

import attrs

from .. import _state
from .._entry import CostEntry, FrozenTags
from .._frozen_map import FrozenMap, held
from .._money import EXACT_DIGITS, ZERO, from_atto
from .._time import micros
from ._filters import Filters

__all__ = [
    "DEFAULT_LEASE",
    "REFRESH_SECONDS",
    "BudgetScope",
    "LeaseTerms",
    "Ledger",
    "LentAccount",
    "LocalLedger",
    "Receipts",
    "Renewal",
    "Reservation",
    "Standing",
    "entry_models",
    "exact_sum",
    "filter_kwargs",
    "headroom",
    "start_heartbeat",
]

logger = logging.getLogger("llmcost")

#: Seconds after which a reservation of a process that stopped renewing it (it died) is released.
DEFAULT_LEASE = 60.0
#: Seconds after which a scope's recorded spend is read from the store again, even with no acknowledgement since.
REFRESH_SECONDS = 5.0
_EXACT_DIGITS = 80
# ``LocalLedger``'s sums and differences of amounts, made in a context of their own: the ledger is reached in whatever
# decimal context the thread that reaches it has (a ``MemoryStore``'s move of its appends, every 256th append and on
# any read, counts them here; so do the ledger's own methods as they catch up), and the operators would round to that
# one (``localcontext()`` of 3 digits counted $0.0006513 as $0.000651). Bound methods, read as module names: a
# ``localcontext()`` costs thousands of instructions, and ``take_kept``/``give_back`` run on every budgeted call.
_EXACT = Context(prec=_EXACT_DIGITS)
_add = _EXACT.add
_subtract = _EXACT.subtract
#: Accounts a ``LocalLedger`` keeps before a new one drops those of periods long over (``_forget_ended``).
_SWEEP_ACCOUNTS = 1024
_SEEN = 65_536  # (fed ledgers) appended ids kept for a settle that may still come, as ``Receipts`` keeps them


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """The exact sum of ``values`` (no rounding, whatever the magnitudes)."""
    with localcontext() as ctx:
        ctx.prec = _EXACT_DIGITS
        return +sum(values, ZERO)


def entry_models(entry: CostEntry) -> frozenset[str]:
    """The model ids a per-model budget matches ``entry`` by.

    The hook for canonical ids: once entries carry ``canonical_model``, a budget scoped to ``gpt-4o`` matches an
    entry whose ``model`` is ``gpt-4o-2024-08-06`` through it.
    """
    ids = {entry.model, getattr(entry, "canonical_model", None)}
    return frozenset(i for i in ids if isinstance(i, str))


@attrs.frozen
class BudgetScope:
    """What one budget counts in one period: the ledger's unit of account.

    ``budget`` names the budget the same way in every process (so processes with the same budget share one
    account); ``since``/``until`` bound the period (``None`` for ``total``); the other fields are the budget's
    filters.

    Example::

        scope = BudgetScope("manager:daily-cap", since=datetime(2024, 5, 1, tzinfo=timezone.utc),
                            until=datetime(2024, 5, 2, tzinfo=timezone.utc), resource="bot")
        store.reserve(scope, Decimal("0.01"), limit=Decimal("1"))
    """

    budget: str
    since: datetime | None = None
    until: datetime | None = None
    category: str | None = None
    resource: str | None = None
    model: str | None = None
    tags: FrozenTags | None = None

    #: The account's key in the ledger: a digest of ``budget``, and the start of the period.
    key: str = attrs.field(init=False, repr=False, eq=False)

    #: Whether the scope has no filters (only its period says which entries count).
    plain: bool = attrs.field(init=False, repr=False, eq=False)

    @key.default
    def _key(self) -> str:
        digest = hashlib.blake2b(self.budget.encode("utf-8"), digest_size=12).hexdigest()
        return f"{digest}@{self.since.isoformat() if self.since is not None else 'all'}"

    @plain.default
    def _plain(self) -> bool:
        return self.category is None and self.resource is None and self.model is None and not self.tags

    def filters(self) -> Filters:
        """The store filters of this scope's recorded spend."""
        return Filters(**filter_kwargs(self))

    def matches(self, entry: CostEntry) -> bool:
        """Whether ``entry`` counts in this scope (period and filters)."""
        if self.since is not None and entry.timestamp < self.since:
            return False
        if self.until is not None and entry.timestamp >= self.until:
            return False
        if self.category is not None and entry.category.value != self.category:
            return False
        if self.resource is not None and entry.resource != self.resource:
            return False
        if self.model is not None and self.model not in entry_models(entry):
            return False
        return not self.tags or all(entry.tags.get(k) == v for k, v in self.tags.items())

    def holds(self, entry: CostEntry) -> bool:
        """Whether ``entry`` falls in this scope's period (``matches`` without the filters)."""
        when = entry.timestamp
        since, until = self.since, self.until
        return (since is None or since <= when) and (until is None or when < until)

    def describe(self) -> str:
        """JSON of the filters (kept in a shared ledger for people reading it)."""
        return json.dumps(
            {"category": self.category, "resource": self.resource, "model": self.model, "tags": dict(self.tags or {})},
            sort_keys=True,
        )


@attrs.frozen
class Standing:
    """Where a scope stands: ``spent`` (recorded plus settled) and ``reserved`` (open reservations, every process).

    >>> from llmcost.stores import BudgetScope, MemoryStore
    >>> store = MemoryStore()
    >>> store.reserve(BudgetScope("team"), Decimal("0.25"), limit=Decimal("1")).granted
    True
    >>> store.standing(BudgetScope("team"))
    Standing(spent=Decimal('0'), reserved=Decimal('0.25'))
    """

    spent: Decimal
    reserved: Decimal


@attrs.frozen
class Reservation:
    """The answer to ``reserve``: ``granted`` or not, with the scope's standing *before* it.

    ``id`` identifies a granted reservation of a non-zero amount in the ledger (``None`` otherwise).

    >>> from llmcost.stores import BudgetScope, MemoryStore
    >>> store = MemoryStore()
    >>> first = store.reserve(BudgetScope("team"), Decimal("0.75"), limit=Decimal("1"))
    >>> first.granted, first.spent, first.reserved
    (True, Decimal('0'), Decimal('0'))
    >>> store.reserve(BudgetScope("team"), Decimal("0.5"), limit=Decimal("1")).granted  # 0.75 + 0.5 > 1
    False
    """

    scope: str
    amount: Decimal
    granted: bool
    spent: Decimal
    reserved: Decimal
    id: int | None = None


@attrs.frozen
class LeaseTerms:
    """What a lease asks of ``settle_batch``: headroom of at most ``most`` and at most ``1/share`` of the room the
    ledger sees in that transaction, in whole multiples of ``least`` (the call's estimate), granted only if that is
    more than ``least``: far from the limit a process serves calls from its lease, near it each call reserves
    exactly."""

    most: Decimal
    least: Decimal
    share: int = 8


@attrs.frozen
class Renewal:
    """The answer to ``settle_batch``: the new ``reservation`` (``None`` if nothing is reserved; its ``amount`` is the
    amount kept for calls in flight plus ``headroom``, its ``spent``/``reserved`` the standing before it), the new
    ``headroom`` granted (zero if none), and the scope's ``standing`` after the whole transaction."""

    reservation: Reservation | None
    headroom: Decimal
    standing: Standing


_ATOM = Decimal("1e-18")  # money's finest step: a lease is a whole number of them (NUMERIC(38, 18) keeps it exactly)


def headroom(terms: LeaseTerms | None, room: Decimal) -> Decimal:
    """The headroom ``terms`` get where ``room`` is left (after the batch's amounts and the amount kept): a whole
    number of ``terms.least`` (calls like the one asking), within both bounds, and zero unless that is more than one.
    Whole calls, so that a process never keeps a fraction of a call unused that another process could have made.
    Rounded down to money's 18 places."""
    if terms is None or room <= 0:
        return ZERO
    with localcontext() as ctx:
        ctx.prec = _EXACT_DIGITS
        grant = min(terms.most, room / terms.share)
        if terms.least > 0:
            grant = (grant // terms.least) * terms.least
        grant = grant.quantize(_ATOM, rounding=ROUND_DOWN)
    return grant if grant > terms.least else ZERO


class Receipts:
    """What one process knows about its own entries: which it settled (and awaits acknowledgements of), which were
    acknowledged before they were settled (a background flush can write an entry between the moment it is recorded
    and the moment its budget settles it), and which were set aside (``set_aside``: never to be acknowledged).
    Thread-safe."""

    _EARLY = 65_536  # acknowledged ids kept for a settle that may still come (only the last few matter)

    def __init__(self) -> None:
        self._lock = _state.new_lock()
        self.settled: set[str] = set()
        # (A dict keeps its order: the oldest ids are forgotten a quarter at a time, in C, not one by one.)
        self._early: dict[str, None] = {}
        # Ids of entries set aside lately, kept (as ``_early``, the last ``_EARLY``) for the acknowledgement of their
        # batch, which leaves them out, and for a settle that may still come (their settled amounts keep counting).
        self._aside: dict[str, None] = {}
        self.used = False

    def use(self) -> None:
        """This process has a budget on the ledger: from now on, acknowledgements matter."""
        self.used = True

    def settling(self, entry_id: str) -> bool:
        """Note that ``entry_id`` is about to be settled (in one scope or several); ``False`` if it was acknowledged
        already (the store's total has it: nothing to keep)."""
        with self._lock:
            if entry_id in self._early:
                return False
            if entry_id not in self._aside:  # (one set aside is kept, never acknowledged: nothing to wait for)
                self.settled.add(entry_id)
            return True

    def settling_all(self, ids: Collection[str]) -> set[str]:
        """``settling`` of each of ``ids`` at once; the set of those acknowledged already (usually empty)."""
        with self._lock:
            early = self._early
            written = {i for i in ids if i in early} if early and not early.keys().isdisjoint(ids) else set()
            self.settled.update(ids)
            if written:
                self.settled.difference_update(written)
            aside = self._aside
            if aside and not aside.keys().isdisjoint(ids):  # (set aside: kept, never acknowledged)
                self.settled.difference_update(aside.keys() & ids)
            return written

    def written(self, ids: Collection[str]) -> set[str]:
        """Those of ``ids`` acknowledged already (usually none), noting nothing: for a ledger that keeps which entries
        it settled itself (``SqliteLedger``'s batch rows)."""
        with self._lock:
            early = self._early
            return {i for i in ids if i in early} if early and not early.keys().isdisjoint(ids) else set()

    def aside(self, ids: Collection[str]) -> set[str]:
        """Those of ``ids`` set aside lately (usually none): an acknowledgement leaves them out."""
        with self._lock:
            aside = self._aside
            return {i for i in ids if i in aside} if aside and not aside.keys().isdisjoint(ids) else set()

    def set_aside(self, ids: Collection[str]) -> None:
        """The entries ``ids`` were set aside (``CostStore.set_aside``): they will never be in the store, so no
        acknowledgement of them will come. Their settled amounts keep counting (until their period's account goes,
        as those of entries that went to another store), and a settle of one that may still come is counted too.
        The acknowledgement of their batch leaves them out (``acknowledged_ids``)."""
        with self._lock:
            self.settled.difference_update(ids)  # (nothing to wait for: kept off, or the set grows for good)
            aside = self._aside
            aside.update(dict.fromkeys(ids))
            if len(aside) > self._EARLY + self._EARLY // 4:  # the oldest forgotten, the last _EARLY kept
                self._aside = dict.fromkeys(islice(aside, len(aside) - self._EARLY, None))

    def acknowledged(self, entries: Sequence[CostEntry]) -> list[str]:
        """``acknowledged_ids`` of ``entries``."""
        return self.acknowledged_ids([entry.id for entry in entries])

    def acknowledged_ids(self, ids: Sequence[str]) -> list[str]:
        """The ids among ``ids`` (of written entries) this process settled (now to be forgotten); remember every one
        as written, for a settle that may still come (early, or in another scope: counted once, in the store's total).

        The writer's per-entry work on every write: set and dict operations over the ids, in C."""
        with self._lock:
            settled, early, aside = self.settled, self._early, self._aside
            if aside and not aside.keys().isdisjoint(ids):  # (not in the store: never written, never acknowledged)
                ids = [i for i in ids if i not in aside]
            mine = [] if settled.isdisjoint(ids) else list(dict.fromkeys(i for i in ids if i in settled))
            if mine:
                settled.difference_update(mine)
            # Remembered either way: a settle of the entry in another scope may still come (it is written).
            early.update(dict.fromkeys(ids))
            if len(early) > self._EARLY + self._EARLY // 4:  # the oldest forgotten, the last _EARLY kept
                self._early = dict.fromkeys(islice(early, len(early) - self._EARLY, None))
        return mine


class Ledger(abc.ABC):
    """Reservations and settled amounts per ``BudgetScope``, atomic for everyone who shares the ledger.

    ``reserve`` checks and records in one atomic step; ``settle`` replaces a reservation (or nothing) by the actual
    amount of an entry; ``release`` drops a reservation (the call failed or recorded nothing that counts);
    ``acknowledge`` is told which entries the store now holds; ``standing`` reads a scope; ``settle_batch`` settles
    many calls and renews (or releases) a lease, in one step.

    Each store has one (``CostStore.ledger()``): budgets reach it through the store's ``reserve``, ``settle`` and
    ``release``.

    >>> from llmcost.stores import BudgetScope, MemoryStore
    >>> store = MemoryStore()
    >>> held = store.reserve(BudgetScope("team"), Decimal("0.5"), limit=Decimal("1"))
    >>> after = store.settle(BudgetScope("team"), Decimal("0.3"), reservation=held)  # the call cost 0.3
    >>> after.spent, after.reserved == 0
    (Decimal('0.3'), True)
    """

    #: Whether budgets lease headroom from this ledger (``settle_batch``) rather than reserve call by call: worth it
    #: where a reservation is a transaction in a file or a database every process shares.
    leases: bool = False

    @abc.abstractmethod
    def reserve(self, scope: BudgetScope, amount: Decimal, *, limit: Decimal, force: bool = False) -> Reservation:
        """Reserve ``amount`` in ``scope`` if ``limit`` covers it (``force``: reserve whatever it covers)."""

    @abc.abstractmethod
    def settle(
        self,
        scope: BudgetScope,
        amount: Decimal,
        *,
        reservation: Reservation | None = None,
        entry_id: str | None = None,
    ) -> Standing:
        """Count ``amount`` in ``scope`` in place of ``reservation``; until ``entry_id`` is acknowledged (forever
        with ``None``: an entry that goes to another store). Return the scope's standing after it."""

    @abc.abstractmethod
    def release(self, reservation: Reservation) -> None:
        """Drop ``reservation`` (a no-op if it was settled, released, or expired already)."""

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
        """In one atomic step: count in ``scope`` each of ``amounts`` (calls' actual amounts by their entries' ids)
        as ``settle`` would with that ``entry_id``, and ``elsewhere`` (the sum of those whose entries went to another
        store) as ``settle`` would with none; drop ``reservation`` (a lease), and reserve ``keep`` (what calls still
        in flight took from it, whatever the limit) plus the ``headroom`` that ``renew`` gets of the room left under
        ``limit`` (none without ``renew``: the lease is released).

        ``amounts`` is the lease's own mapping, as it is (no object per call): the ledger neither changes nor keeps
        it. ``before`` is called first, holding the ledger's lock in this process, before ``amounts`` is read: the
        lease takes out of it there the entries a writer acknowledged meanwhile (whose acknowledgement holds that
        lock, see ``CostStore._acknowledge``)."""
        raise NotImplementedError(f"{type(self).__name__} does not lease (its ``leases`` is False)")

    @abc.abstractmethod
    def standing(self, scope: BudgetScope, *, refresh: bool = False) -> Standing:
        """Where ``scope`` stands now (``refresh``: read its recorded spend from the store first)."""

    @abc.abstractmethod
    def acknowledge(self, entries: Sequence[CostEntry]) -> None:
        """``entries`` are in the store now (the tracker wrote them)."""

    #: Whether ``acknowledge_ids`` does ``acknowledge``'s work from the entries' ids alone: the tracker's writer then
    #: tells the ledger what it wrote without building a ``CostEntry`` per entry (``CostStore.acknowledge_columns``).
    by_id: bool = False

    def acknowledge_ids(
        self,
        ids: Sequence[str],
        *,
        leased: Callable[[], Mapping[str, Decimal]] | None = None,
        counted: Callable[[], object] | None = None,
    ) -> None:
        """``acknowledge`` of the entries with these ``ids`` (ledgers whose ``by_id`` is true). ``counted`` is called
        once the ledger counts them, before any slower work (``SqliteLedger`` reads the store's spend again after
        it): the store tells the leases there (see ``CostStore._acknowledge``). Not called if the ledger's step fails.

        ``leased()``: what budgets' leases in this process hold of those entries for their next batches, by scope key
        (``_lease.Acknowledging.held``), to be looked at under the ledger's lock as it counts the entries (so no
        lease batch settles them in between). The ledger never held those amounts; the store's spend has them now.
        A ledger that reads that spend apart from its own transactions counts them while it cannot read it
        (``SqliteLedger``); one that reads it within them need not call it."""
        raise NotImplementedError(f"{type(self).__name__} acknowledges entries, not ids (its ``by_id`` is False)")

    def set_aside_ids(self, ids: Sequence[str]) -> None:  # noqa: B027 - optional, as ``begin``
        """The entries ``ids`` were set aside (``CostStore.set_aside``), never to be in the store: what was settled
        for them keeps counting until their period's account goes (the money was spent), as for an entry that went to
        another store, and the acknowledgement of their batch leaves them out (``aside``). A ledger told of every
        append (a ``fed`` one) never counted them as written, and needs no telling; this default does nothing."""

    def aside(self, ids: Collection[str]) -> Collection[str]:
        """Those of ``ids`` set aside lately (``set_aside_ids``): an acknowledgement leaves them out, so that neither
        the ledger nor a lease drops what it holds of them. This default knows of none."""
        return ()

    def held_unwritten(self, scope: BudgetScope) -> Collection[str]:
        """The ids of entries whose amounts this process settled in ``scope``'s account and that the ledger holds
        there until they are acknowledged as written (its spend counts them meanwhile): a budget need not write them
        before it reads that spend (``Budget``, ``holds_unwritten``). This default knows of none."""
        return ()

    def spend_unreadable(self) -> bool:
        """Whether the store's recorded spend could not be read when last tried, and is not tried again yet: the
        ledger counts from its last reading meanwhile (``SqliteLedger``). This default reads it in its own
        transactions (or from memory), so it is never so."""
        return False

    def begin(self) -> None:  # noqa: B027 - optional: only ledgers that track acknowledgements need it
        """A budget starts using the ledger in this process: from now on acknowledgements matter."""

    def writing(self, ids: Sequence[str]) -> AbstractContextManager[None]:
        """Around a tracker's append of the entries ``ids`` to the store (``CostStore.writing``): a ledger that reads
        recorded spend knows, from the moment the append returns, that they are in the store, before the writer
        acknowledges them. This default does nothing."""
        return contextlib.nullcontext()

    def close(self) -> None:  # noqa: B027 - optional: ledgers without files or threads have nothing to release
        """Release files and threads; the ledger may be used again later."""


@attrs.define
class _Account:
    """One scope's numbers in a ``LocalLedger``: recorded spend (``base``), amounts settled but not yet recorded
    (``settled``), and ``committed``, the two plus every open reservation, kept as one figure (a call's check is then
    one addition and comparison; ``reserved`` is found from it when read)."""

    base: Decimal
    gen: int
    read_at: float
    committed: Decimal
    settled: Decimal = ZERO
    #: Open reservations by id, and the amount each holds (a kept account's calls hold none here: ``take_kept``).
    holds: dict[int, Decimal] = attrs.field(factory=dict)
    entries: dict[str, Decimal] = attrs.field(factory=dict)
    #: The scope's period as epoch microseconds (``None``: unbounded), as appended rows give their timestamps.
    since_us: int | None = None
    until_us: int | None = None
    #: The scope's key in the ledger (``BudgetScope.key``), and whether the ledger still keeps the account (``False``
    #: once ``_forget_older`` dropped it: a ``LocalLease`` that kept it must look the scope up again).
    key: str = ""
    kept: bool = True

    @property
    def reserved(self) -> Decimal:
        """Open reservations: what is committed beyond spend."""
        return _subtract(_subtract(self.committed, self.base), self.settled)

    def standing(self) -> Standing:
        """Where the account stands: ``Standing(spent, reserved)``."""
        spent = _add(self.base, self.settled)
        return Standing(spent, _subtract(self.committed, spent))

    def rebase(self, base: Decimal) -> None:
        """Recorded spend read anew: ``base``, and ``committed`` with it."""
        self.committed = _add(self.committed, _subtract(base, self.base))
        self.base = base


#: A lent account's period bounds when unbounded, as ints (a comparison of two ints is the cheapest check).
_NO_SINCE, _NO_UNTIL = -(1 << 80), 1 << 80


class LentAccount:
    """A fed ledger's account, lent to one budget as ints of 10**-18 USD (``LocalLedger.lend``).

    While no other account of a ``LocalLedger`` can count the rows of its period (its scope is plain: every row of the
    period counts; no other account's period meets it), one budget may take it as ints: its calls then reserve
    (``committed`` plus the estimate, against the budget's limit) and settle (the call's row counted into ``base`` and
    ``committed``, the estimate given back) in integer steps, as ``take_kept``/``give_back`` do with Decimals, without
    a call into the ledger. The ledger counts nothing while the account is lent: ``told`` is its count of ``appends``
    meanwhile, and a call counts its own row itself, only when the row is the one append not yet counted
    (``len(appends) == told + 1``), so every row is counted once. Any other news (an append the budget did not make,
    any step of the ledger: another account, a reading, a move of the appends into the store's columns) makes the
    ledger take the account back first (``live`` turns false, the figures go back into the account as Decimals), and
    the budget's calls go the ledger's way until it lends the account again.

    Every field is read and written by the holder of ``baton`` (the budget's token, a list holding one item: taken
    with ``pop``, given back with ``append``; cheaper than the ledger's ``RLock``, whose ``acquire`` parses its
    arguments), which holds nothing else meanwhile and calls nothing; the ledger takes it too (waiting with ``wait``)
    as it takes the account back. Example::

        lent = ledger.lend(account, tracker=tracker, owner=lease, baton=[True], wait=wait)  # or None
        lent.baton.pop()
        try:
            if lent.live and len(lent.appends) == lent.told and lent.committed + estimate <= limit:
                lent.committed += estimate
        finally:
            lent.baton.append(True)
    """

    __slots__ = (
        "account",
        "appends",
        "base",
        "baton",
        "committed",
        "live",
        "owner",
        "since_ns",
        "since_us",
        "start",
        "told",
        "tracker",
        "until_ns",
        "until_us",
        "wait",
    )

    def __init__(self, account: _Account, appends: list[Any], told: int, base: int, committed: int, **kw: Any) -> None:
        self.baton: list[bool] = kw["baton"]
        self.wait: Callable[[list[bool]], None] = kw["wait"]
        self.account = account
        self.appends = appends
        self.told = told
        self.base = base
        self.committed = committed
        self.tracker: Any = kw["tracker"]
        self.owner: Any = kw["owner"]
        self.since_us = _NO_SINCE if account.since_us is None else account.since_us
        self.until_us = _NO_UNTIL if account.until_us is None else account.until_us
        self.since_ns, self.until_ns = self.since_us * 1000, self.until_us * 1000  # (the clock as ``time_ns`` reads it)
        self.live = True
        self.start = told  # (``served``)

    def served(self) -> int:
        """How many calls counted their rows here (a long loan is worth lending again)."""
        return self.told - self.start if self.live else self.start

    def end(self) -> int:
        """(The ledger, taking the account back) end the loan: the count of appends as the ledger should take it. From
        here ``told`` is -2, which no length of the appends matches, so a call's check and settling see the loan is
        over with the one comparison they make anyway; ``start`` keeps how many calls it served."""
        told = self.told
        self.live = False
        self.start, self.told = told - self.start, -2
        return told


def _exact_atto(amount: Decimal) -> int | None:
    """``amount`` in ints of 10**-18 USD if it has no more places (else ``None``)."""
    scaled = amount.scaleb(18, _EXACT)
    whole = int(scaled)
    return whole if whole == scaled else None


class LocalLedger(Ledger):
    """A ledger in this process's memory, for stores no other process writes (or as the default of any store).

    ``total(filters)`` reads recorded spend from the store. With ``fed`` the ledger counts every entry appended to the
    store (as a row of its fields), so recorded spend is kept as a running total and never read again: a
    ``MemoryStore`` gives it its list of ``appends`` (appended to without the lock; ``row_of`` makes a row of an item
    that is not one), which the ledger reads under ``lock`` (the store's) before it reads an account, counting the
    items it has not counted yet, and the store takes counted items off its front (``counted_appends``) as it moves
    them into its columns. So appends themselves need not take the lock. Without ``fed``, recorded spend is read
    again after acknowledgements and every ``refresh`` seconds.

    Example::

        ledger = LocalLedger(store.total)
        r = ledger.reserve(scope, Decimal("0.02"), limit=Decimal("1"))
        if r.granted:
            ledger.settle(scope, Decimal("0.019"), reservation=r, entry_id=entry.id)
    """

    def __init__(
        self,
        total: Callable[..., Decimal],
        *,
        lock: threading.RLock | None = None,
        fed: bool = False,
        refresh: float = REFRESH_SECONDS,
        appends: list[Any] | None = None,
        row_of: Callable[[Any], tuple[Any, ...]] | None = None,
    ) -> None:
        self._total = total
        self._lock = lock if lock is not None else _state.new_rlock()
        self._fed = fed
        # (Fed ledgers) the store's list of appends not yet moved into its columns (never rebound; appended to without
        # the lock, taken from the front only under it, by ``counted_appends``), ``_told`` of them counted here: the
        # ledger reads it itself, so a look that finds nothing new costs a ``len``. ``row_of``: an item as a row.
        self._appends: list[Any] = appends if appends is not None else []
        self._told = 0
        self._row_of = row_of if row_of is not None else _as_row
        self._refresh = refresh
        self._accounts: dict[str, tuple[BudgetScope, _Account]] = {}
        # The same accounts as a row finds them (``_keep``): those of scopes with tags by one of their tags (a row can
        # count only in those of its own tags: a thousand users' budgets are not a thousand checks of every row), the
        # rest checked against every row.
        self._rowwise: dict[str, tuple[BudgetScope, _Account]] = {}
        self._by_tag: dict[tuple[str, Any], dict[str, tuple[BudgetScope, _Account]]] = {}
        # Accounts kept past which the next new one drops those of periods long over (``_forget_ended``), as the
        # first account of a period later than any before does (``_latest_us``, the latest start of a period).
        self._sweep_at = _SWEEP_ACCOUNTS
        self._latest_us = _NO_SINCE
        self._gen = 0
        self._ids = 0
        self._holds: dict[int, str] = {}  # reservation id -> scope key
        self.receipts = Receipts()
        # (Fed ledgers, under ``lock``, in place of ``receipts``: appends reach the ledger under the lock it holds
        # anyway, so the ids need no lock of their own.) Ids settled before they were appended, and ids appended that
        # no settle has claimed (yet: a settle that comes after the append finds its entry counted already).
        self._unfed: set[str] = set()
        self._seen: dict[str, None] = {}
        # Holds that ``close_hold`` found holding calls in flight: each is dropped as its last call settles.
        self._closing: set[int] = set()
        # (Fed ledgers) the account lent to a budget as ints (``lend``): taken back before any other step.
        self._lent: LentAccount | None = None

    def begin(self) -> None:
        self.receipts.use()

    def _settling(self, entry_id: str) -> bool:
        """``Receipts.settling`` (caller holds the lock): ``False`` if the entry was appended (fed) or acknowledged
        already, so the store's total counts it; else it is kept as settled until it is."""
        if self._fed:
            if entry_id in self._seen:
                return False  # (kept there: the entry may be settled in another scope too)
            self._unfed.add(entry_id)
            return True
        return self.receipts.settling(entry_id)

    def _account(self, scope: BudgetScope, refresh: bool = False) -> _Account:
        """The scope's account, with recorded spend read again when stale (caller holds the lock)."""
        if self._lent is not None:
            self._take_back()  # (first, before anything reads an account or the count of appends)
        receipts = self.receipts
        if not receipts.used:
            receipts.use()
        if len(self._appends) != self._told:
            self._catch_up()  # a fed store's appends since the ledger last looked
        found = self._accounts.get(scope.key)
        if found is not None and self._fed and not refresh:
            return found[1]  # (a running total: never stale)
        if found is None:
            base = self._total(**filter_kwargs(scope))
            account = _Account(
                base,
                self._gen,
                time.monotonic(),
                base,
                since_us=None if scope.since is None else micros(scope.since),
                until_us=None if scope.until is None else micros(scope.until),
                key=scope.key,
            )
            self._keep(scope, account)
            self._forget_older(scope)
            since_us = account.since_us
            if len(self._accounts) > self._sweep_at or (since_us is not None and since_us > self._latest_us):
                self._forget_ended(since_us)
            return account
        account = found[1]
        now = time.monotonic()
        stale = not self._fed and (account.gen != self._gen or now - account.read_at > self._refresh)
        if refresh or stale:
            account.rebase(self._total(**filter_kwargs(scope)))
            account.gen, account.read_at = self._gen, now
        return account

    def _forget_older(self, scope: BudgetScope) -> None:
        """Drop the budget's periods before the one before ``scope``'s (which a late call may still settle in)."""
        if scope.since is None:
            return
        since = scope.since
        older = sorted(
            (other.since, key)
            for key, (other, _) in self._accounts.items()
            if other.budget == scope.budget and other.since is not None and other.since < since
        )
        for _, key in older[:-1]:
            self._unkeep(key)

    def _forget_ended(self, now_us: int | None) -> None:
        """Drop the accounts of periods that ended a period or more before ``now_us`` (the start of the period just
        opened) and hold nothing (caller holds the lock): no reservation, no amount settled before its entry was
        recorded, no estimate of a call in flight (``committed`` above ``base``: a kept account's calls hold no
        reservation of their own, and dropped with their account, the budget's next call would not see them).
        Budgets that are not used again (a user's daily budget, the user gone) then leave no account behind; a late
        call of one finds its scope's recorded spend read again, as for any account not kept."""
        if now_us is not None:
            self._latest_us = max(self._latest_us, now_us)
            for key, (_, account) in tuple(self._accounts.items()):
                since, until = account.since_us, account.until_us
                if (
                    since is not None
                    and until is not None
                    and 2 * until - since <= now_us
                    and not account.holds
                    and not account.entries
                    and not account.settled
                    and account.committed == account.base
                ):
                    self._unkeep(key)
        self._sweep_at = max(_SWEEP_ACCOUNTS, 2 * len(self._accounts))

    def _keep(self, scope: BudgetScope, account: _Account) -> None:
        """Keep ``account`` as ``scope``'s, found by its key and by the rows it counts (caller holds the lock)."""
        key = scope.key
        kept = (scope, account)
        self._accounts[key] = kept
        item = _tag_item(scope)
        if item is None:
            self._rowwise[key] = kept
        else:
            self._by_tag.setdefault(item, {})[key] = kept

    def _unkeep(self, key: str) -> None:
        """Drop the account of ``key`` (caller holds the lock): a ``LocalLease`` that kept it looks the scope up again
        (``_Account.kept``), and a late call gives back to it all the same."""
        scope, account = self._accounts.pop(key)
        account.kept = False
        for rid in account.holds:  # (a late call's hold there: nothing will look it up again)
            self._holds.pop(rid, None)
        item = _tag_item(scope)
        if item is None:
            del self._rowwise[key]
        else:
            tagged = self._by_tag[item]
            del tagged[key]
            if not tagged:
                del self._by_tag[item]

    def _count_tagged(self, row: tuple[Any, ...]) -> None:
        """Add ``row``'s amount to the accounts of scopes with tags that it falls in (as ``_count_row``; caller holds
        the lock and checked that there are such accounts): those kept under one of the row's tags."""
        tags = row[ROW_TAGS]
        if not tags:
            return
        when = row[ROW_MICROS]
        by_tag = self._by_tag
        for item in _tag_items(tags):
            found = by_tag.get(item)
            if found is not None:
                for scope, account in found.values():
                    since, until = account.since_us, account.until_us
                    if (
                        (since is None or since <= when)
                        and (until is None or when < until)
                        and _row_matches(scope, row)
                    ):
                        amount = row[ROW_AMOUNT]
                        account.base = _add(account.base, amount)
                        account.committed = _add(account.committed, amount)

    def reserve(self, scope: BudgetScope, amount: Decimal, *, limit: Decimal, force: bool = False) -> Reservation:
        with self._lock:
            account = self._account(scope)
            spent = _add(account.base, account.settled)
            committed = account.committed
            room = _subtract(limit, committed)
            granted = force or (room > 0 and amount <= room)
            rid = None
            if granted and amount:
                self._ids += 1
                rid = self._ids
                account.holds[rid] = amount
                account.committed = _add(committed, amount)
                self._holds[rid] = scope.key
            return Reservation(scope.key, amount, granted, spent, _subtract(committed, spent), rid)

    def _drop(self, reservation: Reservation | None) -> None:
        if reservation is not None and reservation.id is not None:
            self._drop_id(reservation.id)

    def _drop_id(self, rid: int) -> None:
        if self._lent is not None:
            self._take_back()
        if self._closing:
            self._closing.discard(rid)
        key = self._holds.pop(rid, None)
        found = self._accounts.get(key) if key is not None else None
        if found is not None:
            amount = found[1].holds.pop(rid, None)
            if amount is not None:
                found[1].committed = _subtract(found[1].committed, amount)

    def settle(
        self,
        scope: BudgetScope,
        amount: Decimal,
        *,
        reservation: Reservation | None = None,
        entry_id: str | None = None,
    ) -> Standing:
        with self._lock:
            self._drop(reservation)
            account = self._account(scope)
            if entry_id is None:
                account.settled = _add(account.settled, amount)
                account.committed = _add(account.committed, amount)
            elif self._settling(entry_id):
                account.entries[entry_id] = _add(account.entries.get(entry_id, ZERO), amount)
                account.settled = _add(account.settled, amount)
                account.committed = _add(account.committed, amount)
            elif not self._fed:
                self._gen += 1  # written before it was settled: read the recorded spend again
                account = self._account(scope)
            return account.standing()

    def release(self, reservation: Reservation) -> None:
        with self._lock:
            self._drop(reservation)

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
        # (Budgets do not lease from a LocalLedger: a reservation here is no transaction, so call by call is as
        # cheap. It leases all the same, for a store that uses it under a budget of its own making.)
        with self._lock, localcontext() as ctx:
            ctx.prec = _EXACT_DIGITS
            if before is not None:
                before()
            self._drop(reservation)
            account = self._account(scope)
            account.settled += elsewhere
            account.committed += elsewhere
            for entry_id, amount in amounts.items():
                if self._settling(entry_id):
                    account.entries[entry_id] = account.entries.get(entry_id, ZERO) + amount
                    account.settled += amount
                    account.committed += amount
                elif not self._fed:
                    self._gen += 1  # written before it was settled: read the recorded spend again
                    account = self._account(scope)
            spent, reserved = account.base + account.settled, account.reserved
            grant = headroom(renew, limit - spent - reserved - keep)
            amount = keep + grant
            made = None
            if amount:
                self._ids += 1
                rid = self._ids
                account.holds[rid] = amount
                account.committed += amount
                self._holds[rid] = scope.key
                made = Reservation(scope.key, amount, True, spent, reserved, rid)
            return Renewal(made, grant, account.standing())

    # -- holds: how an in-process budget reserves and settles call by call (``_lease.LocalLease``) ----------------
    # The same bookkeeping as ``reserve``/``settle``, without their answer objects: each call's estimate is added to
    # one open reservation of the budget (its *hold*) if the limit covers it, and taken out of it again when the call
    # settles. Everything is in this process, under the ledger's lock, so this is as exact as a reservation per call.

    def open_hold(self, scope: BudgetScope) -> int:
        """An open reservation of nothing yet in ``scope``, for ``grow`` and ``settle_held``; ``close_hold`` drops
        it (once no call in flight holds anything in it)."""
        with self._lock:
            account = self._account(scope)
            self._ids += 1
            rid = self._ids
            account.holds[rid] = ZERO
            self._holds[rid] = scope.key
            return rid

    def grow(self, scope: BudgetScope, hold: int, amount: Decimal, *, limit: Decimal) -> bool:
        """Add ``amount`` to ``hold`` if ``limit`` covers it, as ``reserve`` grants a reservation of it; whether it
        did."""
        with self._lock:
            if self._lent is not None:
                self._take_back()  # (first, before anything reads an account or the count of appends)
            if len(self._appends) != self._told:  # (``_account``'s usual case inline, as below: before every call)
                self._catch_up()
            found = self._accounts.get(scope.key) if self._fed else None
            account = found[1] if found is not None else self._account(scope)
            room = _subtract(limit, account.committed)
            if room > 0 and amount <= room:
                if amount:
                    holds = account.holds
                    held = holds.get(hold)
                    if held is None:  # (its account was dropped and opened anew meanwhile)
                        held = ZERO
                        self._holds[hold] = scope.key
                    holds[hold] = _add(held, amount)
                    account.committed = _add(account.committed, amount)
                return True
            return False

    def settle_held(
        self, scope: BudgetScope, hold: int, estimate: Decimal, amount: Decimal | None, entry_id: str | None
    ) -> tuple[Decimal, Decimal]:
        """Take a call's ``estimate`` out of ``hold`` and count its ``amount`` in its place, as ``settle`` would
        (``None``: nothing, the call recorded nothing that counts here); the scope's ``(spent, reserved)`` after."""
        with self._lock:
            if self._lent is not None:
                self._take_back()  # (first, before anything reads an account or the count of appends)
            if len(self._appends) != self._told:  # (``_account``'s usual case inline: a fed ledger's open account)
                self._catch_up()
            found = self._accounts.get(scope.key) if self._fed else None
            account = found[1] if found is not None else self._account(scope)
            if estimate:
                self._release_held(account, hold, estimate)
            if amount is not None:
                account = self._count_settled(scope, account, amount, entry_id)
            standing = account.standing()
            return standing.spent, standing.reserved

    def _count_settled(self, scope: BudgetScope, account: _Account, amount: Decimal, entry_id: str | None) -> _Account:
        """Count a call's ``amount`` in ``account`` as ``settle`` does (caller holds the lock): the account after."""
        if entry_id is not None and entry_id in self._seen:
            return account  # (fed: counted as appended)
        if entry_id is None:
            account.settled = _add(account.settled, amount)
            account.committed = _add(account.committed, amount)
        elif self._settling(entry_id):
            entries = account.entries
            entries[entry_id] = _add(entries[entry_id], amount) if entry_id in entries else amount
            account.settled = _add(account.settled, amount)
            account.committed = _add(account.committed, amount)
        elif not self._fed:
            self._gen += 1  # written before it was settled: read the recorded spend again
            account = self._account(scope)
        return account

    def _release_held(self, account: _Account, hold: int, estimate: Decimal) -> None:
        """Take a call's ``estimate`` out of ``hold``, in ``account``, and drop the hold if ``close_hold`` asked for it
        and this was its last call in flight (caller holds the lock; a hold dropped already is left alone)."""
        holds = account.holds
        held = holds.get(hold)
        if held is not None:
            account.committed = _subtract(account.committed, estimate)
            rest = _subtract(held, estimate)
            if rest or not self._closing or hold not in self._closing:
                holds[hold] = rest
            else:
                del holds[hold]
                self._holds.pop(hold, None)
                self._closing.discard(hold)

    def close_hold(self, hold: int) -> None:
        """Drop ``hold`` now if no call in flight holds anything in it, else as the last one gives its estimate back
        (``settle_held``); a call that takes from it meanwhile keeps it open until then."""
        with self._lock:
            if self._lent is not None:
                self._take_back()  # (first, before anything reads an account or the count of appends)
            key = self._holds.get(hold)
            found = self._accounts.get(key) if key is not None else None
            if found is not None and found[1].holds.get(hold):
                self._closing.add(hold)
            else:
                self._drop_id(hold)

    # -- kept accounts: a fed ledger's, looked up once per period (``_lease.LocalLease``) -----------------------------
    # A fed ledger's account is a running total, the same object for the whole period: a budget's lease keeps it, and
    # each call then reserves its estimate in it (``take_kept``) and gives it back (``give_back``, or ``settle_kept``
    # for a call settled with its entry) in one step under the ledger's lock each, without looking the scope up. The
    # estimates of the calls in flight are in the account's ``committed`` alone, with no hold of their own: each call
    # gives its own back, so there is nothing to drop when the lease closes. ``_Account.kept`` says whether the ledger
    # still keeps the account (``_forget_older`` drops accounts of past periods: a late call gives back to it all the
    # same, where it took from).

    def open_kept(self, scope: BudgetScope) -> _Account:
        """(``fed`` ledgers) the scope's account, for ``take_kept``, ``give_back`` and ``settle_kept``."""
        with self._lock:
            return self._account(scope)

    def take_kept(self, account: _Account, amount: Decimal, limit: Decimal) -> bool | None:
        """Reserve ``amount`` in a kept ``account`` if ``limit`` covers it, as ``reserve`` grants it: whether it did;
        ``None`` if the ledger no longer keeps the account (look the scope up again: ``open_kept``)."""
        lock = self._lock
        lock.acquire()  # (not ``with``: its protocol costs more than the lock, and this runs before every call)
        try:
            if self._lent is not None:
                self._take_back()  # (first, before anything reads an account or the count of appends)
            if len(self._appends) != self._told:
                self._catch_up()  # (entries appended since, by anyone: counted before the limit is checked)
            if not account.kept:
                return None
            # ``reserve``'s check (what remains, limit - committed, is positive and at least ``amount``), in one
            # addition: a positive ``amount`` that fits leaves no doubt about the first.
            committed = account.committed
            after = _add(committed, amount)
            if after <= limit and (amount > ZERO or committed < limit):
                account.committed = after
                return True
            return False
        finally:
            lock.release()

    def give_back(self, account: _Account, estimate: Decimal) -> Decimal:
        """Give back a call's ``estimate``, taken from a kept ``account`` (its row, appended already, is counted in the
        same step, as the ledger catches up): the account's spend after."""
        lock = self._lock
        lock.acquire()  # (as in ``take_kept``: this runs after every call)
        try:
            if self._lent is not None:
                self._take_back()  # (first, before anything reads an account or the count of appends)
            if _getcontext().prec < EXACT_DIGITS:
                # A caller in a narrow decimal context (a budget's calls settle in a wide one: ``_Engine.begin``):
                # counted with the exact context's methods, as ``_catch_up`` counts. Below, the operators: one check
                # costs less than the three additions made with those methods (each parses its arguments).
                if len(self._appends) != self._told:
                    self._catch_up()
                account.committed = _subtract(account.committed, estimate)
                return _add(account.base, account.settled)
            appends, told = self._appends, self._told
            if len(appends) != told:
                row = appends[told]
                if len(appends) == told + 1 and type(row) is tuple and row[ROW_ENTRY] is None:
                    # The usual news: this call's row alone, no entry built (``appended_row``'s count of it,
                    # ``_count_row`` inline).
                    self._told = told + 1
                    when = row[ROW_MICROS]
                    for scope, counted in self._rowwise.values():
                        since, until = counted.since_us, counted.until_us
                        if (
                            (since is None or since <= when)
                            and (until is None or when < until)
                            and (scope.plain or _row_matches(scope, row))
                        ):
                            amount = row[ROW_AMOUNT]
                            counted.base += amount
                            counted.committed += amount
                    if self._by_tag:
                        self._count_tagged(row)
                else:
                    self._catch_up()
            account.committed -= estimate
            settled = account.settled
            return account.base + settled if settled else account.base
        finally:
            lock.release()

    def settle_kept(
        self, scope: BudgetScope, account: _Account, estimate: Decimal, amount: Decimal | None, entry_id: str | None
    ) -> Standing:
        """``settle_held`` of a call that took ``estimate`` from a kept ``account`` (of ``scope``): its ``amount``
        counted in its place as ``settle`` counts it (``None``: nothing); the scope's standing after."""
        with self._lock:
            if self._lent is not None:
                self._take_back()  # (first, before anything reads an account or the count of appends)
            if len(self._appends) != self._told:
                self._catch_up()
            account.committed = _subtract(account.committed, estimate)  # (where it was taken from, kept still or not)
            if not account.kept:  # (a past period's: the amount counts in the scope as the ledger keeps it now)
                account = self._account(scope)
            if amount is not None:
                account = self._count_settled(scope, account, amount, entry_id)
            return account.standing()

    # -- a lent account (``LentAccount``): a budget's calls reserve and settle in it as ints, under the lock ---------
    def lend(
        self,
        account: _Account,
        *,
        tracker: Any,
        owner: Any,
        baton: list[bool],
        wait: Callable[[list[bool]], None],
    ) -> LentAccount | None:
        """(``fed`` ledgers) lend ``account`` to ``owner``'s calls as ints of 10**-18 USD (``LentAccount``, for the
        calls of ``tracker``, checked against the limit of the budget that asked, its figures held by whoever holds
        ``baton``; ``wait(baton)`` takes it once it is given back, or raises ``RuntimeError`` if it is not) if it is of
        a plain scope, no other account's period meets its period, it has no hold and nothing settled ahead of its
        entry's append, and its figures are whole 10**-18 USD; else ``None``. An account lent before, to anyone, is
        taken back first.

        >>> from llmcost.stores import BudgetScope, MemoryStore
        >>> ledger = MemoryStore().ledger()
        >>> account = ledger.open_kept(BudgetScope("b"))
        >>> lent = ledger.lend(account, tracker=None, owner=None, baton=[True], wait=print)
        >>> lent.committed += 25 * 10**14  # a call's $0.0025 reserved
        >>> ledger.standing(BudgetScope("b")).reserved, lent.live  # (a step of the ledger takes the account back)
        (Decimal('0.0025'), False)
        """
        with self._lock:
            if self._lent is not None:
                self._take_back()
            if len(self._appends) != self._told:
                self._catch_up()
            if (
                not self._fed
                or not account.kept
                or account.settled
                or account.holds
                or account.entries
                or self._unfed
                or self._closing
            ):
                return None
            found = self._accounts.get(account.key)
            if found is None or found[1] is not account or not found[0].plain or not self.receipts.used:
                return None
            since, until = account.since_us, account.until_us
            for _, other in self._accounts.values():
                # Another account of a period that meets this one's (a monthly budget's beside a daily one's) would
                # count the budget's rows too: not lent then. Past periods' accounts count none of its rows.
                if other is not account and (
                    (other.since_us is None or until is None or other.since_us < until)
                    and (other.until_us is None or since is None or since < other.until_us)
                ):
                    return None
            base, committed = _exact_atto(account.base), _exact_atto(account.committed)
            if base is None or committed is None:
                return None
            self._lent = LentAccount(
                account,
                self._appends,
                self._told,
                base,
                committed,
                tracker=tracker,
                owner=owner,
                baton=baton,
                wait=wait,
            )
            return self._lent

    def _take_back(self) -> None:
        """Take the lent account back (caller holds the lock): its figures as Decimals again, and the count of appends
        the ledger's again."""
        lent = self._lent
        assert lent is not None
        self._lent = None
        baton = lent.baton
        held = True
        try:
            baton.pop()
        except IndexError:
            try:
                lent.wait(baton)
            except RuntimeError:
                # Its holder cannot run: this thread interrupted it (a signal handler). Taken back as it stands: its
                # step, once it resumes, changes a loan that is over, and it gives the token back then (logged; the
                # figures may miss that one call's step).
                logger.warning("llmcost: a budget's lent account was taken back while it was being changed")
                held = False
        try:
            self._told = lent.end()
            account = lent.account
            account.base = from_atto(lent.base)
            account.committed = _add(from_atto(lent.committed), account.settled)  # (nothing settled: ``lend``)
        finally:
            if held:
                baton.append(True)

    def standing(self, scope: BudgetScope, *, refresh: bool = False) -> Standing:
        with self._lock:
            return self._account(scope, refresh).standing()

    by_id = True

    def acknowledge(self, entries: Sequence[CostEntry]) -> None:
        if not self.receipts.used or self._fed:
            return  # a fed ledger learns of entries through ``appended``
        self.acknowledge_ids([entry.id for entry in entries])

    def acknowledge_ids(
        self,
        ids: Sequence[str],
        *,
        leased: Callable[[], Mapping[str, Decimal]] | None = None,
        counted: Callable[[], object] | None = None,
    ) -> None:
        if self.receipts.used and not self._fed:  # (a fed ledger learns of entries through ``appended``)
            with self._lock:
                self._forget_settled(self.receipts.acknowledged_ids(ids))
                self._gen += 1
        if counted is not None:
            counted()

    def set_aside_ids(self, ids: Sequence[str]) -> None:
        if not self._fed:  # (a fed ledger counts appends: one set aside was never counted as written)
            self.receipts.set_aside(ids)

    def aside(self, ids: Collection[str]) -> Collection[str]:
        return () if self._fed else self.receipts.aside(ids)

    def _forget_settled(self, ids: Iterable[str]) -> None:
        for entry_id in ids:
            for _, account in self._accounts.values():
                amount = account.entries.pop(entry_id, None)
                if amount is not None:
                    account.settled = _subtract(account.settled, amount)
                    account.committed = _subtract(account.committed, amount)

    @property
    def fed(self) -> bool:
        """Whether the store tells this ledger of every append (``appended``): its recorded spend is a running total
        that counts an appended entry as soon as the ledger next looks, whoever recorded it."""
        return self._fed

    def _catch_up(self) -> None:
        """Count the store's appends this ledger has not counted yet (caller holds the lock), in the order they were
        appended, each once."""
        if self._lent is not None:
            self._take_back()
        appends, told = self._appends, self._told
        n = len(appends)
        if n == told + 1:  # (the usual news: a tracked call's row, alone)
            item = appends[told]
            self._told = n
            self.appended_row(item if type(item) is tuple else self._row_of(item))
            return
        new = appends[told:n]  # (appends racing with this land after the first n: counted at the next look)
        self._told = n
        # Rows (``ROW_FIELDS``, epoch microseconds): those of ``append_row`` as they are, so a tracked call under a
        # period budget needs no ``CostEntry`` built for the ledger; entries of ``append`` as theirs.
        self.appended(new if all(map(is_, map(type, new), repeat(tuple))) else list(map(self._row_of, new)))

    def counted_appends(self) -> int:
        """(Fed ledgers; the store, holding the lock) count every append so far, and hand them over: how many items at
        the front of the store's appends list the ledger counted, all of them, which the caller removes from it
        before it lets go of the lock (the ledger counts from the front of the list again)."""
        if self._lent is not None:
            self._take_back()
        if len(self._appends) != self._told:
            self._catch_up()
        n, self._told = self._told, 0
        return n

    def returned_appends(self, items: list[Any]) -> None:
        """(Fed ledgers; the store, holding the lock) ``items``, handed over by ``counted_appends``, are back at the
        front of the store's appends list (a move that could not finish): they stay counted, and are handed over
        again with the next."""
        if self._lent is not None:
            self._take_back()
        n = len(items)
        self._appends[:0] = items  # (and counted, with no call between: a signal handler cannot come in between)
        self._told += n

    def appended(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """(``fed`` ledgers) entries were appended (and are not yet counted), given as rows: tuples of the entry's
        fields in ``stores._memory.ROW_FIELDS`` order, the timestamp as epoch microseconds, then the entry if one was
        built, else ``None`` (``ROW_*`` name the positions read here). The store holds ``lock`` (so this does not
        take it again), and no ``CostEntry`` need be built for it."""
        if self._lent is not None:
            self._take_back()
        if not self.receipts.used:
            return
        unfed, seen = self._unfed, self._seen
        if unfed:  # (entries settled before they were appended: forgotten as settled, counted as recorded below)
            mine = [row[ROW_ID] for row in rows if row[ROW_ID] in unfed]
            unfed.difference_update(mine)
            self._forget_settled(mine)
        if any(map(_entry_of, rows)):  # (a C-level look first: the tracker's rows have none)
            for row in rows:
                if row[ROW_ENTRY] is not None:  # (``appended_row`` says why the others are not kept)
                    seen[row[ROW_ID]] = None
            if len(seen) > _SEEN:  # the oldest half forgotten (only the last few can still be settled)
                self._seen = dict.fromkeys(islice(seen, len(seen) - _SEEN // 2, None))
        if not rows or not self._accounts:
            return
        if self._by_tag:
            for row in rows:
                self._count_tagged(row)
        if not self._rowwise:
            return
        whens = list(map(_micros_of, rows))
        first, last = min(whens), max(whens)
        for scope, account in self._rowwise.values():
            since, until, plain = account.since_us, account.until_us, scope.plain
            if plain and (since is None or since <= first) and (until is None or last < until):
                # The usual batch (a MemoryStore's move of its appends): every row counts, summed at C level and
                # added once (a call outside a daily budget's block: +4.4% instructions, +8.0% adding each row to
                # both figures). Exact: 80 digits.
                total = reduce(_add, map(_amount_of, rows), ZERO)
                account.base = _add(account.base, total)
                account.committed = _add(account.committed, total)
                continue
            for row in rows:
                when = row[ROW_MICROS]
                if (
                    (since is None or since <= when)
                    and (until is None or when < until)
                    and (plain or _row_matches(scope, row))
                ):
                    amount = row[ROW_AMOUNT]
                    account.base = _add(account.base, amount)
                    account.committed = _add(account.committed, amount)

    def appended_row(self, row: tuple[Any, ...]) -> None:
        """``appended`` of one row (the store's usual news: a tracked call's row, told as its call settles).

        A row without its ``CostEntry`` (``ROW_ENTRY``: ``None``, the tracker's per-call path) is of an entry whose id
        no one was given (no entry was built, no subscriber or caller saw it), so no settle can name it, before its
        append or after: its id is neither looked for in ``_unfed`` nor kept in ``_seen`` (hashing a fresh id and
        keeping it were most of the work here)."""
        if self._lent is not None:
            self._take_back()
        if not self.receipts.used:
            return
        if row[ROW_ENTRY] is not None:
            entry_id = row[ROW_ID]
            unfed = self._unfed
            if unfed and entry_id in unfed:
                unfed.discard(entry_id)
                self._forget_settled((entry_id,))
            seen = self._seen
            seen[entry_id] = None
            if len(seen) > _SEEN:
                self._seen = dict.fromkeys(islice(seen, len(seen) - _SEEN // 2, None))
        self._count_row(row)

    def _count_row(self, row: tuple[Any, ...]) -> None:
        """Add ``row``'s amount to every account whose scope it falls in (caller holds the lock)."""
        when = row[ROW_MICROS]
        if self._by_tag:
            self._count_tagged(row)
        for scope, account in self._rowwise.values():
            since, until = account.since_us, account.until_us
            if (
                (since is None or since <= when)
                and (until is None or when < until)
                and (scope.plain or _row_matches(scope, row))
            ):
                amount = row[ROW_AMOUNT]
                account.base = _add(account.base, amount)
                account.committed = _add(account.committed, amount)


#: Positions in a row of ``stores._memory.ROW_FIELDS`` that ``LocalLedger.appended`` reads (a test checks them).
ROW_ID, ROW_MICROS, ROW_AMOUNT, ROW_CATEGORY = 0, 1, 2, 3
ROW_RESOURCE, ROW_MODEL, ROW_TAGS, ROW_CANONICAL = 5, 7, 12, 14
#: ... and where the ``CostEntry`` of the row's values is, if one was built (``None`` if not): after the fields.
ROW_ENTRY = 15
_entry_of, _micros_of, _amount_of = itemgetter(ROW_ENTRY), itemgetter(ROW_MICROS), itemgetter(ROW_AMOUNT)


def _as_row(item: Any) -> tuple[Any, ...]:
    """An appended item as a row: as it is (a ledger whose store appends nothing but rows)."""
    return item  # type: ignore[no-any-return]


def _row_matches(scope: BudgetScope, row: tuple[Any, ...]) -> bool:
    """``BudgetScope.matches`` of a row's fields, less the period (checked by the caller)."""
    if scope.category is not None and row[ROW_CATEGORY].value != scope.category:
        return False
    if scope.resource is not None and row[ROW_RESOURCE] != scope.resource:
        return False
    if scope.model is not None and scope.model != row[ROW_MODEL] and scope.model != row[ROW_CANONICAL]:
        return False  # (``entry_models``: the model as returned, or the catalog id it resolved to)
    wanted = scope.tags
    if not wanted:
        return True
    tags = row[ROW_TAGS]
    return all(tags.get(k) == v for k, v in _tag_items(wanted))


def _tag_items(tags: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """The items of ``tags``: a ``FrozenTags``'s read from its dict (``Mapping.items`` is Python code), any other
    mapping's as it gives them (a ``BudgetScope`` made with a plain dict)."""
    return held(tags).items() if isinstance(tags, FrozenMap) else tags.items()


def _tag_item(scope: BudgetScope) -> tuple[str, Any] | None:
    """The tag a row of ``scope`` must have, which its account is kept under for rows (``LocalLedger._keep``): the
    first of its tags; ``None`` for a scope with no tags (or an unhashable value: checked against every row)."""
    if not scope.tags:
        return None
    item = next(iter(_tag_items(scope.tags)))
    try:
        hash(item)
    except TypeError:
        return None
    return item


def filter_kwargs(scope: BudgetScope) -> dict[str, object]:
    """``store.total`` keywords for ``scope``'s recorded spend."""
    return {
        "since": scope.since,
        "until": scope.until,
        "category": scope.category,
        "resource": scope.resource,
        "model": scope.model,
        "tags": scope.tags or None,
    }


def start_heartbeat(ledger: object, interval: float) -> threading.Event:
    """Call ``ledger.beat(stop)`` every ``interval`` seconds from a daemon thread, while ``ledger`` lives (it is held
    weakly) and until the returned ``stop`` event is set: how a shared ledger renews its process's leases.

    Example::

        self._beating = start_heartbeat(self, self.lease / 3)   # ... and self._beating.set() on close
    """
    stop = threading.Event()
    ref = weakref.ref(ledger)

    def run() -> None:
        while not stop.wait(interval):
            alive = ref()
            if alive is None:
                return
            try:
                alive.beat(stop)  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried; the lease allows two
                logger.debug("llmcost: budget ledger heartbeat failed: %r", exc)
            del alive

    threading.Thread(target=run, name="llmcost-ledger-lease", daemon=True).start()
    return stop
