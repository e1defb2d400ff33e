"""``budget(...)``: stop calls before they overspend, reserve estimates, raise alerts at thresholds.

A ``Budget`` is a guard (see ``_context.Guard``): before each tracked call it reserves the call's estimate,
refusing the call if the reservation would pass the limit; the real cost replaces the reservation when the call's
entry is recorded (``on_recorded``). So concurrent calls can overshoot only by their estimates' error.

A block budget (``period=None``) counts in this object, under its lock. A period budget counts in its tracker's
store's ledger (``stores._ledger``), so every process sharing the store reserves against one account: the store's
recorded spend in the period, plus amounts settled but not yet written, plus every process's open reservations.
Over a ledger every process shares, far from the limit, it leases headroom and serves calls from it in memory
(``stores._lease``), settling their amounts in batches; over an in-process ledger (a ``MemoryStore``'s) each call
still reserves exactly, added to one reservation the budget holds open (``LocalLease``).

Over 400 lines because a ``Budget`` is one object whose reservation, period roll-over and threshold alerts share one
lock and one state; splitting them would spread that lock across modules. ``BudgetManager`` is in ``_manager``.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import inspect
import json
import logging
import math
import os
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from datetime import datetime, tzinfo
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from time import time_ns as _time_ns
from types import TracebackType
from typing import Any, Literal, TypeVar

import attrs

from . import _state
from ._config import get_tracker, on_new_default
from ._context import NOT_CHECKED, PendingCall, SettledByEntry, TrackerLike, pop_guard, push_guard, settling_token
from ._entry import CostEntry, FrozenTags, to_category, to_tags
from ._errors import BudgetExceeded, SettingError, StoreError
from ._money import ZERO, atto_of, dollars, from_atto, in_exact_context, in_wide_context, to_money
from ._periods import BudgetPeriod, period_bounds, plain_zone, to_period
from ._prices import canonical_id
from ._time import from_micros
from ._tracker import CostTracker, buffered_count, holds_unwritten, log_once, system_clock
from .stores import BudgetScope, CostStore, Reservation, Standing
from .stores._lease import LEASE_SHARE, Lease, LocalLease, leased
from .stores._ledger import LentAccount, LocalLedger, entry_models

__all__ = [
    "LIMIT_VARIABLES",
    "Budget",
    "BudgetAlert",
    "alert_level",
    "budget",
    "install_env_budgets",
    "threshold_values",
]

logger = logging.getLogger("llmcost")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_THRESHOLDS = (0.5, 0.8, 0.9, 1.0)
_JUST_UNDER = Decimal("0.999999")  # thresholds are floats: check a hair early rather than miss one
_NEVER = Decimal("Infinity")
#: Kept in a budget's thresholds fired (``_fired``, emptied as a period begins) once it let a call through past the
#: limit (``on_exceed="warn"``): not a threshold (those are in (0, 1]), so no threshold check reads it.
_LET_THROUGH = 2.0
_time = time.time  # (read on every call a lease serves)


def alert_level(utilization: float) -> str:
    """``info`` below 0.8, ``warning`` below 0.95, ``critical`` below 1.0, ``exceeded`` from 1.0 on."""
    if utilization < 0.8:
        return "info"
    if utilization < 0.95:
        return "warning"
    if utilization < 1.0:
        return "critical"
    return "exceeded"


@attrs.frozen
class BudgetAlert:
    """A budget passed one of its thresholds (or refused a call, or with ``on_exceed="warn"`` let one through past it).

    ``level`` follows ``utilization``: info < 0.8 <= warning < 0.95 <= critical < 1.0 <= exceeded.

    Example::

        with llmcost.budget(10, name="job", on_alert=lambda a: print(a.level, a.message)):
            run()
    """

    budget: str
    threshold: float
    utilization: float
    spent: Decimal
    limit: Decimal
    level: str
    timestamp: datetime
    message: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (money as strings, time as ISO 8601)."""
        return {
            "budget": self.budget,
            "threshold": self.threshold,
            "utilization": self.utilization,
            "spent": str(self.spent),
            "limit": str(self.limit),
            "level": self.level,
            "timestamp": self.timestamp.isoformat(),
            "message": self.message,
        }


def threshold_values(value: object) -> tuple[float, ...]:
    """``thresholds=`` as a budget keeps them: floats in (0, 1], ascending, without repeats; anything else raises
    ``TypeError``/``ValueError`` naming the field and the value.

    >>> threshold_values([0.5, Decimal("0.8"), 1])
    (0.5, 0.8, 1.0)
    """
    if not isinstance(value, Iterable) or isinstance(value, (str, bytes)):
        raise TypeError(f"thresholds must be a sequence of numbers in (0, 1], got {value!r}")
    items = tuple(value)
    if not items:
        raise ValueError("thresholds must not be empty; pass e.g. (0.8, 1.0)")
    out = []
    for t in items:
        if isinstance(t, bool) or not isinstance(t, (int, float, Decimal)):
            raise TypeError(f"thresholds must be numbers in (0, 1], got {items!r}")
        try:
            f = float(t)
        except (ValueError, OverflowError):  # (a signaling NaN; an int past a float's range)
            f = math.nan
        if not (0 < f <= 1) or math.isnan(f):
            raise ValueError(f"thresholds must each be in (0, 1], got {t!r} in {items!r}")
        out.append(f)
    if out != sorted(out) or len(set(out)) != len(out):
        raise ValueError(f"thresholds must be sorted ascending without repeats, got {items!r}")
    return tuple(out)


def _sinks(on_alert: object) -> tuple[Callable[[BudgetAlert], object], ...]:
    if on_alert is None:
        return ()
    if callable(on_alert):
        return (on_alert,)
    if isinstance(on_alert, Iterable):
        sinks = tuple(on_alert)
        for sink in sinks:
            if not callable(sink):
                raise TypeError(f"on_alert must be a callable or a list of callables, got {sink!r} in it")
        return sinks
    raise TypeError(f"on_alert must be a callable or a list of callables, got {on_alert!r}")


class _Hold(SettledByEntry):
    """A period budget's reservation for one call: settled when the call's entry is recorded, else released."""

    __slots__ = ("reservation", "scope", "settled", "store")

    def __init__(self, store: CostStore, scope: BudgetScope, reservation: Reservation) -> None:
        self.store = store
        self.scope = scope
        self.reservation = reservation
        self.settled = False


class _Offline(_Hold):
    """A period budget's call checked while its ledger could not be reached (a database down): reserved against the
    figures the budget last saw plus what this process took since (``Budget._offline_held``), never in the ledger. Its
    ``estimate`` is held there until the call is settled (its amount then, to be settled in the ledger under the
    entry's id once it answers again) or released."""

    __slots__ = ("estimate",)

    def __init__(self, store: CostStore, scope: BudgetScope, estimate: Decimal) -> None:
        self.store = store
        self.scope = scope
        self.estimate = estimate
        self.settled = False


class _Leased(_Hold):
    """A call served from the budget's ``lease``: its ``estimate`` is taken from the lease, not reserved alone (its
    ``scope`` is the lease's, and it has no ``reservation`` of its own: neither is set, nor read). ``atto``: what a
    ``Lease`` (over a shared ledger) took for it, in 10**-18 USD (``leased``), given back as that; ``None`` for a
    ``LocalLease``'s."""

    __slots__ = ("atto", "estimate", "lease")

    def __init__(self, store: CostStore, lease: Lease, estimate: Decimal) -> None:
        self.store = store
        self.settled = False
        self.lease = lease
        self.estimate = estimate
        self.atto = leased(estimate) if type(lease) is Lease else None


#: A call reserved in a ``LentAccount``: ``(lent, atto)``, its estimate in 10**-18 USD as the loan holds it. A tuple
#: (made and freed at a fraction of a ``_Leased``'s cost), settled exactly once as the engine settles any token
#: (``Guard``); once the loan is over, it is settled as the ``_Leased`` of the same estimate (``_leased_of``).
_LentCall = tuple[LentAccount, int]

#: The usual call served from a ``Lease`` (a shared ledger's: ``Budget._take_leased``): ``[lease, atto]``, what it
#: took in 10**-18 USD. A list (made and freed at a fraction of a ``_Leased``'s cost; the engine finds it with the
#: call's other tokens settled by its entry: ``begin_settling``), whose ``atto`` turns ``None`` once it is settled,
#: in one step with its entry (``Budget.settle_recorded``) or as the ``_Leased`` it becomes (``_leased_of``), so that
#: it is settled exactly once whoever else holds it.
_LeaseCall = list[Any]


def _leased_of(token: _LentCall | _LeaseCall) -> _Leased | None:
    """The ``_Leased`` a call reserved in a ``LentAccount`` is, once the loan is over (the ledger holds its estimate
    in the lease's account again: taking the account back put it there); or that a ``_LeaseCall`` is, settled as one
    from now on (``None``: it was settled already)."""
    first, atto = token
    lease: Any
    if type(token) is list:
        if atto is None:
            return None
        token[1] = None  # (settled from now on as the ``_Leased`` made here)
        lease = first
    else:
        lease = first.owner
    return _Leased(lease.store, lease, from_atto(atto))  # (exactly what the loan held: the ledger holds it now)


class _Unwritten:
    """What a period budget knows of the spend its tracker holds unwritten (see ``Budget._write_unseen``): as of
    ``buffered`` (``buffered_count`` of the tracker, in this process ``pid``), every entry put in its buffer was
    written, or was one of this budget's calls, counted in the ledger. ``own``: how many calls this budget settled
    since, as far as counted (``None``: not known), besides the ``count`` of ``lease`` while its batch is ``batch``
    (the lease's ``standing`` changes with each batch)."""

    __slots__ = ("batch", "buffered", "lease", "own", "pid", "tracker")

    def __init__(self, tracker: CostTracker, buffered: int) -> None:
        self.tracker = tracker
        self.pid = os.getpid()
        self.buffered = buffered
        self.own: int | None = 0
        self.lease: Lease | None = None
        self.batch: Standing | None = None

    def watch(self, lease: Lease) -> None:
        """From ``lease``'s batch just made on, its ``count`` is this budget's calls (caller holds its lock)."""
        if type(lease) is Lease:  # (a ``LocalLease``'s calls count in the ledger at once: nothing waits to be written)
            self.lease, self.batch = lease, lease.standing

    def calls(self, lease: Lease | None) -> int | None:
        """How many calls this budget settled since ``buffered`` was read, at most (caller holds the lock)."""
        own = self.own
        if own is not None and lease is not None and lease is self.lease:
            own = own + lease.count if lease.standing is self.batch else None  # (a batch not ours: its count is gone)
        return own

    def closing(self, lease: Lease) -> None:
        """``lease`` is about to be closed: its calls carried over (caller holds its lock)."""
        if lease is self.lease:
            self.own = self.calls(lease)
            self.lease = self.batch = None


def _uncounted(store: CostStore, scope: BudgetScope) -> Callable[[CostEntry], bool]:
    """Whether an entry not yet in ``store`` would add to ``scope``'s spend once written: it matches the scope (as the
    store's own filter would), and the ledger does not hold its settled amount in the scope's account already (a
    call of an earlier lease of the same account: the same user's budget in the request before, say)."""
    matches = scope.filters().matches
    ledger = store.current_ledger()
    held = ledger.held_unwritten(scope) if ledger is not None else ()
    if not held:
        return matches
    return lambda entry: entry.id not in held and matches(entry)


_new_token = object.__new__
#: A loan of the ledger's account (``_lent_again``) that served this many calls was worth its conversions: the budget
#: asks again at once when it ends; a shorter one doubles the wait, up to ``_LOAN_WAIT_MAX`` calls.
_LOAN_WORTH = 16
_LOAN_WAIT_MAX = 1024
#: Seconds a thread waits for a block budget's figures (held for a few Decimal steps) before it gives up: only a
#: holder that cannot run waits this long, such as the very thread a signal handler interrupted mid-update.
_BATON_PATIENCE = 2.0


class _Baton:
    """The one token of a block budget's figures (``_atto_spent`` and ``_atto_committed``): ``token``, a list holding
    it, or empty.

    Whoever changes the figures holds it: takes it with ``pop``, a C-level step that either takes it or raises
    ``IndexError``, and gives it back with ``append``. That is under half the instructions of the budget's ``RLock``
    (whose ``acquire`` parses its arguments), twice on every tracked call under a block budget. Nothing is called
    while it is held (only integer arithmetic on the figures), so it never needs to be re-entrant. A thread that
    finds it taken waits for it (``_wait_baton``); a forked child is given it back (``forked``: a parent thread may
    have held it).

    (The list is made by ``[True]``, room for one item exactly: taking and giving back then never resize it. A list
    with room for more is shrunk as its last item is taken, and grown again as it is given back.)"""

    __slots__ = ("__weakref__", "token")

    def __init__(self) -> None:
        self.token: list[bool] = [True]
        _state.register_fork_aware(self)

    def forked(self) -> None:
        if not self.token:
            self.token.append(True)


#: The budgets entered in this context, in order, each with its ``push_guard`` token (``Budget.__exit__`` pops its
#: innermost one). One variable for every budget: a variable per budget stayed in each thread's context that ever set
#: it, about 200 bytes a budget made per request on a long-lived worker thread.
_entries: contextvars.ContextVar[tuple[tuple[Budget, contextvars.Token[Any]], ...]] = contextvars.ContextVar(
    "llmcost_budgets_entered", default=()
)


def _wait_baton(baton: list[bool]) -> None:
    """Take the token of ``baton`` (a ``_Baton``'s) once another thread gives it back (with ``baton.append(True)``).

    Raises ``RuntimeError`` after ``_BATON_PATIENCE`` seconds: a signal handler that makes a tracked call while its
    thread was changing the same budget's figures would otherwise wait forever (its thread cannot run until the
    handler returns). The caller's failure handling applies then: the call is let through unchecked, or its count
    logged as failed; the user's call is never held up for good."""
    deadline = time.monotonic() + _BATON_PATIENCE
    while True:
        try:
            baton.pop()
            return
        except IndexError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"llmcost: a budget's figures stayed taken for {_BATON_PATIENCE:g} s (a signal handler making a "
                    "tracked call while its thread was counting one?)"
                ) from None
            time.sleep(0)  # (held for a few Decimal steps: let its holder finish)


def _unsettled(token: object) -> bool:
    if type(token) is list:  # a ``_LeaseCall``
        return token[1] is not None
    return isinstance(token, _Hold) and not token.settled


class Budget:
    """A spending limit, enforced on tracked calls. Made by ``llmcost.budget(...)`` or ``BudgetManager.create``.

    Use it as a context manager (``with``/``async with``) or a decorator (sync and async). Thread-safe: worker
    threads share it by entering it again (``with b:``). ``spent`` is what was recorded, ``reserved`` what calls
    in flight have reserved, ``remaining`` the limit less both, ``utilization`` spent over limit. For a period
    budget these are the store's figures, over every process that shares it.

    ``key`` names the budget's account in the store's ledger, shared by every process that uses the same key
    (default: from ``name``, or else the limit, with the period and filters; ``BudgetManager`` uses its name).

    Example::

        with llmcost.budget("2.00", name="eval-run", on_exceed="raise") as b:
            for item in dataset:
                grade(item)                # refused with BudgetExceeded once $2 is spent
        print(b.spent, b.alerts)
    """

    # Slots: every tracked call under a budget reads and writes these, and a slot is the quickest attribute to reach
    # (an instance dict of more than 30 keys is no longer shared between instances, and each access looks it up).
    __slots__ = (
        "__weakref__",
        "_any_block",
        "_atto_committed",
        "_atto_limit",
        "_atto_quiet",
        "_atto_spent",
        "_baton",
        "_baton_keeper",
        "_committed",
        "_counts_all",
        "_delivering",
        "_end",
        "_filtered",
        "_fired",
        "_lease",
        "_lend_gap",
        "_lend_wait",
        "_lent",
        "_limit",
        "_lock",
        "_offline_held",
        "_offline_spent",
        "_open",
        "_outbox",
        "_quiet_below",
        "_scope",
        "_sending",
        "_sinks",
        "_spent",
        "_start",
        "_tag_items",
        "_tags_matched",
        "_tracker",
        "_unsent",
        "_unwritten",
        "alerts",
        "category",
        "context_free",
        "counts_rows",
        "key",
        "model",
        "name",
        "on_exceed",
        "period",
        "resource",
        "tags",
        "thresholds",
        "tz",
        "unfiltered",
    )

    def __init__(
        self,
        limit: Decimal | int | float | str,
        *,
        period: BudgetPeriod | str | None = None,
        name: str | None = None,
        category: str | None = None,
        resource: str | None = None,
        model: str | None = None,
        tags: Mapping[str, str] | None = None,
        thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
        on_exceed: Literal["raise", "warn"] = "raise",
        on_alert: Callable[[BudgetAlert], object] | Iterable[Callable[[BudgetAlert], object]] | None = None,
        tracker: CostTracker | None = None,
        tz: tzinfo | None = None,
        key: str | None = None,
    ) -> None:
        self._quiet_below = ZERO
        self._atto_quiet: int | float = 0
        self.limit = limit  # type: ignore[assignment]  # (the setter checks it and keeps it as money and as ints)
        self.period = None if period is None else to_period(period)
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self.name = name or f"budget-{id(self):x}"
        self.category = None if category is None else to_category(category).value
        if resource is not None and not isinstance(resource, str):
            raise TypeError(f"resource must be a str or None, got {resource!r}")
        self.resource = resource
        if model is not None and (not isinstance(model, str) or not model):
            raise ValueError(f"model must be a non-empty str or None, got {model!r}")
        self.model = model
        self.tags: FrozenTags = to_tags(tags)
        self.thresholds = threshold_values(thresholds)
        if on_exceed not in ("raise", "warn"):
            raise ValueError(f"on_exceed must be 'raise' or 'warn', got {on_exceed!r}")
        self.on_exceed = on_exceed
        self._sinks = _sinks(on_alert)
        if tracker is not None and not isinstance(tracker, CostTracker):
            raise TypeError(f"tracker must be a CostTracker, got {tracker!r}")
        self._tracker = tracker
        if tz is not None and not isinstance(tz, tzinfo):
            raise TypeError(f"tz must be a tzinfo (e.g. zoneinfo.ZoneInfo('Europe/Berlin')), got {tz!r}")
        self.tz = None if tz is None else plain_zone(tz)
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"key must be a non-empty str or None, got {key!r}")
        label = key or (f"name:{name}" if name else f"limit:{self.limit.normalize():f}")  # "1.00" and 1 alike
        self.key = json.dumps(
            {
                "budget": label,
                "period": self.period.value if self.period else None,
                "tz": str(tz) if tz is not None else None,
                "category": self.category,
                "resource": self.resource,
                "model": self.model,
                "tags": dict(sorted(self.tags.items())),
            },
            sort_keys=True,
        )
        self._lock = _state.new_rlock()  # (free again in a forked child)
        # Alerts made (under the lock, in the order of ``alerts``) and not yet handed to the sinks, and the lock held
        # while they are handed over: one thread at a time, in that order (``_deliver``).
        self._outbox: collections.deque[tuple[BudgetAlert, str | None]] = collections.deque()
        self._delivering = _state.new_rlock()
        # (Block budgets) held while ``_spent`` and ``_committed`` change: see ``_Baton``. The lock guards the rest (the
        # alerts, the thresholds fired, and a period budget's figures, scope and lease).
        self._baton_keeper = _Baton()  # (the token given back in a forked child)
        self._baton = self._baton_keeper.token
        # (Period budgets) spent, and spent plus reserved (the ledger's, as last seen), kept as one figure.
        self._spent = ZERO
        self._committed = ZERO
        # (Block budgets) the same of this object's calls, in ints of 10**-18 USD (``atto_of``): checking a call is then
        # one integer addition and comparison, settling it two more, exact in any decimal context (a Decimal's
        # addition costs four times an int's, on every call). ``_atto_limit``: the limit so (it has money's places).
        self._atto_spent = 0
        self._atto_committed = 0
        self._start: datetime | None = None
        self._end: datetime | None = None
        self._scope: BudgetScope | None = None
        # (Period budgets over a shared ledger) the headroom leased for this period, and how many ``with`` blocks are
        # open: the lease is settled and released as the last one ends.
        self._lease: Lease | None = None
        self._open = 0
        # (Period budgets over a MemoryStore) the ledger's account lent to this budget's calls as ints
        # (``LentAccount``), and how many calls wait before it is asked again after a loan ended (``_lent_again``).
        self._lent: LentAccount | None = None
        self._lend_wait = 0
        self._lend_gap = 0
        # (Period budgets) whether the tracker's buffer may hold spend the ledger has not counted (``_write_unseen``).
        self._unwritten: _Unwritten | None = None
        # (Period budgets, while the ledger cannot be reached) per scope key, what this process's calls took since:
        # estimates held and amounts settled (``_Offline``); and the amounts settled so, to settle in the ledger
        # under their entries' ids as soon as it answers (it counts each once, written or not: ``settle``).
        self._offline_held: dict[str, Decimal] = {}
        self._offline_spent: dict[str, Decimal] = {}
        self._sending = _state.new_lock()  # (one thread sends ``_unsent`` at a time: each amount once)
        self._unsent: list[tuple[BudgetScope, Decimal, str | None, Reservation | None]] = []
        self._fired: set[float] = set()
        # (``_quiet_below``, set above: spend below it cannot cross a threshold that has not fired, so most calls skip
        # the threshold check. Block budgets: ``_atto_quiet``, the same in 10**-18 units, rounded up.)
        self._tag_items = tuple(self.tags.items())
        # The last tag map (a ``FrozenTags``: immutable, and usually the same object call after call, as tag maps are
        # interned) found to hold every tag of the filter: matching it again is one identity check.
        self._tags_matched: FrozenTags | None = None
        # A budget without filters matches every call and entry: the per-call checks skip ``_matches`` then.
        self._filtered = bool(self.model or self.resource or self.category or self._tag_items)
        #: A budget counts an entry from its fields (``on_recorded_row``), so tracked calls under it keep the
        #: tracker's row path (no ``CostEntry`` built): a block budget in this object; a period budget over the store
        #: the row went to (a ``MemoryStore``, whose ledger counts each appended row itself) only gives its call's
        #: estimate back, and over another store settles the amount as ``on_recorded`` would (see ``_period_row``).
        self.counts_rows = True
        #: Every call and entry of the tracker counts alike: a call needs only its estimate (``reserve_estimate``).
        self.unfiltered = not self._filtered
        self._counts_all = self.unfiltered and tracker is None  # every entry of every tracker
        self._any_block = self.period is None and tracker is None  # a block budget over the calls of every tracker
        #: Its figures are ints (a block budget's): a call it alone checks needs no wide decimal context (``Guard``).
        self.context_free = self.period is None
        self.alerts: list[BudgetAlert] = []

    # -- state ----------------------------------------------------------------------------------------------------
    @property
    def limit(self) -> Decimal:
        """The spending limit in USD; set it to change the limit from the next call on (a positive amount).

        >>> b = Budget("2.50"); b.limit = 5; b.limit
        Decimal('5')
        """
        return self._limit

    @limit.setter
    def limit(self, value: Decimal | int | float | str) -> None:
        limit = to_money(value, "limit")
        if limit <= 0:
            raise ValueError(f"limit must be a positive amount, got {value!r}")
        lock = getattr(self, "_lock", None)  # (``None`` as ``__init__`` sets the first limit: no lease, no alerts)
        if lock is None:
            self._limit, self._atto_limit = limit, atto_of(limit, ROUND_FLOOR)
            return
        with lock:  # (as ``_check_thresholds`` finds the alert bound from the limit, and the lease serves calls)
            # Kept as ints too, floored (an int of 10**-18 USD is within the limit exactly when within its floor), for
            # the block budgets' checks; the alert bound is found again from the next count on.
            self._limit, self._atto_limit = limit, atto_of(limit, ROUND_FLOOR)
            self._quiet_below, self._atto_quiet = ZERO, 0
            lease = self._lease
            if lease is not None:  # (a period budget's) its calls checked, and its headroom leased, under the new limit
                lease.relimit(limit)
                if type(lease) is Lease:
                    lease.quiet(ZERO)  # (the lease's bound of the same: its settled calls are checked again)

    @property
    def tracker(self) -> CostTracker:
        """The tracker this budget reads time and stored spend from (default: ``llmcost.get_tracker()``)."""
        if self._tracker is not None:
            return self._tracker
        return get_tracker()

    @property
    @in_wide_context  # (a read: exact in any context, at any magnitude)
    def spent(self) -> Decimal:
        """Spend counted in the current period (for ``period=None``: inside the block)."""
        if self.period is None:
            return from_atto(self._atto_spent)
        self._stand()
        with self._lock:
            return self._spent + self._offline_figures(self._scope)[0]

    @property
    @in_wide_context  # (a read: exact in any context, at any magnitude)
    def reserved(self) -> Decimal:
        """Estimates reserved by calls in flight (for a period budget: by every process sharing the store)."""
        if self.period is None:
            return from_atto(max(self._atto_committed - self._atto_spent, 0))
        self._stand()
        with self._lock:
            reserved = self._committed - self._spent + self._offline_figures(self._scope)[1]
        return reserved if reserved > ZERO else ZERO

    @property
    @in_wide_context  # (a read: exact in any context, at any magnitude)
    def remaining(self) -> Decimal:
        """The limit less spend and reservations (negative once overspent)."""
        if self.period is None:
            return self.limit - from_atto(self._atto_committed)
        self._stand()
        with self._lock:
            spent, committed = self._spent, self._committed
            offline_spent, held = self._offline_figures(self._scope)
        # With nothing reserved, from spent: equal in value, and without the trailing zeros that reserving estimates
        # at money's 18 places leaves on the committed figure.
        return self.limit - (spent if committed == spent else committed) - offline_spent - held

    @property
    @in_wide_context  # (a read: exact in any context, at any magnitude)
    def utilization(self) -> float:
        """Spend over limit (1.0 is fully used)."""
        if self.period is None:
            return float(from_atto(self._atto_spent) / self.limit)
        self._stand()
        with self._lock:
            return float((self._spent + self._offline_figures(self._scope)[0]) / self.limit)

    def _stand(self, *, refresh: bool = False) -> None:
        """(Period budgets) read where the ledger stands now."""
        if self.period is None:
            return
        scope = self._current_scope()
        self._try_sending()
        lease = self._lease
        batch = None if lease is None else lease.standing  # (a new object with each batch of a shared lease)
        try:
            standing = self.tracker.store.standing(scope, refresh=refresh)
        except StoreError as exc:  # (the ledger cannot be read: the figures last seen, and this process's since)
            self._unreachable(exc)
            return
        with self._lock:
            if scope is self._scope:
                if lease is not None and lease is self._lease and lease.standing is not batch:
                    # A batch of the lease landed after the ledger was read (another thread's): the amounts it moved
                    # into the ledger are in neither that reading nor the lease now. Its own figures are the newer.
                    self._spent, self._committed = lease.figures()
                else:
                    self._set(*self._view(scope, standing))

    def _figures(self) -> tuple[Decimal, Decimal]:
        """``(spent, committed)`` as the budget counts them now (the caller holds the lock). While its lease is a
        ``Lease``, the calls it serves and settles in memory change the lease's figures alone (``Lease.view``), not
        ``_spent`` and ``_committed``: those are read here, through the lease. (A block budget's, from its ints.)"""
        if self.period is None:
            return from_atto(self._atto_spent), from_atto(self._atto_committed)
        lease = self._lease
        if type(lease) is Lease and lease.scope is self._scope:
            return lease.view()
        return self._spent, self._committed

    def _set(self, spent: Decimal, committed: Decimal) -> None:
        """``_spent`` and ``_committed`` read anew (the caller holds the lock), the ``Lease``'s view with them."""
        self._spent, self._committed = spent, committed
        lease = self._lease
        if type(lease) is Lease and lease.scope is self._scope:
            lease.rebase(spent, committed)

    def _view(self, scope: BudgetScope, standing: Standing) -> tuple[Decimal, Decimal]:
        """``(spent, committed)`` of ``scope`` from the ledger's ``standing``, as this process sees it: its lease's
        settled amounts spent, and of its lease only what calls in flight took reserved (caller holds the lock)."""
        lease = self._lease
        if lease is not None and lease.scope is scope:
            return lease.figures(standing)
        return standing.spent, standing.spent + standing.reserved

    @property
    def period_start(self) -> datetime | None:
        """Start of the current period (``None`` without a period)."""
        self.sync()
        return self._start

    @property
    def period_end(self) -> datetime | None:
        """End of the current period (``None`` without a period)."""
        self.sync()
        return self._end

    def __repr__(self) -> str:
        period = self.period.value if self.period else "block"
        return f"Budget(name={self.name!r}, limit={self.limit}, period={period!r}, spent={self._figures()[0]})"

    # -- matching and periods -------------------------------------------------------------------------------------
    def same_budget(self, other: object) -> bool:
        """Whether ``other`` is this budget to the store's ledger: another ``Budget`` of the same period, key (its
        name, or, unnamed, its limit; its filters and zone) and tracker, whose account is this one's. Entered inside
        this one, it adds nothing (``push_guard``): each call is reserved in the account once.

        >>> budget(1, period="daily").same_budget(budget("1.00", period="daily"))
        True
        """
        return (
            type(other) is Budget
            and other is not self
            and self.period is not None
            and other.period is self.period
            and other.key == self.key
            and other._tracker is self._tracker
        )

    def _matches(self, resource: str | None, category: str, tags: Mapping[str, str], model: str | None) -> bool:
        # A call whose model is not known before it is made counts against a per-model budget (it may be that
        # model); its entry counts only if it is (``BudgetScope.matches``).
        if self.model is not None and model is not None and model != self.model and canonical_id(model) != self.model:
            return False  # (a dated id of the budget's model, gpt-4o-2024-08-06 for gpt-4o, is that model)
        if self.resource is not None and resource != self.resource:
            return False
        if self.category is not None and category != self.category:
            return False
        return tags is self._tags_matched or self._has_tags(tags)

    def _has_tags(self, tags: Mapping[str, str]) -> bool:
        """Whether ``tags`` holds every tag of this budget's filter (remembered for the next call: see
        ``_tags_matched``)."""
        for key, value in self._tag_items:
            if tags.get(key) != value:
                return False
        if type(tags) is FrozenTags:  # (a plain mapping may change: only an immutable one is remembered)
            self._tags_matched = tags
        return True

    @in_exact_context
    def sync(self, *, force: bool = False) -> None:
        """Roll into the current period; a period budget then reads where its ledger stands (``force``: with the
        store's recorded spend read again now). ``BudgetManager`` forces a re-read before it reports."""
        if self.period is None:
            return
        self._current_scope()
        if force:
            self._stand(refresh=True)

    def _current_scope(self) -> BudgetScope:
        """The ledger scope of the current period, opened on the first use in each period.

        Opening one flushes the tracker, so entries this process recorded before the budget count at once.
        """
        assert self.period is not None
        tracker = self.tracker
        now = tracker.clock()
        with self._lock:
            scope = self._scope
            if scope is not None and self._start is not None and self._end is not None:
                if self._start <= now < self._end:
                    return scope
            elif scope is not None and self._start is None:
                return scope  # "total": one period forever
            self._start, self._end = period_bounds(self.period, now, self.tz)
            scope = self._scope = BudgetScope(
                self.key,
                since=self._start,
                until=self._end,
                category=self.category,
                resource=self.resource,
                model=self.model,
                tags=self.tags or None,
            )
            self._fired = set()
            self._quiet_below, self._atto_quiet = ZERO, 0
            # A new period: nothing counted in it until the ledger says (the last period's figures, kept here, were
            # taken for the new one's while the ledger could not be read).
            self._spent, self._committed = ZERO, ZERO
            old, self._lease = self._lease, None
        if old is not None:
            self._close_lease(old)  # the last period's amounts settled there, its headroom released
        store = tracker.store
        store.ledger().begin()  # from here on, written entries are acknowledged to the ledger
        try:
            # (Written only if the buffer holds entries that would add to this scope's spend, ``_uncounted``: a write
            # costs milliseconds on a DuckDB or Parquet store, and a budget opened per request, a user's, would pay
            # one per request for other users' entries and the user's own, which its account counts already.)
            if holds_unwritten(tracker, _uncounted(store, scope)):
                tracker.flush()
        except Exception as exc:  # noqa: BLE001 - count what is stored; the buffer is counted once written
            logger.warning("llmcost: budget %r could not flush before reading spend: %r", self.name, exc)
        try:
            standing = store.standing(scope)
        except StoreError as exc:  # (the ledger cannot be reached: the period counts from zero until it answers)
            self._unreachable(exc)
            return scope
        with self._lock:
            if scope is self._scope:
                self._set(*self._view(scope, standing))
        return scope

    def _close_lease(self, lease: Lease) -> None:
        """Settle ``lease``'s amounts and release it (a failure is logged: it lapses after the ledger's lease)."""
        unwritten = self._unwritten
        if unwritten is not None:
            with self._lock:
                unwritten.closing(lease)
        try:
            lease.close()
        except Exception as exc:  # noqa: BLE001 - a budget's exit never fails the user's block
            logger.warning("llmcost: budget %r could not settle its lease: %r", self.name, exc)

    # -- the guard protocol ---------------------------------------------------------------------------------------
    def before_call(self, call: PendingCall) -> object:
        """Reserve the call's estimate, or refuse the call (``BudgetExceeded``) if it would pass the limit."""
        if not _state.active:  # ``set_active(False)``: budgets refuse nothing
            return None
        if not self.checks_call(call.tracker, call.resource, call.category, call.tags, call.model, call.kwargs):
            return None
        return self.reserve_estimate(call.tracker, call.estimate())

    def checks_call(
        self,
        tracker: TrackerLike,
        resource: str | None,
        category: str,
        tags: Mapping[str, str],
        model: str | None,
        kwargs: Mapping[str, Any],
    ) -> bool:
        """Whether this budget checks a call of ``tracker`` with these fields (``model`` as the decorator names it;
        else the request's ``model=`` in ``kwargs``, for a per-model budget)."""
        if self._tracker is not None and tracker is not self._tracker:
            return False
        if self._filtered:
            if model is None and self.model is not None:
                asked = kwargs.get("model")
                model = asked if isinstance(asked, str) else None
            return self._matches(resource, category, tags, model)
        return True

    def reserve_checked(
        self,
        tracker: TrackerLike,
        resource: str | None,
        category: str,
        tags: Mapping[str, str],
        model: str | None,
        kwargs: Mapping[str, Any],
        needed: Decimal,
        atto: int | None = None,
    ) -> object:
        """``checks_call`` and, if this budget checks the call, ``reserve_estimate`` of its known estimate ``needed``
        (``atto``: the same in 10**-18 units, if known), in one step (a tracked call under filtered budgets asks each
        one): the token, or ``NOT_CHECKED``."""
        if self._tracker is not None and tracker is not self._tracker:
            return NOT_CHECKED
        if self._filtered:
            # ``checks_call``'s ``_matches``, inline: this runs before every call the budget may check.
            wanted = self.model
            if wanted is not None:
                if model is None and kwargs:
                    asked = kwargs.get("model")
                    model = asked if isinstance(asked, str) else None
                if model is not None and model != wanted and canonical_id(model) != wanted:
                    return NOT_CHECKED
            if self.resource is not None and resource != self.resource:
                return NOT_CHECKED
            if self.category is not None and category != self.category:
                return NOT_CHECKED
            if tags is not self._tags_matched and not self._has_tags(tags):
                return NOT_CHECKED
        if self.period is None:
            # ``reserve_estimate``'s usual check, inline (the tracker was checked above): a call whose estimate fits.
            if atto is None:
                atto = atto_of(needed)
            baton = self._baton
            try:
                baton.pop()  # (as in ``reserve_estimate``)
            except IndexError:
                _wait_baton(baton)
            try:
                committed = self._atto_committed
                after = committed + atto
                if after <= self._atto_limit and (atto > 0 or committed < self._atto_limit):
                    self._atto_committed = after
                    return atto  # a block budget's token: the amount reserved (an int of 10**-18 USD)
            finally:
                baton.append(True)
        else:
            lease = self._lease
            if type(lease) is Lease and lease.live:  # (``reserve_estimate``'s usual period call, one step sooner)
                served = self._take_leased(lease, needed, atto)
                if served is not None:
                    return served
        return self.reserve_estimate(tracker, needed, atto)

    def reserve_estimate(self, tracker: TrackerLike, needed: Decimal | None, atto: int | None = None) -> object:
        """``before_call`` of a call of ``tracker`` that this budget checks (it matches the filters, or the budget
        has none: ``unfiltered``) and whose estimate is known: ``needed``, or with ``needed=None``, ``atto`` (the
        estimate in 10**-18 units; both ``None``: nothing is known). Tracked calls under unfiltered budgets come here
        directly, without a ``PendingCall``; the caller checked that tracking is on (``set_active``)."""
        lent = self._lent
        if lent is not None and atto is not None and lent.tracker is tracker and tracker.store is lent.owner.store:
            # The usual call over a MemoryStore whose ledger lent this budget its account as ints
            # (``LentAccount``): checked and reserved as ``take_kept`` does it, in integer steps under the budget's
            # token, if the account is lent still, the ledger has counted every append (none the budget did not
            # make waits), and the call is of the account's period (the tracker's clock, as ``record_call`` reads
            # it). Only while the tracker writes to the lease's store: a store assigned to it since takes the calls'
            # rows, which the loan would never see (``_reserve`` moves the budget to the new store).
            now = _time_ns() if tracker.clock is system_clock else tracker.now_micros() * 1000
            baton = lent.baton
            try:
                baton.pop()  # (the budget's own token: see ``_Baton``)
            except IndexError:
                _wait_baton(baton)
            try:
                committed = lent.committed
                after = committed + atto
                # (The budget's limit as it stands: a loan keeps none of its own, so a limit changed while a call
                # was being lent the account, or at any time, holds from the next call.)
                limit = self._atto_limit
                granted = (
                    len(lent.appends) == lent.told  # (never, once the loan is over: ``told`` is -2 then)
                    and lent.since_ns <= now < lent.until_ns
                    and after <= limit
                    and (atto > 0 or committed < limit)
                )
                if granted:
                    lent.committed = after
            finally:
                baton.append(True)
            if granted:
                return (lent, atto)  # (a ``_LentCall``)
        if self._any_block and atto is not None:
            # The usual check: a block budget of every tracker, and a call whose estimate fits.
            baton = self._baton
            try:
                baton.pop()  # (the figures' token: see ``_Baton``)
            except IndexError:
                _wait_baton(baton)
            try:
                after = self._atto_committed + atto
                # It fits: what remains (limit - committed) is positive and at least ``needed`` (a positive ``needed``
                # that fits leaves no doubt about the first).
                if after <= self._atto_limit and (atto > 0 or self._atto_committed < self._atto_limit):
                    self._atto_committed = after
                    return atto  # a block budget's token: the amount reserved (an int of 10**-18 USD)
            finally:
                baton.append(True)
        elif self._tracker is not None and tracker is not self._tracker:
            return None
        # Any other call: a period budget's, one with no estimate, or one that did not fit above (checked again here,
        # where it is refused or, with ``on_exceed="warn"``, let through).
        if self.period is not None:
            lent = self._lent
            if needed is None:
                needed = ZERO if atto is None else from_atto(atto)
            lease = self._lease
            if type(lease) is LocalLease and lease.account is not None:
                # The usual call over a MemoryStore: if it is of the lease's period (its own bounds, against the
                # tracker's clock), reserved exactly in the kept account of the store's ledger, in one step under the
                # ledger's lock alone (``LocalLedger.take_kept``); else, or if it does not fit, ``_reserve`` decides
                # under the budget's lock. The lease is the budget's as read here: should the period roll over
                # meanwhile, a call of the lease's period still counts there (as if it had come a moment earlier).
                budget_tracker = self._tracker
                if budget_tracker is None:
                    budget_tracker = get_tracker()
                store = budget_tracker.store
                if lease.store is store:
                    # (``now_micros`` inline for the default clock, as ``record_call`` reads it.)
                    now = _time_ns() // 1000 if budget_tracker.clock is system_clock else budget_tracker.now_micros()
                    since, until = lease.since_us, lease.until_us
                    if (
                        (since is None or since <= now)
                        and (until is None or now < until)
                        and lease.ledger.take_kept(lease.account, needed, lease.limit) is True
                    ):
                        # (``_Leased(store, lease, needed)`` without its ``__init__``'s frame.)
                        if atto is not None and (
                            lent is None or not lent.live or lent.owner is not lease or lent.tracker is not tracker
                        ):
                            lent = self._lent_again(lease, budget_tracker, tracker)
                            if lent is not None and from_atto(atto) == needed:  # (its estimate in it, as ints)
                                return (lent, atto)  # (a ``_LentCall``)
                        token = _new_token(_Leased)
                        token.store, token.settled, token.lease, token.estimate = store, False, lease, needed
                        token.atto = None
                        return token
            elif type(lease) is Lease and lease.live:
                served = self._take_leased(lease, needed, atto)
                if served is not None:
                    return served
            return self._reserve(needed)
        if atto is None:
            atto = 0 if needed is None else atto_of(needed)
        limit = self._atto_limit
        warn = self.on_exceed == "warn"
        baton = self._baton
        try:
            baton.pop()
        except IndexError:
            _wait_baton(baton)
        try:
            committed = self._atto_committed
            after = committed + atto
            if after <= limit and (atto > 0 or committed < limit):
                self._atto_committed = after
                return atto
            if warn:
                self._atto_committed = after
        finally:
            baton.append(True)
        spent = self._atto_spent  # (read after the baton: for the message, as ``committed`` was)
        self._refused(from_atto(spent), from_atto(committed - spent), from_atto(atto) if needed is None else needed)
        return atto

    @in_exact_context  # (a block budget's call may be checked in the caller's narrow context: its figures are ints)
    def _refused(
        self,
        spent: Decimal,
        reserved: Decimal,
        needed: Decimal,
        *,
        detailed: bool = False,
        scope: BudgetScope | None = None,
    ) -> None:
        """A call needing ``needed`` did not fit what is ``spent`` and ``reserved`` by calls in flight: refused
        (``BudgetExceeded``) with the 1.0 alert, if it has not fired (``detailed``: its message says why, as a period
        budget's does). ``scope``: the period it was refused in; over since (another thread moved the budget to the
        next), the call is refused without an alert, which would be the next period's.

        With ``on_exceed="warn"`` the call is let through, and the alert says so, once a period and only while the
        1.0 threshold has not fired: the call may well cost less than its estimate, so the threshold is not marked
        fired here, and fires as spend reaches the limit.

        Thresholds under the limit that spend has passed fire first: a refusal may be the budget's first look at a
        period whose spend was recorded before it (or by another process), and "passed 90%" belongs before it."""
        self._check_thresholds(None, None, under_limit=True)
        if self.on_exceed == "warn":
            let_through = f"a call needing about {dollars(needed)[0]} would pass the limit; let through"
            self._alert(1.0, let_through, event="budget.exceeded", let_through=True, scope=scope)
            return
        refused = BudgetExceeded(self.name, spent, self.limit, needed, reserved)
        what = (
            f"refused a call needing ~${needed}: {refused}"
            if detailed
            else f"refused a call needing about {dollars(needed)[0]}"
        )
        self._alert(1.0, what, event="budget.exceeded", scope=scope)
        raise refused

    def _lent_again(self, lease: LocalLease, budget_tracker: TrackerLike, tracker: TrackerLike) -> LentAccount | None:
        """(A call just reserved in ``lease``'s kept account, the budget's ``LentAccount`` gone or another's) ask the
        ledger to lend the account to this budget's calls as ints, and keep what it answers (``None``: not lent).

        Only a budget without filters, over its own tracker's calls, is lent its account. A loan ends with any news
        the budget did not make (another writer's append, another budget's step, a read of the ledger), and lending
        costs a few conversions: after a loan that served fewer than ``_LOAN_WORTH`` calls, or a refusal, the budget
        waits twice as many calls as last time (at most ``_LOAN_WAIT_MAX``) before it asks again."""
        if self._filtered or budget_tracker is not tracker or lease.account is None:
            return None
        old = self._lent
        if old is not None:
            self._lent = None
            self._lend_wait = self._lend_gap = 0 if old.served() >= _LOAN_WORTH else self._longer_gap()
        if self._lend_wait:
            self._lend_wait -= 1
            return None
        lent = self._lent = lease.ledger.lend(
            lease.account, tracker=tracker, owner=lease, baton=self._baton, wait=_wait_baton
        )
        if lent is None:
            self._lend_wait = self._lend_gap = self._longer_gap()
        return lent

    def _longer_gap(self) -> int:
        """The next wait between asking the ledger to lend the account: twice the last, plus one (``_lent_again``)."""
        return min(2 * self._lend_gap + 1, _LOAN_WAIT_MAX)

    def _take_leased(self, lease: Lease, needed: Decimal, atto: int | None) -> _LeaseCall | None:
        """The usual call over a shared ledger (DuckDB, Parquet, PostgreSQL): ``needed`` served from this period's
        ``lease`` in memory, under the budget's lock once, if the call is of the lease's period (its own bounds,
        against the tracker's clock: the budget's bounds while the lease is its own; the system clock's reading is
        checked against a bound found once per batch, as ``Lease.take`` checks it, another clock's per call). ``None``
        for anything else (the lease is due for its batch, has run dry, or is another period's or another store's):
        ``_reserve`` decides then. ``atto``: ``needed`` in 10**-18 USD if the caller has it (else ``leased``)."""
        tracker = self._tracker
        if tracker is None:
            tracker = get_tracker()
        store = tracker.store
        if lease.store is store:
            # The system clock (the default) is also the lease's (``time.time()``): ``take`` checks the period then,
            # in the comparison that checks its batch is not due. Another clock is read here.
            system = tracker.clock is system_clock
            if not system:
                now = tracker.now_micros()
                since, until = lease.since_us, lease.until_us
                if (since is not None and now < since) or (until is not None and now >= until):
                    return None
            if atto is None:
                atto = leased(needed)
            taken = False
            lock = self._lock
            lock.acquire()  # (not ``with``: its protocol costs more than the lock, on every call)
            try:
                # ``Lease.take`` inline (one frame less on every call), counted in the lease's ``view``: the lease is
                # live and not due for its batch (nor, on the system clock, past its period), and has ``needed``
                # unused, with some room (as the ledger grants a reservation).
                if lease is self._lease and _time() < (lease.period_due if system else lease.due):
                    free = lease.free
                    left = free - atto
                    if left >= 0 and (atto > 0 or free > 0):  # (ints: the lease's figures are 10**-18 USD)
                        lease.free = left
                        taken = True
            finally:
                lock.release()
            if taken:
                return [lease, atto]  # (a ``_LeaseCall``)
        return None

    def _reserve(self, needed: Decimal) -> _Hold:
        """(Period budgets) reserve ``needed`` in the ledger, atomically for every process; raise if refused.

        Over a ledger every process shares, take it from this process's lease instead, renewing the lease when it
        cannot serve it; near the limit (a lease would not be more than one call's estimate), reserve exactly."""
        lease = self._lease
        if lease is not None:  # the usual call: served from this period's lease (``_current_scope``'s check inline)
            tracker = self.tracker
            store = tracker.store
            if lease.store is store:
                now = tracker.clock()
                lock = self._lock
                lock.acquire()  # (not ``with``: its protocol costs more than the lock, on every call)
                try:
                    start, end = self._start, self._end
                    if (
                        lease is self._lease
                        and lease.scope is self._scope
                        and (start <= now < end if start is not None and end is not None else start is None)
                        and lease.take(needed)
                    ):
                        if type(lease) is not Lease:  # (a ``Lease`` counts it in its ``view``)
                            self._committed += needed
                        return _Leased(store, lease, needed)
                finally:
                    lock.release()
        scope = self._current_scope()
        store = self.tracker.store
        lease = self._lease
        if lease is not None and lease.store is not store:  # the tracker's store changed (``configure``)
            self._close_lease(lease)
            with self._lock:
                if self._lease is lease:
                    self._spent, self._committed = self._figures()
                    self._lease = lease = None
        if lease is not None and lease.scope is scope:
            with self._lock:  # (the lease's lock too)
                if lease.take(needed):
                    if type(lease) is not Lease:  # (a ``Lease`` counts it in its ``view``)
                        self._committed += needed
                    return _Leased(store, lease, needed)
        # Whatever the ledger decides next (a lease, its renewal, or a call reserved exactly) it decides from the
        # store's spend: written first is what the tracker holds in its buffer (up to ``flush_interval``), such as
        # entries recorded outside this budget's blocks or under another budget, which the store does not have yet.
        # So a lease is never sized from a total that lacks them: the spend can pass the limit by at most the lease
        # held already. (Here, not on the calls a lease serves: only as a lease runs out or is due, or near the limit.)
        tracker = self.tracker
        buffered = buffered_count(tracker)  # (read first: entries buffered after it are looked at next time)
        counted = self._write_unseen(tracker, scope, buffered)
        # (Where the room left as last seen could not give a lease of two calls or more, none is asked for. An
        # in-process ledger's ``LocalLease`` reserves each call exactly, so it serves calls whatever the room.)
        ledger = store.ledger()
        # (The limit read once: one lowered by another thread meanwhile holds from the next call. Read again here, it
        # refused a call the ledger had just granted under the old one, and that reservation was never released.)
        limit = self.limit
        try:
            if self._unsent:
                self._send_offline(store)
            with self._lock:
                committed = self._figures()[1]
            if isinstance(ledger, LocalLedger) or (
                needed > ZERO and ledger.leases and limit - committed >= needed * (2 * LEASE_SHARE)
            ):
                leased = self._lease_for(store, scope, needed, buffered if counted else None)
                if leased is not None:
                    return leased
            elif lease is not None and lease.scope is scope and lease.holding():
                self._close_lease(lease)  # near the limit: its amounts settled, its headroom released; call by call
            r = store.reserve(scope, needed, limit=limit, force=self.on_exceed == "warn")
        except StoreError as exc:
            return self._reserve_offline(store, scope, needed, limit, exc)
        remaining = limit - r.spent - r.reserved
        with self._lock:
            if scope is self._scope:
                self._set(*self._view(scope, Standing(r.spent, r.reserved + (needed if r.granted else ZERO))))
        if remaining <= 0 or needed > remaining:
            self._refused(r.spent, r.reserved, needed, detailed=True, scope=scope)
        return _Hold(store, scope, r)

    def _reserve_offline(
        self, store: CostStore, scope: BudgetScope, needed: Decimal, limit: Decimal, exc: StoreError
    ) -> _Offline:
        """(Period budgets) the ledger could not be reached (``exc``): the call is checked against the figures the
        budget last saw, plus what this process's calls took since, and refused if they do not cover it. Each
        process counts its own calls so: a budget whose limit was reached stays shut, and one with room left lets
        this process use that room, while the ledger is down (every process alike: see docs/budgets.md)."""
        self._unreachable(exc)
        with self._lock:
            seen, committed = self._figures() if scope is self._scope else (ZERO, ZERO)
            held, spent = self._offline_held.get(scope.key, ZERO), self._offline_spent.get(scope.key, ZERO)
            remaining = limit - committed - held - spent
            fits = remaining > 0 and needed <= remaining
            if fits or self.on_exceed == "warn":
                self._offline_held[scope.key] = self._offline_held.get(scope.key, ZERO) + needed
        if not fits:
            # (Returns only with on_exceed="warn".)
            self._refused(seen + spent, committed - seen + held, needed, detailed=True)
        return _Offline(store, scope, needed)

    def _unreachable(self, exc: StoreError) -> None:
        """Say once that the ledger cannot be reached (``exc``), and how the budget goes on."""
        log_once(
            ("budget-offline", self.name, type(exc)),
            "llmcost: budget %r cannot reach its ledger (%s); checking calls against the figures last seen",
            self.name,
            exc,
        )

    def _offline_done(self, hold: _Offline, amount: Decimal | None, entry_id: str | None = None) -> None:
        """Settle a call checked while the ledger could not be reached: its recorded ``amount`` counted in place of
        its estimate (and kept to settle in the ledger, under ``entry_id`` if its entry goes to the budget's store),
        or with ``None`` its estimate given back."""
        hold.settled = True
        with self._lock:
            key = hold.scope.key
            left = self._offline_held.get(key, ZERO) - hold.estimate
            if left > ZERO:
                self._offline_held[key] = left
            else:
                self._offline_held.pop(key, None)
        if amount is not None:
            self._settled_offline(hold.scope, amount, entry_id, None)
            self.check_thresholds()

    def _settled_offline(
        self, scope: BudgetScope, amount: Decimal, entry_id: str | None, reservation: Reservation | None
    ) -> None:
        """Count ``amount`` recorded while the ledger could not be reached (a settle that failed, or a call checked
        offline): in this process's figures at once, and in the ledger (in place of ``reservation``, if any) as soon
        as it answers (``_send_offline``)."""
        with self._lock:
            self._offline_spent[scope.key] = self._offline_spent.get(scope.key, ZERO) + amount
            self._unsent.append((scope, amount, entry_id, reservation))
            if reservation is not None and scope is self._scope and type(self._lease) is not Lease:
                # (Its estimate, reserved before the ledger went, is in the figures last seen: now its amount is.)
                self._committed = max(self._committed - reservation.amount, self._spent)

    def _send_offline(self, store: CostStore) -> None:
        """Settle in the ledger the amounts of calls settled while it could not be reached (each under its entry's id,
        so that it counts once whether the entry is written yet or not, and in place of its call's reservation if it
        had one); raise ``StoreError`` if it still cannot be reached (those not sent are kept). One thread sends at a
        time, each amount taken off the list before it is sent (and put back if it could not be)."""
        if not self._sending.acquire(blocking=False):
            return  # (another thread is sending them)
        try:
            while True:
                with self._lock:
                    if not self._unsent:
                        return
                    sending = self._unsent.pop(0)
                scope, amount, entry_id, reservation = sending
                try:
                    standing = store.settle(scope, amount, reservation=reservation, entry_id=entry_id)
                except BaseException:
                    with self._lock:
                        self._unsent.insert(0, sending)
                    raise
                with self._lock:
                    key = scope.key
                    left = self._offline_spent.get(key, ZERO) - amount
                    if left > ZERO:
                        self._offline_spent[key] = left
                    else:
                        self._offline_spent.pop(key, None)
                    if scope is self._scope:
                        self._set(*self._view(scope, standing))
        finally:
            self._sending.release()

    def _try_sending(self) -> None:
        """``_send_offline``, if anything waits to be sent, where a failure only means it waits longer (a reading, the
        end of a block)."""
        if self._unsent:
            try:
                self._send_offline(self.tracker.store)
            except StoreError as exc:
                self._unreachable(exc)

    def _offline_figures(self, scope: BudgetScope | None) -> tuple[Decimal, Decimal]:
        """``(spent, held)`` of this process's calls that the ledger has not seen yet (it could not be reached): the
        amounts settled, and the estimates of calls in flight (the caller holds the lock)."""
        if scope is None or not (self._offline_spent or self._offline_held):
            return ZERO, ZERO
        return self._offline_spent.get(scope.key, ZERO), self._offline_held.get(scope.key, ZERO)

    def _write_unseen(self, tracker: CostTracker, scope: BudgetScope, buffered: int) -> bool:
        """Write ``tracker``'s buffer to its store if it may hold spend of ``scope`` the ledger has not counted
        (``buffered``: its ``buffered_count`` read just before), so the ledger's next decision counts it; a failure
        is logged once (the ledger counts what is stored, and the buffer once it is written).

        Not written when every entry buffered since the last look was one of this budget's calls, settled in the
        ledger already (the usual case: a write to a DuckDB file costs milliseconds, and the tracker's writer makes
        it anyway within ``flush_interval``); that is, when the tracker buffered no more entries since then than
        the budget's lease settled calls. Else, or when that count is not known (a batch made by another thread,
        a lease closed by the idle settler, another tracker or process), written if any entry the tracker holds
        unwritten would add to ``scope``'s spend (``holds_unwritten`` of ``_uncounted``: the buffer, and the batch of
        a write under way, which the flush waits for). Whether every entry buffered up to ``buffered`` is now in the
        store, one of this budget's calls, or one that adds nothing to ``scope``'s spend once written."""
        unwritten = self._unwritten
        if unwritten is not None and unwritten.tracker is tracker and unwritten.pid == os.getpid():
            with self._lock:
                own = unwritten.calls(self._lease)
            if own is not None and buffered - unwritten.buffered <= own:
                return True
        ledger = tracker.store.current_ledger()
        if ledger is not None and ledger.spend_unreadable():
            # The ledger counts from its last reading, not the store's total: a write would add nothing to it (until
            # a reading succeeds) and, to a locked store, hold this call for the store's ``retry_timeout``.
            return False
        try:
            if holds_unwritten(tracker, _uncounted(tracker.store, scope)):
                tracker.flush()
        except Exception as exc:  # noqa: BLE001 - reserve against what is stored; the buffer counts once written
            log_once(("budget-flush", type(exc)), "llmcost: budget %r could not flush before reserving: %r",
                     self.name, exc)  # fmt: skip
            return False
        self._unwritten = _Unwritten(tracker, buffered)
        return True

    def _lease_for(self, store: CostStore, scope: BudgetScope, needed: Decimal, buffered: int | None) -> _Leased | None:
        """Renew this period's lease (or lease anew) with room for ``needed`` and take it from there; ``None`` if the
        ledger grants no headroom (near the limit) or it cannot be reached (the exact reservation then says why).
        ``buffered``: the tracker's ``buffered_count`` up to which ``_write_unseen`` found every entry counted (the
        calls the lease settles from its new batch on are counted from there), if it did."""
        with self._lock:
            if scope is not self._scope:
                return None
            lease = self._lease
            if lease is None or lease.scope is not scope or lease.store is not store or not lease.mine():
                ledger = store.ledger()
                spent, committed = self._figures()
                if isinstance(ledger, LocalLedger):  # in this process: each call reserved exactly, no headroom leased
                    lease = self._lease = LocalLease(store, ledger, scope, limit=self.limit, lock=self._lock)
                else:
                    lease = self._lease = Lease(store, scope, limit=self.limit, lock=self._lock)
                    lease.quiet(self._quiet_below)
                self._set(spent, committed)  # (until its first batch)
            try:
                lease.renew(needed)
            except Exception as exc:  # noqa: BLE001 - the exact path reserves (or raises) as it would without leases
                logger.debug("llmcost: budget %r could not renew its lease: %r", self.name, exc)
                return None
            unwritten = self._unwritten
            if buffered is not None and unwritten is not None:
                unwritten.buffered, unwritten.own = buffered, 0
                unwritten.watch(lease)
            self._spent, self._committed = lease.figures()
            if not lease.take(needed):
                return None
            if type(lease) is not Lease:  # (a ``Lease`` counts it in its ``view``)
                self._committed += needed
        return _Leased(store, lease, needed)

    def after_call(self, token: object, entry: CostEntry | None) -> None:
        """Release the reservation made by ``before_call`` unless the call's entry settled it (``on_recorded``)."""
        if type(token) is int:  # a block budget's: the amount reserved, in 10**-18 units
            if token:  # (zero: nothing was reserved)
                baton = self._baton
                try:
                    baton.pop()  # (as in ``reserve_estimate``)
                except IndexError:
                    _wait_baton(baton)
                try:
                    committed, spent = self._atto_committed - token, self._atto_spent
                    self._atto_committed = (
                        committed if committed > spent else spent
                    )  # (never less than nothing reserved)
                finally:
                    baton.append(True)
            return
        if type(token) is tuple:  # a ``_LentCall``: its estimate given back where it is, while the loan lasts
            lent, estimate_atto = token
            baton = lent.baton
            try:
                baton.pop()  # (as in ``reserve_estimate``)
            except IndexError:
                _wait_baton(baton)
            try:
                released = lent.live
                if released:
                    lent.committed -= estimate_atto
            finally:
                baton.append(True)
            if released:
                return
            token = _leased_of(token)
        elif type(token) is list:  # a ``_LeaseCall``: its estimate given back as the ``_Leased`` it is, if unsettled
            token = _leased_of(token)
        if isinstance(token, _Hold) and not token.settled:
            if type(token) is _Offline:
                self._offline_done(token, None)
                return
            token.settled = True
            if type(token) is _Leased:
                self._done_leased(token, None)
            elif token.reservation.id is not None:
                try:
                    token.store.release(token.reservation)
                except StoreError as exc:  # (the ledger releases it when it answers again)
                    self._unreachable(exc)
                    with self._lock:
                        if token.scope is self._scope and type(self._lease) is not Lease:
                            self._committed = max(self._committed - token.reservation.amount, self._spent)

    def on_recorded(self, tracker: TrackerLike, entry: CostEntry, atto: int | None = None) -> None:
        """Count ``entry`` if it matches this budget (and its period), then fire any thresholds it crossed (``atto``:
        its amount in 10**-18 units, if known)."""
        if self._tracker is not None and tracker is not self._tracker:
            return
        if self._filtered and not self._matches(entry.resource, entry.category.value, entry.tags, None):
            return
        if self.model is not None and self.model not in entry_models(entry):
            return  # the entry's model (or the catalog id it resolved to) is another model, or none is known
        if self.period is not None:
            self._settle(tracker, entry)
            return
        if atto is None:
            atto = atto_of(entry.amount)
        baton = self._baton
        try:
            baton.pop()  # (as in ``reserve_estimate``)
        except IndexError:
            _wait_baton(baton)
        try:
            spent = self._atto_spent = self._atto_spent + atto
            self._atto_committed += atto
            quiet = spent < self._atto_quiet
        finally:
            baton.append(True)
        if not quiet:  # (else no threshold can have been crossed: ``check_thresholds`` keeps this bound)
            self.check_thresholds()

    def settle_recorded(
        self, tracker: TrackerLike, entry: CostEntry, token: object, recorded_us: int, matched: bool, atto: int | None
    ) -> bool:
        """(``Guard.settle_recorded``) count ``entry`` with its call's ``token`` in one step, if it is the usual one:
        a call served from this period's lease on a shared ledger (``Lease``), whose entry goes to the lease's store
        and falls in its period (``recorded_us`` against the lease's own bounds). The entry matches the filters
        (``matched``: the call was checked on its very fields; else matched here) and the model. ``False`` (nothing
        done) for any other entry or token: ``on_recorded`` counts it. ``atto``: the entry's amount in 10**-18 USD, if
        known."""
        lease: Lease
        estimate: int
        if type(token) is list:  # (the usual token: a ``_LeaseCall``)
            lease, estimate = token
            if estimate is None:
                return False
        elif type(token) is _Leased and not token.settled and type(token.lease) is Lease:
            lease, estimate = token.lease, token.atto  # type: ignore[assignment]  # (a ``Lease``'s: never ``None``)
        else:
            return False
        if lease is not self._lease:
            return False
        try:
            if tracker.store is not lease.store:  # type: ignore[attr-defined]  # (a ``CostTracker``'s, the usual one)
                return False
        except AttributeError:  # (a tracker of no store: ``getattr`` costs more than this, on every call)
            return False
        if self._filtered:
            if not matched and not self._matches(entry.resource, entry.category.value, entry.tags, None):
                return False
            if self.model is not None and self.model not in entry_models(entry):
                return False
        since, until = lease.since_us, lease.until_us
        if (since is not None and recorded_us < since) or (until is not None and recorded_us >= until):
            return False
        if atto is None:
            atto = atto_of(entry.amount)
        if type(token) is list:  # settled from here on, whatever happens (see ``_LeaseCall``)
            token[1] = None
        else:
            token.settled = True  # type: ignore[union-attr]  # (a ``_Leased``: see above)
        amount, entry_id = entry.amount, entry.id
        quiet = None
        lock = self._lock
        lock.acquire()  # (as in ``_take_leased``)
        try:
            # ``Lease.settle_call``'s usual case inline, in integer steps: the lease covers the amount (its estimate
            # given back plus what is unused). Counted as spent in the lease's ``view``, in place of its estimate;
            # ``quiet``: ``settled`` stays under the lease's bound (``Lease.quiet``), so no threshold can have been
            # crossed.
            if lease is self._lease:
                free = lease.free - (atto - estimate)
                pending = lease.pending
                if free >= 0 and atto >= 0 and lease.live and entry_id not in pending:
                    pending[entry_id] = amount
                    settled = lease.settled = lease.settled + atto
                    lease.free = free
                    lease.count += 1
                    quiet = settled < lease.quiet_settled
        finally:
            lock.release()
        if quiet is None:  # (any other case: under the lock again, in a wide decimal context)
            quiet = self._settle_locked(lease, amount, atto, estimate, entry_id)
        if not quiet:  # (else no threshold can have been crossed: ``check_thresholds`` keeps this bound)
            self.check_thresholds()
        return True

    @in_exact_context  # (the caller settles in the caller's context: its figures are ints; a batch's are not)
    def _settle_locked(self, lease: Lease, amount: Decimal, atto: int, estimate: int, entry_id: str) -> bool:
        """``settle_recorded`` of an entry whose usual case did not apply, under the budget's lock: whether no
        threshold can have been crossed."""
        with self._lock:
            if lease is self._lease:  # (then its scope is the budget's: they change together, under the lock)
                try:
                    # Settled in memory (``True``/``False``): counted as spent in the lease's ``view``, in place of
                    # its estimate; ``True``: and ``settled`` stays under the lease's bound (``Lease.quiet``), so no
                    # threshold can have been crossed. ``None``: a batch went to the ledger.
                    quiet = lease.settle_call(estimate, amount, atto, entry_id)
                except BaseException:
                    self._spent, self._committed = lease.figures()
                    raise
                if quiet is None:  # the scope as it stands after the batch
                    self._spent, self._committed = lease.figures()
                    quiet = self._figures()[0] < self._quiet_below
            else:
                lease.done(estimate, amount, entry_id)  # (another period's lease now)
                quiet = self._figures()[0] < self._quiet_below
        return quiet

    def on_recorded_row(
        self,
        tracker: TrackerLike,
        amount: Decimal,
        resource: str | None,
        category: str,
        tags: FrozenTags,
        reservations: list[tuple[Any, object]] | None,
        model: str | None = None,
        canonical_model: str | None = None,
        checked: bool = False,
        recorded_us: int | None = None,
        atto: int | None = None,
    ) -> None:
        """(``counts_rows``) ``on_recorded`` of an entry given as its fields, recorded at ``recorded_us`` (epoch
        microseconds; ``None``: now, by the tracker's clock), its amount also in 10**-18 units if known (``atto``);
        if this budget reserved for the call being recorded
        (its pair is in ``reservations``, the call's open ones), the reservation is released in the same step as the
        amount is counted, and its pair taken out of ``reservations``.

        A reservation there says that this budget checked the call: the call is of a tracker it checks, and (with
        ``checked``: on these very ``resource``, ``category`` and ``tags``) it matched the filters, which are then
        not matched again. The model is: a call may be checked before its model is known."""
        if self.period is not None:
            if reservations and recorded_us is not None:
                owner, token = reservations[0]  # (``_period_row``'s usual count, inline: the call's one guard)
                if owner is self and type(token) is _Leased and self._gave_back(token, tracker, recorded_us):
                    del reservations[0]
                    return
            self._period_row(
                tracker, amount, resource, category, tags, reservations, model, canonical_model, checked, recorded_us
            )
            return
        if reservations:
            owner, needed = reservations[0]
            if owner is self and needed is not None:
                # The usual count: this budget's reservation for the call comes first (guards count an entry in the
                # order they checked its call), and is settled in the same step. The reservation says the call is of
                # a tracker this budget checks; its filters are matched again unless ``checked`` says they matched
                # these very fields; its model is, unless it has none.
                if not self._counts_all:
                    if not checked and self._filtered and not self._matches(resource, category, tags, None):
                        return  # (an entry that does not count leaves its call's reservation to ``after_call``)
                    wanted = self.model
                    if wanted is not None and wanted != canonical_model and wanted != model:
                        return
                del reservations[0]
                if atto is None:
                    atto = atto_of(amount)
                baton = self._baton
                try:
                    baton.pop()  # (as in ``reserve_estimate``)
                except IndexError:
                    _wait_baton(baton)
                try:
                    spent = self._atto_spent = self._atto_spent + atto
                    # The amount in place of the reservation (which is part of what is committed, so this never goes
                    # below what is spent).
                    self._atto_committed = self._atto_committed + atto - needed  # type: ignore[operator]  # a block token
                    quiet = spent < self._atto_quiet
                finally:
                    baton.append(True)
                if not quiet:  # (else no threshold can have been crossed: ``check_thresholds`` keeps this bound)
                    self.check_thresholds()
                return
        self._count_row(tracker, amount, resource, category, tags, reservations, model, canonical_model, checked, atto)

    def settle_row(
        self,
        tracker: TrackerLike,
        token: object,
        amount: Decimal,
        resource: str | None,
        category: str,
        tags: FrozenTags,
        model: str | None = None,
        canonical_model: str | None = None,
        checked: bool = False,
        recorded_us: int | None = None,
        atto: int | None = None,
    ) -> None:
        """(``Guard.settle_row``) ``on_recorded_row`` of the row of a call that this budget alone reserved for, given
        the ``token`` of its reservation (what ``reserve_estimate``/``reserve_checked``/``before_call`` returned) in
        place of the call's reservations: the row counted as ``on_recorded_row`` counts it, and ``token`` settled
        exactly once, also if this raises (counted in its place, or else released as ``after_call`` releases it)."""
        if self.period is None:
            if type(token) is int and (not self._filtered or checked):
                # ``on_recorded_row``'s usual count, the token given: the reservation says the call is of a tracker
                # this budget checks, and its filters matched these very fields (or it has none); the model is matched
                # (a budget with a model is filtered).
                if self._filtered:
                    wanted = self.model
                    if wanted is not None and wanted != canonical_model and wanted != model:
                        self.after_call(token, None)  # (an entry that does not count: its reservation is released)
                        return
                if atto is None:
                    atto = atto_of(amount)
                baton = self._baton
                try:
                    baton.pop()  # (as in ``reserve_estimate``)
                except IndexError:
                    _wait_baton(baton)
                try:
                    spent = self._atto_spent = self._atto_spent + atto
                    self._atto_committed = self._atto_committed + atto - token  # (as in ``on_recorded_row``)
                    quiet = spent < self._atto_quiet
                finally:
                    baton.append(True)
                if not quiet:
                    self.check_thresholds()
                return
        elif type(token) is tuple:
            lent, estimate_atto = token
            if atto is not None and recorded_us is not None and tracker is lent.tracker:
                # The usual call under a ``LentAccount``: its row counted and its estimate given back in integer steps,
                # as ``give_back`` does, if the account is lent still and the row is the one append it has not
                # counted (no one else counts while it is lent: that append is this call's) and of its period.
                baton = lent.baton
                try:
                    baton.pop()  # (as in ``reserve_estimate``)
                except IndexError:
                    _wait_baton(baton)
                try:
                    told = lent.told
                    counted = len(lent.appends) == told + 1 and lent.since_us <= recorded_us < lent.until_us
                    if counted:
                        lent.told = told + 1
                        spent = lent.base = lent.base + atto
                        lent.committed += atto - estimate_atto
                finally:
                    baton.append(True)
                if counted:
                    if spent >= self._atto_quiet:  # (else no threshold can have been crossed)
                        self._check_thresholds(lent.owner, from_atto(spent))
                    return
            token = _leased_of(token)  # (the loan is over: counted as any other row, below)
        elif type(token) is _Leased and recorded_us is not None:
            # ``on_recorded_row``'s usual period count, ``_gave_back`` inline (this runs after every call).
            lease = token.lease
            if type(lease) is LocalLease and not token.settled:
                account = lease.account
                if (
                    account is not None
                    and (lease.since_us is None or lease.since_us <= recorded_us)
                    and (lease.until_us is None or recorded_us < lease.until_us)
                    and token.store is getattr(tracker, "store", None)
                ):
                    token.settled = True
                    reached = lease.ledger.give_back(account, token.estimate)
                    if reached >= self._quiet_below and lease is self._lease:  # (as ``_gave_back`` says)
                        self._check_thresholds(lease, reached)
                    return
            try:
                if self._gave_back(token, tracker, recorded_us):
                    return  # (``on_recorded_row``'s usual period count)
            except BaseException:
                self.after_call(token, None)  # (nothing if it was settled there: ``settled`` is set first)
                raise
        # Any other row: as ``on_recorded_row`` counts it, with the token as the call's one pair; if it is not taken
        # out there (not counted in its place, or a failure), it is released here.
        pairs: list[tuple[Any, object]] = [(self, token)]
        try:
            self.on_recorded_row(
                tracker, amount, resource, category, tags, pairs, model, canonical_model, checked, recorded_us, atto
            )
        finally:
            if pairs:
                self.after_call(token, None)

    def _reservation_in(self, reservations: list[tuple[Any, object]] | None) -> tuple[int, Any]:
        """Where this budget's ``(guard, token)`` pair is in a call's ``reservations``, and its token: ``(-1, None)``
        when it made none."""
        if reservations:
            for i, pair in enumerate(reservations):
                if pair[0] is self:
                    return i, pair[1]
        return -1, None

    def _count_row(
        self,
        tracker: TrackerLike,
        amount: Decimal,
        resource: str | None,
        category: str,
        tags: FrozenTags,
        reservations: list[tuple[Any, object]] | None,
        model: str | None,
        canonical_model: str | None,
        checked: bool,
        atto: int | None,
    ) -> None:
        """``on_recorded_row`` in general: the entry's fields matched if they need be, the reservation found
        wherever it is in ``reservations``."""
        found, needed = self._reservation_in(reservations)
        if not self._counts_all:
            if needed is None:  # no reservation of this budget (or none was made): the entry's fields decide
                if self._tracker is not None and tracker is not self._tracker:
                    return
                if self._filtered and not self._matches(resource, category, tags, None):
                    return  # (an entry that does not count leaves its call's reservation to ``after_call``)
            elif self._filtered and not checked and not self._matches(resource, category, tags, None):
                return
            # A per-model budget matches an entry's model or the catalog id it resolved to, as ``entry_models``
            # (the ledger's rule) reads them off a ``CostEntry``.
            if self.model is not None and self.model != model and self.model != canonical_model:
                return
        if found >= 0:
            del reservations[found]  # type: ignore[union-attr]  # (found: a list)
        if atto is None:
            atto = atto_of(amount)
        baton = self._baton
        try:
            baton.pop()  # (as in ``reserve_estimate``)
        except IndexError:
            _wait_baton(baton)
        try:
            spent = self._atto_spent = self._atto_spent + atto
            committed = self._atto_committed + atto
            self._atto_committed = committed if needed is None else committed - needed
            quiet = spent < self._atto_quiet
        finally:
            baton.append(True)
        if not quiet:
            self.check_thresholds()

    def _period_row(
        self,
        tracker: TrackerLike,
        amount: Decimal,
        resource: str | None,
        category: str,
        tags: FrozenTags,
        reservations: list[tuple[Any, object]] | None,
        model: str | None,
        canonical_model: str | None,
        checked: bool,
        recorded_us: int | None,
    ) -> None:
        """(Period budgets) ``on_recorded_row``: the row is in the recording tracker's store already. Over this
        budget's store (a ``MemoryStore``, whose fed ledger counts every appended row that matches a scope, under its
        lock, before it next answers) the amount is counted there: the call only gives its estimate back (and the
        budget reads the figures after it). Over another store it is settled as ``_settle`` settles an entry of
        another store."""
        if self._tracker is not None and tracker is not self._tracker:
            return
        found, token = self._reservation_in(reservations)
        if type(token) is tuple or type(token) is list:
            # A ``_LentCall`` counted with other guards, or a ``_LeaseCall``: as the ``_Leased`` it is, settled here.
            token = _leased_of(token)
            reservations[found] = (self, token)  # type: ignore[index]  # (found: a list)
        if type(token) is _Leased and recorded_us is not None and self._gave_back(token, tracker, recorded_us):
            del reservations[found]  # type: ignore[union-attr]  # (found: a list)
            return
        try:
            self._count_period_row(tracker, amount, resource, category, tags, token, model, canonical_model,
                                   checked, recorded_us)  # fmt: skip
        finally:
            if _unsettled(token):  # (not counted here: an entry that does not count, or one of another period)
                self.after_call(token, None)

    def _gave_back(self, token: _Leased, tracker: TrackerLike, recorded_us: int) -> bool:
        """``_period_row``'s usual count: a call served from a lease on the fed ledger of the store its row went to, the
        row of the lease's period. The ledger counts the row as the call's estimate goes back (one step, under the
        ledger's lock alone), and the budget's figures follow if the lease is still its own. ``False`` (nothing done)
        for any other call: ``_count_period_row`` counts it."""
        lease = token.lease
        if token.settled or type(lease) is not LocalLease:
            return False
        account = lease.account
        if account is None:
            return False
        # (The call's tracker is one this budget checks: it reserved for the call. The row went to that tracker's
        # store; the token's store is the budget's tracker's as the call was checked.)
        since, until = lease.since_us, lease.until_us
        if (since is not None and recorded_us < since) or (until is not None and recorded_us >= until):
            return False
        if token.store is not getattr(tracker, "store", None):
            return False
        token.settled = True
        spent = lease.ledger.give_back(account, token.estimate)
        if spent >= self._quiet_below and lease is self._lease:  # (else no threshold can have been crossed)
            # With the figure the ledger answered: answers reach the budget out of the ledger's order (no lock is held
            # from one to the other), and an older, lower one landing in ``_spent`` meanwhile would hide the crossing.
            # (Not written on the quiet path: the budget's properties read the ledger anew.)
            self._check_thresholds(lease, spent)
        return True

    def _count_period_row(
        self,
        tracker: TrackerLike,
        amount: Decimal,
        resource: str | None,
        category: str,
        tags: FrozenTags,
        token: object,
        model: str | None,
        canonical_model: str | None,
        checked: bool,
        recorded_us: int | None,
    ) -> None:
        """``_period_row`` in general (a call of another store, of another period than its lease's, or reserved
        exactly): the row's fields matched as ``on_recorded`` matches an entry's, its time as ``_settle`` does."""
        if self._filtered and not (checked and token is not None) and not self._matches(resource, category, tags, None):
            return
        if self.model is not None and self.model != model and self.model != canonical_model:
            return
        when = self.tracker.clock() if recorded_us is None else from_micros(recorded_us)
        scope = self._current_scope()
        if (scope.since is not None and when < scope.since) or (scope.until is not None and when >= scope.until):
            return  # another period: the call's reservation, if any, is released (by the caller)
        store = self.tracker.store
        ledger = store.ledger()
        if getattr(tracker, "store", None) is store and isinstance(ledger, LocalLedger) and ledger.fed:
            if _unsettled(token):
                self.after_call(token, None)  # the row is counted by the ledger as appended: only the estimate goes
            self._stand()  # the scope as it stands now
        else:
            # An entry of another store (a budget on the default tracker around a call of another tracker) stays
            # counted for the period, in place of the call's exact reservation if it made one here.
            hold = token if isinstance(token, _Hold) and not token.settled else None
            if type(hold) is _Offline:
                self._offline_done(hold, amount)  # (counted here, and in the ledger when it answers)
                return
            reservation = None
            if hold is not None and type(hold) is not _Leased and hold.store is store:
                reservation = hold.reservation
            try:
                standing = store.settle(scope, amount, reservation=reservation)
            except StoreError as exc:
                self._unreachable(exc)
                self._settled_offline(scope, amount, None, reservation)
                if hold is not None and reservation is not None:
                    hold.settled = True
                return
            if hold is not None and reservation is not None:
                hold.settled = True
            with self._lock:
                if scope is self._scope:
                    self._set(*self._view(scope, standing))
        self.check_thresholds()

    def _settle(self, tracker: TrackerLike, entry: CostEntry) -> None:
        """(Period budgets) count ``entry`` in the ledger, in place of its call's reservation if it had one."""
        hold = settling_token(self, _unsettled)
        if type(hold) is list:
            # A ``_LeaseCall``: settled as the ``_Leased`` it is (its list marked so), which no one else holds: if it
            # is not settled with the entry (another period's, or a failure), it is released here, where any other
            # token is left to ``after_call``.
            leased = _leased_of(hold)  # type: ignore[arg-type]  # (a list: a ``_LeaseCall``)
            try:
                self._settle_hold(tracker, entry, leased)
            finally:
                if leased is not None and not leased.settled:
                    self.after_call(leased, None)
            return
        self._settle_hold(tracker, entry, hold)

    def _settle_hold(self, tracker: TrackerLike, entry: CostEntry, hold: object) -> None:
        """``_settle`` with the call's token found (``hold``; ``None``: none)."""
        if type(hold) is _Offline:
            if hold.scope.matches(entry):
                same_store = getattr(tracker, "store", None) is hold.store
                self._offline_done(hold, entry.amount, entry.id if same_store else None)
            return  # (another period or model: released after the call)
        if type(hold) is _Leased:
            lease = hold.lease
            # The usual case: the call was served from this period's lease, and its entry goes to the lease's store
            # (the entry matches the budget's filters, ``on_recorded`` checked: only its period is left to check).
            if lease is self._lease and getattr(tracker, "store", None) is lease.store and lease.scope.holds(entry):
                hold.settled = True
                self._done_leased(hold, entry)
                self.check_thresholds()  # (at once if no threshold can have been crossed)
                return
        scope = self._current_scope()
        if not scope.matches(entry):
            return  # another period or model: the call's reservation, if any, is released after the call
        store = self.tracker.store
        if type(hold) is _Leased:
            hold.settled = True
            self._done_leased(hold, None)  # its estimate back to the lease; the amount is settled alone below
            hold = None
        # Kept under the entry's id until the tracker writes it to this store; an entry for another store (a budget
        # on the default tracker around a call of another tracker) stays counted for the period.
        same_store = getattr(tracker, "store", None) is store
        reservation = hold.reservation if isinstance(hold, _Hold) and hold.store is store else None
        entry_id = entry.id if same_store else None
        try:
            standing = store.settle(scope, entry.amount, reservation=reservation, entry_id=entry_id)
        except StoreError as exc:  # the ledger cannot be reached: counted here, and there when it answers
            self._unreachable(exc)
            self._settled_offline(scope, entry.amount, entry_id, reservation)
            if isinstance(hold, _Hold) and reservation is not None:
                hold.settled = True
            return
        if isinstance(hold, _Hold):
            if reservation is None and hold.reservation.id is not None:
                hold.store.release(hold.reservation)
            hold.settled = True
        with self._lock:
            if scope is self._scope:
                self._set(*self._view(scope, standing))
        self.check_thresholds()

    def _done_leased(self, hold: _Leased, entry: CostEntry | None) -> None:
        """Settle a call served from a lease with its ``entry`` (``None``: give its estimate back)."""
        lease = hold.lease
        # (What the lease took for it: a ``Lease``'s in 10**-18 USD, a ``LocalLease``'s the Decimal it reserved.)
        estimate: Any = hold.estimate if hold.atto is None else hold.atto
        with self._lock:
            current = lease is self._lease and lease.scope is self._scope
            try:
                if entry is None:
                    lease.drop(estimate)
                    # (A ``Lease`` counts it in its ``view``; a ``LocalLease``'s calls are not added here as they
                    # reserve.)
                    if current and type(lease) is LocalLease:
                        self._spent, self._committed = lease.figures()
                    return
                if lease.done(estimate, entry.amount, entry.id) and current:
                    return  # settled in memory (a ``Lease``): spent in its ``view``, in place of its estimate
            except BaseException:
                if current:
                    self._spent, self._committed = lease.figures()
                raise
            if current:  # a batch went to the ledger: the scope as it stands after it
                self._spent, self._committed = lease.figures()

    # -- alerts ---------------------------------------------------------------------------------------------------
    @in_exact_context
    def check_thresholds(self) -> None:
        """Fire an alert for each threshold that spend has reached and that has not fired in this period."""
        self._check_thresholds(None, None)

    def _check_thresholds(self, lease: Lease | None, reached: Decimal | None, *, under_limit: bool = False) -> None:
        """``check_thresholds``; with ``reached``: the spend a call of ``lease`` left the period at, as the ledger
        answered it, counted as reached (and kept as spent if above the budget's figure) while ``lease`` is the
        budget's, whatever older figure another thread wrote to ``_spent`` since (``_gave_back``, ``_stand``).
        ``under_limit``: only thresholds under 1.0 (a refusal makes the 1.0 alert itself: see ``_refused``)."""
        now = self.tracker.clock()  # (read before the lock: the alerts' time)
        with self._lock:
            spent = self._figures()[0]
            if reached is not None and reached > spent and lease is self._lease:
                spent = self._spent = reached
            if self._offline_spent and self.period is not None:  # (the ledger has not seen these yet)
                spent += self._offline_figures(self._scope)[0]
            if spent < self._quiet_below:
                return
            utilization = float(spent / self.limit)
            crossed = [
                t for t in self.thresholds if utilization >= t and t not in self._fired and not (under_limit and t >= 1)
            ]
            self._fired.update(crossed)
            waiting = [t for t in self.thresholds if t not in self._fired]
            # An exact bound a little under the lowest waiting threshold, so float rounding never skips a crossing.
            below = self._quiet_below = self.limit * Decimal(repr(min(waiting))) * _JUST_UNDER if waiting else _NEVER
            self._atto_quiet = atto_of(below, ROUND_CEILING) if waiting else float("inf")  # (block budgets')
            if type(self._lease) is Lease:
                self._lease.quiet(below)
            # Kept in the same step as they are marked fired: a refusal's alert decides from both (``_alert``).
            made = [self._made_alert(t, f"passed {t:.0%} of its limit", spent, now) for t in crossed]
            self.alerts.extend(made)
            self._outbox.extend((alert, None) for alert in made)
        self._deliver()

    def _alert(
        self,
        threshold: float,
        what: str,
        event: str | None = None,
        let_through: bool = False,
        scope: BudgetScope | None = None,
    ) -> None:
        now = self.tracker.clock()
        with self._lock:
            if scope is not None and scope is not self._scope:
                return  # (a refusal in a period over since: its alert is no alert of this one)
            if event == "budget.exceeded":
                if 1.0 in self._fired:
                    return  # the 1.0 alert of this period was made (by a refusal, or as spend reached the limit)
                if let_through:  # (``on_exceed="warn"``: once a period, leaving the threshold to the spend)
                    if _LET_THROUGH in self._fired:
                        return
                    self._fired.add(_LET_THROUGH)
                else:
                    self._fired.add(1.0)
            # Decided and kept in one step, so threads refused at once say "exceeded" once.
            alert = self._made_alert(threshold, what, self._figures()[0], now)
            self.alerts.append(alert)
            self._outbox.append((alert, event))
        self._deliver()

    def _deliver(self) -> None:
        """Hand the alerts made so far to the sinks, in the order they were made (``alerts``' order), outside the
        budget's lock: one thread at a time delivers whatever is waiting, so a sink never hears "passed 90%" after
        "exceeded" because two threads raced to it (a sink that makes alerts itself delivers them in turn)."""
        outbox = self._outbox
        with self._delivering:
            while outbox:
                alert, event = outbox.popleft()
                self._publish(alert, event)

    def _made_alert(self, threshold: float, what: str, spent: Decimal, now: datetime) -> BudgetAlert:
        utilization = float(spent / self.limit)
        return BudgetAlert(
            budget=self.name,
            threshold=threshold,
            utilization=utilization,
            spent=spent,
            limit=self.limit,
            level=alert_level(max(utilization, threshold)),
            timestamp=now,
            message=f"budget {self.name!r} {what} ({' of '.join(dollars(spent, self.limit))}, {utilization:.0%})",
        )

    def _publish(self, alert: BudgetAlert, event: str | None) -> None:
        """Log ``alert`` (kept in ``alerts`` already), hand it to the sinks and emit it (``event``, or by its level)."""
        level = alert.level
        log = logger.error if level == "exceeded" else logger.warning if level != "info" else logger.info
        log("llmcost: %s", alert.message)
        for sink in self._sinks:
            try:
                sink(alert)
            except Exception:
                logger.exception("llmcost: alert sink %r failed", sink)
        self.tracker.emit(event or ("budget.exceeded" if level == "exceeded" else "budget.warning"), alert)

    # -- context manager and decorator ----------------------------------------------------------------------------
    @in_exact_context
    def __enter__(self) -> Budget:
        try:
            self.sync()  # a period budget opens its period's account now (reading recorded spend once per period)
        except Exception as exc:  # noqa: BLE001 - entering a budget never fails the user's block: calls reserve anew
            log_once(("budget-enter", type(exc)), "llmcost: budget %r could not read where it stands on entry "
                     "(its calls read it again): %r", self.name, exc)  # fmt: skip
        with self._lock:
            self._open += 1
        token = push_guard(self)
        _entries.set((*_entries.get(), (self, token)))
        return self

    @in_exact_context
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        entries = _entries.get()
        for i in range(len(entries) - 1, -1, -1):  # (this budget's innermost entry in this context)
            if entries[i][0] is self:
                break
        else:
            return  # (not entered in this context)
        _entries.set((*entries[:i], *entries[i + 1 :]))
        pop_guard(entries[i][1])
        with self._lock:
            self._open -= 1
            lease = self._lease if self._open <= 0 else None
            last = self._open <= 0
        if lease is not None:
            self._close_lease(lease)  # the last block ended: its amounts settled, its headroom released
        if last:
            self._try_sending()  # (amounts settled while the ledger could not be reached, if any)

    async def __aenter__(self) -> Budget:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        """Apply the budget to every call of ``func`` (sync or async; of a generator, to the work of its body)."""
        if inspect.isasyncgenfunction(func):
            return self._around_async_generator(func)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(func):
            return self._around_generator(func)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    # A generator's body runs a step at a time, in the context of whoever resumes it: the budget is entered for each
    # step (and for ``throw`` and ``close``, whose handlers are its work too) and left before the item is handed over,
    # so the consumer's calls between items are not under it, and a generator left unfinished holds nothing.
    def _around_generator(
        self, func: Callable[..., Generator[Any, Any, Any]]
    ) -> Callable[..., Generator[Any, Any, Any]]:
        """``func`` (a generator function) with each step of its generators under the budget (``yield from``'s
        ``send``, ``throw``, ``close`` and return value passed through)."""

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            gen = func(*args, **kwargs)
            try:
                with self:
                    item = next(gen)
                while True:
                    try:
                        sent = yield item
                    except GeneratorExit:
                        with self:
                            gen.close()
                        raise
                    except BaseException as exc:  # noqa: BLE001 - thrown in by the consumer: the generator handles it
                        with self:
                            item = gen.throw(exc)
                    else:
                        with self:
                            item = gen.send(sent)
            except StopIteration as stop:
                return stop.value

        return wrapper

    def _around_async_generator(
        self, func: Callable[..., AsyncGenerator[Any, Any]]
    ) -> Callable[..., AsyncGenerator[Any, Any]]:
        """``func`` (an async generator function) with each step of its generators under the budget (``asend``,
        ``athrow`` and ``aclose`` passed through)."""

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            agen = func(*args, **kwargs)
            try:
                with self:
                    item = await agen.__anext__()
                while True:
                    try:
                        sent = yield item
                    except GeneratorExit:
                        with self:
                            await agen.aclose()
                        raise
                    except BaseException as exc:  # noqa: BLE001 - thrown in by the consumer: the generator handles it
                        with self:
                            item = await agen.athrow(exc)
                    else:
                        with self:
                            item = await agen.asend(sent)
            except StopAsyncIteration:
                return

        return wrapper


def budget(
    limit: Decimal | int | float | str,
    *,
    period: BudgetPeriod | str | None = None,
    name: str | None = None,
    category: str | None = None,
    resource: str | None = None,
    model: str | None = None,
    tags: Mapping[str, str] | None = None,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    on_exceed: Literal["raise", "warn"] = "raise",
    on_alert: Callable[[BudgetAlert], object] | Iterable[Callable[[BudgetAlert], object]] | None = None,
    tracker: CostTracker | None = None,
    tz: tzinfo | None = None,
) -> Budget:
    """A budget of ``limit`` USD for a block, a function, or a period; see ``Budget``.

    - ``period=None`` counts spend recorded inside the block; a period (``hourly``, ``daily``, ``weekly``,
      ``monthly``, ``total``) counts all matching spend in the tracker's store in the current period (cut in
      UTC, or ``tz``), including spend from before the block and from other processes. Processes sharing a store
      reserve through its ledger, so together they stay within the limit (plus, per process, one call's
      estimate error).
    - ``category``, ``resource``, ``model``, ``tags`` narrow what counts and which calls are checked (``model``:
      a per-model limit; a call whose model is not known before it is made is checked too).
    - ``on_exceed="raise"`` refuses calls with ``BudgetExceeded``; ``"warn"`` alerts and lets them through.
    - ``thresholds`` (each in (0, 1], ascending) fire one ``BudgetAlert`` each per period, to ``on_alert`` and
      the ``llmcost`` logger.

    Example::

        @llmcost.budget(50, period="daily", name="support-bot")  # every call of handle shares $50 a day
        async def handle(request): ...

        with llmcost.budget(100, period="daily", tags={"team": "search"}):
            serve_forever()
    """
    return Budget(
        limit,
        period=period,
        name=name,
        category=category,
        resource=resource,
        model=model,
        tags=tags,
        thresholds=thresholds,
        on_exceed=on_exceed,
        on_alert=on_alert,
        tracker=tracker,
        tz=tz,
    )


#: Environment variables that put a process-wide budget on the default tracker at first use.
LIMIT_VARIABLES = {
    "LLMCOST_DAILY_LIMIT": "daily",
    "LLMCOST_MONTHLY_LIMIT": "monthly",
    "LLMCOST_TOTAL_LIMIT": "total",
}


def install_env_budgets(tracker: CostTracker) -> list[Budget]:
    """Put the process-wide period budgets of ``LLMCOST_DAILY_LIMIT``/``MONTHLY``/``TOTAL`` on ``tracker``.

    Called with every new default tracker (registered with ``_config.on_new_default`` below).
    """
    limits = {period: os.environ[name] for name, period in LIMIT_VARIABLES.items() if os.environ.get(name)}
    checked = {}
    for period, value in limits.items():  # all read before any is put on: a bad one leaves the tracker untouched
        variable = f"LLMCOST_{period.upper()}_LIMIT"
        try:
            limit = to_money(value, variable)
        except (TypeError, ValueError) as exc:
            raise SettingError(f"{variable} must be a positive amount in USD, got {value!r}") from exc
        if limit <= 0:
            raise SettingError(f"{variable} must be a positive amount in USD, got {value!r}")
        checked[period] = limit
    made = []
    for period, limit in checked.items():
        b = Budget(limit, period=period, name=f"env-{period}", tracker=tracker)
        tracker.add_guard(b)
        made.append(b)
    return made


# Wiring, not state: the default tracker gets the environment's budgets without _config importing this module.
on_new_default(install_env_budgets)
