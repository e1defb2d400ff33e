"""Stress and race tests of the period budgets' fast paths, with real threads.

Over a ``MemoryStore`` a call reserves in the kept account of the store's fed ledger without the budget's lock
(``LocalLedger.take_kept``) and gives its estimate back with ``give_back`` as its row is counted; over a shared
ledger (DuckDB here) it is served from the budget's ``Lease`` (``Budget._take_leased``) and settled with its entry in
one step (``Budget.settle_recorded``). These check, under threads, period rollovers driven by the tracker's clock,
and budgets entered and exited while calls are in flight, that: refusals come exactly at the limit; every
reservation goes back (the ledger's reserved returns to zero, no hold is left holding anything); the budget's spend
equals the store's total; each threshold fires exactly once; and a call that raises gives its estimate back."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import llmcost
from llmcost import BudgetExceeded, CostTracker, budget, track_cost
from llmcost import _budget as budget_module
from llmcost.stores import BudgetScope
from llmcost.stores._lease import Lease, LocalLease
from llmcost.stores._ledger import LocalLedger
from tests.conftest import Clock, calls_in_threads

UTC = timezone.utc
CALL = Decimal("0.0025")  # 1000 input tokens of gpt-4o
RESPONSE = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
THREADS = 8

# The budgets of the tests without a ``Clock`` are daily (one hourly) on the system clock, the fast paths' own, and
# count every call a test made: a test that fails in a run across midnight UTC (or the hour) is skipped
# (tests/conftest.py).
pytestmark = pytest.mark.on_system_clock("daily", "hourly")


@pytest.fixture
def duck(tmp_path: Path) -> str:
    return f"duckdb://{tmp_path / 'costs.duckdb'}"


def tracked(tracker: CostTracker, **options: Any) -> Callable[[], Any]:
    return track_cost(tracker=tracker, estimate=CALL, **options)(lambda: RESPONSE)  # type: ignore[no-any-return]


def run_threads(work: Callable[[int], object], count: int = THREADS) -> None:
    """``work(i)`` in ``count`` threads started together; re-raise the first failure."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def raising_calls_in_threads(tracker: CostTracker) -> llmcost.Budget:
    """60 calls in each thread under one daily budget (entered in each), every third raising: the budget."""

    @track_cost(tracker=tracker, estimate=CALL)
    def flaky(i: int) -> Any:
        if i % 3 == 0:
            raise RuntimeError("provider down")
        return RESPONSE

    daily = budget(CALL * 10**4, period="daily", tracker=tracker)

    def work(i: int) -> None:
        with daily:
            for n in range(60):
                with contextlib.suppress(RuntimeError):
                    flaky(n)

    run_threads(work)
    return daily


def roll_hours(
    hourly: llmcost.Budget, clock: Clock, call: Callable[[], Any], hours: int, per_hour: int, per_block: int
) -> None:
    """Thread 0 makes ``per_hour`` calls, each in its own ``with hourly``, then moves ``clock`` an hour on,
    ``hours - 1`` times; the other threads meanwhile enter and exit ``hourly`` around ``per_block`` calls at a time."""
    done = threading.Event()

    def work(i: int) -> None:
        if i == 0:
            for _ in range(hours - 1):
                for _ in range(per_hour):
                    with hourly:
                        call()
                clock.now += timedelta(hours=1)
            done.set()
            return
        while not done.is_set():
            with hourly:
                for _ in range(per_block):
                    call()

    run_threads(work)


def memory_ledger(tracker: CostTracker) -> LocalLedger:
    ledger = tracker.store.ledger()
    assert isinstance(ledger, LocalLedger) and ledger.fed
    return ledger


def assert_nothing_held(ledger: LocalLedger) -> None:
    """No account reserves anything, and no hold holds anything (or waits to close)."""
    for scope, _ in list(ledger._accounts.values()):
        assert ledger.standing(scope).reserved == 0, scope  # (a step of the ledger: an account lent is taken back)
    for scope, account in ledger._accounts.values():
        assert account.reserved == 0, scope
        assert all(held == 0 for held in account.holds.values()), (scope, account.holds)
    assert not ledger._closing


def scope_at(b: llmcost.Budget, since: datetime, until: datetime) -> BudgetScope:
    return BudgetScope(b.key, since=since, until=until, tags=b.tags or None)


# -- MemoryStore: the kept account, without the budget's lock ------------------------------------------------------
@pytest.mark.parametrize("k", [1, 37, 250])
def test_memory_exactly_k_calls_run_under_a_limit_of_k_estimates(k: int) -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    daily = budget(CALL * k, period="daily", tracker=tracker)
    ran, refused = calls_in_threads(call, daily, count=THREADS, calls=40)
    assert (ran, refused) == (k, THREADS * 40 - k)
    assert len(tracker.entries()) == k
    assert daily.spent == tracker.total() == CALL * k
    assert daily.reserved == 0 and daily.remaining == 0
    assert_nothing_held(memory_ledger(tracker))


def test_memory_warn_mode_lets_every_call_through_and_counts_each_once() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    alerts: list[llmcost.BudgetAlert] = []
    daily = budget(
        CALL * 50, period="daily", tracker=tracker, on_exceed="warn", on_alert=alerts.append, thresholds=[0.5, 0.8, 1.0]
    )
    ran, refused = calls_in_threads(call, daily, count=THREADS, calls=30)
    assert (ran, refused) == (THREADS * 30, 0)
    assert daily.spent == tracker.total() == CALL * THREADS * 30
    assert daily.reserved == 0
    # Each threshold once, as spend reaches it; calls let through past the limit before spend reached it (others were
    # in flight) say so at most once.
    assert sorted(a.threshold for a in alerts if "let through" not in a.message) == [0.5, 0.8, 1.0]
    assert len([a for a in alerts if "let through" in a.message]) <= 1
    assert_nothing_held(memory_ledger(tracker))


def test_memory_thresholds_fire_exactly_once_under_threads() -> None:
    for _ in range(5):
        tracker = CostTracker()
        call = tracked(tracker)
        alerts: list[llmcost.BudgetAlert] = []
        daily = budget(
            CALL * 400, period="daily", tracker=tracker, thresholds=[0.25, 0.5, 0.75, 1.0], on_alert=alerts.append
        )
        ran, refused = calls_in_threads(call, daily, count=THREADS, calls=50)
        assert (ran, refused) == (400, 0)
        assert [a.threshold for a in alerts] == [0.25, 0.5, 0.75, 1.0]
        assert_nothing_held(memory_ledger(tracker))


def test_memory_calls_that_raise_give_their_estimates_back() -> None:
    tracker = CostTracker()
    daily = raising_calls_in_threads(tracker)
    ok = THREADS * 40
    assert daily.spent == tracker.total() == CALL * ok and daily.reserved == 0
    assert_nothing_held(memory_ledger(tracker))


def test_memory_budgets_entered_and_exited_while_calls_are_in_flight_across_rollovers() -> None:
    """Threads enter and exit the same hourly budget (each exit closes its hold while others' calls are in flight),
    and one thread moves the clock an hour on now and then: afterwards no hold holds anything, and each hour's
    spend as the budget and the ledger count it is the store's total for that hour."""
    start = datetime(2024, 5, 17, 10, tzinfo=UTC)
    clock = Clock(start)
    tracker = CostTracker(clock=clock)
    call = tracked(tracker)
    hourly = budget(CALL * 10**6, period="hourly", tracker=tracker)
    hours = 6
    roll_hours(hourly, clock, call, hours, per_hour=200, per_block=7)
    ledger = memory_ledger(tracker)
    assert_nothing_held(ledger)
    assert hourly.reserved == 0
    last = start + timedelta(hours=hours - 1)
    assert hourly.spent == tracker.total(since=last, until=last + timedelta(hours=1))
    for h in range(hours - 2, hours):  # the periods the ledger still keeps
        since = start + timedelta(hours=h)
        standing = tracker.store.standing(scope_at(hourly, since, since + timedelta(hours=1)))
        assert standing.reserved == 0
        assert standing.spent == tracker.total(since=since, until=since + timedelta(hours=1))
    assert tracker.total() == CALL * len(tracker.entries())


def test_memory_exact_limit_per_hour_across_rollovers() -> None:
    """Rollovers between rounds of calls (none in flight across one): each hour runs exactly k calls."""
    start = datetime(2024, 5, 17, 10, tzinfo=UTC)
    clock = Clock(start)
    tracker = CostTracker(clock=clock)
    call = tracked(tracker)
    k = 23
    hourly = budget(CALL * k, period="hourly", tracker=tracker)
    with hourly:
        for h in range(4):
            ran, refused = calls_in_threads(call, hourly, count=THREADS, calls=10)
            assert (ran, refused) == (k, THREADS * 10 - k), h
            assert hourly.spent == CALL * k and hourly.reserved == 0
            clock.now += timedelta(hours=1)
    assert tracker.total() == CALL * k * 4
    assert_nothing_held(memory_ledger(tracker))


def test_memory_nested_period_budgets_on_the_same_store() -> None:
    """An outer daily budget and an inner hourly one (and a second daily with the same key: one account, two
    holds) all check every call; the tightest refuses exactly at its limit."""
    tracker = CostTracker()
    call = tracked(tracker)
    daily = budget(CALL * 1000, period="daily", tracker=tracker, name="d")
    twin = budget(CALL * 1000, period="daily", tracker=tracker, name="d")
    hourly = budget(CALL * 90, period="hourly", tracker=tracker)
    assert daily.key == twin.key
    ran, refused = calls_in_threads(call, daily, twin, hourly, count=THREADS, calls=20)
    assert (ran, refused) == (90, THREADS * 20 - 90)
    for b in (daily, twin, hourly):
        assert b.spent == CALL * 90 and b.reserved == 0
    assert_nothing_held(memory_ledger(tracker))


def test_memory_a_call_recorded_to_another_trackers_store() -> None:
    """A budget on one tracker (store A) around calls of another tracker (store B): each call reserves in A's
    ledger, its entry counts there as settled, and every estimate goes back."""
    home, away = CostTracker(), CostTracker()
    call = tracked(away)
    daily = budget(CALL * 100, period="daily", tracker=None)
    llmcost_default = llmcost.configure(home.store)
    try:
        ran, refused = calls_in_threads(call, daily, count=THREADS, calls=20)
        assert (ran, refused) == (100, THREADS * 20 - 100)
        assert daily.spent == CALL * 100 and daily.reserved == 0
        assert away.total() == CALL * 100 and llmcost_default.total() == 0
        assert_nothing_held(memory_ledger(llmcost_default))
    finally:
        llmcost.configure()
    home.close()
    away.close()


def test_memory_set_active_false_checks_and_counts_nothing_in_the_budget() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    daily = budget(CALL * 5, period="daily", tracker=tracker)
    with daily:
        call()
    llmcost.set_active(False)
    try:
        ran, refused = calls_in_threads(call, daily, count=4, calls=10)
        assert (ran, refused) == (40, 0)
    finally:
        llmcost.set_active(True)
    assert daily.reserved == 0
    assert_nothing_held(memory_ledger(tracker))


# -- a threshold crossed by one thread while another's older figure lands ------------------------------------------
def test_memory_a_threshold_is_not_missed_when_an_older_figure_lands_after_the_crossing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two calls give their estimates back in turn: X's (spend 50%) first, then Y's (75%: the threshold). X is
    held between the ledger's answer and what it does with it until Y is about to check the thresholds: X's older
    figure must not hide Y's crossing (the alert fires once, with Y's call)."""
    tracker = CostTracker()
    call = tracked(tracker)
    alerts: list[llmcost.BudgetAlert] = []
    daily = budget(CALL * 4, period="daily", tracker=tracker, thresholds=[0.75], on_alert=alerts.append)
    x_gave, y_checking, x_done = threading.Event(), threading.Event(), threading.Event()
    roles: dict[int, str] = {}
    give_back = LocalLedger.give_back
    check, check_at = budget_module.Budget.check_thresholds, getattr(budget_module.Budget, "_check_thresholds", None)

    def held_give_back(ledger: LocalLedger, *args: Any) -> Any:
        answer = give_back(ledger, *args)
        if roles.get(threading.get_ident()) == "x":
            x_gave.set()
            y_checking.wait(5)
        return answer

    def held(b: Any) -> None:
        if roles.get(threading.get_ident()) == "y":
            y_checking.set()
            x_done.wait(5)

    def held_check(b: Any) -> None:
        held(b)
        check(b)

    def held_check_at(b: Any, *args: Any) -> None:
        held(b)
        check_at(b, *args)  # type: ignore[misc]

    with daily:
        call()  # 25%: the thresholds' quiet bound is set
        monkeypatch.setattr(LocalLedger, "give_back", held_give_back)
        monkeypatch.setattr(budget_module.Budget, "check_thresholds", held_check)
        if check_at is not None:
            monkeypatch.setattr(budget_module.Budget, "_check_thresholds", held_check_at)

        def x() -> None:
            roles[threading.get_ident()] = "x"
            with daily:
                call()
            x_done.set()

        def y() -> None:
            roles[threading.get_ident()] = "y"
            x_gave.wait(5)
            with daily:
                call()

        threads = [threading.Thread(target=x), threading.Thread(target=y)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    monkeypatch.undo()
    assert [a.threshold for a in alerts] == [0.75]
    assert daily.spent == CALL * 3 and daily.reserved == 0


def test_memory_a_threshold_is_not_missed_when_an_older_reading_of_the_ledger_lands_before_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread reading ``spent`` (``_stand``) read the ledger at 50%, and its figure lands in the budget just as a
    call that took spend to 75% checks the thresholds: the call's crossing still fires."""
    tracker = CostTracker()
    call = tracked(tracker)
    alerts: list[llmcost.BudgetAlert] = []
    daily = budget(CALL * 4, period="daily", tracker=tracker, thresholds=[0.75], on_alert=alerts.append)
    store = tracker.store
    with daily:
        call()
        call()  # 50%
        older = store.standing(scope_at(daily, daily.period_start, daily.period_end))  # type: ignore[arg-type]
        stand = budget_module.Budget._stand
        check = budget_module.Budget.check_thresholds
        check_at = getattr(budget_module.Budget, "_check_thresholds", None)  # (absent before the fix)
        landed: list[int] = []

        def older_reading_lands(b: Any) -> None:
            if not landed:
                landed.append(1)
                with monkeypatch.context() as m:
                    m.setattr(store, "standing", lambda scope, refresh=False: older)
                    stand(b)  # (the reader's ``_stand``, with what it read before the call)
                assert b._spent == CALL * 2

        def landing_check(b: Any) -> None:
            older_reading_lands(b)
            check(b)

        def landing_check_at(b: Any, *args: Any) -> None:
            older_reading_lands(b)
            check_at(b, *args)  # type: ignore[misc]

        monkeypatch.setattr(budget_module.Budget, "check_thresholds", landing_check)
        if check_at is not None:
            monkeypatch.setattr(budget_module.Budget, "_check_thresholds", landing_check_at)
        call()  # 75%
        monkeypatch.undo()
        assert landed
    assert [a.threshold for a in alerts] == [0.75]


# -- a shared ledger (DuckDB): the budget's Lease -----------------------------------------------------------------
@pytest.mark.parametrize(("k", "calls"), [(1, 50), (37, 50), (300, 50), (30011, 4000)])
def test_duckdb_exactly_k_calls_run_under_a_limit_of_k_estimates(duck: str, k: int, calls: int) -> None:
    """(30,011: leases grow by thousands of calls, toward ``MOST_LEASE_CALLS``, before the limit is near.)"""
    tracker = CostTracker(duck)
    call = tracked(tracker)
    daily = budget(CALL * k, period="daily", tracker=tracker)
    ran, refused = calls_in_threads(call, daily, count=THREADS, calls=calls)
    assert (ran, refused) == (k, THREADS * calls - k)
    tracker.flush()
    assert tracker.total() == CALL * k
    daily.sync(force=True)
    assert daily.spent == CALL * k and daily.reserved == 0
    standing = tracker.store.standing(scope_at(daily, daily.period_start, daily.period_end), refresh=True)  # type: ignore[arg-type]
    assert (standing.spent, standing.reserved) == (CALL * k, 0)
    tracker.close()


def test_duckdb_threads_entering_and_exiting_across_rollovers(duck: str) -> None:
    start = datetime(2024, 5, 17, 10, tzinfo=UTC)
    clock = Clock(start)
    tracker = CostTracker(duck, clock=clock)
    call = tracked(tracker)
    alerts: list[llmcost.BudgetAlert] = []
    hourly = budget(CALL * 10**6, period="hourly", tracker=tracker, on_alert=alerts.append)
    hours = 4
    roll_hours(hourly, clock, call, hours, per_hour=80, per_block=9)
    tracker.flush()
    assert not alerts
    for h in range(hours):
        since = start + timedelta(hours=h)
        standing = tracker.store.standing(scope_at(hourly, since, since + timedelta(hours=1)), refresh=True)
        assert standing.reserved == 0, h
        assert standing.spent == tracker.total(since=since, until=since + timedelta(hours=1)), h
    hourly.sync(force=True)
    last = start + timedelta(hours=hours - 1)
    assert hourly.spent == tracker.total(since=last, until=last + timedelta(hours=1)) and hourly.reserved == 0
    tracker.close()


def test_duckdb_thresholds_fire_exactly_once_and_warn_counts_every_call(duck: str) -> None:
    tracker = CostTracker(duck)
    call = tracked(tracker)
    alerts: list[llmcost.BudgetAlert] = []
    daily = budget(
        CALL * 200, period="daily", tracker=tracker, thresholds=[0.25, 0.5, 0.75], on_alert=alerts.append,
        on_exceed="warn",
    )  # fmt: skip
    ran, refused = calls_in_threads(call, daily, count=THREADS, calls=40)
    assert (ran, refused) == (THREADS * 40, 0)
    assert sorted(a.threshold for a in alerts) == [0.25, 0.5, 0.75, 1.0]  # (1.0: a call let through, once)
    tracker.flush()
    daily.sync(force=True)
    assert daily.spent == tracker.total() == CALL * THREADS * 40 and daily.reserved == 0
    tracker.close()


def test_duckdb_calls_that_raise_give_their_estimates_back(duck: str) -> None:
    tracker = CostTracker(duck)
    daily = raising_calls_in_threads(tracker)
    tracker.flush()
    daily.sync(force=True)
    assert daily.spent == tracker.total() == CALL * THREADS * 40 and daily.reserved == 0
    standing = tracker.store.standing(scope_at(daily, daily.period_start, daily.period_end), refresh=True)  # type: ignore[arg-type]
    assert standing.reserved == 0
    tracker.close()


def test_leases_are_of_the_expected_kinds(duck: str) -> None:
    memory, shared = CostTracker(), CostTracker(duck)
    for tracker, kind in ((memory, LocalLease), (shared, Lease)):
        b = budget(10, period="daily", tracker=tracker)
        with b:
            tracked(tracker)()
            assert type(b._lease) is kind
    memory.close()
    shared.close()


def test_refused_calls_raise_budget_exceeded() -> None:
    tracker = CostTracker()
    with budget(CALL, period="daily", tracker=tracker):
        tracked(tracker)()
        with pytest.raises(BudgetExceeded):
            tracked(tracker)()


def test_memory_a_budget_of_another_tracker_neither_checks_nor_counts_the_call() -> None:
    mine, other = CostTracker(), CostTracker()
    call = tracked(other)
    daily = budget(CALL, period="daily", tracker=mine)
    ran, refused = calls_in_threads(call, daily, count=4, calls=10)
    assert (ran, refused) == (40, 0)
    assert daily.spent == 0 and daily.reserved == 0
    assert_nothing_held(memory_ledger(mine))
    mine.close()
    other.close()


def test_memory_the_default_store_changes_while_calls_are_in_flight() -> None:
    """``configure()`` swaps the default tracker (and its store) while threads call under a budget of the default
    tracker: calls in flight give their estimates back to the ledger they reserved in, later ones reserve in the new
    store's; no ledger is left holding anything."""
    first = llmcost.configure()
    daily = budget(CALL * 10**6, period="daily")
    call = track_cost(estimate=CALL)(lambda: RESPONSE)
    trackers = [first]
    done = threading.Event()

    def work(i: int) -> None:
        if i == 0:
            for _ in range(5):
                for _ in range(100):
                    with daily:
                        call()
                trackers.append(llmcost.configure())
            done.set()
            return
        while not done.is_set():
            with daily:
                for _ in range(5):
                    call()

    try:
        run_threads(work)
        for tracker in trackers:
            if tracker.store.current_ledger() is not None:
                assert_nothing_held(memory_ledger(tracker))
        # A call that began on the old tracker but reserved in the new store's ledger (the swap came between) has
        # its entry in the old store, and counts in the new one's ledger as an entry of another store: at most one
        # such call per thread.
        extra = daily.spent - trackers[-1].total()
        assert 0 <= extra <= CALL * THREADS and extra % CALL == 0
        assert daily.reserved == 0
    finally:
        llmcost.configure()


def test_duckdb_spend_read_while_a_batch_of_the_lease_lands(duck: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``spent`` reads the ledger, then adds what the lease holds for its next batch: a batch that lands between
    the two (another thread's, as its lease runs out) moves those amounts into the ledger after it was read. The
    figure must not drop them (nor keep the budget's spend short for its thresholds)."""
    tracker = CostTracker(duck)
    call = tracked(tracker)
    daily = budget(100, period="daily", tracker=tracker)
    with daily:
        for _ in range(10):
            call()
        lease = daily._lease
        assert type(lease) is Lease and lease.pending_sum == CALL * 10
        store = tracker.store
        standing = store.standing

        def read_then_batch(scope: BudgetScope, *, refresh: bool = False) -> Any:
            answer = standing(scope, refresh=refresh)
            lease.renew(CALL)  # (the other thread's batch)
            return answer

        monkeypatch.setattr(store, "standing", read_then_batch)
        assert daily.spent == CALL * 10
        monkeypatch.undo()
        call()
        with daily._lock:
            assert daily._figures()[0] == CALL * 11  # (as the thresholds read it)
    tracker.close()


def test_a_refusal_while_a_crossing_of_100_percent_is_being_announced_says_exceeded_once() -> None:
    # Thread A's entry takes spend from 85% to the limit; as A makes its 100% alert (the tracker's clock, read for the
    # alert's time, holds A) thread B's call is refused. One "exceeded" alert must come of the two: B's refusal used to
    # find 100% marked fired but its alert not yet kept, and said "exceeded" too.
    in_alert, refused = threading.Event(), threading.Event()
    a_thread: list[threading.Thread] = []

    def clock() -> datetime:
        # (The reader is one or two frames up: a given clock is read through the tracker's UTC wrapper.)
        callers = {sys._getframe(1).f_code.co_name, sys._getframe(2).f_code.co_name}
        if a_thread and threading.current_thread() is a_thread[0] and callers & {"_alert", "_check_thresholds"}:
            in_alert.set()
            refused.wait(5)
        return datetime.now(UTC)

    tracker = CostTracker(clock=clock)
    b = budget(Decimal("1"), thresholds=[0.8, 1.0], tracker=tracker)
    call = tracked(tracker)
    with b:
        tracker.record(amount=Decimal("0.85"))

    def a() -> None:
        with b:
            tracker.record(amount=Decimal("0.15"))

    def refuse() -> None:
        in_alert.wait(5)
        with b, pytest.raises(llmcost.BudgetExceeded):
            call()
        refused.set()

    threads = [threading.Thread(target=a), threading.Thread(target=refuse)]
    a_thread.append(threads[0])
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert in_alert.is_set() and refused.is_set()
    assert [alert.threshold for alert in b.alerts] == [0.8, 1.0]
    assert [alert.level for alert in b.alerts] == ["warning", "exceeded"]
