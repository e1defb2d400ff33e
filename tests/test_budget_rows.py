"""Block budgets on the tracker's row path: a tracked call under unfiltered block budgets is recorded as a row (no
``CostEntry`` built), counted by each budget from its fields, and its reservation settled in the same step. Each test
checks that path against the entry path (forced by a ``cost.recorded`` subscriber) or against exact sums."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import attrs
import pytest

import llmcost
from llmcost import BudgetExceeded, CostTracker, Usage, budget, track_cost
from llmcost import _tracker as tracker_module
from llmcost._budget import Budget
from llmcost._context import NOT_CHECKED
from tests.conftest import calls_in_threads, in_threads

CALL = Decimal("0.0025")  # 1000 input tokens of gpt-4o


def response(model: str = "gpt-4o", prompt: int = 1000, completion: int = 0) -> dict[str, Any]:
    """A chat completion as a dict: the decorator's inline path (no ``usage=``) reads it."""
    return {
        "object": "chat.completion",
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }


def fields(entry: llmcost.CostEntry, *varying: str) -> dict[str, Any]:
    """What an entry says, field by field, less its id and latency (which differ between two recordings of one call)
    and the ``varying`` fields."""
    out = attrs.asdict(entry, recurse=False)
    for name in ("id", "latency_ms", *varying):
        out.pop(name)
    return out


@contextlib.contextmanager
def entries_built() -> Iterator[list[int]]:
    """Count the ``CostEntry`` objects the tracker builds for tracked calls meanwhile."""
    built: list[int] = []
    original = tracker_module.trusted_entry

    def counting(*args: Any) -> Any:
        built.append(1)
        return original(*args)

    tracker_module.trusted_entry = counting  # type: ignore[assignment]
    try:
        yield built
    finally:
        tracker_module.trusted_entry = original  # type: ignore[assignment]


def run_calls(tracker: CostTracker, budgets: list[Budget], responses: list[dict[str, Any]], **options: Any) -> None:
    """Make one tracked call per response inside ``budgets`` (nested, outermost first)."""
    items = iter(responses)

    @track_cost(tracker=tracker, **options)
    def call() -> dict[str, Any]:
        return next(items)

    with contextlib.ExitStack() as stack:
        for b in budgets:
            stack.enter_context(b)
        with llmcost.tags(team="search"):
            for _ in responses:
                call()


MIXED = [response(), response("gpt-4o-mini", 3000, 200), response("gpt-4o-2024-08-06", 17, 5), response(prompt=0)]


@pytest.mark.parametrize("estimate", [Decimal("0.001"), None], ids=["estimate", "recent-calls"])
def test_the_row_path_records_the_same_entries_and_spend_as_the_entry_path(estimate: Decimal | None, clock) -> None:
    results = []
    for entry_path in (False, True):
        tracker = CostTracker(clock=clock)
        if entry_path:
            tracker.subscribe("cost.recorded", lambda entry: None)  # a subscriber needs the CostEntry of each call
        budgets = [budget(10, tracker=tracker), budget(5), budget(1, name="inner")]
        with entries_built() as built:
            run_calls(tracker, budgets, MIXED * 3, estimate=estimate, resource="r", tags={"k": "v"})
        assert (len(built) == 0) is not entry_path  # the row path builds no entry; the entry path one per call
        entries = tracker.entries()
        results.append(
            (
                [fields(e) for e in entries],
                [(b.spent, b.reserved, b.remaining, [a.threshold for a in b.alerts]) for b in budgets],
            )
        )
        total = sum((e.amount for e in entries), Decimal(0))
        assert all(b.spent == total for b in budgets)  # the exact Decimal sum
        assert all(b.reserved == 0 for b in budgets)
    assert results[0] == results[1]


def test_the_row_path_records_what_a_call_outside_any_budget_records() -> None:
    plain, guarded = CostTracker(), CostTracker()
    run_calls(plain, [], MIXED)
    with entries_built() as built:
        run_calls(guarded, [budget(10), budget(10, tracker=guarded)], MIXED)
    assert built == []
    assert [fields(e, "timestamp") for e in guarded.entries()] == [fields(e, "timestamp") for e in plain.entries()]


def test_the_usage_callable_path_is_a_row_too_and_spend_is_exact(tracker) -> None:
    usages = iter([Usage(input_tokens=n, output_tokens=n // 3) for n in range(1, 200)])

    @track_cost(tracker=tracker, model="gpt-4o", usage=lambda r: next(usages), estimate=CALL)
    def call() -> str:
        return "ok"

    with budget(1) as b, entries_built() as built:
        for _ in range(199):
            call()
    assert built == []
    assert b.spent == tracker.summary().total == sum((e.amount for e in tracker.entries()), Decimal(0))
    assert b.reserved == 0 and b.remaining == 1 - b.spent


def test_entries_recorded_otherwise_still_count_inside_a_row_budget(tracker) -> None:
    call = track_cost(tracker=tracker)(lambda: response())
    seen_in_thread = []
    with budget(1) as b:
        call()
        tracker.record(amount="0.10", category="compute", resource="gpu")  # an explicit record: the entry path

        def worker() -> None:
            with b:  # a worker thread shares the budget by entering it
                call()
                seen_in_thread.append(b.spent)

        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert b.spent == CALL * 2 + Decimal("0.10") == tracker.summary().total
    assert seen_in_thread == [CALL * 2 + Decimal("0.10")]


def test_eight_threads_on_the_row_path_cannot_pass_the_limit(tracker) -> None:
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: response())
    b = budget(CALL * 100, tracker=tracker)
    inner = budget(CALL * 1000)
    ran, refused = calls_in_threads(call, b, inner)
    assert b.spent == inner.spent == tracker.summary().total == CALL * 100  # exact estimates: exactly the limit
    assert ran == 100 and refused == 8 * 40 - 100
    assert b.reserved == inner.reserved == 0


def test_async_tasks_on_the_row_path_cannot_pass_the_limit(tracker) -> None:
    @track_cost(tracker=tracker, estimate=CALL)
    async def call() -> dict[str, Any]:
        await asyncio.sleep(0)
        return response()

    b = budget(CALL * 30, tracker=tracker)

    async def one() -> int:
        try:
            await call()
            return 1
        except BudgetExceeded:
            return 0

    async def main() -> int:
        async with b:
            return sum(await asyncio.gather(*(one() for _ in range(100))))

    assert asyncio.run(main()) == 30
    assert b.spent == tracker.summary().total == CALL * 30 and b.reserved == 0


def test_thresholds_and_refusals_on_the_row_path(tracker) -> None:
    call = track_cost(tracker=tracker)(lambda: response())
    seen: list[llmcost.BudgetAlert] = []
    with budget(CALL * 10, on_alert=seen.append, on_exceed="warn") as b:
        for _ in range(12):
            call()
    assert [a.threshold for a in seen] == [0.5, 0.8, 0.9, 1.0]
    assert [a.level for a in seen] == ["info", "warning", "warning", "exceeded"]
    assert b.spent == CALL * 12 and b.reserved == 0
    ran = []

    @track_cost(tracker=tracker, estimate=CALL)
    def counted() -> dict[str, Any]:
        ran.append(1)
        return response()

    with budget(CALL * 2, name="job") as b:
        counted()
        counted()
        with pytest.raises(BudgetExceeded, match="job"):
            counted()
    assert len(ran) == 2 and b.spent == CALL * 2 and b.reserved == 0


def test_filtered_and_other_tracker_budgets_beside_row_budgets(tracker) -> None:
    other = CostTracker()
    call = track_cost(tracker=tracker, resource="a", estimate=CALL)(lambda: response())
    elsewhere = track_cost(tracker=tracker, resource="b", estimate=CALL)(lambda: response())
    with budget(1) as everything, budget(1, resource="a") as only_a, budget(1, tracker=other) as others:
        call()
        elsewhere()
        call()
    assert everything.spent == CALL * 3 and only_a.spent == CALL * 2 and others.spent == 0
    assert everything.reserved == only_a.reserved == others.reserved == 0


@pytest.mark.parametrize("estimate", [Decimal("0.001"), None], ids=["estimate", "recent-calls"])
def test_per_model_block_budgets_count_rows_as_the_entry_path_counts_entries(estimate: Decimal | None, clock) -> None:
    # gpt-4o counts its dated id (gpt-4o-2024-08-06, through the catalog id it resolves to) and not gpt-4o-mini; a
    # dated id as the budget's model counts only that id; a model never called counts nothing.
    models = ["gpt-4o", "gpt-4o-mini", "gpt-4o-2024-08-06", "claude-sonnet-4-0"]
    results = []
    for entry_path in (False, True):
        tracker = CostTracker(clock=clock)
        if entry_path:
            tracker.subscribe("cost.recorded", lambda entry: None)
        budgets = [budget(10, model=m, tracker=tracker) for m in models]
        with entries_built() as built:
            run_calls(tracker, budgets, MIXED * 3, estimate=estimate)
        assert (len(built) == 0) is not entry_path
        entries = tracker.entries()
        results.append([(b.spent, b.reserved, [a.threshold for a in b.alerts]) for b in budgets])
        for b, model in zip(budgets, models, strict=True):
            counted = [e for e in entries if model in (e.model, e.canonical_model)]
            assert b.spent == sum((e.amount for e in counted), Decimal(0))
            assert b.reserved == 0
        assert len([e for e in entries if "gpt-4o" in (e.model, e.canonical_model)]) == 9  # both ids of gpt-4o
    assert results[0] == results[1]
    assert results[0][3][0] == 0 and results[0][0][0] > results[0][2][0] > 0


def test_a_per_model_budget_refuses_on_the_row_path_only_its_models_calls(tracker) -> None:
    mini = track_cost(tracker=tracker, model="gpt-4o-mini", estimate=CALL)(lambda: response("gpt-4o-mini"))
    big = track_cost(tracker=tracker, model="gpt-4o", estimate=CALL)(lambda: response())
    with budget(CALL * 2, model="gpt-4o") as b, entries_built() as built:
        big()
        big()
        for _ in range(5):
            mini()  # another model: neither checked nor counted
        with pytest.raises(BudgetExceeded):
            big()
    assert built == [] and b.spent == CALL * 2 and b.reserved == 0
    assert len(tracker.entries()) == 7


def test_a_period_budget_beside_a_block_budget_keeps_the_row_path(tracker) -> None:
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: response())
    with budget(1, period="daily", tracker=tracker) as daily, budget(1) as block, entries_built() as built:
        call()
        call()
    assert built == []  # the MemoryStore's ledger counts the rows itself
    assert daily.spent == block.spent == CALL * 2 and daily.reserved == block.reserved == 0


def test_a_budget_entered_twice_counts_as_on_the_entry_path(clock) -> None:
    results = []
    for entry_path in (False, True):
        tracker = CostTracker(clock=clock)
        if entry_path:
            tracker.subscribe("cost.recorded", lambda entry: None)
        b = budget(1)
        call = track_cost(tracker=tracker, estimate=CALL)(lambda: response())
        with b, b:
            call()
        results.append((b.spent, b.reserved))
    assert results[0] == results[1] and results[0][1] == 0


def test_a_failing_budget_never_breaks_the_call_nor_loses_the_entry(tracker, monkeypatch) -> None:
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: response())

    def broken(self: Budget, *args: Any) -> None:
        raise RuntimeError("broken budget")

    with budget(1) as b:
        monkeypatch.setattr(Budget, "on_recorded_row", broken)
        assert call() == response()
        monkeypatch.undo()
        assert b.reserved == 0  # not settled by the broken count: released after the call
    assert len(tracker.entries()) == 1


def test_set_active_false_reserves_and_records_nothing(tracker) -> None:
    call = track_cost(tracker=tracker, estimate=CALL)(lambda: response())
    llmcost.set_active(False)
    with budget(CALL / 2) as b:
        call()  # not refused, not recorded
    assert b.spent == b.reserved == 0 and tracker.entries() == []


def test_a_failing_call_releases_its_reservation(tracker) -> None:
    @track_cost(tracker=tracker, estimate=CALL)
    def boom() -> None:
        raise RuntimeError("x")

    with budget(CALL * 2) as b:
        for _ in range(3):
            with pytest.raises(RuntimeError):
                boom()
        assert b.reserved == 0 and b.remaining == CALL * 2


def test_unreadable_results_release_their_reservation(tracker) -> None:
    results: Iterator[Any] = iter([{"no": "usage"}, response(), None])
    call: Callable[[], Any] = track_cost(tracker=tracker, estimate=CALL)(lambda: next(results))
    with budget(1) as b:
        for _ in range(3):
            call()
    assert b.spent == CALL and b.reserved == 0 and len(tracker.entries()) == 1


def test_a_failing_recent_calls_estimate_lets_the_call_through(tracker, monkeypatch) -> None:
    call = track_cost(tracker=tracker)(lambda: response())

    def broken(*args: Any) -> None:
        raise RuntimeError("no statistic")

    monkeypatch.setattr(tracker, "recent_cost", broken)
    with budget(CALL / 2) as b:
        assert call() == response()  # let through, as a budget whose check fails
    assert b.spent == CALL and b.reserved == 0 and len(tracker.entries()) == 1


# -- a filtered budget matches a call once, before it, when the entry has the fields it matched ---------------------
def chunks(model: str = "gpt-4o", prompt: int = 1000) -> Iterator[dict[str, Any]]:
    """An OpenAI chat completion as the chunks of a stream, its usage on the last one."""
    yield {"model": model, "choices": [{"index": 0, "delta": {"content": "hi"}}]}
    yield {"model": model, "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": 0}}


def test_a_generator_begun_in_a_tags_and_budget_block_is_counted_there_wherever_it_ends(tracker) -> None:
    # A generator's call is checked as it starts (inside the blocks) and recorded as it ends (outside them, as a web
    # framework reads a handler's generator): recorded in the context it began in, with its tags, and counted by the
    # budget that reserved for it. It was recorded with the tags of wherever it ended and released from the budget:
    # spend a budget never saw, on other tags.
    stream = track_cost(tracker=tracker, estimate=CALL)(chunks)
    with budget(1, tags={"team": "search"}) as b, llmcost.tags(team="search"):
        started = stream()
        next(started)
        assert b.reserved == CALL
    with llmcost.tags(team="other"):
        assert len(list(started)) == 1  # the last chunk, outside both blocks: the call is recorded now
    [entry] = tracker.entries()
    assert dict(entry.tags) == {"team": "search"}
    assert b.spent == CALL and b.reserved == 0


def test_a_tag_budget_counts_an_entry_whose_context_tags_stayed(tracker) -> None:
    stream = track_cost(tracker=tracker, estimate=CALL)(chunks)
    plain = track_cost(tracker=tracker, estimate=CALL)(lambda: response())
    with budget(1, tags={"team": "search"}) as b, llmcost.tags(team="search"):
        list(stream())
        plain()
    assert [dict(e.tags) for e in tracker.entries()] == [{"team": "search"}] * 2
    assert b.spent == CALL * 2 and b.reserved == 0


def test_a_generator_begun_outside_a_tags_block_is_recorded_as_begun_there(tracker) -> None:
    # Checked outside the tags block (no reservation), read inside it: its call's context is the one it began in,
    # without the tag, so the tag budget does not count it.
    stream = track_cost(tracker=tracker, estimate=CALL)(chunks)
    with budget(1, tags={"team": "search"}) as b:
        started = stream()
        next(started)
        assert b.reserved == 0
        with llmcost.tags(team="search"):
            list(started)
    [entry] = tracker.entries()
    assert dict(entry.tags) == {}
    assert b.spent == 0 and b.reserved == 0


def embedding(model: str = "text-embedding-3-small", prompt: int = 1_000_000) -> dict[str, Any]:
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }


@pytest.mark.parametrize("tags", [None, {"team": "search"}], ids=["category", "category-and-tags"])
def test_a_category_budget_does_not_count_an_entry_of_another_category_than_it_checked(tracker, tags) -> None:
    # The call is checked as an inference (no category= given) and its response says it was an embedding.
    embed = track_cost(tracker=tracker, estimate=CALL, tags=tags)(lambda: embedding())
    with budget(1, category="llm_inference", tags=tags) as inference, budget(1, category="llm_embedding") as embeds:
        embed()
        assert inference.reserved == 0 and inference.spent == 0
        [entry] = tracker.entries()
        assert entry.category == llmcost.CostCategory.LLM_EMBEDDING
        assert embeds.spent == entry.amount > 0 and embeds.reserved == 0


def test_a_per_model_budget_does_not_count_an_entry_of_another_model_than_it_may_have_been(tracker) -> None:
    # No model before the call: checked (it may be the budget's model); the response says another model.
    call = track_cost(tracker=tracker, estimate=CALL, tags={"team": "search"})(lambda: response("gpt-4o"))
    with budget(1, model="gpt-4o-mini", tags={"team": "search"}) as mini:
        call()
        assert mini.spent == 0 and mini.reserved == 0
    with budget(1, model="gpt-4o", tags={"team": "search"}) as four:
        call()
        assert four.spent == CALL and four.reserved == 0


def test_filtered_budgets_count_matched_calls_exactly_from_many_threads(tracker) -> None:
    call = track_cost(tracker=tracker, estimate=CALL, tags={"team": "search"})(lambda: response())
    other = track_cost(tracker=tracker, estimate=CALL, tags={"team": "ads"})(lambda: response())
    with budget(1000, tags={"team": "search"}) as b, budget(1000, model="gpt-4o") as m:

        def work() -> None:
            with b, m:
                for _ in range(200):
                    call()
                    other()

        in_threads(work, 4)
    assert b.spent == CALL * 800 and b.reserved == 0
    assert m.spent == CALL * 1600 and m.reserved == 0


@pytest.mark.parametrize("path", ["rows", "entries"])
def test_a_tracker_budget_also_entered_checks_and_counts_each_call_once(path: str) -> None:
    """A budget that is one of the tracker's guards (``add_guard``, as ``BudgetManager`` installs them) and is also
    entered with ``with`` reserves for a call once and counts its entry once, on the row path and the entry path."""
    tracker = CostTracker()
    if path == "entries":
        tracker.subscribe("cost.recorded", lambda entry: None)  # the entry path: something needs each CostEntry
    fn = track_cost(tracker=tracker, estimate=Decimal("0.003"))(lambda: response())
    b = budget(Decimal("0.0055"), tracker=tracker)
    tracker.add_guard(b)
    with b:
        fn()  # reserved once: 0.003 of 0.0055, where twice (0.006) would have refused it
        assert b.spent == CALL
        assert b.reserved == 0
    fn()  # the tracker's guard alone
    assert b.spent == 2 * CALL
    assert tracker.summary().total == 2 * CALL


def test_a_tracker_period_budget_also_entered_reserves_once(clock) -> None:
    """The same for a period budget from ``BudgetManager``: one reservation for the call (two would pass its limit),
    its entry counted once in the ledger."""
    tracker = CostTracker(clock=clock)  # (a day of its own: the call counts in the budget's day)
    b = llmcost.BudgetManager(tracker).create("job", "0.004", "daily")
    fn = track_cost(tracker=tracker, estimate=Decimal("0.003"))(lambda: response())
    with b:
        fn()
    assert b.spent == CALL
    assert tracker.summary().total == CALL


def test_a_tag_budget_matches_each_calls_tags_however_they_alternate(tracker) -> None:
    # The budget remembers the last tag map that matched (by identity): calls whose tag maps differ from it, in turn
    # (each function's own, made once; the context's; a callable's, made per call), are matched on their values.
    search = track_cost(tracker=tracker, estimate=CALL, tags={"team": "search"})(lambda: response())
    ads = track_cost(tracker=tracker, estimate=CALL, tags={"team": "ads"})(lambda: response())
    teams = iter(["search", "ads"] * 50)
    either = track_cost(tracker=tracker, estimate=CALL, tags=lambda: {"team": next(teams)})(lambda: response())
    untagged = track_cost(tracker=tracker, estimate=CALL)(lambda: response())
    with budget(CALL * 126, tags={"team": "search"}) as b:
        for _ in range(50):
            search()
            ads()
            either()
            untagged()
            with llmcost.tags(team="ads"):
                search()  # the call's own tags win
                untagged()
        assert b.spent == CALL * 125 and b.reserved == 0
        with llmcost.tags(team="search"):
            untagged()  # the context's tag map matches: the budget is spent now
            with pytest.raises(BudgetExceeded):
                untagged()
            with pytest.raises(BudgetExceeded):
                search()
            ads()  # the call's own tags win: not checked
        assert b.spent == CALL * 126 and b.reserved == 0


def test_a_tag_budget_matches_a_changed_plain_mapping_again() -> None:
    # Only an immutable tag map is remembered: a plain dict given to ``checks_call`` is read every time.
    b = budget(1, tags={"team": "search"})
    tracker = CostTracker()
    tags = {"team": "search"}
    assert b.checks_call(tracker, "r", "llm_inference", tags, None, {})  # type: ignore[arg-type]
    tags["team"] = "ads"
    assert not b.checks_call(tracker, "r", "llm_inference", tags, None, {})  # type: ignore[arg-type]
    assert b.reserve_checked(tracker, "r", "llm_inference", tags, None, {}, CALL) is NOT_CHECKED  # type: ignore[arg-type]
    assert b.reserved == 0


@pytest.mark.parametrize(
    "filters",
    [{"tags": {"team": "search"}}, {"model": "gpt-4o"}, {"resource": "job"}, {"category": "llm_inference"}],
    ids=["tags", "model", "resource", "category"],
)
def test_thresholds_warnings_and_refusals_of_filtered_budgets_with_a_known_estimate(tracker, filters) -> None:
    # A filtered budget reserves a known estimate as it checks the call (``reserve_checked``): warn mode, thresholds
    # and a refusal exactly at the limit are as for a budget without filters.
    call = track_cost(tracker=tracker, estimate=CALL, resource="job", tags={"team": "search"})(lambda: response())
    seen: list[llmcost.BudgetAlert] = []
    with budget(CALL * 10, on_alert=seen.append, on_exceed="warn", **filters) as b:
        for _ in range(12):
            call()
    assert [a.threshold for a in seen] == [0.5, 0.8, 0.9, 1.0]
    assert [a.level for a in seen] == ["info", "warning", "warning", "exceeded"]
    assert b.spent == CALL * 12 and b.reserved == 0
    with budget(CALL * 2, name="job", **filters) as b:
        call()
        call()  # exactly at the limit: let through
        with pytest.raises(BudgetExceeded, match="job"):
            call()
        assert b.spent == CALL * 2 and b.reserved == 0
