"""Between a write and its acknowledgement: a budget's reading counts every entry exactly once.

A tracker's writer appends a batch to the store and only then acknowledges it to the budget ledger, which drops the
batch's settled amounts. A reading of recorded spend that fell between the two used to count the batch's entries
twice (once in the store's total, once as settled). These tests hold that window open (the store's
``acknowledge_columns`` waits on an event, on the tracker's own writer thread, with the batch already in a real
DuckDB file or Parquet directory) and read the budget in it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmcost import BudgetExceeded, BudgetManager, CostEntry, CostTracker, Usage, track_cost
from llmcost.stores import BudgetScope, CostStore, DuckDBStore, ParquetStore

UTC = timezone.utc
CALL = Decimal("0.0025")  # 1000 input tokens of gpt-4o
NOW = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)
DAY = datetime(2024, 5, 17, tzinfo=UTC)
SCOPE = BudgetScope("window", since=DAY, until=DAY + timedelta(days=1))
WAIT = 30.0  # seconds: only a broken test waits this long


def entry(n: int) -> CostEntry:
    return CostEntry(
        id=f"{n:032x}",
        timestamp=NOW + timedelta(seconds=n),
        amount=CALL,
        category="llm_inference",
        resource="bot",
        model="gpt-4o",
    )


def open_kind(kind: str, where: Path) -> CostStore:
    return DuckDBStore(str(where / "costs.duckdb")) if kind == "duckdb" else ParquetStore(str(where / "costs"))


class Window:
    """Holds the writer of ``store`` between its append and its acknowledgement: ``written`` is set once a batch is
    in the store and its acknowledgement waits; ``go()`` lets it through. Later batches pass at once."""

    def __init__(self, store: CostStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.written = threading.Event()
        self._go = threading.Event()
        self.acknowledged = threading.Event()
        real: Callable[[Any], None] = store.acknowledge_columns

        def paused(columns: Any) -> None:
            if self.written.is_set():
                real(columns)
                return
            self.written.set()
            assert self._go.wait(WAIT)
            real(columns)
            self.acknowledged.set()

        monkeypatch.setattr(store, "acknowledge_columns", paused)

    def open(self) -> None:
        assert self.written.wait(WAIT), "the writer did not write"

    def go(self) -> None:
        self._go.set()
        assert self.acknowledged.wait(WAIT), "the writer did not acknowledge"


@pytest.fixture(params=["duckdb", "parquet"])
def tracker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CostTracker]:
    # The tracker's own writer thread writes each batch, woken as two entries make a full batch (so both are in it),
    # as it does in use; ``flush()`` writes a lone entry.
    tracker = CostTracker(open_kind(request.param, tmp_path), clock=lambda: NOW, batch_size=2, flush_interval=60.0)
    yield tracker
    tracker.close()


def test_a_reading_in_the_window_counts_each_entry_once(tracker, monkeypatch):
    store = tracker.store
    store.ledger().begin()
    first, second, third = entry(1), entry(2), entry(3)
    store.settle(SCOPE, CALL, entry_id=first.id)
    tracker.add(first)
    tracker.flush()  # written and acknowledged: recorded spend
    assert store.standing(SCOPE, refresh=True).spent == CALL

    window = Window(store, monkeypatch)
    store.settle(SCOPE, CALL, entry_id=second.id)  # settled before its write ...
    tracker.add(second)
    tracker.add(third)  # ... and one settled after it (below), before its acknowledgement
    window.open()
    try:
        # (``third`` is in the store: recorded spend, though no budget settled it yet.)
        assert store.standing(SCOPE, refresh=True).spent == 3 * CALL
        assert store.standing(SCOPE).spent == 3 * CALL  # (the spend read above, as the account keeps it)
        standing = store.settle(SCOPE, CALL, entry_id=third.id)
        assert standing.spent == 3 * CALL
        assert store.standing(SCOPE).spent == 3 * CALL
        assert store.standing(SCOPE, refresh=True).spent == 3 * CALL
    finally:
        window.go()
    assert store.standing(SCOPE).spent == 3 * CALL
    assert store.standing(SCOPE, refresh=True).spent == 3 * CALL
    assert store.total() == 3 * CALL


def test_an_acknowledgement_in_the_window_leaves_each_entry_counted_once(tracker, monkeypatch):
    # Another writer's acknowledgement in the window reads the scope's recorded spend (with the held batch in it)
    # for the account; a reservation then counts on that spend.
    store = tracker.store
    store.ledger().begin()
    first, second = entry(1), entry(2)
    store.settle(SCOPE, CALL, entry_id=first.id)
    tracker.add(first)
    tracker.flush()
    window = Window(store, monkeypatch)
    store.settle(SCOPE, CALL, entry_id=second.id)
    tracker.add(second)
    tracker.add(entry(4))  # (not settled: a full batch, so the writer writes now)
    window.open()
    try:
        with CostTracker(store, clock=lambda: NOW) as other:
            yesterday = CostEntry(
                id="f" * 32, timestamp=DAY - timedelta(hours=1), amount=CALL, category="llm_inference"
            )
            other.add(yesterday)
            other.flush()  # written and acknowledged (another period: not in the scope)
            # The limit covers exactly one more call: refused only if ``second`` counted twice.
            reservation = store.reserve(SCOPE, CALL, limit=4 * CALL)
            assert reservation.spent == 3 * CALL
            assert reservation.granted
            store.release(reservation)
    finally:
        window.go()
    assert store.standing(SCOPE).spent == 3 * CALL
    assert store.standing(SCOPE, refresh=True).spent == 3 * CALL


def caller(tracker: CostTracker) -> Callable[[], str]:
    @track_cost(tracker=tracker, model="gpt-4o", usage=lambda r: Usage(input_tokens=1000), resource="bot")
    def call() -> str:
        return "ok"

    return call


def test_manager_status_in_the_window_reports_the_spend_once(tmp_path, monkeypatch):
    # tests/test_budget.py::test_manager_budgets_persist_and_are_enforced_everywhere, with the second tracker's write
    # held between its append and its acknowledgement while the manager reports.
    url = f"duckdb://{tmp_path / 'costs.duckdb'}"
    first = CostTracker(url, clock=lambda: NOW)
    second = CostTracker(url, clock=lambda: NOW, flush_interval=60.0)  # (written below, by ``writer``)
    try:
        manager = BudgetManager(first)
        manager.create("daily-cap", CALL * 2, "daily", resource="bot")
        caller(first)()
        first.flush()
        other = BudgetManager(second)
        call = caller(second)
        call()  # (its entry waits in the buffer: the refused call below would write it first, near the limit)
        window = Window(second.store, monkeypatch)
        writer = threading.Thread(target=second.flush)
        writer.start()
        window.open()
        try:
            status = other.status()
            assert status.loc[0, "spent"] == CALL * 2
            assert other.can_spend("0.0001") is False
        finally:
            window.go()
            writer.join()
        with pytest.raises(BudgetExceeded, match="daily-cap"):
            call()
        assert other.status().loc[0, "spent"] == CALL * 2
    finally:
        first.close()
        second.close()
