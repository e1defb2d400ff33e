"""``BudgetManager``: named period budgets kept in the store and enforced on every tracked call; ``BudgetGuard``.

The budgets saved in a store are enforced by every tracker on it, whether or not its process made a
``BudgetManager``: each tracker looks for saved definitions on its first tracked call and every
``STORED_BUDGETS_SECONDS`` after (``CostTracker.guards``), through the hook registered at the bottom of this module.
One ``_Enforced`` registry per tracker holds the ``Budget`` guards made from the definitions, shared by every
``BudgetManager`` of that tracker, so no budget is enforced twice.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import _state
from ._budget import DEFAULT_THRESHOLDS, Budget, BudgetAlert, threshold_values
from ._config import get_tracker
from ._money import to_money
from ._periods import BudgetPeriod, to_period
from ._tracker import CostTracker

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BudgetGuard", "BudgetManager"]


class _Enforced:
    """The budgets one tracker enforces from its store's saved definitions, by name."""

    def __init__(self, tracker: CostTracker) -> None:
        self.tracker = tracker
        self.lock = _state.new_rlock()
        self.budgets: dict[str, Budget] = {}
        self.definitions: dict[str, str] = {}

    def reload(self) -> None:
        """Pick up definitions saved or deleted by any process."""
        stored = self.tracker.store.load_budgets()
        with self.lock:
            for name in [n for n in self.budgets if n not in stored]:
                self.forget(name)
            for name, text in stored.items():
                if self.definitions.get(name) != text:
                    self.install(name, text)

    def install(self, name: str, text: str) -> Budget:
        """Enforce the definition ``text`` as ``name``.

        The budget enforced now is kept if ``text`` defines the same budget, so the thresholds it fired in this period
        stay fired (a ``BudgetGuard`` made on each request alerts once per period); a changed definition is a new
        ``Budget`` in its place, whose thresholds fire anew against the new definition."""
        spec = json.loads(text)
        with self.lock:
            old = self.budgets.get(name)
            if old is not None and _same_definition(json.loads(self.definitions[name]), spec):
                self.definitions[name] = text
                return old
            made = _budget_of(name, spec, self.tracker)
            if old is not None:
                self.tracker.remove_guard(old)
            self.budgets[name] = made
            self.definitions[name] = text
            self.tracker.add_guard(made)
        return made

    def forget(self, name: str) -> Budget | None:
        with self.lock:
            found = self.budgets.pop(name, None)
            self.definitions.pop(name, None)
            if found is not None:
                self.tracker.remove_guard(found)
        return found


def _budget_of(name: str, spec: dict[str, Any], tracker: CostTracker) -> Budget:
    """The ``Budget`` a saved definition describes; its ledger account is the manager's ``name`` in every process."""
    return Budget(
        spec["limit"],
        period=spec["period"],
        name=name,
        category=spec.get("category"),
        resource=spec.get("resource"),
        model=spec.get("model"),
        tags=spec.get("tags") or None,
        thresholds=spec.get("thresholds", DEFAULT_THRESHOLDS),
        tracker=tracker,
        key=f"manager:{name}",
    )


def _same_definition(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two saved definitions describe one budget (the limit compared as an amount: ``1`` and ``1.00`` alike)."""

    def canonical(spec: dict[str, Any]) -> tuple[object, ...]:
        return (
            Decimal(spec["limit"]),
            spec["period"],
            spec.get("category"),
            spec.get("resource"),
            spec.get("model"),
            spec.get("tags") or {},
            [float(t) for t in spec.get("thresholds", DEFAULT_THRESHOLDS)],
        )

    return canonical(a) == canonical(b)


def _positive(value: object, field: str) -> Decimal:
    """``value`` as a positive amount of money; an error names ``field``, the caller's own parameter."""
    amount = to_money(value, field)
    if amount <= 0:
        raise ValueError(f"{field} must be a positive amount, got {value!r}")
    return amount


def _enforced(tracker: CostTracker) -> _Enforced:
    with _state.lock:
        found = tracker.stored_budgets
        if not isinstance(found, _Enforced):
            found = tracker.stored_budgets = _Enforced(tracker)
        return found


def enforce_stored_budgets(tracker: CostTracker) -> None:
    """Make ``tracker`` enforce the budgets saved in its store (called by ``CostTracker.guards`` when due)."""
    _enforced(tracker).reload()


class BudgetManager:
    """Named budgets, saved in the tracker's store so every process sharing the store sees and enforces them.

    Budgets created here are enforced on every tracked call that matches their filters, inside a ``with budget``
    block or not, by every tracker on the store (in any process, with or without a ``BudgetManager``), and they
    reserve through the store's ledger exactly as ``budget(period=...)`` blocks do.

    Example::

        manager = llmcost.BudgetManager()
        manager.create("search-daily", 50, "daily", tags={"team": "search"})
        manager.create("gpt-4o-daily", 20, "daily", model="gpt-4o")      # a per-model limit
        for alert in manager.check_budgets():
            print(alert.message)
        print(manager.status())
    """

    def __init__(self, tracker: CostTracker | None = None) -> None:
        if tracker is None:
            tracker = get_tracker()
        self.tracker = tracker
        self._enforced = _enforced(tracker)
        # Per name, the ``Budget`` object ``check_budgets`` last read and how many of its alerts it returned: counted
        # per object, as a redefined budget is a new object whose ``alerts`` start empty.
        self._seen: dict[str, tuple[Budget, int]] = {}
        self._reload()

    @property
    def _budgets(self) -> dict[str, Budget]:
        return self._enforced.budgets

    def _reload(self) -> None:
        """Pick up definitions other processes saved or deleted."""
        self._enforced.reload()

    def create(
        self,
        name: str,
        amount: Decimal | int | float | str,
        period: BudgetPeriod | str,
        *,
        category: str | None = None,
        resource: str | None = None,
        model: str | None = None,
        tags: Mapping[str, str] | None = None,
        thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    ) -> Budget:
        """Create (or replace) the budget ``name`` of ``amount`` USD per ``period``, save it, and enforce it.

        ``category``, ``resource``, ``model`` (a per-model limit) and ``tags`` narrow what counts. Creating a budget
        that exists with the same definition keeps it, and the thresholds it fired in this period; another definition
        replaces it with a new ``Budget``, whose thresholds fire anew (each against the new definition)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        limit = _positive(amount, "amount")
        spec: dict[str, Any] = {
            "limit": str(limit),
            "period": to_period(period).value,
            "category": category,
            "resource": resource,
            "model": model,
            "tags": dict(tags or {}),
            # (Checked as ``budget()`` checks them first: ``list("0.5")`` would be three characters.)
            "thresholds": list(threshold_values(thresholds)),
        }
        # Validated before anything is saved; the thresholds saved as the budget reads them (floats: a Decimal one
        # would not serialize).
        spec["thresholds"] = list(_budget_of(name, spec, self.tracker).thresholds)
        text = json.dumps(spec, sort_keys=True)
        with self._enforced.lock:
            self.tracker.store.save_budget(name, text)
            made = self._enforced.install(name, text)
        self.tracker.emit("budget.created", made)
        return made

    def get(self, name: str) -> Budget:
        """The budget ``name``; ``KeyError`` naming it if there is none."""
        self._reload()
        try:
            return self._budgets[name]
        except KeyError:
            raise KeyError(f"no budget named {name!r}; known: {sorted(self._budgets)}") from None

    def list(self) -> builtins.list[Budget]:
        """Every budget, by name."""
        self._reload()
        return [self._budgets[n] for n in sorted(self._budgets)]

    def delete(self, name: str) -> bool:
        """Stop enforcing and forget ``name``; return whether it existed."""
        with self._enforced.lock:
            existed = self.tracker.store.delete_budget(name)
            found = self._enforced.forget(name)
        return existed or found is not None

    def check_budgets(self) -> builtins.list[BudgetAlert]:
        """Re-read spend from the store and return the alerts that fired since the last check (only new ones).

        A budget replaced (``create`` with another definition, here or in another process) or deleted since the last
        check is a new object: its alerts not returned yet come first, then every alert of the budget now enforced."""
        self._reload()
        with self._enforced.lock:
            budgets = dict(self._budgets)
        new: builtins.list[BudgetAlert] = []
        for name in sorted(budgets.keys() | self._seen.keys()):
            b = budgets.get(name)
            start = 0
            before = self._seen.pop(name, None)
            if before is not None:
                old, returned = before
                if old is b:
                    start = returned
                else:
                    new.extend(old.alerts[returned:])
            if b is None:
                continue
            b.sync(force=True)
            b.check_thresholds()
            alerts = b.alerts
            count = len(alerts)  # (read once: another thread's call may add an alert meanwhile, returned next time)
            new.extend(alerts[start:count])
            self._seen[name] = (b, count)
        return new

    def can_spend(self, amount: Decimal | int | float | str, budget_id: str | None = None) -> bool:
        """Whether a call of ``amount`` would be let through by ``budget_id`` (or by every budget) now: as a call
        estimated at it is checked, it fits in what remains, and something remains (an exhausted budget refuses even
        a call estimated at 0)."""
        needed = to_money(amount, "amount")
        if needed < 0:
            raise ValueError(f"amount must be at least 0, got {amount!r}")
        targets = [self.get(budget_id)] if budget_id is not None else self.list()
        return all(b.remaining >= needed and b.remaining > 0 for b in targets)

    def status(self) -> pd.DataFrame:
        """One row per budget: name, limit, spent, remaining, utilization, period_start, period_end."""
        import pandas as pd

        rows: builtins.list[dict[str, Any]] = []
        for b in self.list():
            b.sync(force=True)
            rows.append(
                {
                    "name": b.name,
                    "period": b.period.value if b.period else None,
                    "limit": b.limit,
                    "spent": b.spent,
                    "remaining": b.remaining,
                    "utilization": b.utilization,
                    "period_start": b.period_start,
                    "period_end": b.period_end,
                }
            )
        columns = ["name", "period", "limit", "spent", "remaining", "utilization", "period_start", "period_end"]
        return pd.DataFrame(rows, columns=columns)


class BudgetGuard:
    """Daily, monthly and total limits in one object; a thin layer over ``BudgetManager``.

    The limits are saved in the store as the budgets ``guard-daily``, ``guard-monthly`` and ``guard-total``, which
    a ``BudgetGuard`` owns: making one sets those of its limits and deletes those of the limits it does not set (a
    limit dropped from the configuration is no longer enforced). Guards on one store, in one process or several,
    share these names: the one made last sets the limits that every tracker on the store enforces, and every guard
    reports and checks those (``get_remaining``, ``can_proceed``).

    Example::

        guard = llmcost.BudgetGuard(daily_limit=20, monthly_limit=300)
        if guard.can_proceed(estimated_cost="0.05"):
            ...
        guard.record_spend("0.04")
        print(guard.get_remaining())   # {'daily': Decimal('19.96'), 'monthly': ..., 'total': None}
    """

    _PERIODS = ("daily", "monthly", "total")

    def __init__(
        self,
        daily_limit: Decimal | int | float | str | None = None,
        monthly_limit: Decimal | int | float | str | None = None,
        total_limit: Decimal | int | float | str | None = None,
        tracker: CostTracker | None = None,
    ) -> None:
        given = zip(self._PERIODS, (daily_limit, monthly_limit, total_limit), strict=True)
        # Every limit checked before any is saved, so a bad one changes nothing.
        limits = {period: _positive(value, f"{period}_limit") for period, value in given if value is not None}
        self.manager = BudgetManager(tracker)
        saved = self._limits()
        for period in self._PERIODS:
            if period in limits:
                self.manager.create(f"guard-{period}", limits[period], period)
            elif period in saved:  # an earlier guard's limit this one does not set: no longer enforced
                self.manager.delete(f"guard-{period}")

    def _limits(self) -> dict[str, Budget]:
        """The guard budgets saved in the store now, by period: those every tracker on the store enforces (set by the
        guard made last), so what a guard reports is what is enforced."""
        saved = {b.name: b for b in self.manager.list()}
        return {p: saved[f"guard-{p}"] for p in self._PERIODS if f"guard-{p}" in saved}

    def can_proceed(self, estimated_cost: Decimal | int | float | str = 0) -> bool:
        """Whether a call costing ``estimated_cost`` fits within every limit (and something remains)."""
        needed = to_money(estimated_cost, "estimated_cost")
        for limit in self._limits().values():
            remaining = limit.remaining
            if remaining <= 0 or needed > remaining:
                return False
        return True

    def record_spend(self, amount: Decimal | int | float | str) -> None:
        """Record ``amount`` USD spent (category ``api_calls``) so every limit counts it."""
        self.manager.tracker.record(amount=amount, category="api_calls", resource="budget-guard")

    def get_remaining(self) -> dict[str, Decimal | None]:
        """What remains of each limit: keys ``daily``, ``monthly``, ``total`` (``None`` where no limit is set)."""
        limits = self._limits()
        return {p: (limits[p].remaining if p in limits else None) for p in self._PERIODS}


# Wiring, not state: every tracker enforces its store's saved budgets without _tracker importing this module.
_state.stored_budget_hooks.append(enforce_stored_budgets)
