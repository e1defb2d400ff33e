"""A block budget's figures change under its baton (``_budget._Baton``: a one-item list taken with ``pop`` and given
back with ``append``), not its lock. Threads that find it taken wait for it: the figures stay exact under heavy
contention (reservations, settlements, releases and refusals at once), thresholds fire once each and in order, and a
forked child whose parent's other thread held the baton finds it free, or the budget's lock."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmcost import BudgetExceeded, CostTracker, _budget, budget, track_cost
from tests.conftest import in_threads_beside
from tests.test_forked_children import _run

CALL = Decimal("0.0025")  # 1000 input tokens of gpt-4o


def response(prompt: int = 1000) -> dict[str, Any]:
    return {"object": "chat.completion", "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": prompt}}


@pytest.fixture
def contended(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Threads switch every microsecond; yields the count of waits for the baton."""
    waits = [0]
    wait = _budget._wait_baton

    def counted(baton: Any) -> None:
        waits[0] += 1
        wait(baton)

    monkeypatch.setattr(_budget, "_wait_baton", counted)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield waits
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.parametrize("nested", [False, True])
def test_figures_stay_exact_while_threads_contend_for_the_baton(contended: list[int], nested: bool) -> None:
    tracker = CostTracker()
    fixed = track_cost(tracker=tracker, estimate=CALL)(lambda: response())  # costs its estimate exactly
    cheaper = track_cost(tracker=tracker, estimate=CALL)(lambda: response(prompt=400))  # under its estimate

    @track_cost(tracker=tracker, estimate=CALL)
    def failing() -> None:
        raise RuntimeError("the call failed")  # its reservation released (``after_call``)

    tagged = track_cost(tracker=tracker, estimate=CALL, tags={"team": "search"})(lambda: response())
    limit = CALL * 200  # (each thread's calls would cost 36 estimates: some are refused)
    b = budget(limit, thresholds=(0.25, 0.5, 0.75, 1.0))
    inner = budget(limit * 2, tags={"team": "search"}) if nested else None
    refused: list[int] = []
    failed: list[int] = []

    def work() -> None:
        with b:
            for i in range(60):
                try:
                    if i % 4 == 1:
                        with pytest.raises(RuntimeError):
                            failing()
                        failed.append(1)
                    elif i % 4 == 2:
                        cheaper()
                    elif i % 4 == 3 and inner is not None:
                        with inner:
                            tagged()
                    else:
                        fixed()
                except BudgetExceeded:
                    refused.append(1)

    def hold(stop: threading.Event) -> None:
        # Beside the calls, a thread that takes the baton now and then and holds it a moment: the calls find it taken.
        baton = b._baton
        while not stop.is_set():
            try:
                baton.pop()
            except IndexError:
                continue
            time.sleep(0.0002)
            baton.append(True)
            time.sleep(0.0002)

    in_threads_beside(hold, work)
    amounts = [e.amount for e in tracker.entries()]
    assert b.spent == sum(amounts, Decimal(0)) and b.reserved == 0 and b.remaining == limit - b.spent
    # Every call that ran fitted its estimate: at most the limit spent, and refusals only once it was nearly reached
    # (what the eight threads had in flight, or gave back, aside).
    assert limit - 9 * CALL < b.spent <= limit and refused
    assert len(amounts) + len(failed) + len(refused) == 8 * 60  # every call ran (or failed) or was refused, once
    assert [a.threshold for a in b.alerts if a.threshold < 1] == [0.25, 0.5, 0.75]  # each once, in order
    assert b.alerts[3].threshold == 1.0 and {a.level for a in b.alerts[3:]} == {"exceeded"}
    if inner is not None:
        assert inner.spent == sum((e.amount for e in tracker.entries() if e.tags.get("team")), Decimal(0))
        assert inner.reserved == 0
    assert contended[0] > 0  # (the baton was found taken, and waited for)


def test_a_call_waits_while_another_thread_holds_the_baton(tracker: CostTracker) -> None:
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: response())
    with budget(1) as b:
        baton = b._baton
        baton.pop()  # another thread changing the figures
        done = threading.Event()

        def run() -> None:
            with b:
                call()
            done.set()

        thread = threading.Thread(target=run)
        thread.start()
        assert not done.wait(0.2)  # the call waits for the baton
        assert b.reserved == 0
        baton.append(True)
        thread.join(10)
        assert done.is_set() and b.spent == CALL and b.reserved == 0 and len(baton) == 1


def test_a_forked_child_finds_the_baton_free_though_a_parent_thread_held_it(tmp_path: Path) -> None:
    proc = _run(
        """
        import signal
        import llmcost
        from llmcost import budget, track_cost

        memory = CostTracker("memory://")
        call = track_cost(tracker=memory, estimate=llmcost.cost_of("gpt-4o", 1000, 0))(
            lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
        )
        block = budget(1000, tracker=memory)
        with block:
            call()
            block._baton.pop()  # as a parent thread counting a call would hold it at the fork
            pid = os.fork()
            if pid == 0:
                signal.alarm(30)  # the baton still taken: killed by SIGALRM rather than hanging the test
                call()
                print("child", block.spent, block.reserved, flush=True)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            print("child status", os.waitstatus_to_exitcode(status))
            block._baton.append(True)
            call()
            print("parent", block.spent, block.reserved)
        """,
        f"duckdb://{tmp_path}/costs.duckdb",
    )
    assert proc.returncode == 0, proc.stderr
    assert "child status 0" in proc.stdout, proc.stdout + proc.stderr
    assert "child 0.005 0" in proc.stdout, proc.stdout
    assert "parent 0.005 0" in proc.stdout, proc.stdout


def test_a_baton_never_given_back_lets_the_call_through_after_a_while(
    tracker: CostTracker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As for a signal handler making a tracked call while its own thread held the baton: waiting would never end.
    monkeypatch.setattr(_budget, "_BATON_PATIENCE", 0.05)
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: response())
    with budget(1) as b:
        b._baton.pop()
        assert call() == response()  # not held up for good: let through, unchecked
        b._baton.append(True)
        call()
    assert "stayed taken" in caplog.text
    assert len(tracker.entries()) == 2 and b.spent == CALL  # (the first call's count gave up too, logged)


@pytest.mark.on_system_clock("daily")  # (the child's daily budget leases on the system clock: tests/conftest.py)
def test_a_forked_child_finds_the_budgets_lock_free_though_a_parent_thread_held_it(
    tmp_path: Path,
) -> None:
    proc = _run(
        """
        import signal
        from decimal import Decimal
        from llmcost import budget, track_cost

        call = track_cost(tracker=tracker, estimate=Decimal("0.0025"), tags={"team": "search"})(
            lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
        )
        daily = budget(1000, period="daily", tracker=tracker, tags={"team": "search"})
        held, let_go = threading.Event(), threading.Event()

        def hold():
            with daily._lock:  # as a parent thread settling a batch would hold it at the fork
                held.set()
                let_go.wait(30)

        with daily:
            call()
            holder = threading.Thread(target=hold)
            holder.start()
            held.wait(10)
            pid = os.fork()
            if pid == 0:
                signal.alarm(30)  # the lock still held: killed by SIGALRM rather than hanging the test
                call()  # (served from a lease of its own, under the budget's lock)
                print("child called", daily.spent > 0, flush=True)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            print("child status", os.waitstatus_to_exitcode(status))
            let_go.set()
            holder.join()
            call()
        tracker.flush()
        print("parent", daily.spent)  # (its reserved holds the child's lease until it lapses)
        """,
        f"duckdb://{tmp_path}/costs.duckdb",
    )
    assert proc.returncode == 0, proc.stderr
    assert "child status 0" in proc.stdout, proc.stdout + proc.stderr
    assert "child called True" in proc.stdout, proc.stdout
    assert "parent 0.0050" in proc.stdout, proc.stdout
