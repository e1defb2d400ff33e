"""Shared fixtures: every test starts from a fresh process state."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timezone

import pytest

import llmcost
from llmcost import _state


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
