"""``BudgetManager`` and ``BudgetGuard``: redefined budgets, alerts returned once, the guard's saved limits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from llmcost import BudgetGuard, BudgetManager, CostTracker
from tests.conftest import Clock


@pytest.fixture
def url(tmp_path) -> str:
    return f"duckdb://{tmp_path / 'costs.duckdb'}"


@pytest.fixture
def store_tracker(url: str, clock: Clock) -> Iterator[CostTracker]:
    with CostTracker(url, clock=clock) as tracker:
        yield tracker


def thresholds_of(alerts) -> list[tuple[float, str]]:
    return [(a.threshold, str(a.limit)) for a in alerts]


def test_check_budgets_returns_the_alerts_of_a_redefined_budget(store_tracker):
    manager = BudgetManager(store_tracker)
    manager.create("team", 1, "daily")
    store_tracker.record(amount="0.6")
    assert thresholds_of(manager.check_budgets()) == [(0.5, "1")]
    manager.create("team", 10, "daily")  # a new limit: a new budget, whose alerts start anew
    store_tracker.record(amount="8.5")  # 9.1 of 10
    assert thresholds_of(manager.check_budgets()) == [(0.5, "10"), (0.8, "10"), (0.9, "10")]
    assert manager.check_budgets() == []


def test_check_budgets_sees_a_redefinition_saved_by_another_process(url, clock, store_tracker):
    manager = BudgetManager(store_tracker)
    manager.create("team", 1, "daily")
    store_tracker.record(amount="0.6")
    assert thresholds_of(manager.check_budgets()) == [(0.5, "1")]
    with CostTracker(url, clock=clock) as other:  # as another process would
        BudgetManager(other).create("team", 10, "daily")
    assert manager.get("team").limit == 10  # picked up from the store
    store_tracker.record(amount="8.5")
    assert thresholds_of(manager.check_budgets()) == [(0.5, "10"), (0.8, "10"), (0.9, "10")]


def test_check_budgets_returns_what_a_replaced_or_deleted_budget_fired_since_the_last_check(store_tracker):
    manager = BudgetManager(store_tracker)
    manager.create("team", 1, "daily")
    manager.create("other", 1, "daily")
    assert manager.check_budgets() == []
    store_tracker.record(amount="0.6")  # passes 50% of both, fired on the record (not returned yet)
    manager.get("team").check_thresholds()
    manager.get("other").check_thresholds()
    manager.create("team", 10, "daily")
    manager.delete("other")
    assert [(a.budget, a.threshold, str(a.limit)) for a in manager.check_budgets()] == [
        ("other", 0.5, "1"),
        ("team", 0.5, "1"),
    ]
    assert manager.check_budgets() == []


def test_creating_the_same_budget_again_fires_no_threshold_twice_in_a_period(store_tracker, clock):
    events = []
    store_tracker.subscribe("budget.warning", events.append)
    store_tracker.subscribe("budget.exceeded", events.append)
    first = BudgetGuard(daily_limit=1, tracker=store_tracker)  # e.g. a guard built on each request
    store_tracker.record(amount="0.55")
    for limit in (1, "1.00", Decimal("1")):
        assert BudgetGuard(daily_limit=limit, tracker=store_tracker).manager.get("guard-daily") is (
            first.manager.get("guard-daily")
        )
        store_tracker.record(amount="0.01")
    assert [a.threshold for a in events] == [0.5]
    clock.now += timedelta(days=1)  # the next period: the same budget's thresholds wait again
    BudgetGuard(daily_limit=1, tracker=store_tracker)
    store_tracker.record(amount="0.5")
    assert [a.threshold for a in events] == [0.5, 0.5]


def test_a_definition_saved_again_by_another_process_keeps_the_budget(url, clock, store_tracker):
    manager = BudgetManager(store_tracker)
    kept = manager.create("team", 1, "daily", tags={"team": "search"})
    store_tracker.record(amount="0.6", tags={"team": "search"})
    assert thresholds_of(manager.check_budgets()) == [(0.5, "1")]
    with CostTracker(url, clock=clock) as other:  # as another process would, from its own configuration
        BudgetManager(other).create("team", "1.00", "daily", tags={"team": "search"})
    assert manager.get("team") is kept
    assert manager.check_budgets() == []
    changed = manager.create("team", 1, "daily", tags={"team": "ads"})  # another filter: another budget
    assert changed is not kept and manager.get("team") is changed
