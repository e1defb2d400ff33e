"""``budget(...)``: stop calls before they overspend, reserve estimates, raise alerts at thresholds.

A ``Budget`` is a guard (see ``_context.Guard``): before each tracked call it reserves the call's estimate under a
lock, refusing the call if the reservation would pass the limit; after the call the reservation is released and
the real cost arrives through ``on_recorded``. So concurrent calls can overshoot only by their estimates' error.

Over 400 lines because a ``Budget`` is one object whose reservation, period roll-over and threshold alerts share one
lock and one state; splitting them would spread that lock across modules. ``BudgetManager`` is in ``_manager``.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, tzinfo
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, TypeVar

import attrs

from ._config import get_tracker, on_new_default
from ._context import PendingCall, TrackerLike, is_active, pop_guard, push_guard
from ._entry import CostEntry, FrozenTags, to_category, to_tags
from ._errors import BudgetExceeded
from ._money import ZERO, dollars, to_money
from ._periods import BudgetPeriod, period_bounds, to_period
from ._tracker import CostTracker

__all__ = ["LIMIT_VARIABLES", "Budget", "BudgetAlert", "alert_level", "budget", "install_env_budgets"]

logger = logging.getLogger("llmcost")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_THRESHOLDS = (0.5, 0.8, 0.9, 1.0)
#: Seconds between re-reads of a shared store's total by a period budget (other processes' spend).
REFRESH_SECONDS = 5.0
_JUST_UNDER = Decimal("0.999999")  # thresholds are floats: check a hair early rather than miss one
_NEVER = Decimal("Infinity")


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
    """A budget passed one of its thresholds (or refused a call).

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


def _thresholds(value: object) -> tuple[float, ...]:
    if not isinstance(value, Iterable) or isinstance(value, (str, bytes)):
        raise TypeError(f"thresholds must be a sequence of numbers in (0, 1], got {value!r}")
    items = tuple(value)
    if not items:
        raise ValueError("thresholds must not be empty; pass e.g. (0.8, 1.0)")
    out = []
    for t in items:
        if isinstance(t, bool) or not isinstance(t, (int, float, Decimal)):
            raise TypeError(f"thresholds must be numbers in (0, 1], got {items!r}")
        f = float(t)
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


class Budget:
    """A spending limit, enforced on tracked calls. Made by ``llmcost.budget(...)`` or ``BudgetManager.create``.

    Use it as a context manager (``with``/``async with``) or a decorator (sync and async). Thread-safe: worker
    threads share it by entering it again (``with b:``). ``spent`` is what was recorded, ``reserved`` what calls
    in flight have reserved, ``remaining`` the limit less both, ``utilization`` spent over limit.

    Example::

        with llmcost.budget("2.00", name="eval-run", on_exceed="raise") as b:
            for item in dataset:
                grade(item)                # refused with BudgetExceeded once $2 is spent
        print(b.spent, b.alerts)
    """

    def __init__(
        self,
        limit: Decimal | int | float | str,
        *,
        period: BudgetPeriod | str | None = None,
        name: str | None = None,
        category: str | None = None,
        resource: str | None = None,
        tags: Mapping[str, str] | None = None,
        thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
        on_exceed: Literal["raise", "warn"] = "raise",
        on_alert: Callable[[BudgetAlert], object] | Iterable[Callable[[BudgetAlert], object]] | None = None,
        tracker: CostTracker | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self.limit = to_money(limit, "limit")
        if self.limit <= 0:
            raise ValueError(f"limit must be a positive amount, got {limit!r}")
        self.period = None if period is None else to_period(period)
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self.name = name or f"budget-{id(self):x}"
        self.category = None if category is None else to_category(category).value
        if resource is not None and not isinstance(resource, str):
            raise TypeError(f"resource must be a str or None, got {resource!r}")
        self.resource = resource
        self.tags: FrozenTags = to_tags(tags)
        self.thresholds = _thresholds(thresholds)
        if on_exceed not in ("raise", "warn"):
            raise ValueError(f"on_exceed must be 'raise' or 'warn', got {on_exceed!r}")
        self.on_exceed = on_exceed
        self._sinks = _sinks(on_alert)
        if tracker is not None and not isinstance(tracker, CostTracker):
            raise TypeError(f"tracker must be a CostTracker, got {tracker!r}")
        self._tracker = tracker
        if tz is not None and not isinstance(tz, tzinfo):
            raise TypeError(f"tz must be a tzinfo (e.g. zoneinfo.ZoneInfo('Europe/Berlin')), got {tz!r}")
        self.tz = tz
        self._lock = threading.RLock()
        self._spent = ZERO
        self._reserved = ZERO
        self._start: datetime | None = None
        self._end: datetime | None = None
        self._loaded = False
        self._refreshed = 0.0
        self._fired: set[float] = set()
        # Spend below this cannot cross a threshold that has not fired: most calls skip the threshold check.
        self._quiet_below = ZERO
        self._tag_items = tuple(self.tags.items())
        self.alerts: list[BudgetAlert] = []
        self._entered: contextvars.ContextVar[tuple[contextvars.Token[Any], ...]] = contextvars.ContextVar(
            f"llmcost_budget_{id(self):x}", default=()
        )

    # -- state ----------------------------------------------------------------------------------------------------
    @property
    def tracker(self) -> CostTracker:
        """The tracker this budget reads time and stored spend from (default: ``llmcost.get_tracker()``)."""
        if self._tracker is not None:
            return self._tracker
        return get_tracker()

    @property
    def spent(self) -> Decimal:
        """Spend counted in the current period (for ``period=None``: inside the block)."""
        self.sync()
        return self._spent

    @property
    def reserved(self) -> Decimal:
        """Estimates reserved by calls in flight."""
        return self._reserved

    @property
    def remaining(self) -> Decimal:
        """The limit less spend and reservations (negative once overspent)."""
        self.sync()
        return self.limit - self._spent - self._reserved

    @property
    def utilization(self) -> float:
        """Spend over limit (1.0 is fully used)."""
        self.sync()
        return float(self._spent / self.limit)

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
        return f"Budget(name={self.name!r}, limit={self.limit}, period={period!r}, spent={self._spent})"

    # -- matching and periods -------------------------------------------------------------------------------------
    def _matches(self, resource: str | None, category: str, tags: Mapping[str, str]) -> bool:
        if self.resource is not None and resource != self.resource:
            return False
        if self.category is not None and category != self.category:
            return False
        return not self._tag_items or all(tags.get(key) == value for key, value in self._tag_items)

    def sync(self, *, force: bool = False) -> None:
        """Roll into the current period and, for period budgets, (re)load stored spend when due (``force``: now).

        ``BudgetManager`` forces a re-read before it reports; reading ``spent`` or ``remaining`` syncs too.
        """
        if self.period is None:
            return
        tracker = self.tracker
        now = tracker.clock()
        with self._lock:
            rolled = False
            outside = (self._end is not None and now >= self._end) or (self._start is not None and now < self._start)
            if not self._loaded or outside:
                self._start, self._end = period_bounds(self.period, now, self.tz)
                self._fired = set()
                self._quiet_below = ZERO
                rolled = True
            due = (
                rolled
                or not self._loaded
                or force
                or (tracker.store.buffered and time.monotonic() - self._refreshed > REFRESH_SECONDS)
            )
            if due:
                self._load(tracker)

    def _load(self, tracker: CostTracker) -> None:
        """Read this period's matching spend from the store: one pushed-down total (caller holds the lock)."""
        try:
            tracker.flush()
        except Exception as exc:  # noqa: BLE001 - count what is stored; the buffer is counted once written
            logger.warning("llmcost: budget %r could not flush before reading spend: %r", self.name, exc)
        self._spent = tracker.store.total(
            since=self._start, until=self._end, category=self.category, resource=self.resource, tags=self.tags or None
        )
        self._loaded = True
        self._refreshed = time.monotonic()

    # -- the guard protocol ---------------------------------------------------------------------------------------
    def before_call(self, call: PendingCall) -> object:
        """Reserve the call's estimate, or refuse the call (``BudgetExceeded``) if it would pass the limit."""
        if not is_active():
            return None
        if self._tracker is not None and call.tracker is not self._tracker:
            return None
        if not self._matches(call.resource, call.category, call.tags):
            return None
        self.sync()
        estimate = call.estimate()
        needed = estimate if estimate is not None else ZERO
        refused: BudgetExceeded | None = None
        with self._lock:
            remaining = self.limit - self._spent - self._reserved
            if remaining <= 0 or needed > remaining:
                refused = BudgetExceeded(self.name, self._spent + self._reserved, self.limit, needed)
            if refused is None or self.on_exceed == "warn":
                self._reserved += needed
                token: object = (self._start, needed)
        if refused is not None:
            self._alert(1.0, f"refused a call needing about {dollars(needed)[0]}", event="budget.exceeded")
            if self.on_exceed == "raise":
                raise refused
        return token

    def after_call(self, token: object, entry: CostEntry | None) -> None:
        """Release the reservation made by ``before_call`` (the cost itself arrives via ``on_recorded``)."""
        if not isinstance(token, tuple):
            return
        start, needed = token
        with self._lock:
            if start == self._start:
                self._reserved = max(ZERO, self._reserved - needed)

    def on_recorded(self, tracker: TrackerLike, entry: CostEntry) -> None:
        """Count ``entry`` if it matches this budget (and its period), then fire any thresholds it crossed."""
        if self._tracker is not None and tracker is not self._tracker:
            return
        if not self._matches(entry.resource, entry.category.value, entry.tags):
            return
        with self._lock:
            if self.period is not None:
                if not self._loaded:
                    return  # the first load reads it from the store (it flushes the tracker first)
                if (
                    self._start is not None
                    and self._end is not None
                    and not (self._start <= entry.timestamp < self._end)
                ):
                    return
            self._spent += entry.amount
        self.check_thresholds()

    # -- alerts ---------------------------------------------------------------------------------------------------
    def check_thresholds(self) -> None:
        """Fire an alert for each threshold that spend has reached and that has not fired in this period."""
        with self._lock:
            if self._spent < self._quiet_below:
                return
            utilization = float(self._spent / self.limit)
            crossed = [t for t in self.thresholds if utilization >= t and t not in self._fired]
            self._fired.update(crossed)
            waiting = [t for t in self.thresholds if t not in self._fired]
            # An exact bound a little under the lowest waiting threshold, so float rounding never skips a crossing.
            self._quiet_below = self.limit * Decimal(repr(min(waiting))) * _JUST_UNDER if waiting else _NEVER
        for threshold in crossed:
            self._alert(threshold, f"passed {threshold:.0%} of its limit")

    def _alert(self, threshold: float, what: str, event: str | None = None) -> None:
        with self._lock:
            if event == "budget.exceeded":
                if 1.0 in self._fired and self.alerts and self.alerts[-1].level == "exceeded":
                    return  # a refusal after the exceeded alert of this period: already said
                self._fired.add(1.0)
            spent = self._spent
        utilization = float(spent / self.limit)
        level = alert_level(max(utilization, threshold))
        alert = BudgetAlert(
            budget=self.name,
            threshold=threshold,
            utilization=utilization,
            spent=spent,
            limit=self.limit,
            level=level,
            timestamp=self.tracker.clock(),
            message=f"budget {self.name!r} {what} ({' of '.join(dollars(spent, self.limit))}, {utilization:.0%})",
        )
        with self._lock:
            self.alerts.append(alert)
        log = logger.error if level == "exceeded" else logger.warning if level != "info" else logger.info
        log("llmcost: %s", alert.message)
        for sink in self._sinks:
            try:
                sink(alert)
            except Exception:
                logger.exception("llmcost: alert sink %r failed", sink)
        self.tracker.emit(event or ("budget.exceeded" if level == "exceeded" else "budget.warning"), alert)

    # -- context manager and decorator ----------------------------------------------------------------------------
    def __enter__(self) -> Budget:
        self.sync()  # a period budget reads its period's spend now, so what is recorded inside counts and alerts
        token = push_guard(self)
        self._entered.set((*self._entered.get(), token))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tokens = self._entered.get()
        if tokens:
            self._entered.set(tokens[:-1])
            pop_guard(tokens[-1])

    async def __aenter__(self) -> Budget:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        """Apply the budget to every call of ``func`` (sync or async)."""
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


def budget(
    limit: Decimal | int | float | str,
    *,
    period: BudgetPeriod | str | None = None,
    name: str | None = None,
    category: str | None = None,
    resource: str | None = None,
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
      UTC, or ``tz``), including spend from before the block and from other processes.
    - ``category``, ``resource``, ``tags`` narrow what counts and which calls are checked.
    - ``on_exceed="raise"`` refuses calls with ``BudgetExceeded``; ``"warn"`` alerts and lets them through.
    - ``thresholds`` (each in (0, 1], ascending) fire one ``BudgetAlert`` each per period, to ``on_alert`` and
      the ``llmcost`` logger.

    Example::

        @llmcost.budget(1, name="per-request")
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
    made = []
    for period, value in limits.items():
        variable = f"LLMCOST_{period.upper()}_LIMIT"
        try:
            limit = to_money(value, variable)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{variable} must be a positive amount in USD, got {value!r}") from exc
        if limit <= 0:
            raise ValueError(f"{variable} must be a positive amount in USD, got {value!r}")
        b = Budget(limit, period=period, name=f"env-{period}", tracker=tracker)
        tracker.add_guard(b)
        made.append(b)
    return made


# Wiring, not state: the default tracker gets the environment's budgets without _config importing this module.
on_new_default(install_env_budgets)
