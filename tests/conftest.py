"""Shared fixtures: every test starts from a fresh process state."""

from __future__ import annotations

from collections.abc import Iterator
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
