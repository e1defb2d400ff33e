"""Period budgets over a ``MemoryStore`` keep the tracker's row path: no ``CostEntry`` is built for a tracked call,
the store's fed ledger counts each appended row itself, and the budget only gives its call's estimate back.

These check that the rows are counted exactly as entries were: only in their period and filters, never for a
refused call, exactly under threads, with alerts, and through another tracker's store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

import llmcost
from llmcost import BudgetExceeded, CostTracker, budget, track_cost
from llmcost import _tracker as tracker_module
from llmcost.stores import BudgetScope
from llmcost.stores import _memory as memory_module
from tests.conftest import calls_in_threads

UTC = timezone.utc
CALL = Decimal("0.0025")  # 1000 input tokens of gpt-4o
RESPONSE = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@contextlib.contextmanager
def entries_built() -> Iterator[list[int]]:
    """Count the ``CostEntry`` objects built meanwhile, by the tracker or by the store for its ledger."""
    built: list[int] = []
    originals = (tracker_module.trusted_entry, memory_module.trusted_entry)

    def counting(*args: Any) -> Any:
        built.append(1)
        return originals[0](*args)

    tracker_module.trusted_entry = counting  # type: ignore[assignment]
    memory_module.trusted_entry = counting  # type: ignore[assignment]
    try:
        yield built
    finally:
        tracker_module.trusted_entry, memory_module.trusted_entry = originals  # type: ignore[assignment]


def tracked(tracker: CostTracker, **options: Any) -> Any:
    return track_cost(tracker=tracker, estimate=CALL, **options)(lambda: RESPONSE)


def scope_of(b: llmcost.Budget) -> BudgetScope:
    return BudgetScope(b.key, since=b.period_start, until=b.period_end)


def test_a_daily_budget_counts_rows_exactly_and_refuses_the_call_that_would_pass_it() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    with budget(CALL * 3, period="daily", tracker=tracker) as b, entries_built() as built:
        for _ in range(3):
            call()
        assert b.spent == CALL * 3 and b.reserved == 0
        with pytest.raises(BudgetExceeded):
            call()  # refused: nothing recorded, nothing counted
        assert b.spent == CALL * 3 and b.reserved == 0
    assert built == []  # neither the tracker nor the store's ledger built an entry
    assert tracker.store.standing(scope_of(b)).spent == CALL * 3
    assert len(tracker.entries()) == 3


def test_spend_recorded_outside_the_block_stops_the_next_call_on_the_row_path() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    daily = budget(CALL * 2, period="daily", tracker=tracker)
    with daily:
        call()
    call()  # outside the block: a bare row, which the ledger counts all the same
    with daily, pytest.raises(BudgetExceeded):
        call()
    assert daily.spent == CALL * 2 and daily.reserved == 0


def test_rows_of_another_tag_do_not_count_and_those_of_its_tag_do() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    with budget(CALL * 2, period="daily", tracker=tracker, tags={"team": "a"}) as b, entries_built() as built:
        with llmcost.tags(team="b"):
            for _ in range(5):
                call()  # another tag: neither checked nor counted
        with llmcost.tags(team="a"):
            call()
            call()
            with pytest.raises(BudgetExceeded):
                call()
    assert built == [] and b.spent == CALL * 2 and b.reserved == 0
    assert len(tracker.entries()) == 7


def test_a_row_of_another_period_counts_there_and_gives_the_estimate_back() -> None:
    clock = Clock(datetime(2024, 5, 17, 23, 59, 59, tzinfo=UTC))
    tracker = CostTracker(clock=clock)

    @track_cost(tracker=tracker, estimate=CALL)
    def across_midnight() -> Any:
        clock.now = datetime(2024, 5, 18, 0, 0, 1, tzinfo=UTC)
        return RESPONSE

    call = tracked(tracker)
    alerts: list[llmcost.BudgetAlert] = []
    with budget(CALL * 2, period="daily", tracker=tracker, on_alert=alerts.append) as b:
        yesterday = scope_of(b)
        call()
        across_midnight()
        assert [a.threshold for a in alerts] == [0.5, 0.5]  # the new day's first alert, at the call that made it
        today = scope_of(b)
        assert today.since == datetime(2024, 5, 18, tzinfo=UTC)
        assert b.spent == CALL and b.reserved == 0  # the new day's
        call()
        with pytest.raises(BudgetExceeded):
            call()
    assert tracker.store.standing(yesterday).spent == CALL and tracker.store.standing(yesterday).reserved == 0
    assert tracker.store.standing(today).spent == CALL * 2 and tracker.store.standing(today).reserved == 0


def test_threads_on_the_row_path_stay_within_the_limit_exactly() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    daily = budget(CALL * 100, period="daily", tracker=tracker)
    with entries_built() as built:
        passed, refused = calls_in_threads(call, daily)
    assert built == []
    assert passed == 100 and refused == 220
    assert daily.spent == CALL * 100 and daily.reserved == 0
    assert tracker.store.standing(scope_of(daily)) == llmcost.stores.Standing(CALL * 100, Decimal(0))


def test_warn_mode_and_thresholds_on_the_row_path() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    alerts: list[llmcost.BudgetAlert] = []
    with budget(CALL * 2, period="daily", tracker=tracker, on_exceed="warn", on_alert=alerts.append) as b:
        call()
        assert [a.threshold for a in alerts] == [0.5]
        call()
        call()  # past the limit: let through, counted
        assert b.spent == CALL * 3 and b.reserved == 0
    assert [a.threshold for a in alerts][:4] == [0.5, 0.8, 0.9, 1.0]
    assert any(a.level == "exceeded" for a in alerts)


def test_subscribers_still_get_entries_counted_once() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    seen: list[llmcost.CostEntry] = []
    tracker.subscribe("cost.recorded", seen.append)
    with budget(CALL * 2, period="daily", tracker=tracker) as b:
        call()
        call()
        with pytest.raises(BudgetExceeded):
            call()
    assert len(seen) == 2 and b.spent == CALL * 2 and b.reserved == 0


def test_a_default_tracker_budget_counts_rows_of_another_trackers_store() -> None:
    other = CostTracker()  # its own MemoryStore: the row goes there, the amount is settled in the default store
    call = tracked(other)
    with budget(CALL * 2, period="daily") as b, entries_built() as built:
        call()
        call()
        with pytest.raises(BudgetExceeded):
            call()
    assert built == []
    assert b.spent == CALL * 2 and b.reserved == 0
    assert llmcost.get_tracker().store.standing(scope_of(b)).spent == CALL * 2
    assert len(other.entries()) == 2 and llmcost.get_tracker().entries() == []


def test_a_per_model_period_budget_counts_only_its_models_rows() -> None:
    tracker = CostTracker()
    mini = track_cost(tracker=tracker, model="gpt-4o-mini", estimate=CALL)(lambda: {**RESPONSE, "model": "gpt-4o-mini"})
    big = track_cost(tracker=tracker, model="gpt-4o", estimate=CALL)(lambda: RESPONSE)
    with budget(CALL * 2, period="daily", tracker=tracker, model="gpt-4o") as b:
        for _ in range(4):
            mini()
        big()
        big()
        with pytest.raises(BudgetExceeded):
            big()
    assert b.spent == CALL * 2 and b.reserved == 0 and len(tracker.entries()) == 6


def test_set_active_false_on_a_period_budget_records_and_reserves_nothing() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    llmcost.set_active(False)
    with budget(CALL / 2, period="daily", tracker=tracker) as b:
        call()
    assert b.spent == b.reserved == 0 and tracker.entries() == []
