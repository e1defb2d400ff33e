"""Budgets: refusals, reservations under concurrency, periods, thresholds, nesting, manager, env, sinks."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import decimal
import math
import re
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

import llmcost
from llmcost import BudgetExceeded, BudgetManager, CostTracker, Usage, budget, track_cost
from llmcost._context import active_guards
from tests.conftest import calls_in_threads

UTC = timezone.utc
CALL = Decimal("0.0025")  # 1000 input tokens of gpt-4o


def caller(tracker, **options):
    """A tracked function that costs exactly CALL, and counts how often its body ran."""
    ran = []

    @track_cost(tracker=tracker, model="gpt-4o", usage=lambda r: Usage(input_tokens=1000), **options)
    def call():
        ran.append(1)
        return "ok"

    return call, ran


def test_refuses_when_nothing_remains_and_the_body_never_runs(tracker):
    call, ran = caller(tracker)
    with budget(Decimal("0.005"), name="job", tracker=tracker) as b:
        call()
        call()
        with pytest.raises(BudgetExceeded) as info:
            call()
    assert len(ran) == 2
    assert info.value.budget == "job" and info.value.limit == Decimal("0.005") and info.value.spent == CALL * 2
    assert b.spent == CALL * 2 == tracker.summary().total
    assert b.remaining == 0 and b.utilization == 1.0


@pytest.mark.parametrize("period", [None, "daily"])
def test_a_refusal_tells_what_is_spent_from_what_calls_in_flight_hold(tracker, period):
    # ``BudgetExceeded.spent`` was spent plus reserved: "spent $0.90 of $1.00" with nothing spent, a call in flight
    # holding $0.90.
    started, release = threading.Event(), threading.Event()

    @track_cost(tracker=tracker, model="gpt-4o", usage=lambda r: Usage(input_tokens=1000), estimate="0.90")
    def slow():
        started.set()
        release.wait(10)

    call, ran = caller(tracker, estimate="0.50")
    with budget("1.00", period=period, tracker=tracker) as b:
        in_flight = threading.Thread(target=contextvars.copy_context().run, args=(slow,))
        in_flight.start()
        assert started.wait(10)
        with pytest.raises(BudgetExceeded) as info:
            call()
        release.set()
        in_flight.join()
    refused = info.value
    assert (refused.spent, refused.reserved, refused.requested, ran) == (0, Decimal("0.90"), Decimal("0.50"), [])
    assert str(refused) == (
        f"budget {b.name!r} exceeded: spent $0.00 of $1.00, $0.90 held by calls in flight (remaining $0.10);"
        " the call needed about $0.50"
    )


def test_refuses_when_the_estimate_exceeds_what_remains(tracker):
    call, ran = caller(tracker, estimate=Decimal("0.004"))
    with budget(Decimal("0.005"), tracker=tracker):
        call()  # 0.004 fits in 0.005; costs 0.0025
        with pytest.raises(BudgetExceeded) as info:
            call()  # 0.004 > 0.0025 remaining
    assert len(ran) == 1 and info.value.requested == Decimal("0.004")


def test_estimate_from_the_calls_own_request_arguments(tracker):
    @track_cost(tracker=tracker, usage=lambda r: Usage(input_tokens=10), model="gpt-4o")
    def chat(*, model, messages, max_tokens):
        return "x"

    with budget(Decimal("0.001"), tracker=tracker), pytest.raises(BudgetExceeded) as info:
        chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=1000)  # ~$0.01 of output
    assert info.value.requested > Decimal("0.01")


@pytest.mark.parametrize("filters", [{}, {"resource": "chat"}], ids=["unfiltered", "filtered"])
def test_the_request_estimate_is_the_prompts_cost_at_money_scale_however_the_budget_checks(tracker, filters):
    # An unfiltered budget gets the estimate on the decorator's short path, a filtered one from a PendingCall: the
    # same amount either way, the prompt's estimated cost as ``estimate_cost`` gives it, kept to money's places.
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "déjà vu " * 300}]

    @track_cost(tracker=tracker, resource="chat", usage=lambda r: Usage(input_tokens=10))
    def chat(**request):
        return "x"

    expected = llmcost.estimate_cost("claude-3-5-haiku-latest", messages, output_tokens=700).amount
    assert expected == round(expected, 18) and expected > Decimal("0.003")
    with budget(Decimal("0.003"), tracker=tracker, **filters), pytest.raises(BudgetExceeded) as info:
        chat(model="claude-3-5-haiku-latest", messages=messages, max_tokens=700)
    assert info.value.requested == expected
    with budget(Decimal("0.003"), tracker=tracker, **filters), pytest.raises(BudgetExceeded) as info:
        chat(model="claude-3-5-haiku-latest", messages=None, input=messages, max_output_tokens=700)
    assert info.value.requested == expected  # a prompt key given as None is passed over for the next


def test_the_request_estimate_is_rounded_to_money_places_and_skips_a_pending_call(tracker, monkeypatch):
    # A price with more places than money keeps: the estimate is rounded to 18 places (a budget adds it to what is
    # committed and takes it away again when the call settles, exact only at that scale). Unfiltered budgets find it
    # on the decorator's short path, with no PendingCall.
    import llmcost._decorator

    llmcost.register_price(
        llmcost.ModelPrice("fine-model", "acme", input_per_mtok="0.1234567890123456789", output_per_mtok=1)
    )
    monkeypatch.setattr(llmcost._decorator, "PendingCall", None)  # made, it would fail the call's check

    @track_cost(tracker=tracker, usage=lambda r: Usage(input_tokens=10))
    def chat(**request):
        return "x"

    messages = [{"role": "user", "content": "x" * 4000}]
    tokens = llmcost.count_tokens(messages, model="fine-model")
    exact = llmcost.cost_of("fine-model", tokens, 10)
    assert exact != round(exact, 18)
    with budget(Decimal("0.00001"), tracker=tracker), pytest.raises(BudgetExceeded) as info:
        chat(model="fine-model", messages=messages, max_tokens=10)
    assert info.value.requested == round(exact, 18)


def test_a_request_with_a_bool_output_limit_is_estimated_from_recent_calls(tracker):
    @track_cost(tracker=tracker, resource="chat", model="gpt-4o", usage=lambda r: Usage(1000, 100))
    def chat(**request):
        return "x"

    chat()  # one recent call of gpt-4o: $0.0035
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": True}
    with budget(Decimal("0.003"), tracker=tracker), pytest.raises(BudgetExceeded) as info:
        chat(**request)  # not one output token: an unreadable request, so the mean of recent calls
    assert info.value.requested == Decimal("0.0035")


def test_warn_lets_the_call_through_with_an_alert(tracker):
    call, ran = caller(tracker)
    seen = []
    with budget(Decimal("0.001"), tracker=tracker, on_exceed="warn", on_alert=seen.append):
        call()
        call()
    assert len(ran) == 2
    assert any(a.level == "exceeded" for a in seen)


@pytest.mark.parametrize("period", [None, "daily"])
def test_warn_says_a_call_was_let_through_and_still_fires_the_limit_as_spend_reaches_it(tracker, period):
    # With on_exceed="warn", a call whose ESTIMATE would pass the limit fired the 1.0 alert saying it "refused a
    # call" (it ran), and marked the threshold fired: the real crossing of the limit later fired nothing.
    call, ran = caller(tracker, estimate=CALL * 6)  # estimated at six times what it costs
    seen: list[llmcost.BudgetAlert] = []
    events: list[llmcost.BudgetAlert] = []
    tracker.subscribe("budget.exceeded", events.append)
    b = budget(CALL * 10, period=period, tracker=tracker, on_exceed="warn", on_alert=seen.append)
    with b:
        for _ in range(12):
            call()
    assert len(ran) == 12 and b.spent == CALL * 12
    assert [(a.threshold, a.spent) for a in seen] == [
        (0.5, CALL * 5),
        (1.0, CALL * 5),  # the sixth call's estimate would pass the limit
        (0.8, CALL * 8),
        (0.9, CALL * 9),
        (1.0, CALL * 10),  # spend reached the limit
    ]
    assert "$0.015 would pass the limit; let through" in seen[1].message and "refused" not in seen[1].message
    assert "passed 100% of its limit" in seen[4].message
    assert events == [seen[1], seen[4]] and b.alerts == seen


def test_raise_still_refuses_once_with_the_limit_alert(tracker):
    call, ran = caller(tracker, estimate=CALL * 6)
    seen: list[llmcost.BudgetAlert] = []
    with budget(CALL * 10, tracker=tracker, on_alert=seen.append) as b:
        for _ in range(5):
            call()
        for _ in range(2):
            with pytest.raises(BudgetExceeded):
                call()
    assert len(ran) == 5 and b.spent == CALL * 5
    assert [(a.threshold, a.message.split(" (")[0]) for a in seen] == [
        (0.5, f"budget {b.name!r} passed 50% of its limit"),
        (1.0, f"budget {b.name!r} refused a call needing about $0.015"),
    ]


def test_thresholds_fire_once_each_with_levels(tracker):
    call, _ = caller(tracker)
    seen = []
    events = []
    tracker.subscribe("budget.warning", events.append)
    tracker.subscribe("budget.exceeded", events.append)
    with budget(CALL * 10, tracker=tracker, on_alert=seen.append, on_exceed="warn") as b:
        for _ in range(12):
            call()
    assert [a.threshold for a in seen] == [0.5, 0.8, 0.9, 1.0]
    assert [a.level for a in seen] == ["info", "warning", "warning", "exceeded"]
    assert b.alerts == seen and events == seen


@pytest.mark.parametrize("on_exceed", ["raise", "warn"])
def test_a_refusal_that_is_the_first_look_fires_the_thresholds_spend_passed_first(tracker, on_exceed):
    """Spend at 95% before the block, and the first look at the daily budget is a call that does not fit: "passed
    50%", "80%" and "90%" come before the refusal's alert, as they would had spend been watched crossing them (only
    the refusal's alert was made)."""
    seen = []
    tracker.record(amount=CALL * 38, model="gpt-4o")  # 95% of the limit, before the block
    call, ran = caller(tracker, estimate=CALL * 4)
    with budget(CALL * 40, period="daily", tracker=tracker, on_alert=seen.append, on_exceed=on_exceed):
        if on_exceed == "raise":
            with pytest.raises(BudgetExceeded):
                call()
        else:
            call()
    assert [a.threshold for a in seen] == [0.5, 0.8, 0.9, 1.0]
    assert [a.level for a in seen] == ["critical", "critical", "critical", "exceeded"]  # (spend is at 95%)
    assert [a.utilization for a in seen[:3]] == [0.95] * 3
    assert len(ran) == (on_exceed == "warn")


def test_alerts_reach_the_sinks_in_the_order_they_were_made_across_threads(tracker):
    # Thread A's call crosses 50% and its sink is still busy with that alert when thread B's call crosses 80%: B's
    # alert waits for A's to be delivered (a sink heard "passed 80%" first, or "exceeded" before "passed 90%").
    call, _ = caller(tracker)
    heard = []

    def sink(alert):
        if alert.threshold == 0.5:
            started.set()
            for _ in range(500):  # until B's call has made its alert (alerts: made, not yet delivered)
                if len(b.alerts) > 1:
                    break
                threading.Event().wait(0.01)
        heard.append(alert.threshold)

    started = threading.Event()
    with budget(CALL * 10, tracker=tracker, thresholds=(0.5, 0.8), on_alert=sink) as b:
        for _ in range(4):
            call()
        # (Threads start in a copy of this context: under the budget.)
        first = threading.Thread(target=contextvars.copy_context().run, args=(call,))  # the 5th call: 50%
        first.start()
        assert started.wait(10)
        three = contextvars.copy_context().run
        second = threading.Thread(target=three, args=(lambda: [call() for _ in range(3)],))  # the 8th: 80%
        second.start()
        first.join(10)
        second.join(10)
    assert [a.threshold for a in b.alerts] == [0.5, 0.8]
    assert heard == [0.5, 0.8]


def test_exceptions_release_the_reservation(tracker):
    @track_cost(tracker=tracker, estimate=Decimal("0.004"), model="gpt-4o")
    def boom():
        raise RuntimeError("x")

    with budget(Decimal("0.005"), tracker=tracker) as b:
        for _ in range(3):
            with pytest.raises(RuntimeError):
                boom()
        assert b.reserved == 0 and b.remaining == Decimal("0.005")


def test_nested_budgets_all_apply(tracker):
    call, ran = caller(tracker)
    with budget(CALL * 3, name="project", tracker=tracker) as project:
        with budget(CALL * 1, name="job", tracker=tracker):
            call()
            with pytest.raises(BudgetExceeded, match="job"):
                call()
        call()
        call()
        with pytest.raises(BudgetExceeded, match="project"):
            call()
    assert project.spent == CALL * 3 and len(ran) == 3


def test_filters_narrow_what_counts(tracker):
    call, _ = caller(tracker, resource="a")
    other, _ = caller(tracker, resource="b")
    with budget(CALL, resource="a", tracker=tracker) as b:
        other()
        other()
        call()
        with pytest.raises(BudgetExceeded):
            call()
        other()  # b is not limited
    assert b.spent == CALL


def test_a_tag_budget_checks_the_calls_whose_tags_it_names_wherever_they_come_from(tracker):
    # A call's tags are its decorator's over those of the blocks around it: a budget naming tags checks (and
    # refuses) exactly the calls whose merged tags have them, and counts only their spend.
    search, _ = caller(tracker, tags={"team": "search"})
    untagged, _ = caller(tracker)
    with budget(CALL, tags={"team": "search", "env": "prod"}, tracker=tracker) as b:
        search()  # no env: not checked, not counted
        with llmcost.tags(env="prod"):
            search()  # team from the decorator, env from the block: checked and counted
            untagged()  # no team
            with pytest.raises(BudgetExceeded):
                search()
            with llmcost.tags(team="search"), pytest.raises(BudgetExceeded):
                untagged()  # both from the blocks
        search()  # no env again: let through
    assert b.spent == CALL


def test_eight_threads_cannot_pass_the_limit(tracker):
    call, ran = caller(tracker, estimate=CALL)
    b = budget(CALL * 100, tracker=tracker)
    _, refused = calls_in_threads(call, b)
    total = tracker.summary().total
    assert b.spent == total == CALL * 100  # exact estimates: exactly at the limit, never over
    assert len(ran) == 100 and refused == 8 * 40 - 100


def test_a_hundred_tasks_cannot_pass_the_limit(tracker):
    @track_cost(tracker=tracker, model="gpt-4o", usage=lambda r: Usage(input_tokens=1000), estimate=CALL)
    async def call():
        await asyncio.sleep(0)
        return "ok"

    b = budget(CALL * 30, tracker=tracker)

    async def one():
        try:
            await call()
            return 1
        except BudgetExceeded:
            return 0

    async def main():
        async with b:
            return sum(await asyncio.gather(*(one() for _ in range(100))))

    assert asyncio.run(main()) == 30
    assert b.spent == tracker.summary().total == CALL * 30


def test_period_budget_counts_spend_already_in_the_store(tracker, clock):
    tracker.record(model="gpt-4o", input_tokens=1000, timestamp=clock.now - timedelta(hours=1))
    tracker.record(model="gpt-4o", input_tokens=1000, timestamp=clock.now - timedelta(days=1))  # yesterday
    call, ran = caller(tracker)
    with budget(CALL * 2, period="daily", tracker=tracker) as b:
        assert b.spent == CALL
        call()
        with pytest.raises(BudgetExceeded):
            call()
    assert len(ran) == 1


def test_period_budget_rolls_over_at_midnight_utc(tracker, clock):
    call, _ = caller(tracker)
    clock.now = datetime(2024, 5, 17, 23, 59, 59, tzinfo=UTC)
    with budget(CALL, period="daily", tracker=tracker) as b:
        call()
        with pytest.raises(BudgetExceeded):
            call()
        clock.now = datetime(2024, 5, 18, 0, 0, tzinfo=UTC)
        call()  # a new day
        assert b.spent == CALL and b.period_start == clock.now


@pytest.mark.parametrize(
    ("period", "before", "after"),
    [
        ("weekly", datetime(2024, 5, 19, 23, 59), datetime(2024, 5, 20, 0, 0)),  # ISO week starts Monday
        ("monthly", datetime(2024, 2, 29, 23, 59), datetime(2024, 3, 1, 0, 0)),  # leap day, month end
        ("monthly", datetime(2024, 12, 31, 23, 59), datetime(2025, 1, 1, 0, 0)),
        ("hourly", datetime(2024, 5, 17, 12, 59, 59), datetime(2024, 5, 17, 13, 0)),
    ],
)
def test_period_boundaries_with_freezegun(period, before, after):
    tracker = CostTracker()  # the default clock, frozen by freezegun
    call, _ = caller(tracker)
    with freeze_time(before.replace(tzinfo=UTC)) as frozen:
        b = budget(CALL, period=period, tracker=tracker)
        with b:
            call()
            with pytest.raises(BudgetExceeded):
                call()
            frozen.move_to(after.replace(tzinfo=UTC))
            call()
        assert b.period_start == after.replace(tzinfo=UTC)


def test_daily_budget_in_a_local_zone_across_dst(tracker, clock):
    berlin = ZoneInfo("Europe/Berlin")
    clock.now = datetime(2024, 3, 31, 12, tzinfo=UTC)
    b = budget(1, period="daily", tz=berlin, tracker=tracker)
    assert b.period_start == datetime(2024, 3, 30, 23, tzinfo=UTC)
    assert b.period_end - b.period_start == timedelta(hours=23)


@pytest.mark.parametrize(
    ("kwargs", "exc", "field"),
    [
        ({"limit": -1}, ValueError, "limit"),
        ({"limit": 0}, ValueError, "limit"),
        ({"limit": "nan"}, ValueError, "limit"),
        ({"limit": 1, "period": "fortnightly"}, ValueError, "period"),
        ({"limit": 1, "thresholds": (0.9, 0.5)}, ValueError, "thresholds"),
        ({"limit": 1, "thresholds": (0.5, 1.5)}, ValueError, "thresholds"),
        ({"limit": 1, "thresholds": ()}, ValueError, "thresholds"),
        ({"limit": 1, "thresholds": (Decimal("sNaN"),)}, ValueError, "thresholds"),  # (float() of it raised)
        ({"limit": 1, "thresholds": (10**400,)}, ValueError, "thresholds"),  # (OverflowError, naming nothing)
        ({"limit": 1, "on_exceed": "explode"}, ValueError, "on_exceed"),
        ({"limit": 1, "on_alert": 5}, TypeError, "on_alert"),
    ],
)
def test_bad_input_names_the_field(kwargs, exc, field):
    with pytest.raises(exc, match=field):
        budget(**kwargs)


def test_decorator_sync_and_async(tracker):
    call, ran = caller(tracker)

    @budget(CALL, tracker=tracker)
    def job():
        call()
        call()

    with pytest.raises(BudgetExceeded):
        job()
    assert len(ran) == 1

    @budget(CALL, tracker=tracker)
    async def ajob():
        call()
        call()

    with pytest.raises(BudgetExceeded):
        asyncio.run(ajob())
    assert len(ran) == 2


def drain(items, between=None):
    """Iterate ``items`` (a generator or an async generator) to its end or to a ``BudgetExceeded``, calling
    ``between()`` after each item; the items got, and whether the budget refused."""

    async def adrain():
        got = []
        try:
            async for item in items:
                got.append(item)
                if between is not None:
                    between()
        except BudgetExceeded:
            return got, True
        return got, False

    if hasattr(items, "__anext__"):
        return asyncio.run(adrain())
    got = []
    try:
        for item in items:
            got.append(item)
            if between is not None:
                between()
    except BudgetExceeded:
        return got, True
    return got, False


def generator_of(kind, limit, call):
    """A generator function (``kind`` "sync") or an async generator function under ``@limit`` that makes a tracked
    ``call()`` for each of its ``n`` items."""
    if kind == "sync":

        @limit
        def answers(n):
            for i in range(n):
                call()
                yield i

        return answers

    @limit
    async def aanswers(n):
        for i in range(n):
            await asyncio.sleep(0)
            call()
            yield i

    return aanswers


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_decorated_generator_refuses_the_calls_its_body_makes_at_the_limit(tracker, kind):
    call, ran = caller(tracker)
    limit = budget(CALL * 2, tracker=tracker, on_alert=lambda alert: None)
    got, refused = drain(generator_of(kind, limit, call)(5))
    assert (got, refused, len(ran)) == ([0, 1], True, 2)
    assert (limit.spent, limit.reserved, tracker.summary().total) == (CALL * 2, 0, CALL * 2)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_decorated_generator_does_not_count_the_consumers_calls_between_items(tracker, kind):
    # The budget applies to the generator's own work: a call the consumer makes between two items runs outside it
    # (neither checked nor counted), and no budget is active in the consumer's context while the generator waits.
    call, ran = caller(tracker)
    limit = budget(CALL * 2, tracker=tracker)
    outside = []

    def between():
        outside.append(active_guards())
        call()

    got, refused = drain(generator_of(kind, limit, call)(2), between)
    assert (got, refused, len(ran)) == ([0, 1], False, 4)
    assert outside == [(), ()]
    assert (limit.spent, limit.reserved, tracker.summary().total) == (CALL * 2, 0, CALL * 4)


def test_decorated_generator_passes_send_throw_and_its_return_value_through(tracker):
    call, ran = caller(tracker)
    limit = budget(CALL * 2, tracker=tracker)

    @limit
    def echo():
        got = yield "ready"
        while True:
            call()
            try:
                got = yield (got, active_guards() == (limit,))
            except KeyError:
                return "stopped"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("a") == ("a", True)
    assert gen.send("b") == ("b", True)
    with pytest.raises(StopIteration) as stop:
        gen.throw(KeyError("x"))
    assert stop.value.value == "stopped" and limit.spent == CALL * 2 and len(ran) == 2


@pytest.mark.parametrize("period", [None, "daily"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_decorated_generator_closed_early_leaves_no_reservation_or_budget_behind(tracker, kind, period):
    call, ran = caller(tracker, estimate=CALL)
    limit = budget(CALL * 10, period=period, tracker=tracker)
    cleaned = []

    if kind == "sync":

        @limit
        def answers():
            try:
                while True:
                    call()
                    yield len(ran)
            finally:
                cleaned.append(active_guards() == (limit,))  # the generator's cleanup runs under its budget

        gen = answers()
        assert [next(gen), next(gen)] == [1, 2]
        gen.close()
        abandoned = answers()
        next(abandoned)
        del abandoned  # collected unfinished: closed
    else:

        @limit
        async def answers():
            try:
                while True:
                    call()
                    yield len(ran)
            finally:
                cleaned.append(active_guards() == (limit,))

        async def consume():
            agen = answers()
            assert [await agen.__anext__(), await agen.__anext__()] == [1, 2]
            await agen.aclose()
            async for _ in answers():
                break  # left unfinished: closed by the event loop's async generator hooks
            assert active_guards() == ()

        asyncio.run(consume())
    assert cleaned == [True, True] and active_guards() == ()
    assert (limit.spent, limit.reserved, len(ran)) == (CALL * 3, 0, 3)
    call()  # after the generators: outside the block (a period budget counts all the period's spend)
    assert (limit.spent, limit.reserved) == (CALL * 3 if period is None else CALL * 4, 0)


def test_set_active_false_disables_enforcement(tracker):
    call, ran = caller(tracker)
    llmcost.set_active(False)
    with budget(Decimal("0.000001"), tracker=tracker):
        call()
    llmcost.set_active(True)
    assert len(ran) == 1


def test_manager_budgets_persist_and_are_enforced_everywhere(tmp_path, clock):
    url = f"duckdb://{tmp_path / 'costs.duckdb'}"
    first = CostTracker(url, clock=clock)
    created = []
    first.subscribe("budget.created", created.append)
    manager = BudgetManager(first)
    manager.create("daily-cap", CALL * 2, "daily", resource="bot")
    assert [b.name for b in created] == ["daily-cap"]
    call, ran = caller(first, resource="bot")
    call()
    first.flush()
    # Another tracker on the same store (as another process would be) sees and enforces the budget.
    second = CostTracker(url, clock=clock)
    other = BudgetManager(second)
    assert [b.name for b in other.list()] == ["daily-cap"]
    call2, ran2 = caller(second, resource="bot")
    call2()
    with pytest.raises(BudgetExceeded, match="daily-cap"):
        call2()
    assert len(ran) + len(ran2) == 2
    status = other.status()
    assert status.loc[0, "name"] == "daily-cap" and status.loc[0, "spent"] == CALL * 2
    alerts = other.check_budgets()
    assert [a.threshold for a in alerts][-1] == 1.0
    assert other.check_budgets() == []  # only new alerts
    assert other.can_spend("0.0001") is False
    assert other.delete("daily-cap") is True
    call2()  # no longer enforced
    first.close()
    second.close()


def test_budget_guard(tracker):
    guard = llmcost.BudgetGuard(daily_limit="1.00", total_limit="5", tracker=tracker)
    assert guard.can_proceed("0.5")
    guard.record_spend("0.75")
    remaining = guard.get_remaining()
    assert remaining == {"daily": Decimal("0.25"), "monthly": None, "total": Decimal("4.25")}
    assert not guard.can_proceed("0.5")
    assert guard.can_proceed("0.2")


@pytest.mark.on_system_clock("daily")  # (the default tracker's daily limit, on the system clock: tests/conftest.py)
def test_env_limits_guard_the_default_tracker(monkeypatch):
    monkeypatch.setenv("LLMCOST_DAILY_LIMIT", "0.004")
    tracker = llmcost.get_tracker()
    call, _ran = caller(tracker)
    call()
    with pytest.raises(BudgetExceeded, match="env-daily"):
        call()
    llmcost._state.reset()
    monkeypatch.setenv("LLMCOST_DAILY_LIMIT", "lots")
    with pytest.raises(ValueError, match="LLMCOST_DAILY_LIMIT"):
        llmcost.get_tracker()


def test_a_bad_env_limit_is_refused_too_while_an_opentelemetry_export_wants_the_requested_model(monkeypatch):
    # Tracked calls take another first step while an export wants the model each asked for: it let the setting's
    # error through as "cannot track" (and the call ran with no limit).
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider

    from llmcost import otel
    from llmcost._errors import SettingError

    exported = llmcost.CostTracker()
    undo = otel.instrument_tracker(exported, tracer_provider=TracerProvider())
    try:
        monkeypatch.setenv("LLMCOST_DAILY_LIMIT", "$1")
        ran = []
        ask = llmcost.track_cost(lambda: ran.append(1))
        with pytest.raises(SettingError, match="LLMCOST_DAILY_LIMIT"):
            ask()
        assert ran == []
    finally:
        undo()


def test_a_fresh_state_forgets_the_exports_that_wanted_requested_models():
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider

    from llmcost import _decorator, otel

    otel.instrument_tracker(llmcost.CostTracker(), tracer_provider=TracerProvider())  # never undone
    assert _decorator.wanting_requested
    llmcost._state.reset()
    assert not _decorator.wanting_requested  # tracked calls no longer take the export's first step


@pytest.mark.on_system_clock("daily")  # (the default tracker's daily limit, on the system clock: tests/conftest.py)
@pytest.mark.parametrize("value", ["$0.01", "lots", "-1", "0"])
def test_a_bad_env_limit_is_refused_at_every_use_and_never_leaves_a_default_without_it(monkeypatch, value):
    # The first use used to raise once and leave the new default tracker installed without its limit: every later
    # call then ran with none (10 calls of $0.0025 through a limit meant as $0.01).
    from llmcost._errors import SettingError

    monkeypatch.setenv("LLMCOST_DAILY_LIMIT", value)
    ran = []

    @llmcost.track_cost
    def ask() -> dict:
        ran.append(1)
        return {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}  # $0.0025

    message = f"LLMCOST_DAILY_LIMIT must be a positive amount in USD, got {value!r}"
    for _ in range(3):
        with pytest.raises(SettingError) as raised:
            llmcost.get_tracker()
        assert str(raised.value) == message and isinstance(raised.value, ValueError)
        with pytest.raises(SettingError, match=re.escape(message)):
            ask()  # refused as a bad argument is: not run without the limit asked for
    assert ran == [] and llmcost._state.default_tracker is None
    monkeypatch.setenv("LLMCOST_DAILY_LIMIT", "0.005")  # fixed: the limit holds from the next use
    ask()
    ask()
    with pytest.raises(BudgetExceeded, match="env-daily"):
        ask()
    assert len(ran) == 2 and llmcost.get_tracker().total() == Decimal("0.005")


def test_recent_calls_of_the_resource_estimate_a_call_without_other_estimates(tracker):
    # No model on the decorator and no request arguments: the estimate is the mean of the resource's recent calls,
    # over every model it used.
    responses = iter(
        [
            {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}},  # $0.0025
            {"model": "gpt-4o", "usage": {"prompt_tokens": 3000, "completion_tokens": 0}},  # $0.0075
            {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 10000, "completion_tokens": 0}},  # $0.0015
        ]
    )
    ran = []

    @track_cost(tracker=tracker, resource="summarize")
    def call():
        ran.append(1)
        return next(responses)

    for _ in range(3):
        call()
    assert tracker.recent_cost("summarize", "gpt-4o") == Decimal("0.005")
    assert tracker.recent_cost("summarize", None) == Decimal("0.003833333333333333")  # 0.0115 / 3, money's 18 places
    assert tracker.recent_cost("other", None) is None
    with budget(Decimal("0.003"), tracker=tracker), pytest.raises(BudgetExceeded):  # 0.0038 expected > 0.003
        call()
    assert len(ran) == 3


def test_thresholds_fire_exactly_at_their_amounts_and_again_in_the_next_period(tracker, clock):
    seen = []
    b = budget("1.00", period="daily", tracker=tracker, thresholds=(0.5, 0.8), on_alert=seen.append)
    for amount in ("0.49", "0.01", "0.29", "0.01"):  # 0.49, 0.50 (fires 0.5), 0.79, 0.80 (fires 0.8)
        with b:
            tracker.record(amount=amount)
    assert [(a.threshold, a.spent) for a in seen] == [(0.5, Decimal("0.50")), (0.8, Decimal("0.80"))]
    clock.now += timedelta(days=1)  # a new day: nothing spent, every threshold waits again
    with b:
        tracker.record(amount="0.5")
    assert [(a.threshold, a.spent) for a in seen][2:] == [(0.5, Decimal("0.5"))]


def test_manager_per_model_budget_is_enforced_by_a_plain_tracker_on_the_store(tmp_path, clock):
    url = f"duckdb://{tmp_path / 'costs.duckdb'}"
    with CostTracker(url, clock=clock) as setup:
        BudgetManager(setup).create("gpt-4o-cap", CALL * 2, "daily", model="gpt-4o")
    plain = CostTracker(url, clock=clock)  # no BudgetManager in this "process": the saved budget still applies
    call, ran = caller(plain)
    mini = track_cost(tracker=plain, model="gpt-4o-mini", usage=lambda r: Usage(input_tokens=1000))(lambda: "ok")
    call()
    call()
    with pytest.raises(BudgetExceeded, match="gpt-4o-cap"):
        call()
    mini()  # another model: not limited
    assert len(ran) == 2
    plain.close()


def test_processes_share_a_period_budget_by_its_definition(tracker):
    # The same budget written two ways is one account in the ledger; another limit or filter is another account.
    assert budget("1.00", period="daily").key == budget(Decimal("1"), period="daily").key
    assert budget("1.00", period="daily").key != budget("2", period="daily").key
    assert budget(1, period="daily", name="x").key == budget(5, period="daily", name="x").key
    assert budget(1, period="daily", name="x").key != budget(1, period="daily", name="x", model="gpt-4o").key


def test_a_per_model_budget_counts_entries_by_their_canonical_model(tracker):
    b = budget("1.00", period="daily", tracker=tracker, model="gpt-4o")
    with b:
        tracker.record(model="gpt-4o-2024-08-06", input_tokens=1_000_000)  # $2.50, a dated id of gpt-4o
        tracker.record(model="gpt-4o-mini", input_tokens=1_000_000)  # another model: not counted
    assert b.spent == Decimal("2.5")


def test_a_per_model_budget_checks_a_call_to_a_dated_id_of_its_model_before_it_is_made(tracker):
    call = track_cost(tracker=tracker, model="gpt-4o-2024-08-06", usage=lambda r: Usage(input_tokens=1000))
    ran = []
    with budget(CALL, period="daily", tracker=tracker, model="gpt-4o"):
        call(lambda: ran.append(1))()
        with pytest.raises(BudgetExceeded):
            call(lambda: ran.append(2))()
    assert ran == [1]


@pytest.mark.parametrize("period", [None, "daily"])
def test_a_per_model_budget_counts_only_that_models_entries(tracker, period):
    # Another model's entry, and one with no model, do not count; a dated id of the model does (the same rule for a
    # block budget as for a period budget's ledger scope).
    with budget(10, model="gpt-4o", period=period, tracker=tracker) as b:
        tracker.record(model="claude-3-5-sonnet-20241022", input_tokens=1000)
        tracker.record(amount=Decimal("1"), resource="no-model")
        assert b.spent == 0
        tracker.record(model="gpt-4o-2024-08-06", input_tokens=1000)
        tracker.record(model="gpt-4o", input_tokens=1000)
        assert b.spent == CALL * 2
        gpt = caller(tracker)[0]
        claude = track_cost(tracker=tracker, model="claude-3-5-sonnet-20241022", usage=lambda r: Usage(1000))(str)
        gpt()
        claude()
        assert (b.spent, b.reserved) == (CALL * 3, 0)


def test_a_budget_entered_again_counts_and_reserves_each_call_once(tracker):
    # A function under @budget that calls itself enters the same budget again: each call is checked and each entry
    # counted once (they were counted once per level).
    call, ran = caller(tracker, estimate=CALL)
    limit = budget(CALL * 3, tracker=tracker)

    @limit
    def nested(depth):
        call()
        assert limit.reserved == 0  # the call's single reservation was settled by its entry
        if depth:
            nested(depth - 1)

    nested(2)
    assert (limit.spent, limit.reserved, len(ran)) == (CALL * 3, 0, 3)
    with limit, limit, pytest.raises(BudgetExceeded):
        call()
    assert len(ran) == 3


def test_a_recent_calls_estimate_that_does_not_divide_exactly_leaves_the_accounts_exact(tracker):
    # The mean of 0.0025, 0.0025 and 0.005 is 0.01/3: reserved and settled, it must leave nothing behind, so a
    # budget spent to its limit refuses the next call and one with room reports its remaining exactly.
    def response(prompt_tokens):
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 0}
        return {"object": "chat.completion", "model": "gpt-4o", "choices": [], "usage": usage}

    sizes = iter([1000, 1000, 2000, 2000])
    call = track_cost(tracker=tracker, resource="r")(lambda: response(next(sizes)))
    fresh = track_cost(tracker=tracker, resource="fresh")(lambda: response(1000))  # no history: estimate 0
    for _ in range(3):
        call()
    with budget(Decimal("0.0067"), tracker=tracker) as spent_out:
        tracker.record(amount="0.0017")
        call()  # 0.005: spent is the limit exactly
        assert (spent_out.spent, spent_out.reserved, spent_out.remaining) == (Decimal("0.0067"), 0, 0)
        with pytest.raises(BudgetExceeded):
            fresh()
    for amount in ["0.0025", "0.005", "0.005"]:
        tracker.record(amount=amount, resource="s")
    other = track_cost(tracker=tracker, resource="s")(lambda: response(1000))
    with budget(1, tracker=tracker) as room:
        other()  # reserves 0.0125/3, costs 0.0025
        assert (room.reserved, str(room.remaining)) == (0, "0.9975")


def test_the_recent_calls_mean_is_at_money_scale_whatever_its_size_or_the_threads_context(tracker):
    for amount in ["12345678901.5", "1", "1"]:  # a mean too large for the 28-digit context at 18 places
        tracker.record(amount=amount, resource="big")
    for amount in ["0.0025", "0.005", "0.005"]:
        tracker.record(amount=amount, resource="small")
    tracker.record(amount="0.0025", resource="exact")
    assert tracker.recent_cost("big", None) == Decimal("4115226301.166666666666666667")
    assert str(tracker.recent_cost("small", None)) == "0.004166666666666667"
    assert str(tracker.recent_cost("exact", None)) == "0.0025"  # an exact mean as it is, no trailing zeros
    with decimal.localcontext() as context:
        context.prec = 5  # the mean is kept in ints: the thread's narrow context rounds nothing
        assert str(tracker.recent_cost("small", None)) == "0.004166666666666667"


@pytest.mark.parametrize("every_tracker", [True, False])
def test_a_limit_set_anew_holds_from_the_next_call(tracker, every_tracker):
    call, ran = caller(tracker, estimate=Decimal("0.004"))
    limits = budget(1) if every_tracker else budget(1, tracker=tracker)
    with limits:
        call()
        limits.limit = "0.005"  # 0.0025 spent: the next estimate no longer fits
        assert limits.limit == Decimal("0.005") and limits.remaining == Decimal("0.0025")
        with pytest.raises(BudgetExceeded) as info:
            call()
        limits.limit = Decimal("0.0075")
        call()
    assert len(ran) == 2 and info.value.limit == Decimal("0.005")
    # Half of the lowered limit passed (0.0025 of 0.005; of the first limit, a quarter of a per cent), found by the
    # refusal and said before its alert.
    assert [alert.threshold for alert in limits.alerts] == [0.5, 1.0]
    for bad in (0, "-1", "x"):
        with pytest.raises((ValueError, TypeError), match="limit"):
            limits.limit = bad
    assert limits.limit == Decimal("0.0075")


def tracker_over(kind, tmp_path, clock):
    """A tracker over a fresh store of ``kind``: an in-process ledger (memory) or a shared one, leasing (duckdb)."""
    return CostTracker(f"duckdb://{tmp_path / 'costs.duckdb'}" if kind == "duckdb" else "memory://", clock=clock)


@pytest.mark.parametrize("lowered", ["0.02", "0.5"], ids=["below-the-lease", "room-for-leases"])
@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_a_period_budgets_limit_set_anew_holds_from_the_next_call_and_alerts_at_its_thresholds(
    tmp_path, clock, kind, lowered
):
    lowered = Decimal(lowered)
    with tracker_over(kind, tmp_path, clock) as tr:
        call, ran = caller(tr, estimate=CALL)
        seen = []
        with budget(10, period="daily", tracker=tr, on_alert=seen.append) as b:
            for _ in range(4):
                call()  # 0.01 of 10 (over DuckDB, served from the budget's lease)
            b.limit = lowered
            refused = 0
            for _ in range(int(lowered / CALL) + 4):
                try:
                    call()
                except BudgetExceeded:
                    refused += 1
            assert len(ran) == lowered / CALL and refused == 8 and b.spent == lowered
            b.limit = lowered + CALL * 4  # raised: four calls more, then refused again
            for _ in range(4):
                call()
            with pytest.raises(BudgetExceeded):
                call()
        tr.flush()
        assert tr.store.total() == lowered + CALL * 4 and len(ran) == lowered / CALL + 4
    # Each threshold of the new limit fired at the first count that reached it (the first after the change, 0.0125,
    # at the earliest), once.
    expected = [(t, max(math.ceil(Decimal(repr(t)) * lowered / CALL), 5) * CALL) for t in (0.5, 0.8, 0.9, 1.0)]
    assert [(a.threshold, a.spent) for a in seen] == expected
    assert {a.limit for a in seen} == {lowered}


@pytest.mark.parametrize("kind", ["block", "memory", "duckdb"])
def test_the_exceeded_alert_fires_once_a_period_with_lower_alerts_between_refusals(tmp_path, clock, kind):
    with tracker_over("duckdb" if kind == "duckdb" else "memory", tmp_path, clock) as tr:
        ask = track_cost(tracker=tr, estimate=lambda tokens: CALL * tokens / 1000)(
            lambda tokens: {"model": "gpt-4o", "usage": {"prompt_tokens": tokens, "completion_tokens": 0}}
        )
        seen = []
        with budget("0.01", period=None if kind == "block" else "daily", tracker=tr, on_alert=seen.append):
            ask(3000)  # $0.0075: the 0.5 alert
            with pytest.raises(BudgetExceeded):
                ask(2000)  # $0.005 needed, $0.0025 left: the 1.0 alert
            ask(600)  # $0.009: the 0.8 and 0.9 alerts
            with pytest.raises(BudgetExceeded):
                ask(2000)  # refused again: no alert
            assert [a.threshold for a in seen] == [0.5, 1.0, 0.8, 0.9]
            if kind != "block":  # a new day: every threshold waits again, the refusal's too
                clock.now += timedelta(days=1)
                ask(3000)
                for _ in range(2):
                    with pytest.raises(BudgetExceeded):
                        ask(2000)
                assert [a.threshold for a in seen] == [0.5, 1.0, 0.8, 0.9, 0.5, 1.0]


@pytest.mark.parametrize("period", [None, "daily"])
def test_a_budget_that_cannot_count_entries_logs_it_once_with_its_traceback(
    period: str | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A store that is down fails every call's count the same way: docs/errors.md promises one log line per cause, and
    # each call logged a full traceback.
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the ledger is down")

    monkeypatch.setattr(llmcost.Budget, "settle_row", broken)
    monkeypatch.setattr(llmcost.Budget, "on_recorded_row", broken)
    monkeypatch.setattr(llmcost.Budget, "on_recorded", broken)
    tracker = CostTracker()
    call = track_cost(tracker=tracker, estimate=Decimal("0.001"))(
        lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 0}}
    )
    with caplog.at_level("DEBUG", logger="llmcost"), budget(1, period=period, tracker=tracker):
        for _ in range(3):
            call()
    failed = [r for r in caplog.records if "failed to count entry" in r.getMessage()]
    assert [r.levelname for r in failed] == ["ERROR", "DEBUG", "DEBUG"]
    assert failed[0].exc_info is not None and "the ledger is down" in str(failed[0].exc_info[1])
    assert len(tracker.entries()) == 3  # recorded all the same


@pytest.mark.parametrize("period", [None, "daily"])
@pytest.mark.parametrize("prec", [28, 8])
def test_a_budgets_figures_are_exact_at_any_magnitude_in_any_context(tracker, period, prec):
    # limit - committed of amounts below 10**20 at 18 places needs up to 39 digits: the default context's 28 rounded
    # the remaining figure of a $10**11 budget (...98765432 for ...987654321), a narrower one more.
    large = Decimal("12345678901.123456789012345678")
    with budget(10**11, period=period, tracker=tracker) as b:
        tracker.record(amount=large)
        with decimal.localcontext(decimal.Context(prec=prec)):
            figures = (b.spent, b.reserved, b.remaining)
    assert figures == (large, 0, Decimal("87654321098.876543210987654322"))


def test_a_refusal_decided_as_another_thread_moves_the_budget_to_the_next_period_alerts_in_neither():
    # A call refused against January's ledger while another thread's call rolls the budget into February: its
    # "exceeded" was filed as February's 1.0 alert, at 0%, so February's alerts came out [1.0, 0.5, 0.8, 0.9] and
    # none said when February reached its limit.
    now = [datetime(2024, 1, 31, 23, 59, tzinfo=UTC)]
    rolled = threading.Event()

    class Store(llmcost.MemoryStore):
        def reserve(self, scope, amount, *, limit, force=False):
            granted = super().reserve(scope, amount, limit=limit, force=force)
            if not granted.granted and not rolled.is_set():
                rolled.set()
                now[0] = datetime(2024, 2, 1, tzinfo=UTC)  # midnight passes as January refuses the call
                thread = threading.Thread(target=contextvars.copy_context().run, args=(ask,))
                thread.start()
                thread.join()
            return granted

    tracker = CostTracker(Store(), clock=lambda: now[0])
    ask, _ = caller(tracker, estimate=CALL)
    alerts: list[llmcost.BudgetAlert] = []
    with budget("0.01", period="monthly", tracker=tracker, on_alert=alerts.append) as b:
        for _ in range(4):
            ask()  # January's limit
        with pytest.raises(BudgetExceeded):
            ask()  # refused in January, as February begins
        for _ in range(5):  # February to its limit, and one call past it
            with contextlib.suppress(BudgetExceeded):
                ask()
    assert b.spent == Decimal("0.01")
    february = [a for a in alerts if a.timestamp.month == 2]
    assert [a.threshold for a in february] == [0.5, 0.8, 0.9, 1.0]
    assert february[-1].utilization == 1.0


def test_two_equal_unnamed_period_budgets_nested_reserve_each_call_once(tracker):
    # Unnamed period budgets of one limit, period and filters are one budget to the ledger (one account): nested, as
    # a decorated pipeline calling a decorated step, each reserved every call again in that account, so the 4th call
    # of a $0.01 day was refused at $0.0075 spent ("$0.0025 held by calls in flight" with none in flight).
    call, ran = caller(tracker, estimate=CALL)
    step = budget("0.01", period="daily", tracker=tracker)(call)
    pipeline = budget("0.01", period="daily", tracker=tracker)(lambda: step())
    for _ in range(4):
        pipeline()
    with pytest.raises(BudgetExceeded):
        pipeline()
    assert len(ran) == 4 and tracker.total() == Decimal("0.01")
    # Another period, or another limit, is another budget: nested, each checks the call.
    other = budget("0.02", period="daily", tracker=tracker)
    assert not other.same_budget(budget("0.02", period="weekly", tracker=tracker))
    assert not other.same_budget(budget("0.03", period="daily", tracker=tracker))


def test_budgets_made_and_entered_one_per_request_leave_the_threads_context_as_it_was(tracker):
    # Each budget had a context variable of its own, which stayed in the context of every thread that entered it:
    # ~200 bytes per budget made per request, for good, on a long-lived worker thread.
    def request(i: int) -> None:
        with budget("0.50", tracker=tracker), budget(1, period="daily", name=f"user-{i % 3}", tracker=tracker):
            pass

    request(0)
    before = len(contextvars.copy_context())
    for i in range(200):
        request(i)
    assert len(contextvars.copy_context()) == before
    outer, inner = budget(1, tracker=tracker), budget(2, tracker=tracker)
    with outer:
        with inner:
            assert active_guards() == (outer, inner)
        assert active_guards() == (outer,)
    assert active_guards() == ()
