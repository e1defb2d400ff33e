"""A period budget over a ``MemoryStore`` is lent its ledger account as ints (``LocalLedger.lend``, ``LentAccount``):
its calls then reserve and settle there with no step of the ledger. These check that the loan ends, and the ledger
counts exactly as before, whenever anything but the budget's own calls happens: another writer's append, another
budget of the same scope, a reading, a period that meets the account's, a rollover; and that threads with writers
outside the budget never take it past its limit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from llmcost import BudgetExceeded, CostTracker, budget, track_cost
from llmcost.stores import BudgetScope, MemoryStore
from llmcost.stores._ledger import LocalLedger
from tests.conftest import Clock

UTC = timezone.utc
CALL = Decimal("0.0025")  # 1000 input tokens of gpt-4o
RESPONSE = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}

# Most budgets here are daily (or monthly) on the system clock (the lent account reads it as ``time_ns``), and count
# every call a test made: a test that fails in a run across midnight UTC is skipped (tests/conftest.py).
pytestmark = pytest.mark.on_system_clock("daily")


def tracked(tracker: CostTracker) -> Callable[[], Any]:
    return track_cost(tracker=tracker, estimate=CALL)(lambda: RESPONSE)  # type: ignore[no-any-return]


def lent_live(tracker: CostTracker) -> bool:
    """Whether the store's ledger has an account lent now (read without taking it back)."""
    ledger = tracker.store.ledger()
    assert isinstance(ledger, LocalLedger)
    lent = ledger._lent
    return lent is not None and lent.live


def calls_until_lent(call: Callable[[], Any], tracker: CostTracker) -> None:
    """Three calls: the second is reserved in the ledger and lends the account, the third is the loan's."""
    for _ in range(3):
        call()
    assert lent_live(tracker)


def test_calls_are_lent_the_account_and_count_exactly() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    with budget(1, period="daily", tracker=tracker) as b:
        for _ in range(3):
            call()
        assert lent_live(tracker)
        for _ in range(97):
            call()
        assert b.spent == CALL * 100 == tracker.total() and b.reserved == 0


def test_an_append_outside_the_budget_ends_the_loan_and_counts_before_the_next_check() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    other = CostTracker(store=tracker.store)  # another writer on the same store, under no budget
    with budget(1, period="daily", tracker=tracker) as b:
        for _ in range(4):
            call()
        assert lent_live(tracker)
        other.record(amount="0.989", model="gpt-4o")  # $0.999 spent: the next call's $0.0025 would pass $1
        with pytest.raises(BudgetExceeded):
            call()
        assert b.spent == Decimal("0.999") == tracker.total()
        assert b.reserved == 0


def test_calls_through_the_stores_moves_count_each_row_once_up_to_the_limit() -> None:
    # Every 256th append moves the appends into the store's columns (and takes the account back): each call's row
    # still counts once, and the limit holds exactly.
    tracker = CostTracker()
    call = tracked(tracker)
    with budget(CALL * 603, period="daily", tracker=tracker) as b:
        calls_until_lent(call, tracker)
        for _ in range(600):  # two moves and more
            call()
        with pytest.raises(BudgetExceeded):
            call()  # the limit, exactly
        assert b.spent == CALL * 603 == tracker.total() and b.reserved == 0


def test_a_move_that_finds_appends_outside_the_budget_takes_the_account_back_and_counts_each_once() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    other = track_cost(tracker=CostTracker(store=tracker.store))(lambda: RESPONSE)  # under no budget
    with budget(CALL * 700, period="daily", tracker=tracker) as b:
        calls_until_lent(call, tracker)
        for _ in range(300):  # a move among these, with the other writer's rows not counted by the loan
            other()
        for _ in range(397):
            call()
        with pytest.raises(BudgetExceeded):
            call()
        assert b.spent == CALL * 700 == tracker.total() and b.reserved == 0


@pytest.mark.parametrize("inside", [False, True], ids=["after-the-block", "in-the-block"])
def test_a_reading_finds_the_append_the_loan_has_not_counted(inside: bool) -> None:
    # A reader moves the appends into the columns too, and reads only the columns: the one append a lent account has
    # not counted yet (another writer's, or a call's after the block) must be moved and counted with the others.
    tracker = CostTracker()
    call = tracked(tracker)
    other = CostTracker(store=tracker.store)
    with budget(1, period="daily", tracker=tracker):
        calls_until_lent(call, tracker)
        call()
        if inside:
            other.record(amount="0.5", model="gpt-4o")
    if not inside:
        call()
    expected = CALL * 4 + (Decimal("0.5") if inside else CALL)
    assert tracker.store.total() == expected == sum(e.amount for e in tracker.store.entries())
    assert len(tracker.store.entries()) == len(tracker.store) == 5


def test_an_appends_move_while_the_budgets_token_is_held_takes_the_account_back_as_it_stands() -> None:
    # A signal handler's tracked call, made while its thread holds the budget's token, may be the append that moves
    # the appends: the token's holder cannot run, so the account is taken back as it stands (``_take_back`` logs it);
    # the handler's call returns, and every row counts once.
    tracker = CostTracker()
    call = tracked(tracker)
    other = track_cost(tracker=CostTracker(store=tracker.store))(lambda: RESPONSE)  # under no budget

    def cannot(baton: list[bool]) -> None:
        raise RuntimeError("held by the interrupted thread")

    with budget(100, period="daily", tracker=tracker) as b:
        calls_until_lent(call, tracker)
        ledger = tracker.store.ledger()
        assert isinstance(ledger, LocalLedger)
        lent = ledger._lent
        assert lent is not None
        lent.wait = cannot
        lent.baton.pop()  # the interrupted thread holds it
        try:
            for _ in range(256):  # a move among these
                other()
        finally:
            lent.baton.append(True)
        assert not lent.live
        assert b.spent == CALL * 259 == tracker.store.total() and len(tracker.store) == 259


def test_an_append_between_a_calls_check_and_its_row_is_counted_once() -> None:
    tracker = CostTracker()
    other = CostTracker(store=tracker.store)

    @track_cost(tracker=tracker, estimate=CALL)
    def meanwhile() -> Any:
        other.record(amount="0.5", model="gpt-4o")  # appended after this call was checked, before its row
        return RESPONSE

    call = tracked(tracker)
    with budget(1, period="daily", tracker=tracker) as b:
        for _ in range(3):
            call()
        assert lent_live(tracker)
        meanwhile()
        assert b.spent == CALL * 4 + Decimal("0.5") == tracker.total() and b.reserved == 0
        call()  # lent again (or not): counted all the same
        assert b.spent == CALL * 5 + Decimal("0.5") == tracker.total() and b.reserved == 0


def test_a_reading_mid_call_takes_the_account_back_and_the_call_settles_in_the_ledger() -> None:
    tracker = CostTracker()
    seen: list[tuple[Decimal, Decimal]] = []
    b = budget(1, period="daily", tracker=tracker)

    @track_cost(tracker=tracker, estimate=CALL)
    def reading() -> Any:
        seen.append((b.spent, b.reserved))  # a step of the ledger while this call's estimate is lent
        return RESPONSE

    call = tracked(tracker)
    with b:
        calls_until_lent(call, tracker)
        reading()
        assert not lent_live(tracker)
        assert seen == [(CALL * 3, CALL)]
        assert b.spent == CALL * 4 and b.reserved == 0


def test_a_call_that_raises_gives_its_estimate_back_to_the_lent_account() -> None:
    tracker = CostTracker()

    @track_cost(tracker=tracker, estimate=CALL)
    def failing() -> Any:
        raise RuntimeError("provider down")

    call = tracked(tracker)
    with budget(1, period="daily", tracker=tracker) as b:
        for _ in range(3):
            call()
        for _ in range(5):
            with pytest.raises(RuntimeError):
                failing()
        assert lent_live(tracker)  # (released in the loan itself)
        assert b.spent == CALL * 3 and b.reserved == 0


def test_two_budgets_of_the_same_scope_share_the_account_exactly() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    first, second = (
        budget(CALL * 10, period="daily", tracker=tracker),
        budget(CALL * 10, period="daily", tracker=tracker),
    )
    assert first.key == second.key  # one account in the ledger
    ran = 0
    with pytest.raises(BudgetExceeded):  # noqa: PT012 - calls alternate until the shared limit refuses one
        for i in range(20):
            with first if i % 2 else second:
                call()
                ran += 1
    assert ran == 10 and first.spent == second.spent == tracker.total() == CALL * 10


def test_an_account_whose_period_meets_another_is_not_lent_and_both_count() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    with budget(1, period="monthly", tracker=tracker) as monthly, budget(1, period="daily", tracker=tracker) as daily:
        for _ in range(10):
            call()
        assert not lent_live(tracker)
        assert monthly.spent == daily.spent == CALL * 10 == tracker.total()


def test_an_account_is_not_lent_while_another_budgets_account_of_a_meeting_period_counts_its_rows() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    monthly, daily = budget(1, period="monthly", tracker=tracker), budget(1, period="daily", tracker=tracker)
    with monthly:
        for _ in range(3):
            call()
    with daily:  # the calls of the daily budget alone: the monthly account, still in the ledger, counts them too
        for _ in range(10):
            call()
        assert not lent_live(tracker)
    with monthly:
        assert monthly.spent == CALL * 13 == tracker.total()


def test_after_midnight_the_new_days_account_is_lent_beside_yesterdays() -> None:
    clock = Clock(datetime(2024, 5, 17, 23, 59, 50, tzinfo=UTC))
    tracker = CostTracker(clock=clock)
    call = tracked(tracker)
    with budget(CALL * 5, period="daily", tracker=tracker) as b:
        for _ in range(5):
            call()
        with pytest.raises(BudgetExceeded):
            call()
        clock.now += timedelta(seconds=20)  # the next day: its own $0.0125
        for _ in range(5):
            call()
        assert lent_live(tracker)  # yesterday's account, kept for late calls, meets no row of today's
        with pytest.raises(BudgetExceeded):
            call()
        assert b.spent == CALL * 5
    assert tracker.total() == CALL * 10


def test_the_first_call_after_midnight_is_checked_against_the_new_day_not_the_lent_account() -> None:
    clock = Clock(datetime(2024, 5, 17, 23, 59, 0, tzinfo=UTC))
    tracker = CostTracker(clock=clock)
    call = tracked(tracker)
    with budget(1, period="daily", tracker=tracker) as b:
        # Tomorrow's spend, recorded ahead (an import, a clock elsewhere): tomorrow has $0.001 left.
        tracker.record(amount="0.999", model="gpt-4o", timestamp=datetime(2024, 5, 18, 0, 0, 5, tzinfo=UTC))
        for _ in range(20):
            call()
        assert lent_live(tracker)  # today's account, with room for hundreds of calls
        clock.now = datetime(2024, 5, 18, 0, 0, 10, tzinfo=UTC)
        with pytest.raises(BudgetExceeded):
            call()
        assert b.spent == Decimal("0.999")


def test_a_call_checked_before_midnight_and_recorded_after_counts_in_the_new_day() -> None:
    clock = Clock(datetime(2024, 5, 17, 23, 59, 59, tzinfo=UTC))
    tracker = CostTracker(clock=clock)
    b = budget(1, period="daily", tracker=tracker)

    @track_cost(tracker=tracker, estimate=CALL)
    def across() -> Any:
        clock.now = datetime(2024, 5, 18, 0, 0, 1, tzinfo=UTC)
        return RESPONSE

    call = tracked(tracker)
    with b:
        calls_until_lent(call, tracker)
        across()
        assert b.spent == CALL and b.reserved == 0  # today's: the call's row, and no estimate left anywhere
        yesterday = BudgetScope(b.key, since=datetime(2024, 5, 17, tzinfo=UTC), until=datetime(2024, 5, 18, tzinfo=UTC))
        standing = tracker.store.standing(yesterday)
        assert standing.spent == CALL * 3 and standing.reserved == 0


def test_threads_with_a_writer_outside_fill_the_limit_exactly() -> None:
    """Six threads call under one daily budget while another writer records outside it on the same store: every
    append counts once (the budget's spend is the store's total, nothing stays reserved), and once the writer is
    done the calls fill the limit to the last call that fits."""
    filled = 0
    for _ in range(3):
        tracker = CostTracker()
        call = tracked(tracker)
        other = CostTracker(store=tracker.store)
        limit = Decimal(5)
        daily = budget(limit, period="daily", tracker=tracker)
        written = threading.Event()
        first_refusal_after_writing: list[bool] = []

        def work(
            daily: Any = daily, call: Callable[[], Any] = call, written: threading.Event = written,
            first: list[bool] = first_refusal_after_writing,
        ) -> None:  # fmt: skip
            refusals = 0
            with daily:
                while refusals < 3:
                    try:
                        call()
                    except BudgetExceeded:
                        if not first:
                            first.append(written.is_set())
                        refusals += written.is_set()

        def writer(other: CostTracker = other, written: threading.Event = written) -> None:
            for _ in range(200):
                other.record(amount="0.001", model="gpt-4o")
            written.set()

        threads = [threading.Thread(target=writer)] + [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = tracker.total()
        with daily:
            assert daily.spent == total and daily.reserved == 0
        calls = (total - Decimal("0.2")) / CALL
        assert calls == int(calls)  # every call's row counted once, and the writer's 200
        if first_refusal_after_writing[0]:  # (the writer was done before the budget filled: the usual run)
            assert limit - CALL < total <= limit
            filled += 1
    assert filled


def test_the_ledger_takes_an_account_back_from_a_holder_that_cannot_run(caplog: pytest.LogCaptureFixture) -> None:
    ledger = MemoryStore().ledger()
    assert isinstance(ledger, LocalLedger)
    scope = BudgetScope("b")
    account = ledger.open_kept(scope)

    def cannot(baton: list[bool]) -> None:
        raise RuntimeError("held by the interrupted thread")

    lent = ledger.lend(account, tracker=None, owner=None, baton=[True], wait=cannot)
    assert lent is not None
    lent.committed += 10**15
    lent.baton.pop()  # held, as by a thread a signal handler interrupted
    with caplog.at_level(logging.WARNING, logger="llmcost"):
        assert ledger.standing(scope).reserved == Decimal("0.001")
    assert "taken back while it was being changed" in caplog.text
    assert not lent.live and lent.baton == []  # (its holder gives the token back as it resumes)


def test_an_estimate_finer_than_the_loans_units_leaves_nothing_reserved() -> None:
    tracker = CostTracker()
    fine = Decimal("0.0025000000000000000001")  # finer than 10**-18 USD: the loan holds it rounded
    call = track_cost(tracker=tracker, estimate=fine)(lambda: RESPONSE)
    reading = budget(1, period="daily", tracker=tracker)
    with reading:
        for i in range(40):
            call()
            if i % 7 == 0:
                assert reading.reserved == 0  # (a reading ends the loan: each estimate goes back as it came)
        assert reading.spent == CALL * 40 and reading.reserved == 0


def test_calls_after_the_trackers_store_is_replaced_are_checked_against_the_new_store() -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    new = MemoryStore()
    CostTracker(store=new).record(amount="0.95", model="gpt-4o")  # the new store: $0.95 of today's $1 spent
    with budget(1, period="daily", tracker=tracker) as b:
        calls_until_lent(call, tracker)
        tracker.store = new  # the calls' rows go to the new store from here on, never to the lent account
        granted = 0
        for _ in range(100):
            try:
                call()
                granted += 1
            except BudgetExceeded:
                pass
        assert granted == 20  # $0.05 of room at $0.0025 a call
        assert new.total() == Decimal("1") == b.spent and b.remaining == 0 and b.reserved == 0


def test_a_limit_lowered_as_the_account_is_lent_holds_from_the_next_call(monkeypatch: pytest.MonkeyPatch) -> None:
    tracker = CostTracker()
    call = tracked(tracker)
    b = budget(1, period="daily", tracker=tracker)
    lend = LocalLedger.lend

    def lend_as_the_limit_drops(ledger: LocalLedger, *args: Any, **kwargs: Any) -> Any:
        lent = lend(ledger, *args, **kwargs)
        # (As another thread may, between the budget asking for the loan and keeping it.)
        b.limit = Decimal("0.01")
        return lent

    monkeypatch.setattr(LocalLedger, "lend", lend_as_the_limit_drops)
    with b:
        calls_until_lent(call, tracker)  # the second call is lent the account as the limit drops to $0.01
        call()  # $0.01 spent
        with pytest.raises(BudgetExceeded):
            call()
        assert b.spent == Decimal("0.01") == tracker.total() and b.reserved == 0
