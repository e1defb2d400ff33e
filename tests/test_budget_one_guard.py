"""A tracked call under one budget alone keeps its reservation as ``(guard, token)`` values, not a list of pairs, and
the tracker settles the token as it counts the row (``Budget.settle_row``). Each test checks that path against the
general one (the same budget without ``settle_row``, so its ``GuardSet`` is not of a ``ONE_*`` kind): the same
spent, reserved, remaining, alerts, refusals and entries, also from many threads; and that a failure inside the
count neither breaks the call nor loses the entry nor settles the reservation twice."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

import llmcost
from llmcost import BudgetExceeded, CostTracker, budget, track_cost
from llmcost._budget import Budget
from llmcost._context import ONE_FILTERED, ONE_UNFILTERED, GuardSet, active_guards
from tests.conftest import in_threads

CALL = Decimal("0.0025")  # 1000 input tokens of gpt-4o


def response(model: str = "gpt-4o", prompt: int = 1000) -> dict[str, Any]:
    return {"object": "chat.completion", "model": model, "choices": [], "usage": {"prompt_tokens": prompt}}


@contextlib.contextmanager
def general_path(general: bool) -> Iterator[None]:
    """With ``general``, budgets made meanwhile have no ``settle_row``: a call under one of them alone takes the list
    of pairs, as under several."""
    if not general:
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.delattr(Budget, "settle_row")
        yield


#: name -> (decorator options, budget options, the calls: (response, call kwargs, tags)).
SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any], list[tuple[dict[str, Any], dict[str, Any], str]]]] = {
    "estimate": ({"estimate": CALL}, {}, [(response(), {}, "search")] * 14),
    "estimate-varying": (
        {"estimate": CALL},
        {},
        [(response(prompt=p), {}, "search") for p in (1000, 300, 2500, 7, 1000, 4000, 900, 1200, 5000, 10, 3000)],
    ),
    "tags": (
        {"estimate": CALL},
        {"tags": {"team": "search"}},
        [(response(), {}, team) for team in ["search", "other", "search", "search", "other"] * 4],
    ),
    "model": (
        {"estimate": CALL},
        {"model": "gpt-4o"},
        [(response(m), {"model": m}, "search") for m in ["gpt-4o", "gpt-4o-mini", "gpt-4o", "gpt-4o-2024-08-06"] * 4],
    ),
    "request": (
        {},
        {},
        [
            (response(prompt=p), {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * p}]}, "search")
            for p in (1000, 4000, 200, 3000, 1000, 2000) * 2
        ],
    ),
    "recent": ({}, {}, [(response(prompt=p), {}, "search") for p in (1000, 2000, 3000, 500) * 4]),
    "tags-recent": (
        {},
        {"tags": {"team": "search"}},
        [(response(prompt=p), {}, team) for p, team in [(1000, "search"), (2000, "other"), (3000, "search")] * 5],
    ),
    "daily": ({"estimate": CALL}, {"period": "daily"}, [(response(prompt=p), {}, "search") for p in (1000, 2000)] * 6),
    "callable-estimate": ({"estimate": lambda **kwargs: CALL}, {}, [(response(), {}, "search")] * 14),
}


def figures(name: str, general: bool, clock: Any, warn: bool = False) -> tuple[Any, ...]:
    options, budget_options, calls = SCENARIOS[name]
    tracker = CostTracker(clock=clock)
    items = iter(calls)
    current: dict[str, Any] = {}

    @track_cost(tracker=tracker, tags=lambda **kwargs: {"team": current["team"]}, **options)
    def call(**kwargs: Any) -> dict[str, Any]:
        return current["response"]

    if "period" in budget_options:
        budget_options = {**budget_options, "tracker": tracker}
    refused = 0
    with general_path(general):
        b = budget(CALL * 10, on_exceed="warn" if warn else "raise", **budget_options)
        with b:
            kind = type(active_guards())
            for result, kwargs, team in items:
                current.update(response=result, team=team)
                try:
                    call(**kwargs)
                except BudgetExceeded:
                    refused += 1
    assert (kind in (ONE_UNFILTERED, ONE_FILTERED)) is not general
    entries = sorted((e.amount, e.model, e.tags.get("team")) for e in tracker.entries())
    alerts = [(a.threshold, a.level, a.spent) for a in b.alerts]
    return b.spent, b.reserved, b.remaining, alerts, refused, entries


@pytest.mark.parametrize("warn", [False, True])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_one_budget_gives_the_figures_of_the_general_path(name: str, warn: bool, clock) -> None:
    fast = figures(name, False, clock, warn)
    assert fast == figures(name, True, clock, warn)
    assert fast[1] == 0  # nothing left reserved


@pytest.mark.parametrize("name", ["estimate", "tags", "model", "daily"])
def test_one_budget_from_many_threads_gives_the_figures_of_the_general_path(name: str, clock) -> None:
    def run(general: bool) -> tuple[Any, ...]:
        options, budget_options, calls = SCENARIOS[name]
        tracker = CostTracker(clock=clock)
        if "period" in budget_options:
            budget_options = {**budget_options, "tracker": tracker}
        refused: list[int] = []
        lock = threading.Lock()
        team = threading.local()

        @track_cost(tracker=tracker, tags=lambda **kwargs: {"team": team.name}, **options)
        def call(**kwargs: Any) -> dict[str, Any]:
            return response(kwargs.get("model", "gpt-4o"))  # each call costs its estimate: the count is exact

        b = budget(CALL * 40, **budget_options)

        def work() -> None:
            with b:
                assert (type(active_guards()) in (ONE_UNFILTERED, ONE_FILTERED)) is not general
                for _, kwargs, name_ in calls * 3:
                    team.name = name_
                    try:
                        call(**kwargs)
                    except BudgetExceeded:
                        with lock:
                            refused.append(1)

        with general_path(general):  # (the kind of guard set is found as each thread enters the budget)
            in_threads(work)
        matched = [e for e in tracker.entries() if e.model != "gpt-4o-mini" and e.tags.get("team") == "search"]
        # (Which alert comes first, a refusal's or a threshold's, depends on how the threads interleave.)
        return b.spent, b.reserved, len(matched), len(refused), sorted({a.threshold for a in b.alerts})

    fast = run(False)
    assert fast == run(True)
    assert fast[0] == CALL * 40 and fast[1] == 0 and fast[2] == 40


def test_a_failing_count_never_breaks_the_call_nor_loses_the_entry_nor_settles_twice(tracker, monkeypatch) -> None:
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: response(prompt=400))  # costs less than its estimate

    def broken(self: Budget) -> None:
        raise RuntimeError("broken thresholds")

    with budget(1, thresholds=[0.000001]) as b:
        monkeypatch.setattr(Budget, "check_thresholds", broken)  # raises after the row is counted
        assert call() == response(prompt=400)
        assert call() == response(prompt=400)
        monkeypatch.undo()
        assert b.spent == CALL * Decimal("0.8") and b.reserved == 0  # settled once each, not released again
    assert len(tracker.entries()) == 2


def test_a_period_count_failing_before_it_settles_releases_the_reservation(clock, monkeypatch) -> None:
    tracker = CostTracker(clock=clock)
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: response())

    def broken(self: Budget, *args: Any) -> None:
        raise RuntimeError("broken budget")

    with budget(1, period="daily", tracker=tracker) as b:
        monkeypatch.setattr(Budget, "_gave_back", broken)
        assert call() == response()
        monkeypatch.undo()
        assert b.reserved == 0 and b.spent == CALL  # released once; the row counted by the store's ledger
    assert len(tracker.entries()) == 1


def test_a_block_count_failing_before_it_settles_releases_the_reservation(tracker, monkeypatch) -> None:
    # Checked as an inference (no category= given), its response an embedding's: the budget matches its row again
    # (the general count), which fails here.
    embedding = {
        "object": "list",
        "model": "text-embedding-3-small",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
        "usage": {"prompt_tokens": 1_000_000, "total_tokens": 1_000_000},
    }
    embed = track_cost(tracker=tracker, estimate=CALL)(lambda: embedding)

    def broken(self: Budget, *args: Any) -> None:
        raise RuntimeError("broken budget")

    with budget(1, tags={"team": "search"}) as b, llmcost.tags(team="search"):
        assert type(active_guards()) is ONE_FILTERED
        monkeypatch.setattr(Budget, "on_recorded_row", broken)
        assert embed() == embedding
        monkeypatch.undo()
        assert b.reserved == 0 and b.spent == 0  # released once, not counted
        embed()
        [first, second] = tracker.entries()
        assert b.reserved == 0 and b.spent == second.amount > 0  # (the general count, unbroken)
    assert first.amount == second.amount


def test_a_failing_record_releases_the_one_reservation(tracker, monkeypatch) -> None:
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: response())

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("store down")

    with budget(1) as b:
        monkeypatch.setattr(tracker.store, "append_row", broken)
        assert call() == response()
        monkeypatch.undo()
        assert b.reserved == 0 and b.spent == 0


def test_nested_budgets_take_the_general_path_and_count_each_call_once_in_each(tracker) -> None:
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: response())
    with budget(1) as outer, budget(1, tags={"team": "search"}) as tagged, budget(CALL * 3) as inner:
        assert type(active_guards()) not in (ONE_UNFILTERED, ONE_FILTERED)
        with llmcost.tags(team="search"):
            for _ in range(3):
                call()
        with pytest.raises(BudgetExceeded):
            call()
    assert outer.spent == tagged.spent == inner.spent == CALL * 3
    assert outer.reserved == tagged.reserved == inner.reserved == 0


def test_a_stream_a_generator_and_a_failing_call_under_one_budget(tracker) -> None:
    @track_cost(tracker=tracker, estimate=CALL)
    def chunks() -> Iterator[dict[str, Any]]:
        yield response()

    @track_cost(tracker=tracker, estimate=CALL)
    def boom() -> None:
        raise ValueError("x")

    @track_cost(tracker=tracker, estimate=CALL, model="gpt-4o", usage=lambda result: llmcost.Usage(input_tokens=1000))
    def with_usage() -> str:
        return "anything"

    with budget(1) as b:
        assert list(chunks()) == [response()]
        with pytest.raises(ValueError, match="x"):
            boom()
        assert with_usage() == "anything"
        assert b.spent == CALL * 2 and b.reserved == 0


def test_async_calls_under_one_budget_count_as_sync_ones(tracker) -> None:
    @track_cost(tracker=tracker, estimate=CALL)
    async def call() -> dict[str, Any]:
        return response()

    async def main() -> None:
        with budget(CALL * 3) as b:
            await asyncio.gather(*(call() for _ in range(3)))
            with pytest.raises(BudgetExceeded):
                await call()
        assert b.spent == CALL * 3 and b.reserved == 0

    asyncio.run(main())


def test_a_guard_set_of_one_budget_is_of_a_one_kind_and_pickles_to_its_kind() -> None:
    import copy

    plain, tagged = budget(1), budget(1, tags={"team": "x"})
    assert type(GuardSet((plain,))) is ONE_UNFILTERED and type(GuardSet((tagged,))) is ONE_FILTERED
    assert type(GuardSet((plain, tagged))) not in (ONE_UNFILTERED, ONE_FILTERED)
    assert type(copy.copy(GuardSet((plain,)))) is ONE_UNFILTERED


def test_a_guard_without_settle_row_keeps_the_general_path(tracker) -> None:
    call: Callable[[], Any] = track_cost(tracker=tracker, estimate=CALL)(lambda: response())
    with general_path(True), budget(1) as b:
        assert type(active_guards()) not in (ONE_UNFILTERED, ONE_FILTERED)
        call()
    assert b.spent == CALL and b.reserved == 0


def test_a_guard_that_does_not_say_whether_it_is_context_free_keeps_the_general_path(tracker) -> None:
    # The one-guard path reads ``Guard.context_free``: a guard (another implementation) without it is left out of
    # the ``ONE_*`` kinds, not failed on every call.
    call: Callable[[], Any] = track_cost(tracker=tracker, estimate=CALL)(lambda: response())
    b = budget(1)
    del b.context_free
    with b:
        assert type(active_guards()) not in (ONE_UNFILTERED, ONE_FILTERED)
        call()
    assert b.spent == CALL and b.reserved == 0
