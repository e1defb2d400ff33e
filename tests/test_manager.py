"""``BudgetManager`` and ``BudgetGuard``: redefined budgets, alerts returned once, the guard's saved limits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from llmcost import BudgetGuard, BudgetManager, CostTracker, track_cost
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


def test_a_guard_deletes_the_saved_limits_it_does_not_set(url, clock):
    with CostTracker(url, clock=clock) as first_run:
        BudgetGuard(daily_limit=1, total_limit=50, tracker=first_run)
        first_run.record(amount="0.95")
    with CostTracker(url, clock=clock) as second_run:  # restarted with only a monthly limit configured
        guard = BudgetGuard(monthly_limit=100, tracker=second_run)
        assert [b.name for b in guard.manager.list()] == ["guard-monthly"]
        assert guard.get_remaining() == {"daily": None, "monthly": Decimal("99.05"), "total": None}
        assert guard.can_proceed("0.5")
        call = track_cost(tracker=second_run, model="gpt-4o", estimate=Decimal("0.5"))(
            lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 200_000, "completion_tokens": 0}}
        )
        call()  # $0.50: refused before by the first run's daily limit of $1
        assert guard.get_remaining()["monthly"] == Decimal("98.55")


def test_guards_on_one_store_share_their_limits(store_tracker):
    strict = BudgetGuard(daily_limit=1, tracker=store_tracker)
    loose = BudgetGuard(daily_limit=100, monthly_limit=500, tracker=store_tracker)  # made last: its limits apply
    store_tracker.record(amount="5")
    # Each reports (and checks) the limits enforced: the last guard's.
    assert strict.get_remaining() == loose.get_remaining() == {"daily": 95, "monthly": 495, "total": None}
    assert strict.can_proceed("90") and not strict.can_proceed("96")
    BudgetGuard(tracker=store_tracker)  # no limits: none saved, none enforced
    assert loose.manager.list() == []
    assert strict.get_remaining() == loose.get_remaining() == {"daily": None, "monthly": None, "total": None}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: BudgetGuard(daily_limit="nan", tracker=t), "daily_limit must be a finite number, got 'nan'"),
        (lambda t: BudgetGuard(monthly_limit=-1, tracker=t), "monthly_limit must be a positive amount, got -1"),
        (lambda t: BudgetGuard(total_limit=0, tracker=t), "total_limit must be a positive amount, got 0"),
        (lambda t: BudgetManager(t).create("x", -10, "daily"), "amount must be a positive amount, got -10"),
    ],
    ids=["daily_limit", "monthly_limit", "total_limit", "create-amount"],
)
def test_bad_limits_are_refused_naming_the_parameter(store_tracker, make, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make(store_tracker)


def test_create_checks_thresholds_as_budget_does(store_tracker):
    # A string was split into its characters first: "got ('0', '.', '5')".
    with pytest.raises(TypeError, match=r"^thresholds must be a sequence of numbers in \(0, 1\], got '0.5'$"):
        BudgetManager(store_tracker).create("x", 10, "daily", thresholds="0.5")


def test_can_spend_answers_as_the_budget_checks_a_call(store_tracker):
    # An exhausted budget refuses a call estimated at 0 (nothing remains), so can_spend(0) is False there; a negative
    # amount is no call's estimate.
    manager = BudgetManager(store_tracker)
    manager.create("cap", 1, "daily")
    assert manager.can_spend(0) and manager.can_spend(1) and not manager.can_spend("1.01")
    store_tracker.record(amount="1")
    assert manager.get("cap").remaining == 0
    assert manager.can_spend(0) is False
    with pytest.raises(ValueError, match=r"^amount must be at least 0, got -5$"):
        manager.can_spend(-5)


def test_a_guard_with_a_bad_limit_changes_no_saved_limit(store_tracker):
    BudgetGuard(daily_limit=1, tracker=store_tracker)
    with pytest.raises(ValueError, match="monthly_limit"):
        BudgetGuard(total_limit=5, monthly_limit="lots", tracker=store_tracker)
    assert [b.name for b in BudgetManager(store_tracker).list()] == ["guard-daily"]


def test_create_takes_decimal_and_generator_thresholds_and_saves_them_as_the_budget_reads_them(url, store_tracker):
    manager = BudgetManager(store_tracker)
    made = manager.create("team", 1, "daily", thresholds=[Decimal("0.5"), Decimal("1")])
    assert made.thresholds == (0.5, 1.0)
    again = manager.create("other", 1, "daily", thresholds=(t for t in (0.25, 0.75)))
    assert again.thresholds == (0.25, 0.75)
    with CostTracker(url) as other:
        reread = BudgetManager(other)
        assert reread.get("team").thresholds == (0.5, 1.0) and reread.get("other").thresholds == (0.25, 0.75)
