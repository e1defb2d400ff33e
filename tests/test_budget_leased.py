"""Period budgets over a shared ledger (a DuckDB store's) serve the usual call from their lease in one step before it
(``Budget._take_leased``) and settle its entry with its token in one step after (``Budget.settle_recorded``): no
exact reservation, no settling context, no ``after_call``.

These check that the usual call takes that path, and that every amount still counts exactly once, in its own period,
with the filters, thresholds and threads, when the call leaves it (another period, another tag, a closed lease)."""

from __future__ import annotations

import contextvars
import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

import llmcost
from llmcost import BudgetExceeded, CostTracker, budget, track_cost
from llmcost import _budget as budget_module
from llmcost import _tracker as tracker_module
from llmcost.stores import BudgetScope
from llmcost.stores._lease import Lease
from tests.conftest import Clock, calls_in_threads, in_threads

UTC = timezone.utc
CALL = Decimal("0.0025")  # 1000 input tokens of gpt-4o
RESPONSE = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
TEAM = {"team": "search"}

# The budgets of the tests on ``duck`` alone are daily on the system clock (the lease's own: ``Lease.period_due``),
# and count every call a test made: a test that fails in a run across midnight UTC is skipped (tests/conftest.py).
pytestmark = pytest.mark.on_system_clock("daily")


@pytest.fixture
def duck(tmp_path: Path) -> str:
    return f"duckdb://{tmp_path / 'costs.duckdb'}"


def tracked(tracker: CostTracker, **options: Any) -> Any:
    return track_cost(tracker=tracker, estimate=CALL, **options)(lambda: RESPONSE)


#: A tracker over the test's DuckDB store, and how the test sets the time of its calls.
Timed = tuple[CostTracker, Callable[[datetime], None]]


@pytest.fixture(params=["tracker clock", "system clock"])
def timed(request: pytest.FixtureRequest, duck: str) -> Iterator[Timed]:
    """A tracker with a clock of its own (each call's period checked against it), or on the system clock (the default:
    the lease checks the period against it once per batch, ``Lease.period_due``) frozen by freezegun."""
    start = datetime(2024, 5, 17, 12, tzinfo=UTC)
    if request.param == "tracker clock":
        clock = Clock(start)
        tracker = CostTracker(duck, clock=clock)

        def at(when: datetime) -> None:
            clock.now = when

        yield tracker, at
        tracker.close()
        return
    with freeze_time(start) as frozen:
        tracker = CostTracker(duck)
        yield tracker, frozen.move_to
        tracker.close()


def scope_of(b: llmcost.Budget) -> BudgetScope:
    return BudgetScope(b.key, since=b.period_start, until=b.period_end, tags=b.tags or None)


def team_daily(duck: str) -> tuple[CostTracker, Callable[[], Any], llmcost.Budget]:
    """A tracker over ``duck``, a call of the team, and the team's daily budget, far from its limit."""
    tracker = CostTracker(duck)
    return tracker, tracked(tracker, tags=TEAM), budget(10**6, period="daily", tracker=tracker, tags=TEAM)


def assert_ledger_settled(tracker: CostTracker, b: llmcost.Budget, spent: Decimal) -> None:
    """Once the tracker's entries are written, the ledger holds ``spent`` for ``b``'s scope and nothing reserved:
    every amount settled once, neither lost nor counted twice."""
    tracker.flush()
    standing = tracker.store.standing(scope_of(b), refresh=True)
    assert (standing.spent, standing.reserved) == (spent, 0)


class Spies:
    """How often the slower steps ran: exact reservations, ``after_call``, the settling context."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reserve = self.after = self.settling = 0
        reserve, after = budget_module.Budget._reserve, budget_module.Budget.after_call
        settling = tracker_module.begin_settling

        def counted_reserve(b: Any, needed: Decimal) -> Any:
            self.reserve += 1
            return reserve(b, needed)

        def counted_after(b: Any, token: object, entry: Any) -> None:
            self.after += 1
            after(b, token, entry)

        def counted_settling(reservations: Any) -> Any:
            self.settling += 1
            return settling(reservations)

        monkeypatch.setattr(budget_module.Budget, "_reserve", counted_reserve)
        monkeypatch.setattr(budget_module.Budget, "after_call", counted_after)
        monkeypatch.setattr(tracker_module, "begin_settling", counted_settling)


def test_the_usual_call_is_served_from_the_lease_and_settled_with_its_entry_in_one_step(
    duck: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker, call, daily = team_daily(duck)
    with daily:
        call()  # leases
        assert type(daily._lease) is Lease and daily._lease.live
        spies = Spies(monkeypatch)
        for _ in range(200):
            call()
        # ``_reserve`` only as the lease runs out (64 calls, then twice as many as they come fast): it renews there.
        assert spies.reserve <= 3 and (spies.after, spies.settling) == (0, 0)
        assert daily.spent == CALL * 201 and daily.reserved == 0
        lease = daily._lease
        assert lease is not None and lease.local() + lease.standing.spent == CALL * 201
    tracker.flush()
    standing = tracker.store.standing(scope_of(daily), refresh=True)
    assert (standing.spent, standing.reserved) == (CALL * 201, 0)  # settled once: neither lost nor counted twice
    assert daily.spent == CALL * 201
    assert len(tracker.entries()) == 201
    tracker.close()


def test_repr_shows_the_spend_the_lease_settled_in_memory(duck: str) -> None:
    tracker = CostTracker(duck)
    call = tracked(tracker)
    daily = budget(10**6, period="daily", tracker=tracker, name="ops")
    with daily:
        for _ in range(10):
            call()  # the first leases; the others are settled in the lease's figures alone
        assert daily.spent == CALL * 10  # (as the lease counts it: in 10**-18 USD, so without trailing zeros)
        assert repr(daily) == "Budget(name='ops', limit=1000000, period='daily', spent=0.025)"
    tracker.close()


def test_calls_of_another_tag_are_neither_checked_nor_counted_and_the_lease_keeps_serving(duck: str) -> None:
    tracker = CostTracker(duck)
    ours, theirs = tracked(tracker, tags=TEAM), tracked(tracker, tags={"team": "ads"})
    daily = budget(10**6, period="daily", tracker=tracker, tags=TEAM)
    with daily:
        for _ in range(20):
            ours()
            theirs()
            with llmcost.tags(env="prod"):
                ours()  # other tags around the call: matched again as it is recorded, and counted
    tracker.flush()
    assert daily.spent == CALL * 40
    standing = tracker.store.standing(scope_of(daily), refresh=True)
    assert (standing.spent, standing.reserved) == (CALL * 40, 0)
    tracker.close()


def test_a_call_that_crosses_midnight_counts_in_the_new_day_and_gives_its_estimate_back(duck: str) -> None:
    clock = Clock(datetime(2024, 5, 17, 23, 59, 59, tzinfo=UTC))
    tracker = CostTracker(duck, clock=clock)

    @track_cost(tracker=tracker, estimate=CALL, tags=TEAM)
    def across_midnight() -> Any:
        clock.now = datetime(2024, 5, 18, 0, 0, 1, tzinfo=UTC)
        return RESPONSE

    call = tracked(tracker, tags=TEAM)
    alerts: list[llmcost.BudgetAlert] = []
    with budget(CALL * 1000, period="daily", tracker=tracker, tags=TEAM, on_alert=alerts.append) as b:
        yesterday = scope_of(b)
        for _ in range(10):
            call()
        old = b._lease
        assert type(old) is Lease  # served from the lease until midnight
        across_midnight()  # reserved from yesterday's lease, recorded today: not settled there
        assert b._lease is not old and old.local() == 0  # the day changed as it was counted: yesterday's settled
        today = scope_of(b)
        assert today.since == datetime(2024, 5, 18, tzinfo=UTC)
        assert b.spent == CALL and b.reserved == 0  # the new day's
        for _ in range(5):
            call()
        assert b.spent == CALL * 6
    tracker.flush()
    old, new = tracker.store.standing(yesterday, refresh=True), tracker.store.standing(today, refresh=True)
    assert (old.spent, old.reserved) == (CALL * 10, 0)
    assert (new.spent, new.reserved) == (CALL * 6, 0)
    assert alerts == []
    tracker.close()


def test_the_lease_serves_no_call_of_the_next_period(timed: Timed) -> None:
    tracker, at = timed
    at(datetime(2024, 5, 17, 23, 59, 59, tzinfo=UTC))
    call = tracked(tracker, tags=TEAM)
    with budget(CALL * 1000, period="daily", tracker=tracker, tags=TEAM) as b:
        for _ in range(10):
            call()
        yesterday, lease = scope_of(b), b._lease
        assert type(lease) is Lease and lease.live
        at(datetime(2024, 5, 18, 0, 0, 1, tzinfo=UTC))  # the lease is still live, but of yesterday
        call()
        assert b.period_start == datetime(2024, 5, 18, tzinfo=UTC)
        assert b._lease is not lease and b.spent == CALL
    tracker.flush()
    old, new = tracker.store.standing(yesterday, refresh=True), tracker.store.standing(scope_of(b), refresh=True)
    assert (old.spent, old.reserved) == (CALL * 10, 0)
    assert (new.spent, new.reserved) == (CALL, 0)


def test_thresholds_fire_on_calls_settled_from_the_lease(duck: str) -> None:
    tracker = CostTracker(duck)
    call = tracked(tracker, tags=TEAM)
    alerts: list[llmcost.BudgetAlert] = []
    # Room for 1,000 calls: a lease of 64 is far from the limit, and 0.5 is crossed at the 500th call.
    with budget(CALL * 1000, period="daily", tracker=tracker, tags=TEAM, on_alert=alerts.append) as b:
        for _ in range(499):
            call()
        assert alerts == [] and type(b._lease) is Lease
        call()
        assert [a.threshold for a in alerts] == [0.5]
        assert alerts[0].spent == CALL * 500
    tracker.close()


def test_threads_served_from_a_lease_stay_within_the_limit_exactly(duck: str) -> None:
    tracker = CostTracker(duck)
    call = tracked(tracker, tags=TEAM)
    daily = budget(CALL * 100, period="daily", tracker=tracker, tags=TEAM)
    passed, refused = calls_in_threads(call, daily)
    assert passed == 100 and refused == 220
    tracker.flush()
    assert daily.spent == CALL * 100 and daily.reserved == 0
    standing = tracker.store.standing(scope_of(daily), refresh=True)
    assert (standing.spent, standing.reserved) == (CALL * 100, 0)
    with pytest.raises(BudgetExceeded), daily:
        call()
    tracker.close()


def test_a_lease_serves_no_call_of_the_next_period_even_with_room_left(timed: Timed) -> None:
    tracker, at = timed
    at(datetime(2024, 5, 18, 0, 0, 5, tzinfo=UTC))
    tracker.record(amount=CALL * 1000, tags=TEAM)  # the next day is spent already
    at(datetime(2024, 5, 17, 23, 59, 59, tzinfo=UTC))
    call = tracked(tracker, tags=TEAM)
    with budget(CALL * 1000, period="daily", tracker=tracker, tags=TEAM) as b:
        for _ in range(10):
            call()
        lease = b._lease
        assert type(lease) is Lease and lease.live and lease.unused() > CALL
        at(datetime(2024, 5, 18, 0, 0, 6, tzinfo=UTC))
        with pytest.raises(BudgetExceeded):
            call()  # checked against the new day, not yesterday's lease


def test_a_lease_serves_no_call_a_moment_past_the_end_of_its_period(timed: Timed) -> None:
    # (The system clock's bound is found as the lease is renewed, a moment before its period ends: it is the end of the
    # period, not the renewal's second later.)
    tracker, at = timed
    at(datetime(2024, 5, 18, 0, 0, 5, tzinfo=UTC))
    tracker.record(amount=CALL * 1000, tags=TEAM)  # the next day is spent already
    call = tracked(tracker, tags=TEAM)
    at(datetime(2024, 5, 17, 23, 59, 59, 999_000, tzinfo=UTC))
    with budget(CALL * 1000, period="daily", tracker=tracker, tags=TEAM) as b:
        for _ in range(10):
            call()
        lease = b._lease
        assert type(lease) is Lease and lease.live and lease.unused() > CALL
        at(datetime(2024, 5, 18, 0, 0, 0, 1, tzinfo=UTC))
        with pytest.raises(BudgetExceeded):
            call()  # checked against the new day
        assert b._lease is not lease and b.spent == CALL * 1000 and b.reserved == 0
        assert lease.local() == 0 and not lease.holding()  # yesterday's settled and released
    tracker.flush()
    assert tracker.store.standing(scope_of(b), refresh=True).spent == CALL * 1000


def test_the_usual_call_on_the_system_clock_reads_no_clock_before_it(
    duck: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = CostTracker(duck)  # the system clock
    call = tracked(tracker, tags=TEAM)
    read = []
    now_micros = CostTracker.now_micros

    def counted(t: CostTracker) -> int:
        read.append(1)
        return now_micros(t)

    monkeypatch.setattr(CostTracker, "now_micros", counted)
    with budget(10**6, period="daily", tracker=tracker, tags=TEAM) as b:
        call()  # leases
        read.clear()
        for _ in range(50):
            call()
        assert read == [] and b.spent == CALL * 51 and b.reserved == 0
    tracker.close()


VARYING = [{"model": "gpt-4o", "usage": {"prompt_tokens": 1000 + 400 * i, "completion_tokens": 0}} for i in range(5)]


def test_threads_calls_of_varying_cost_count_alike_on_either_clock(timed: Timed) -> None:
    # Estimates low and high (an estimate of one call of 1,000 tokens, calls of 1,000 to 2,600): the same figures,
    # alerts and refusals whether the tracker's clock or the lease's check of the system clock decides the period.
    tracker, at = timed
    at(datetime(2024, 5, 17, 12, tzinfo=UTC))
    n = iter(range(10**6))
    call = track_cost(tracker=tracker, estimate=CALL, tags=TEAM)(lambda: VARYING[next(n) % 5])
    alerts: list[llmcost.BudgetAlert] = []
    daily = budget(CALL * 600, period="daily", tracker=tracker, tags=TEAM, on_alert=alerts.append)
    ran, refused = calls_in_threads(call, daily, count=8, calls=40)
    assert (ran, refused) == (320, 0)
    tracker.flush()
    total = tracker.total()
    assert total == sum(CALL * (1 + Decimal("0.4") * (i % 5)) for i in range(320))
    assert (daily.spent, daily.reserved, daily.remaining) == (total, 0, CALL * 600 - total)
    assert sorted(a.threshold for a in alerts) == [0.5, 0.8, 0.9]
    standing = tracker.store.standing(scope_of(daily), refresh=True)
    assert (standing.spent, standing.reserved) == (total, 0)
    raising = budget(CALL * 100, period="daily", tracker=tracker, tags=TEAM, name="tight")
    ran, refused = calls_in_threads(tracked(tracker, tags=TEAM), raising, count=8, calls=40)
    assert (ran, refused) == (0, 320)  # the day is over 100 calls already


def test_threads_across_rollovers_on_either_clock(timed: Timed) -> None:
    tracker, at = timed
    start = datetime(2024, 5, 17, 10, tzinfo=UTC)
    at(start)
    call = tracked(tracker, tags=TEAM)
    hourly = budget(CALL * 10**6, period="hourly", tracker=tracker, tags=TEAM)
    hours = 3

    order = itertools.count()

    def work() -> None:
        i = next(order)
        # Thread 0 moves the time an hour on every 60 calls; the others call meanwhile, in blocks of 7.
        if i == 0:
            for h in range(1, hours):
                for _ in range(60):
                    with hourly:
                        call()
                at(start + timedelta(hours=h))
            return
        for _ in range(12):
            with hourly:
                for _ in range(7):
                    call()

    in_threads(work)
    tracker.flush()
    for h in range(hours):
        since = start + timedelta(hours=h)
        scope = BudgetScope(hourly.key, since=since, until=since + timedelta(hours=1), tags=hourly.tags)
        standing = tracker.store.standing(scope, refresh=True)
        assert standing.reserved == 0, h
        assert standing.spent == tracker.total(since=since, until=since + timedelta(hours=1)), h
    assert tracker.total() == CALL * (60 * (hours - 1) + 7 * 12 * 7)
    hourly.sync(force=True)
    last = start + timedelta(hours=hours - 1)
    assert hourly.spent == tracker.total(since=last, until=last + timedelta(hours=1)) and hourly.reserved == 0


def test_an_entry_of_another_model_than_a_per_model_budget_checked_for_is_not_counted(duck: str) -> None:
    tracker = CostTracker(duck)
    call = tracked(tracker, tags=TEAM)  # its model is known only from the response (gpt-4o)
    mini = budget(CALL * 1000, period="daily", tracker=tracker, tags=TEAM, model="gpt-4o-mini")
    four = budget(CALL * 1000, period="daily", tracker=tracker, tags=TEAM, model="gpt-4o")
    with mini, four:
        for _ in range(100):
            call()
        assert type(mini._lease) is Lease and type(four._lease) is Lease
        assert mini.spent == 0 and mini.reserved == 0
        assert four.spent == CALL * 100 and four.reserved == 0
    tracker.close()


def test_a_threshold_crossed_after_a_new_reading_of_the_ledger_fires_at_once(duck: str) -> None:
    # Another process's spend, learned as ``spent`` reads the ledger (the lease's view follows the reading, with no
    # batch), takes the next call settled in memory over a threshold: it fires at that call.
    tracker, other = CostTracker(duck), CostTracker(duck)
    call = tracked(tracker, tags=TEAM)
    alerts: list[llmcost.BudgetAlert] = []
    with budget(CALL * 1000, period="daily", tracker=tracker, tags=TEAM, thresholds=[0.5], on_alert=alerts.append) as b:
        for _ in range(10):
            call()
        lease = b._lease
        assert type(lease) is Lease and lease.live
        batch = lease.standing
        other.record(amount=CALL * 489, tags=TEAM)
        other.flush()
        b.sync(force=True)
        assert b.spent == CALL * 499 and b.reserved == 0 and alerts == []
        assert b._lease is lease and lease.standing is batch  # (no batch since)
        call()
        assert [a.threshold for a in alerts] == [0.5] and alerts[0].spent == CALL * 500
        assert (b.spent, b.reserved, b.remaining) == (CALL * 500, 0, CALL * 500)
    tracker.close()
    other.close()


def test_figures_read_while_threads_call_stay_exact(duck: str) -> None:
    # Readers of ``spent`` and ``remaining`` (each a new reading of the ledger, which the lease's view follows) while
    # threads' calls are served and settled in memory: every threshold fires once, at its crossing or later, and the
    # figures end exact.
    tracker = CostTracker(duck)
    n = iter(range(10**6))
    call = track_cost(tracker=tracker, estimate=CALL, tags=TEAM)(lambda: VARYING[next(n) % 5])
    alerts: list[llmcost.BudgetAlert] = []
    limit = CALL * 700
    daily = budget(
        limit, period="daily", tracker=tracker, tags=TEAM, thresholds=[0.25, 0.5, 0.75], on_alert=alerts.append
    )
    order = itertools.count()
    readings: list[Decimal] = []

    def work() -> None:
        if next(order) == 0:
            for _ in range(60):
                readings.append(daily.spent)
                assert daily.remaining <= limit - readings[-1]
            return
        with daily:
            for _ in range(46):
                call()

    in_threads(work)
    tracker.flush()
    total = tracker.total()
    assert total == sum(CALL * (1 + Decimal("0.4") * (i % 5)) for i in range(7 * 46))
    assert (daily.spent, daily.reserved, daily.remaining) == (total, 0, limit - total)
    assert sorted(a.threshold for a in alerts) == [0.25, 0.5, 0.75]
    assert all(a.spent >= limit * Decimal(repr(a.threshold)) for a in alerts)
    assert all(r <= total for r in readings)
    tracker.close()


def test_a_call_is_served_from_the_lease_only_with_room_whatever_its_estimate(duck: str) -> None:
    """``_take_leased`` (``Lease.take`` inline) serves a call as ``Lease.take`` does: an estimate that fits, and a zero
    estimate only while the lease has room."""
    tracker = CostTracker(duck)
    b = budget(10, period="daily", tracker=tracker)
    with b:
        tracked(tracker)()
        lease = b._lease
        assert type(lease) is Lease
        token = b._take_leased(lease, Decimal("0.0025"), None)
        assert token is not None and b.reserved == CALL
        b.after_call(token, None)
        with b._lock:
            free, lease.free = lease.free, 0  # no room
        assert b._take_leased(lease, CALL, None) is None and b._take_leased(lease, Decimal(0), None) is None
        with b._lock:
            lease.free = free
        token = b._take_leased(lease, Decimal(0), None)  # room: a zero estimate is served
        assert token is not None and b.reserved == 0
        b.after_call(token, None)
        assert (b.spent, b.reserved) == (CALL, 0)
    assert (b.spent, b.reserved) == (CALL, 0)
    tracker.close()


def test_a_lease_counts_amounts_at_money_last_place_exactly(duck: str) -> None:
    """A lease keeps its figures as ints of 10**-18 USD and the ledger's as Decimals: the budget's spend, the two
    added, is exact with calls whose amounts use all 18 places (in a caller's narrow decimal context too), and each
    call's estimate is given back as it was taken: nothing is left reserved."""
    import decimal

    # $123.456789012345678901 per million input tokens: one token costs 0.000123456789012346 (18 places).
    llmcost.register_price(
        llmcost.ModelPrice("acme-odd", "acme", input_per_mtok="123.456789012345678901", output_per_mtok="1")
    )
    one = Decimal("0.000123456789012346")
    tracker = CostTracker(duck)
    call = track_cost(tracker=tracker, estimate="0.0001")(lambda: {"model": "acme-odd", "usage": {"prompt_tokens": 1}})
    daily = budget(10**6, period="daily", tracker=tracker)
    with daily:
        call()  # the first call leases
        lease = daily._lease
        assert type(lease) is Lease
        with decimal.localcontext() as narrow:
            narrow.prec = 6  # (a caller's context: the lease's figures are ints, and stay exact)
            for _ in range(999):
                call()
        assert tracker.entries(limit=1)[0].amount == one
        assert daily.spent == one * 1000
        assert daily.reserved == 0
        assert type(lease.free) is int and type(lease.settled) is int and lease.settled > 0
    tracker.flush()
    assert tracker.total() == one * 1000
    tracker.close()


def test_a_budget_failing_to_settle_the_usual_call_logs_it_and_gives_its_estimate_back(
    duck: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The tracker offers the call's token to its one budget with the entry; a failure there is logged, the entry is
    # kept, and the estimate the call took from the lease goes back to it (the user's call returns as usual).
    tracker, call, daily = team_daily(duck)
    with daily:
        call()  # leases
        assert daily.reserved == 0

        def broken(*args: Any) -> bool:
            raise RuntimeError("settling broke")

        monkeypatch.setattr(budget_module.Budget, "settle_recorded", broken)
        with caplog.at_level("DEBUG", logger="llmcost"):
            assert call() is RESPONSE
        assert "failed to count entry" in caplog.text and "settling broke" in caplog.text
        assert daily.reserved == 0  # (the estimate given back: nothing held for a call that is over)
        monkeypatch.undo()
        call()
    tracker.flush()
    assert len(tracker.entries()) == 3
    assert daily.reserved == 0 and daily.spent == CALL * 3  # (the entry not settled there counts from the store)
    tracker.close()


@pytest.mark.parametrize("side", ["taking from the lease", "settling with it"])
def test_a_call_waits_for_the_holder_of_the_budgets_lock_and_then_counts_exactly(duck: str, side: str) -> None:
    # The usual call takes from the lease and settles with it under the budget's lock: a thread holding it (a batch, a
    # new reading of the ledger) makes the call wait, on either side, and nothing is counted twice or lost.
    tracker = CostTracker(duck)
    inside, go_on = threading.Event(), threading.Event()

    def body() -> dict[str, Any]:
        inside.set()
        assert go_on.wait(10)
        return RESPONSE

    slow = track_cost(tracker=tracker, estimate=CALL, tags=TEAM)(body)
    daily = budget(10**6, period="daily", tracker=tracker, tags=TEAM)
    with daily:
        tracked(tracker, tags=TEAM)()  # leases
        done = threading.Event()

        def run() -> None:
            slow()
            done.set()

        thread = threading.Thread(target=contextvars.copy_context().run, args=(run,))  # (inside the budget's block)
        lock = daily._lock
        if side == "taking from the lease":
            go_on.set()
            lock.acquire()
            thread.start()
            assert not done.wait(0.3) and not inside.is_set()  # waits before the call, for the lock
        else:
            thread.start()
            assert inside.wait(10)  # taken from the lease
            lock.acquire()
            go_on.set()
            assert not done.wait(0.3)  # waits after the call, for the lock
        lock.release()
        thread.join(10)
        assert done.is_set()
        assert daily.spent == CALL * 2 and daily.reserved == 0
    assert_ledger_settled(tracker, daily, CALL * 2)
    tracker.close()


def test_calls_that_narrow_the_decimal_context_as_they_run_still_count_exactly(duck: str) -> None:
    # A call's function may narrow its thread's context for good (``getcontext().prec = 6``): its entry is then
    # settled in that context, in integer steps on the usual path, and through the ledger's batches (which count in
    # ``Decimal``s: in a wide context of their own) as the lease runs out, thresholds and all.
    import decimal

    llmcost.register_price(
        llmcost.ModelPrice("acme-odd", "acme", input_per_mtok="123.456789012345678901", output_per_mtok="1")
    )
    one = Decimal("0.000123456789012346")  # (an amount of 18 places: see above)

    def narrowing() -> dict[str, Any]:
        decimal.getcontext().prec = 6
        return {"model": "acme-odd", "usage": {"prompt_tokens": 1}}

    tracker = CostTracker(duck)
    call = track_cost(tracker=tracker, estimate="0.0001")(narrowing)
    alerts: list[llmcost.BudgetAlert] = []
    daily = budget(one * 1200, period="daily", tracker=tracker, thresholds=[0.5, 0.8], on_alert=alerts.append)
    saved = decimal.getcontext().prec
    try:
        with daily:
            for _ in range(1000):
                decimal.getcontext().prec = saved  # (each call begins in a wide context, and ends in a narrow one)
                call()
            decimal.getcontext().prec = saved
            lease = daily._lease
            assert type(lease) is Lease and lease.standing.spent > 0  # (batches were settled)
            # The lease's bases, as its last batch set them from the ledger's standing: exact, not rounded to 6 digits.
            assert lease.base_total == lease.standing.spent + lease.standing.reserved
            assert daily.spent == one * 1000 and daily.reserved == 0
    finally:
        decimal.getcontext().prec = saved
    assert [a.threshold for a in alerts] == [0.5, 0.8]
    assert [a.spent for a in alerts] == [one * 600, one * 960]  # (each at its crossing: the lease is sized near it)
    assert_ledger_settled(tracker, daily, one * 1000)
    assert tracker.total() == one * 1000
    tracker.close()


def test_nested_budgets_settle_the_call_served_from_the_lease_in_memory(
    duck: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under a block budget and a daily one, the daily budget's token is found with the call's other tokens as its
    # entry is counted (``begin_settling``), and settled in the lease: no transaction of the ledger per call.
    tracker, call, daily = team_daily(duck)
    block = budget(10**6)
    settles = []
    settle = type(tracker.store).settle

    def counted_settle(store: Any, *args: Any, **kwargs: Any) -> Any:
        settles.append(args)
        return settle(store, *args, **kwargs)

    with block, daily:
        call()  # leases
        monkeypatch.setattr(type(tracker.store), "settle", counted_settle)
        for _ in range(200):
            call()
        assert settles == []
        assert (daily.spent, daily.reserved) == (CALL * 201, 0)
        assert (block.spent, block.reserved) == (CALL * 201, 0)
    assert_ledger_settled(tracker, daily, CALL * 201)
    tracker.close()


def test_a_limit_lowered_while_a_call_is_reserved_exactly_leaves_nothing_reserved(
    duck: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Near the limit a call is reserved exactly in the ledger; another thread lowering the limit just as the ledger
    # grants it must not make the budget refuse the call it was granted (whose reservation nothing would release).
    tracker = CostTracker(duck)
    call = tracked(tracker)
    daily = budget(CALL * 4, period="daily", tracker=tracker)
    store_type = type(tracker.store)
    reserve = store_type.reserve

    def lowered_meanwhile(store: Any, *args: Any, **kwargs: Any) -> Any:
        granted = reserve(store, *args, **kwargs)
        other = threading.Thread(target=setattr, args=(daily, "limit", CALL * Decimal("0.8")))
        other.start()
        other.join()
        return granted

    monkeypatch.setattr(store_type, "reserve", lowered_meanwhile)
    with daily:
        call()  # granted under the limit it was reserved under
        monkeypatch.undo()
        assert daily.reserved == 0
        with pytest.raises(BudgetExceeded):
            call()  # the lowered limit holds from the next call
    assert_ledger_settled(tracker, daily, CALL)
    assert daily.spent == CALL and daily.reserved == 0
    tracker.close()
