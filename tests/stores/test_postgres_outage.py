"""Period budgets over a PostgresStore while its server is down: the ledger (the database itself) cannot be reached,
so each process checks calls against the figures it last saw plus what its own calls took since, and settles those
calls in the ledger once the server answers again, each once. Real servers of the tests' own, stopped and started."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import llmcost
from llmcost import BudgetExceeded, CostTracker, PostgresStore

from .test_postgres import _ctl, own_server  # noqa: F401 - a fixture, used by name

COST = llmcost.cost_of("gpt-4o", input_tokens=1000)  # $0.0025 a call, estimated exactly
_GPT_4O = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}  # what each call returns

# The budgets of the tests without a ``Clock`` are daily on the system clock, and count every call a test made (the
# server stopped and started again takes seconds): a test that fails in a run across midnight UTC is skipped
# (tests/conftest.py).
pytestmark = pytest.mark.on_system_clock("daily")


@contextlib.contextmanager
def _server_down(ctl: str) -> Iterator[None]:
    """The test's own server stopped for the block, then started again."""
    _ctl(ctl, "stop", "-m", "fast", "-w", "-t", "60")
    try:
        yield
    finally:
        _ctl(ctl, "start", "-w", "-t", "60")


def _making(call: Callable[[], object]) -> Callable[[int], int]:
    """A function making ``n`` calls of ``call`` and returning how many a budget let through."""

    def make(n: int) -> int:
        made = 0
        for _ in range(n):
            try:
                call()
                made += 1
            except BudgetExceeded:
                pass
        return made

    return make


@pytest.fixture
def calls(own_server: tuple[str, str], tmp_path: Path) -> Iterator[tuple[CostTracker, Callable[[int], int], str]]:  # noqa: F811
    """A tracker over a fresh server of its own, a function making ``n`` tracked calls (returning how many were
    made), and the server's ``pg_ctl``."""
    dsn, ctl = own_server
    tracker = CostTracker(PostgresStore(dsn, spill_dir=str(tmp_path / "spill"), retry_timeout=1))
    call = llmcost.track_cost(tracker=tracker, resource="worker", estimate=COST)(
        lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
    )

    yield tracker, _making(call), ctl
    tracker.close()


def _stored_total(tracker: CostTracker) -> Decimal:
    tracker.flush()
    return tracker.store.total()


def test_a_budget_spent_before_the_server_went_down_refuses_every_call_while_it_is(calls, caplog) -> None:
    # It used to let every call through ("budget check failed, call let through"): 20 of 20, 30 recorded for 10.
    tracker, make, ctl = calls
    with llmcost.budget(COST * 10, period="daily", tracker=tracker) as daily:
        assert make(15) == 10
        with _server_down(ctl), caplog.at_level(logging.WARNING, logger="llmcost"):
            assert make(20) == 0
        assert "cannot reach its ledger" in caplog.text
        assert make(5) == 0
        assert daily.spent == COST * 10
    assert _stored_total(tracker) == COST * 10


def test_room_left_when_the_server_went_down_is_used_once_and_counted_when_it_is_back(calls) -> None:
    tracker, make, ctl = calls
    with llmcost.budget(COST * 10, period="daily", tracker=tracker) as daily:
        assert make(3) == 3
        with _server_down(ctl):
            assert make(20) == 7  # the room the budget last saw, used by this process's calls, no more
        # Back: the calls made meanwhile are settled in the ledger (each once, whether their spilled entries are
        # written yet or not), so the budget stays shut.
        assert make(10) == 0
        assert daily.spent == COST * 10 and daily.remaining == 0
    assert _stored_total(tracker) == COST * 10


def test_on_exceed_warn_lets_calls_through_while_the_server_is_down_and_says_so(calls) -> None:
    tracker, make, ctl = calls
    alerts: list[llmcost.BudgetAlert] = []
    with llmcost.budget(COST * 2, period="daily", tracker=tracker, on_exceed="warn", on_alert=alerts.append):
        assert make(2) == 2
        with _server_down(ctl):
            assert make(3) == 3
    assert any(a.threshold == 1.0 for a in alerts)
    assert _stored_total(tracker) == COST * 5


def test_a_period_that_begins_while_the_server_is_down_starts_at_zero(own_server, tmp_path: Path) -> None:  # noqa: F811
    # Yesterday's spend used to be taken for today's while the ledger could not say: 1 call of 5 ran (let through by
    # an error), the rest refused as "spent $0.025 of $0.025", and yesterday's alerts fired again.
    from datetime import datetime, timedelta, timezone

    from tests.conftest import Clock

    dsn, ctl = own_server
    clock = Clock(datetime(2024, 5, 17, 23, 0, tzinfo=timezone.utc))
    tracker = CostTracker(PostgresStore(dsn, spill_dir=str(tmp_path / "spill"), retry_timeout=1), clock=clock)
    call = llmcost.track_cost(tracker=tracker, estimate=COST)(
        lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
    )
    alerts: list[llmcost.BudgetAlert] = []
    try:
        with llmcost.budget(COST * 5, period="daily", tracker=tracker, on_alert=alerts.append):
            for _ in range(5):
                call()
            with pytest.raises(BudgetExceeded):
                call()
            fired = len(alerts)
            with _server_down(ctl):
                clock.now += timedelta(hours=2)  # 2024-05-18 01:00: a new day
                for _ in range(5):
                    call()  # none refused: the new day has its limit whole
                with pytest.raises(BudgetExceeded):
                    call()  # and no more than that
        # Today's thresholds, once each, as today's spend grew while the server was down (not yesterday's figures).
        assert [a.threshold for a in alerts[fired:]] == [0.5, 0.8, 0.9, 1.0]
        assert alerts[fired].spent == COST * 3  # (0.5 of 5 calls: passed at the third)
    finally:
        tracker.close()


def test_calls_of_another_tracker_are_counted_while_the_server_is_down(own_server, tmp_path: Path) -> None:  # noqa: F811
    # A budget on the default tracker (over PostgreSQL) around calls tracked into a MemoryStore: their amounts were
    # settled in the ledger, which failed, and were counted nowhere: 20 of 20 ran, then 5 of 5 after.
    dsn, ctl = own_server
    llmcost.configure(PostgresStore(dsn, spill_dir=str(tmp_path / "spill"), retry_timeout=1))
    elsewhere = CostTracker()
    call = llmcost.track_cost(tracker=elsewhere, estimate=COST)(
        lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
    )

    make = _making(call)
    with llmcost.budget(COST * 10, period="daily"):
        assert make(3) == 3
        with _server_down(ctl):
            assert make(20) == 7
        assert make(5) == 0
    assert elsewhere.total() == COST * 10


def test_a_reservation_released_while_the_server_is_down_is_released_when_it_is_back(
    own_server,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Else this process's heartbeat renewed it with the others, and its headroom stayed taken while the process ran.
    from llmcost import StoreError
    from llmcost.stores import BudgetScope

    dsn, ctl = own_server
    store = PostgresStore(dsn, spill_dir=str(tmp_path / "spill"), retry_timeout=1)
    scope = BudgetScope("held", since=None, until=None)
    try:
        held = store.reserve(scope, Decimal("0.6"), limit=Decimal("1"))
        assert held.granted and store.standing(scope).reserved == Decimal("0.6")
        with _server_down(ctl), pytest.raises(StoreError):
            store.release(held)
        assert store.standing(scope).reserved == Decimal("0.6")  # not yet: the next heartbeat releases it
        store.ledger().beat()
        assert store.standing(scope).reserved == 0
    finally:
        store.close()


def test_a_lease_released_while_the_server_is_down_is_released_when_it_is_back(
    own_server,  # noqa: F811
    tmp_path: Path,
) -> None:
    # A lease's release is its batch (``settle_batch`` with no renewal): if that failed, the heartbeat renewed the
    # lease with this process's other reservations for as long as the process ran (docs/budgets.md: never renewed).
    from llmcost import StoreError
    from llmcost.stores import BudgetScope
    from llmcost.stores._ledger import LeaseTerms

    dsn, ctl = own_server
    store = PostgresStore(dsn, spill_dir=str(tmp_path / "spill"), retry_timeout=1)
    scope = BudgetScope("leased", since=None, until=None)
    try:
        terms = LeaseTerms(Decimal("0.5"), Decimal("0.01"))
        lease = store.settle_batch(scope, {}, reservation=None, keep=Decimal(0), renew=terms, limit=Decimal(10))
        assert lease.reservation is not None and store.standing(scope).reserved == Decimal("0.5")
        with _server_down(ctl), pytest.raises(StoreError):
            store.settle_batch(scope, {}, reservation=lease.reservation, keep=Decimal(0), renew=None, limit=Decimal(10))
        store.ledger().beat()
        assert store.standing(scope).reserved == 0
    finally:
        store.close()


def test_a_call_reserved_before_the_outage_and_settled_during_it_counts_once(calls) -> None:
    # Its estimate stayed in the figures last seen while its amount was counted too: the 10th call of 10 was refused
    # as "spent $0.0250 of $0.0250" with 9 spent.
    tracker, make, ctl = calls
    stopping = llmcost.track_cost(tracker=tracker, estimate=COST)(
        lambda: (_ctl(ctl, "stop", "-m", "fast", "-w", "-t", "60"), _GPT_4O)[1]
    )
    with llmcost.budget(COST * 10, period="daily", tracker=tracker) as daily:
        assert make(8) == 8
        try:
            stopping()  # the 9th: reserved with the server up, settled with it down
            assert daily.spent == COST * 9 and daily.remaining == COST  # readable while it is down
            assert make(3) == 1
        finally:
            _ctl(ctl, "start", "-w", "-t", "60")
        assert make(2) == 0
        assert daily.spent == COST * 10
    assert _stored_total(tracker) == COST * 10


def test_amounts_counted_while_down_are_sent_once_after_the_block_ended_and_by_threads(own_server, tmp_path) -> None:  # noqa: F811
    # Amounts of another tracker's calls (no entry id) were sent only by a later reservation, never if the block ended
    # first, and several threads reserving as the server came back each sent them: counted 2 to 3 times.
    import threading

    dsn, ctl = own_server
    llmcost.configure(PostgresStore(dsn, spill_dir=str(tmp_path / "spill"), retry_timeout=1))
    elsewhere = CostTracker()
    make = _making(llmcost.track_cost(tracker=elsewhere, estimate=COST)(lambda: _GPT_4O))
    daily = llmcost.budget(COST * 20, period="daily")
    with daily:
        assert make(3) == 3
    with _server_down(ctl):
        with daily:
            assert make(4) == 4
        assert daily.spent == COST * 7  # the block ended while the server was down: nothing could be sent
    assert daily.spent == COST * 7  # a reading sends them, once

    def one_call() -> None:
        with daily:
            assert make(1) == 1

    threads = [threading.Thread(target=one_call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    daily.sync(force=True)
    assert daily.spent == COST * 11 == elsewhere.total()
