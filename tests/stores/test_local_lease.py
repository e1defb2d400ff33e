"""Period budgets over an in-process ledger (``LocalLedger``: a ``MemoryStore``'s, and the default of any store):
each call reserves and settles exactly in the ledger through a ``LocalLease`` (one hold per budget, grown and shrunk
under the ledger's lock), so no headroom is ever leased ahead of the calls, and every amount is counted once."""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from llmcost import BudgetExceeded, BudgetManager, CostTracker, MemoryStore, budget, track_cost
from llmcost.stores import BudgetScope
from llmcost.stores._ledger import LocalLedger
from tests.conftest import calls_in_threads

from .conftest import make_entry

UTC = timezone.utc
CALL = Decimal("0.0025")  # 1000 input tokens of gpt-4o
RESPONSE = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
START = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)
DAY = BudgetScope("d", since=datetime(2024, 5, 17, tzinfo=UTC), until=datetime(2024, 5, 18, tzinfo=UTC))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def scope_of(b) -> BudgetScope:  # type: ignore[no-untyped-def]
    """The ledger scope of an unfiltered budget's current period (its account is found by key)."""
    return BudgetScope(b.key, since=b.period_start, until=b.period_end)


def in_another_thread(fn) -> None:  # type: ignore[no-untyped-def]
    """Run ``fn`` in a thread of its own: outside every budget's block (a new context)."""
    t = threading.Thread(target=fn)
    t.start()
    t.join()


def test_each_call_holds_exactly_its_estimate_while_in_flight_and_nothing_between_calls():
    tracker = CostTracker(clock=Clock(START))
    seen = []
    b = budget(10, period="daily", tracker=tracker)

    @track_cost(tracker=tracker, estimate=CALL * 3)
    def call():
        seen.append(tracker.store.standing(scope_of(b)))
        return RESPONSE

    with b:
        for _ in range(5):
            call()
            standing = tracker.store.standing(scope_of(b))
            assert standing.reserved == 0  # no headroom leased ahead of the calls
            assert b.reserved == 0
    assert [s.reserved for s in seen] == [CALL * 3] * 5  # the estimate, exactly, during each call
    assert [s.spent for s in seen] == [CALL * k for k in range(5)]
    assert b.spent == tracker.store.standing(scope_of(b)).spent == tracker.summary().total == CALL * 5


def test_spend_recorded_outside_the_block_stops_the_very_next_call():
    # Far from the limit a budget over a shared ledger leases headroom (50 calls here); over an in-process ledger each
    # call is checked against the ledger as it stands, so spend recorded elsewhere in the process counts at once.
    tracker = CostTracker(clock=Clock(START))
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: RESPONSE)
    with budget(1, period="daily", tracker=tracker) as b:
        call()
        in_another_thread(lambda: tracker.record(model="gpt-4o", input_tokens=398_400))  # $0.996
        with pytest.raises(BudgetExceeded):
            call()  # $0.9985 spent: $0.0015 left
        assert b.spent == CALL + Decimal("0.996")
    assert tracker.summary().total == CALL + Decimal("0.996")


def test_threads_stay_within_the_limit_and_spend_is_the_exact_sum():
    tracker = CostTracker(clock=Clock(START))
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: RESPONSE)
    with budget(CALL * 100, period="daily", tracker=tracker) as b:
        made, refused = calls_in_threads(call, b)
        standing = tracker.store.standing(scope_of(b))
    assert made == 100 and refused == 220
    assert standing.spent == b.spent == tracker.summary().total == CALL * 100 and standing.reserved == 0


def test_a_call_in_flight_across_midnight_settles_in_the_new_day_and_the_old_hold_is_released():
    clock = Clock(datetime(2024, 5, 17, 23, 59, 59, tzinfo=UTC))
    tracker = CostTracker(clock=clock)

    @track_cost(tracker=tracker, estimate=CALL)
    def call():
        clock.now = datetime(2024, 5, 18, 0, 0, 1, tzinfo=UTC)  # the entry is recorded the next day
        return RESPONSE

    with budget(1, period="daily", tracker=tracker) as b:
        yesterday = scope_of(b)
        call()
        today = scope_of(b)
    assert today.since == datetime(2024, 5, 18, tzinfo=UTC)
    assert tracker.store.standing(yesterday).reserved == 0 and tracker.store.standing(yesterday).spent == 0
    assert tracker.store.standing(today).spent == b.spent == CALL and tracker.store.standing(today).reserved == 0


def test_a_failed_call_gives_its_estimate_back_and_a_warning_budget_goes_past_the_limit():
    tracker = CostTracker(clock=Clock(START))

    @track_cost(tracker=tracker, estimate=CALL)
    def fails():
        raise RuntimeError("boom")

    call = track_cost(tracker=tracker, estimate=CALL)(lambda: RESPONSE)
    with budget(CALL * 2, period="daily", tracker=tracker, on_exceed="warn") as b:
        with pytest.raises(RuntimeError):
            fails()
        assert tracker.store.standing(scope_of(b)).reserved == 0
        for _ in range(3):
            call()  # the third is let through with a warning
        assert b.spent == CALL * 3 and [a.level for a in b.alerts][-1] == "exceeded"
        assert tracker.store.standing(scope_of(b)).reserved == 0


def test_a_budget_made_per_block_or_used_as_a_decorator_leaves_no_hold_behind():
    tracker = CostTracker(clock=Clock(START))
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: RESPONSE)
    decorated = budget(CALL * 3, period="daily", tracker=tracker, name="per-call")(call)
    for _ in range(3):
        decorated()
        assert tracker.store.standing(scope_of(budget(CALL * 3, period="daily", name="per-call"))).reserved == 0
    with pytest.raises(BudgetExceeded):
        decorated()
    for _ in range(50):  # a new budget object per request, as a web handler may make one
        with budget(1, period="daily", tracker=tracker, name="request"):
            call()
    ledger = tracker.store.ledger()
    assert isinstance(ledger, LocalLedger)
    assert not ledger._holds  # every block's hold released as it ended
    assert tracker.summary().total == CALL * 53


def test_a_manager_budget_stops_where_a_period_block_does():
    outcomes = []
    for mode in ("block", "manager"):
        tracker = CostTracker(clock=Clock(START))
        call = track_cost(tracker=tracker, estimate=CALL)(lambda: RESPONSE)
        if mode == "manager":
            BudgetManager(tracker).create("cap", CALL * 3, "daily")
        made = 0
        with budget(CALL * 3, period="daily", tracker=tracker) if mode == "block" else contextlib.nullcontext():
            for _ in range(5):
                with contextlib.suppress(BudgetExceeded):
                    call()
                    made += 1
        outcomes.append((made, tracker.summary().total))
    assert outcomes == [(3, CALL * 3)] * 2


# -- the ledger's holds ----------------------------------------------------------------------------------------
def test_holds_grant_as_reserve_does_and_count_every_amount_once():
    store = MemoryStore()
    ledger = store.ledger()
    assert isinstance(ledger, LocalLedger)
    ledger.begin()
    hold = ledger.open_hold(DAY)
    limit = CALL * 4
    assert ledger.grow(DAY, hold, CALL * 3, limit=limit)
    assert not ledger.grow(DAY, hold, CALL * 2, limit=limit)  # would pass the limit: nothing added
    assert ledger.standing(DAY).reserved == CALL * 3
    a = make_entry(1, timestamp=START, amount=CALL * 2)
    # Settled before its entry is appended (kept as settled), then appended (counted as recorded instead).
    assert ledger.settle_held(DAY, hold, CALL * 3, a.amount, a.id) == (CALL * 2, 0)
    store.append([a])
    assert ledger.standing(DAY).spent == CALL * 2
    # Appended first, then settled: counted once, as recorded.
    b = make_entry(2, timestamp=START + timedelta(minutes=1), amount=CALL)
    assert ledger.grow(DAY, hold, CALL, limit=limit)
    store.append([b])
    assert ledger.settle_held(DAY, hold, CALL, b.amount, b.id) == (CALL * 3, 0)
    assert not ledger.grow(DAY, hold, CALL * 2, limit=limit) and ledger.grow(DAY, hold, CALL, limit=limit)
    ledger.settle_held(DAY, hold, CALL, None, None)  # the last call in flight records nothing ...
    ledger.close_hold(hold)  # ... and the hold, empty, is dropped
    assert ledger.standing(DAY) == ledger.standing(DAY, refresh=True)
    assert ledger.standing(DAY).spent == CALL * 3 == store.total() and ledger.standing(DAY).reserved == 0


def test_an_entry_settled_in_two_scopes_around_its_append_counts_once_in_each():
    store = MemoryStore()
    ledger = store.ledger()
    ledger.begin()
    other = BudgetScope("other", since=DAY.since, until=DAY.until)
    entry = make_entry(3, timestamp=START, amount=CALL)
    ledger.settle(DAY, entry.amount, entry_id=entry.id)  # before the append
    store.append([entry])
    ledger.settle(other, entry.amount, entry_id=entry.id)  # after it
    assert ledger.standing(DAY).spent == ledger.standing(other).spent == CALL == store.total()
    assert ledger.standing(other, refresh=True).spent == CALL


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_an_acknowledged_entry_settled_in_another_scope_afterwards_counts_once(tmp_path, kind):
    from llmcost.stores import DuckDBStore

    store = MemoryStore() if kind == "memory" else DuckDBStore(tmp_path / "costs.duckdb")
    ledger = store.ledger()
    ledger.begin()
    other = BudgetScope("other", since=DAY.since, until=DAY.until)
    entry = make_entry(4, timestamp=START, amount=CALL)
    store.settle(DAY, entry.amount, entry_id=entry.id)
    store.append([entry])
    store.acknowledge([entry])
    store.settle(other, entry.amount, entry_id=entry.id)
    assert store.standing(DAY, refresh=True).spent == store.standing(other, refresh=True).spent == CALL
    store.close()
