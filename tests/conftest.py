"""Shared fixtures: every test starts from a fresh process state."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timezone

import pytest

import llmcost
from llmcost import _state
from llmcost._periods import period_bounds


@pytest.fixture(autouse=True)
def _fresh_llmcost(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    for name in ("LLMCOST_STORE", "LLMCOST_DAILY_LIMIT", "LLMCOST_MONTHLY_LIMIT", "LLMCOST_TOTAL_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    # Stores spill and set entries aside under $XDG_STATE_HOME when their own directory cannot take them: never in
    # the real home directory from a test (child processes inherit this too).
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
    _state.reset()
    yield
    _state.reset()


class Clock:
    """A settable clock for ``CostTracker(clock=...)``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2024, 5, 17, 12, 0, tzinfo=timezone.utc))


@pytest.fixture
def tracker(clock: Clock) -> Iterator[llmcost.CostTracker]:
    with llmcost.CostTracker(clock=clock) as t:
        yield t


class Periods:
    """Whether a test that runs on the system clock stayed in one budget period (``same_period`` fixture).

    A period budget on the system clock counts the entries of the current period only: a test that runs across a
    boundary (midnight UTC for a daily budget, the top of the hour for an hourly one) made some of its entries in
    the last period, and its budget does not count them (CI failed so at 00:01 UTC). Such a test asserts what counts
    every entry it made only while ``same_period()`` holds, and else what still holds of each period."""

    def __init__(self) -> None:
        self.started = datetime.now(timezone.utc)  # (before the test's first entry)

    def __call__(self, period: str = "daily") -> bool:
        """Whether no boundary of ``period`` (cut in UTC) has passed since the test began."""
        return period_bounds(period, datetime.now(timezone.utc))[0] <= self.started

    def parts(self, period: str = "daily") -> list[dict[str, datetime]]:
        """The ``since``/``until`` filters of the test's time in each ``period``: ``[{}]`` (everything, as before)
        while ``same_period(period)``, else one for each period from the one the test began in to the current one."""
        if self(period):
            return [{}]
        cuts: list[datetime] = []
        end = period_bounds(period, self.started)[1]
        while end is not None and end <= datetime.now(timezone.utc):
            cuts.append(end)
            end = period_bounds(period, end)[1]
        between = ({"since": since, "until": until} for since, until in itertools.pairwise(cuts))
        return [{"until": cuts[0]}, *between, {"since": cuts[-1]}]


@pytest.fixture
def same_period() -> Periods:
    """``same_period()``: whether no midnight UTC (or boundary of the period given) has passed since the test began;
    see ``Periods``."""
    return Periods()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "on_system_clock(*periods): the test's budgets of these periods (daily if none is named) run on the system "
        "clock; should it fail in a run across one of their boundaries, it is skipped, not failed",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """``on_system_clock``: a test whose period budgets run on the system clock and count every entry it made, as if
    each of its assertions were under ``if same_period():``. A failure in a run across a boundary of those periods
    (midnight UTC, for a daily budget) is a skip saying so; nothing changes for a run within one period, nor for a
    test that passes across a boundary."""
    marker = item.get_closest_marker("on_system_clock")
    if marker is None:
        return (yield)
    periods = Periods()
    try:
        return (yield)
    except (Exception, pytest.fail.Exception):
        crossed = [period for period in marker.args or ("daily",) if not periods(period)]
        if crossed:
            reason = f"ran into a new {crossed[0]} period on the system clock: its budgets counted that one alone"
            raise pytest.skip.Exception(reason) from None
        raise


def answer_of_forked_child(work: Callable[[], object]) -> object:
    """What ``work()`` returns (made JSON and back) in a child forked now, which must exit cleanly."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read)
            os.write(write, json.dumps(work()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = json.loads(pipe.read())
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    return answer


def in_threads(work: Callable[[], object], count: int = 8) -> None:
    """Run ``work`` in ``count`` threads at once, and wait for them all."""
    threads = [threading.Thread(target=work) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def in_threads_beside(beside: Callable[[threading.Event], object], work: Callable[[], object], count: int = 8) -> None:
    """Run ``work`` in ``count`` threads while one more runs ``beside(stop)``; ``stop`` is set once they all end,
    and ``beside`` is waited for."""
    stop = threading.Event()
    thread = threading.Thread(target=beside, args=(stop,))
    thread.start()
    try:
        in_threads(work, count)
    finally:
        stop.set()
        thread.join()


def calls_in_threads(
    call: Callable[[], object], *inside: AbstractContextManager[object], count: int = 8, calls: int = 40
) -> tuple[int, int]:
    """``calls`` calls of ``call`` in each of ``count`` threads at once, each thread within the ``inside`` context
    managers (budgets, entered there): how many calls ran and how many a budget refused."""
    ran, refused = [], []

    def work() -> None:
        with contextlib.ExitStack() as stack:
            for manager in inside:
                stack.enter_context(manager)
            for _ in range(calls):
                try:
                    call()
                except llmcost.BudgetExceeded:
                    refused.append(1)
                else:
                    ran.append(1)

    in_threads(work, count)
    return len(ran), len(refused)
