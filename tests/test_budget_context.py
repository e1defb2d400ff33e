"""A budget's figures, and the amounts the tracker records, are exact whatever decimal context the calls run in.

Money is exact ``Decimal``: a call made inside ``decimal.localcontext()`` of a few digits (or in a thread whose
context was changed in place) must not round what a budget reserves, spends or has left, nor what its ledger keeps.
Each scenario runs the same calls twice, in the default context and in a narrow one, and compares every figure with
the exact sum of the recorded amounts."""

from __future__ import annotations

import contextlib
import decimal
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import llmcost
from llmcost import CostTracker, budget, track_cost

# Prompt sizes whose gpt-4o costs have 5 to 7 significant digits (0.0030875 for 1235 tokens): any context of fewer
# digits rounds their sums.
PROMPTS = (1235, 77, 4321, 1, 999, 12345, 3)

#: The trackers' clock: a day of their own, so a daily budget counts every call of a run (on the system clock, a run
#: across midnight UTC counted the new day's alone).
NOON = datetime(2024, 5, 17, 12, tzinfo=timezone.utc)


def response(prompt: int) -> dict[str, Any]:
    return {"object": "chat.completion", "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": prompt}}


@contextlib.contextmanager
def narrow(digits: int) -> Iterator[None]:
    with decimal.localcontext() as context:
        context.prec = digits
        yield


def narrowing_inside(digits: int) -> Callable[[], None]:
    """What a wrapped function may do: change its thread's context in place (undone by the test's ``localcontext``)."""

    def change() -> None:
        decimal.getcontext().prec = digits

    return change


#: name -> (decorator options, budget options, call kwargs): every kind of budget a call can be checked by.
SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "estimate": ({"estimate": Decimal("0.0001234")}, {}, {}),
    "recent-calls estimate": ({}, {}, {}),
    "request estimate": (
        {},
        {},
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 977}], "max_tokens": 33},
    ),
    "tag filter": ({"estimate": Decimal("0.0001234"), "tags": {"team": "a"}}, {"tags": {"team": "a"}}, {}),
    "per-model": ({"estimate": Decimal("0.0001234")}, {"model": "gpt-4o"}, {}),
    "daily": ({"estimate": Decimal("0.0001234")}, {"period": "daily"}, {}),
    "daily, recent-calls estimate": ({}, {"period": "daily"}, {}),
}


def run(
    where: str | None, decorator: dict[str, Any], limits: dict[str, Any], kwargs: dict[str, Any], digits: int | None
) -> tuple[list[tuple[Decimal, Decimal, Decimal]], Decimal, list[float]]:
    tracker = CostTracker(where, clock=lambda: NOON)
    prompts = iter(PROMPTS * 3)

    def call(**_: Any) -> dict[str, Any]:
        if digits is not None and decorator.get("tags") is None:
            narrowing_inside(digits)()  # (tag-filtered calls narrow from outside only)
        return response(next(prompts))

    fn = track_cost(tracker=tracker, **decorator)(call)
    b = budget("0.05", tracker=tracker, thresholds=[0.1, 0.5, 0.9], on_exceed="warn", **limits)
    figures = []
    with b:
        for _ in range(len(PROMPTS) * 3):
            with narrow(digits) if digits is not None else contextlib.nullcontext():
                fn(**kwargs)
            figures.append((b.spent, b.reserved, b.remaining))
    tracker.flush()
    total = tracker.total()
    alerts = [alert.threshold for alert in b.alerts]
    tracker.close()
    return figures, total, alerts


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("digits", [3, 5])
def test_a_budget_counts_exactly_in_a_narrow_decimal_context(name: str, digits: int) -> None:
    decorator, limits, kwargs = SCENARIOS[name]
    exact = run(None, decorator, limits, kwargs, None)
    assert run(None, decorator, limits, kwargs, digits) == exact
    figures, total, _ = exact
    assert figures[-1] == (total, 0, Decimal("0.05") - total)  # (the exact run is exact)
    assert len(str(total).rstrip("0")) > digits + 2  # (so a narrow context would have rounded it)


@pytest.mark.parametrize("digits", [3, 5])
def test_a_daily_budget_over_duckdb_counts_exactly_in_a_narrow_decimal_context(tmp_path: Path, digits: int) -> None:
    decorator, limits, kwargs = SCENARIOS["daily"]
    exact = run(f"duckdb://{tmp_path / 'a.duckdb'}", decorator, limits, kwargs, None)
    assert run(f"duckdb://{tmp_path / 'b.duckdb'}", decorator, limits, kwargs, digits) == exact


def test_three_nested_budgets_count_exactly_in_a_narrow_decimal_context() -> None:
    tracker = CostTracker()
    prompts = iter(PROMPTS)
    fn = track_cost(tracker=tracker, estimate=Decimal("0.0001234"))(lambda: response(next(prompts)))
    with budget(1) as outer, budget(2) as middle, budget(3) as inner:
        for _ in PROMPTS:
            with narrow(3):
                fn()
    total = tracker.total()
    assert [(b.spent, b.reserved) for b in (outer, middle, inner)] == [(total, 0)] * 3
    assert llmcost.get_tracker() is not tracker


@pytest.mark.parametrize("period", [None, "daily"])
def test_entries_recorded_by_hand_count_exactly_in_a_narrow_decimal_context(period: str | None) -> None:
    tracker = CostTracker(clock=lambda: NOON)
    amounts = [Decimal("0.001234567"), Decimal("12.5"), Decimal("0.000000000000000001")]
    with budget(100, period=period, tracker=tracker) as b:
        for amount in amounts:
            with narrow(3):
                tracker.record(amount=amount, resource="import")
    assert (b.spent, b.reserved) == (sum(amounts), 0)


def test_a_budgets_figures_read_in_a_narrow_decimal_context_are_exact() -> None:
    tracker = CostTracker()
    with budget("0.05", tracker=tracker) as b:
        tracker.record(amount=Decimal("0.001234567"), resource="import")
        with narrow(3):
            figures = (b.spent, b.reserved, b.remaining, b.utilization)
    assert figures == (Decimal("0.001234567"), 0, Decimal("0.048765433"), 0.02469134)


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_a_call_tracked_in_a_narrow_decimal_context_records_what_it_cost(where: str) -> None:
    # No budget: the pricing itself must not round to the caller's context (it recorded $0.0061 for $0.0061025).
    tracker = CostTracker()
    prompts = iter(PROMPTS)

    def call() -> dict[str, Any]:
        if where == "inside":
            narrowing_inside(2)()
        return response(next(prompts))

    fn = track_cost(tracker=tracker)(call)
    for _ in PROMPTS:
        with narrow(2):
            fn()
            assert llmcost.cost_of("gpt-4o", 1235, 0) == Decimal("0.0030875")
    assert [entry.amount for entry in tracker.entries()] == [llmcost.cost_of("gpt-4o", p, 0) for p in PROMPTS]
    assert {len(str(entry.amount).rstrip("0")) for entry in tracker.entries()} != {4}  # (2 digits would round)
