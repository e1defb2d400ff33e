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

# The budgets of the tests without a ``Clock`` are daily on the system clock (the row path reads it as ``time_ns``),
# and count every call a test made: a test that fails in a run across midnight UTC is skipped (tests/conftest.py).
pytestmark = pytest.mark.on_system_clock("daily")


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


# -- the usual call over a MemoryStore: one ledger step before it and one after it ------------------------------
def test_the_usual_call_takes_no_ledger_step_once_the_account_is_lent_and_one_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmcost import _budget
    from llmcost.stores._ledger import LocalLedger

    steps: list[str] = []
    for name in ("take_kept", "give_back", "grow", "settle_held", "reserve", "settle", "lend"):
        original = getattr(LocalLedger, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            steps.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(LocalLedger, name, counted)
    tracker = CostTracker()
    call = tracked(tracker)
    with budget(CALL * 4, period="daily", tracker=tracker) as b:
        call()  # the first call makes the budget's lease (through ``_reserve``)
        monkeypatch.setattr(_budget.Budget, "_reserve", None)  # the usual call never goes there ...
        monkeypatch.setattr(_budget.Budget, "_period_row", None)  # ... nor here
        steps.clear()
        call()  # reserved in the ledger's account, which is then lent to the budget, and settled there
        assert steps == ["take_kept", "lend"]
        steps.clear()
        call()  # reserved and settled in the lent account: no step of the ledger
        assert steps == []
        monkeypatch.undo()
        assert b.spent == CALL * 3 and b.reserved == 0
    # No one was given these calls' entries, so no settle can name them: the ledger keeps none of their ids.
    assert not tracker.store.ledger()._seen  # type: ignore[attr-defined]


def test_a_lease_of_the_day_before_keeps_its_calls_estimates_until_they_settle() -> None:
    clock = Clock(datetime(2024, 5, 17, 23, 59, 59, tzinfo=UTC))
    tracker = CostTracker(clock=clock)
    during: list[llmcost.stores.Standing] = []
    b = budget(1, period="daily", tracker=tracker)

    @track_cost(tracker=tracker, estimate=CALL)
    def across_midnight() -> Any:
        clock.now = datetime(2024, 5, 18, 0, 0, 1, tzinfo=UTC)
        assert b.spent == 0  # the budget rolls into the new day: the old day's lease is closed, this call in flight
        during.append(tracker.store.standing(yesterday))
        return RESPONSE

    with b:
        yesterday = scope_of(b)
        across_midnight()
        assert during == [llmcost.stores.Standing(Decimal(0), CALL)]  # its estimate held in the old day till it settled
        assert tracker.store.standing(yesterday) == llmcost.stores.Standing(Decimal(0), Decimal(0))
        assert b.spent == CALL and b.reserved == 0
        tracked(tracker)()  # the new day's lease
        assert b.spent == CALL * 2
    ledger = tracker.store.ledger()
    assert not ledger._holds  # type: ignore[attr-defined]  # every hold went with its last call


def test_spend_of_another_tracker_counts_in_the_figures_and_alerts_of_the_budgets_next_call() -> None:
    tracker = CostTracker()
    other = CostTracker(tracker.store)  # the same store, not the budget's tracker
    call = tracked(tracker)
    alerts: list[llmcost.BudgetAlert] = []
    with budget(1, period="daily", tracker=tracker, on_alert=alerts.append) as b:
        call()
        other.record(model="gpt-4o", input_tokens=280_000)  # $0.70
        assert alerts == []  # (the budget hears of it at its next call)
        call()
        assert [(a.threshold, a.spent) for a in alerts] == [(0.5, CALL * 2 + Decimal("0.7"))]
        with pytest.raises(BudgetExceeded):
            track_cost(tracker=tracker, estimate=Decimal("0.3"))(lambda: RESPONSE)()  # $0.295 left
        assert b.spent == CALL * 2 + Decimal("0.7") and b.reserved == 0


def test_a_forked_child_checks_its_calls_against_its_own_copy_of_the_ledger() -> None:
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    tracker = CostTracker()
    call = tracked(tracker)
    with budget(CALL * 3, period="daily", tracker=tracker) as b:
        call()
        pid = os.fork()
        if pid == 0:  # the child: two calls left of its copy, then refused
            code = 1
            try:
                call()
                call()
                try:
                    call()
                except BudgetExceeded:
                    code = 0 if b.spent == CALL * 3 and b.reserved == 0 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        call()  # the parent's own copy: as it was before the fork
        assert b.spent == CALL * 2 and b.reserved == 0


def test_the_first_call_after_midnight_is_checked_against_the_new_day() -> None:
    clock = Clock(datetime(2024, 5, 17, 23, 59, 0, tzinfo=UTC))
    tracker = CostTracker(clock=clock)
    call = tracked(tracker)
    with budget(CALL * 2, period="daily", tracker=tracker) as b:
        call()  # the day before: room for one more call there
        tracker.record(model="gpt-4o", input_tokens=2000, timestamp=datetime(2024, 5, 18, 0, 0, 1, tzinfo=UTC))
        clock.now = datetime(2024, 5, 18, 0, 0, 30, tzinfo=UTC)
        with pytest.raises(BudgetExceeded):
            call()  # the new day is spent already: its lease is the old day's no more
        assert b.spent == CALL * 2 and b.period_start == datetime(2024, 5, 18, tzinfo=UTC)
