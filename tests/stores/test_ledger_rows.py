"""A fed ``LocalLedger`` (a ``MemoryStore``'s) is told of appends as rows (``ROW_FIELDS``, epoch microseconds):
it counts each row in the accounts whose period and filters it matches, as ``BudgetScope.matches`` would its
entry, with no ``CostEntry`` built."""

from __future__ import annotations

import decimal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from llmcost import BudgetExceeded, CostTracker, MemoryStore, budget, tags, track_cost
from llmcost._entry import to_tags
from llmcost._time import micros
from llmcost.stores import BudgetScope, _ledger
from llmcost.stores._memory import ROW_FIELDS
from tests.conftest import Clock

UTC = timezone.utc
DAY = datetime(2024, 5, 17, tzinfo=UTC)


def test_row_positions_match_the_memory_stores_row_fields() -> None:
    for name, position in [
        ("id", _ledger.ROW_ID),
        ("timestamp", _ledger.ROW_MICROS),
        ("amount", _ledger.ROW_AMOUNT),
        ("category", _ledger.ROW_CATEGORY),
        ("resource", _ledger.ROW_RESOURCE),
        ("model", _ledger.ROW_MODEL),
        ("tags", _ledger.ROW_TAGS),
        ("canonical_model", _ledger.ROW_CANONICAL),
    ]:
        assert ROW_FIELDS[position] == name
    assert len(ROW_FIELDS) == _ledger.ROW_ENTRY  # the entry, if built, after the fields (``MemoryStore.append_row``)


def make_entry(**fields):  # type: ignore[no-untyped-def]
    return CostTracker().build(**fields)


def _row(entry):  # type: ignore[no-untyped-def]
    values = [getattr(entry, name) for name in ROW_FIELDS]
    values[1] = micros(entry.timestamp)
    return (*values, None)


def test_rows_and_entries_count_alike_by_period_and_filters() -> None:
    store = MemoryStore()
    ledger = store.ledger()
    assert ledger.fed  # type: ignore[attr-defined]
    scopes = [
        BudgetScope("all", since=DAY, until=DAY + timedelta(days=1)),
        BudgetScope("team", since=DAY, until=DAY + timedelta(days=1), tags=to_tags({"team": "a"})),
        BudgetScope("bot", since=DAY, until=DAY + timedelta(days=1), resource="bot", category="llm_inference"),
        BudgetScope("model", since=DAY, until=DAY + timedelta(days=1), model="gpt-4o"),
        BudgetScope("ever"),
    ]
    for scope in scopes:
        ledger.standing(scope)  # the accounts open (nothing recorded yet)
    entries = [
        make_entry(amount="1", timestamp=DAY, tags={"team": "a"}, resource="bot"),
        make_entry(amount="2", timestamp=DAY + timedelta(days=1), tags={"team": "a"}),  # the next day
        make_entry(amount="4", timestamp=DAY - timedelta(microseconds=1), resource="bot"),  # the day before
        make_entry(amount="8", timestamp=DAY + timedelta(hours=23, minutes=59, seconds=59, microseconds=999999)),
        make_entry(amount="16", timestamp=DAY + timedelta(hours=1), tags={"team": "b"}, model="gpt-4o-mini"),
        make_entry(amount="32", timestamp=DAY + timedelta(hours=2), model="gpt-4o", category="compute"),
    ]
    store.append(entries[:2])  # as entries
    for entry in entries[2:]:
        store.append_row(_row(entry))  # as rows, no entry built
    spent = {scope.budget: ledger.standing(scope).spent for scope in scopes}
    expected = {scope.budget: sum((e.amount for e in entries if scope.matches(e)), Decimal(0)) for scope in scopes}
    assert spent == expected
    assert spent == {"all": 57, "team": 1, "bot": 1, "model": 32, "ever": 63}


def test_rows_told_one_at_a_time_count_as_rows_told_together() -> None:
    # A tracked call's row reaches the ledger alone (``appended_row``), as its call settles; a burst of appends
    # reaches it together (``appended``): both count each row once, in the accounts it matches.
    scopes = [
        BudgetScope("all", since=DAY, until=DAY + timedelta(days=1)),
        BudgetScope("team", since=DAY, until=DAY + timedelta(days=1), tags=to_tags({"team": "a"})),
        BudgetScope("model", since=DAY, until=DAY + timedelta(days=1), model="gpt-4o"),
    ]
    entries = [
        make_entry(amount="1", timestamp=DAY, tags={"team": "a"}),
        make_entry(amount="2", timestamp=DAY + timedelta(days=1), tags={"team": "a"}),  # the next day
        make_entry(amount="4", timestamp=DAY + timedelta(hours=1), model="gpt-4o-mini"),
        make_entry(amount="8", timestamp=DAY + timedelta(hours=2), model="gpt-4o"),
    ]
    seen = []
    for one_at_a_time in (True, False):
        store = MemoryStore()
        ledger = store.ledger()
        for scope in scopes:
            ledger.standing(scope)
        for entry in entries:
            store.append_row(_row(entry))
            if one_at_a_time:
                ledger.standing(scopes[0])  # the ledger catches up on this one row
        seen.append({scope.budget: ledger.standing(scope).spent for scope in scopes})
    assert seen == [{"all": 13, "team": 1, "model": 8}] * 2


@pytest.mark.parametrize(
    "outside",
    [None, DAY + timedelta(days=1), DAY - timedelta(microseconds=1)],
    ids=["all-in-the-period", "one-at-the-end-bound", "one-just-before"],
)
def test_a_batch_of_rows_counts_each_row_of_a_plain_accounts_period_once_and_no_other(outside: datetime | None) -> None:
    # A MemoryStore's move tells the ledger of its appends in one batch (``appended``): a plain account whose period
    # holds every row of the batch adds their sum at once; a batch reaching past either bound is counted row by row.
    # Either way each row of the period counts once, exactly (18 places, in a caller's narrow context), and no other.
    day = BudgetScope("day", since=DAY, until=DAY + timedelta(days=1))
    ever = BudgetScope("ever")
    inside = [
        (DAY, Decimal("0.000000000000000001")),
        (DAY + timedelta(hours=5), Decimal("12345678.123456789012345678")),
        (DAY + timedelta(days=1) - timedelta(microseconds=1), Decimal("0.5")),
    ]
    rows = inside + ([] if outside is None else [(outside, Decimal("7"))])
    store = MemoryStore()
    ledger = store.ledger()
    for scope in (day, ever):
        ledger.standing(scope)
    for when, amount in rows:
        store.append_row(_row(make_entry(amount=amount, timestamp=when)))
    with decimal.localcontext(_narrow()):
        day_spent, ever_spent = ledger.standing(day).spent, ledger.standing(ever).spent  # (one batch of rows)
    assert day_spent == Decimal("12345678.623456789012345679")
    assert ever_spent == sum((amount for _, amount in rows), Decimal(0))


# -- kept accounts: how a period budget's calls reserve and settle over a MemoryStore --------------------------
SCOPE = BudgetScope("kept", since=DAY, until=DAY + timedelta(days=1))
CALL = Decimal("0.0025")


def _kept() -> tuple[MemoryStore, _ledger.LocalLedger, Any]:
    """A MemoryStore, its fed ledger, and the kept account of ``SCOPE`` in it."""
    store = MemoryStore()
    ledger = store.ledger()
    assert isinstance(ledger, _ledger.LocalLedger)
    return store, ledger, ledger.open_kept(SCOPE)


def test_a_kept_account_counts_every_append_before_it_checks_and_grants_exactly_up_to_the_limit() -> None:
    store, ledger, account = _kept()
    limit = CALL * 4
    assert ledger.take_kept(account, CALL * 2, limit) is True
    assert ledger.standing(SCOPE) == _ledger.Standing(Decimal(0), CALL * 2)
    store.append_row(_row(make_entry(amount=CALL, timestamp=DAY)))  # recorded by anyone, not through the account
    assert ledger.take_kept(account, CALL + Decimal("1e-18"), limit) is False  # one atom past the limit
    assert ledger.take_kept(account, CALL, limit) is True  # exactly at it
    assert ledger.take_kept(account, Decimal(0), limit) is False  # nothing left: not even a free call
    assert ledger.give_back(account, CALL * 2) == CALL
    assert ledger.standing(SCOPE) == _ledger.Standing(CALL, CALL)
    store.append_row(_row(make_entry(amount=CALL * 3, timestamp=DAY)))  # the call's row, counted as it gives back
    assert ledger.give_back(account, CALL) == CALL * 4
    assert ledger.standing(SCOPE) == _ledger.Standing(CALL * 4, Decimal(0))


def test_a_kept_account_grants_as_reserve_does_whatever_the_sign_of_the_amount() -> None:
    # ``take_kept`` checks in one addition (committed + amount <= limit): with what remains positive and at least
    # the amount, as ``reserve`` grants; a negative or zero amount needs room left all the same.
    limit = CALL * 2
    other = BudgetScope("other", since=DAY, until=DAY + timedelta(days=1))
    for amount in (CALL * 2, CALL, Decimal(0), -CALL, CALL * 3):
        for before in (Decimal(0), CALL, CALL * 2, CALL * 3):  # committed already, in either scope
            _, ledger, account = _kept()
            ledger.reserve(SCOPE, before, limit=limit, force=True)
            ledger.reserve(other, before, limit=limit, force=True)
            granted = ledger.reserve(other, amount, limit=limit).granted
            assert ledger.take_kept(account, amount, limit) is granted, (amount, before)
            assert ledger.standing(SCOPE) == ledger.standing(other)


def test_calls_in_flight_of_a_kept_account_hold_their_estimates_there_and_each_gives_its_own_back() -> None:
    _, ledger, account = _kept()
    assert ledger.take_kept(account, CALL, Decimal(1)) and ledger.take_kept(account, CALL, Decimal(1))
    assert ledger.standing(SCOPE).reserved == CALL * 2 and not account.holds and not ledger._holds
    assert ledger.give_back(account, CALL) == 0
    assert ledger.standing(SCOPE).reserved == CALL
    assert ledger.give_back(account, CALL) == 0
    assert ledger.standing(SCOPE).reserved == 0


def test_a_kept_account_the_ledger_forgot_is_not_taken_from() -> None:
    _, ledger, account = _kept()
    assert ledger.take_kept(account, CALL, Decimal(1)) is True
    for days in (1, 2):  # the same budget two periods later: the first period's account is forgotten
        ledger.standing(BudgetScope("kept", since=DAY + timedelta(days=days), until=DAY + timedelta(days=days + 1)))
    assert ledger.take_kept(account, CALL, Decimal(1)) is None
    assert ledger.standing(SCOPE) == _ledger.Standing(Decimal(0), Decimal(0))  # (read anew: the ledger forgot it)


def test_a_kept_account_counts_whatever_was_appended_before_a_call_gives_back() -> None:
    # The usual news as a call gives back is its own row alone; anything else appended meanwhile (entries of
    # ``append``, other rows, a row with its entry) is counted in the same step, each once, and never again as the
    # store moves it into its columns.
    store, ledger, account = _kept()
    assert ledger.take_kept(account, CALL, Decimal(1)) is True
    entry = make_entry(amount=CALL, timestamp=DAY)
    store.append([make_entry(amount=CALL * 2, timestamp=DAY)])
    store.append_row((*_row(entry)[:-1], entry))  # a row with its entry built
    store.append_row(_row(make_entry(amount=CALL * 4, timestamp=DAY - timedelta(seconds=1))))  # the day before
    assert ledger.give_back(account, CALL) == CALL * 3
    store.append_row(_row(make_entry(amount=CALL * 8, timestamp=DAY)))
    assert ledger.give_back(account, Decimal(0)) == CALL * 11  # the one row, alone
    assert len(store.entries()) == 4  # moved into the columns ...
    assert ledger.standing(SCOPE) == _ledger.Standing(CALL * 11, Decimal(0))  # ... and counted once


def test_each_call_of_a_kept_account_gives_its_own_estimate_back_whichever_way_it_settles() -> None:
    # The estimates of calls in flight are in the account's committed figure alone: each call gives its own back,
    # as it gives back (``give_back``) or as it is settled with its entry (``settle_kept``).
    _, ledger, account = _kept()
    assert ledger.take_kept(account, CALL, Decimal(1)) and ledger.take_kept(account, CALL * 2, Decimal(1))
    assert ledger.take_kept(account, Decimal(0), Decimal(1))  # a free call holds nothing
    assert ledger.standing(SCOPE) == _ledger.Standing(Decimal(0), CALL * 3)
    assert ledger.settle_kept(SCOPE, account, CALL * 2, CALL, None) == _ledger.Standing(CALL, CALL)  # in its place
    assert ledger.give_back(account, Decimal(0)) == CALL  # the free call: nothing to give back
    assert ledger.settle_kept(SCOPE, account, CALL, None, None) == _ledger.Standing(CALL, Decimal(0))
    assert ledger.standing(SCOPE) == _ledger.Standing(CALL, Decimal(0))


# -- decimal contexts: the ledger counts exactly whatever context the thread that reaches it is in -------------------
# A fed ledger is reached from any thread, in whatever decimal context that thread has: the calls of a budget (which
# run in a wide one), but also a store's move of its appends (every 256th append, by whoever makes it) and any read.
# Its sums must not round in a narrow one (``localcontext()`` of 3 digits rounds $0.3914313 to $0.391).
PER_CALL = Decimal("0.0006513")  # gpt-4o-mini, 1234 tokens in and 777 out
BIG = Decimal("1234.567891234567891")  # 19 digits: rounded by the default context's 28 only past 10**10


def _narrow() -> decimal.Context:
    return decimal.Context(prec=3)


def _asking(tracker: CostTracker) -> Callable[[], Any]:
    return track_cost(tracker=tracker)(
        lambda: {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1234, "completion_tokens": 777}}
    )


def test_a_daily_budget_counts_calls_tracked_outside_its_block_in_a_narrow_context_exactly(clock: Clock) -> None:
    tracker = CostTracker(clock=clock)  # (a day of its own: every call counts in the budget's day)
    ask = track_cost(tracker=tracker)(lambda: {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1000}})  # $0.00015
    daily = budget("0.20", period="daily", tracker=tracker, on_alert=lambda alert: None)
    with daily:
        ask()  # the budget's account opens in the store's ledger
    with decimal.localcontext(_narrow()):  # a batch job elsewhere in the process, not under the budget
        for _ in range(2047):
            ask()
    assert tracker.store.total() == Decimal("0.3072")
    assert daily.spent == Decimal("0.3072")  # (counted as the store moved its appends, in the narrow context)
    with daily, pytest.raises(BudgetExceeded):
        ask()  # past the limit: refused


def test_a_daily_budget_counts_exactly_when_the_store_is_read_in_a_narrow_context(clock: Clock) -> None:
    tracker = CostTracker(clock=clock)  # (a day of its own: every call counts in the budget's day)
    ask = _asking(tracker)
    daily = budget("100", period="daily", tracker=tracker)
    with daily:
        ask()
    for _ in range(200):  # outside the block, in the default context: fewer than a move's 256, still pending
        ask()
    with decimal.localcontext(_narrow()):
        tracker.entries(limit=1)  # a report: the read moves the pending appends, which the ledger counts then
    assert tracker.store.total() == daily.spent == 201 * PER_CALL


def test_a_daily_budget_counts_exactly_calls_another_thread_tracks_in_a_narrow_context(clock: Clock) -> None:
    tracker = CostTracker(clock=clock)  # (a day of its own: every call counts in the budget's day)
    ask = _asking(tracker)
    daily = budget("100", period="daily", tracker=tracker)

    def elsewhere() -> None:
        with decimal.localcontext(_narrow()):
            for _ in range(600):
                ask()

    with daily:
        ask()
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        assert tracker.store.total() == daily.spent == 601 * PER_CALL


def test_entries_recorded_by_hand_in_a_narrow_context_inside_a_daily_budget_count_exactly(clock: Clock) -> None:
    tracker = CostTracker(clock=clock)  # (a day of its own: every call counts in the budget's day)
    daily = budget("100", period="daily", tracker=tracker)
    with daily:
        with decimal.localcontext(_narrow()):
            for _ in range(600):
                tracker.record(amount=PER_CALL)
        assert tracker.store.total() == daily.spent == 600 * PER_CALL


def _ledger_figures(fed: bool) -> list[object]:
    """Every step of a local ledger (fed or not) and the figures after it, run in the caller's context."""
    rows = [_row(make_entry(amount=amount, timestamp=DAY)) for amount in (PER_CALL, BIG, PER_CALL)]
    store = MemoryStore()
    ledger = store.ledger() if fed else _ledger.LocalLedger(store.total)
    assert isinstance(ledger, _ledger.LocalLedger)
    limit = BIG * 10
    seen: list[object] = [ledger.standing(SCOPE)]
    store.append_row(rows[0])
    seen.append(ledger.standing(SCOPE, refresh=True))
    reservation = ledger.reserve(SCOPE, BIG, limit=limit)
    seen += [reservation, ledger.settle(SCOPE, PER_CALL, reservation=reservation, entry_id="settled-1")]
    seen.append(ledger.settle(SCOPE, BIG, entry_id=None))
    hold = ledger.open_hold(SCOPE)
    seen += [ledger.grow(SCOPE, hold, BIG, limit=limit), ledger.standing(SCOPE)]
    seen.append(ledger.settle_held(SCOPE, hold, BIG, PER_CALL, "settled-2"))
    ledger.close_hold(hold)
    ledger.release(ledger.reserve(SCOPE, PER_CALL, limit=limit))
    seen.append(ledger.standing(SCOPE))
    if fed:
        account = ledger.open_kept(SCOPE)
        seen.append(ledger.take_kept(account, BIG, limit))
        store.append_row(rows[1])
        seen += [ledger.give_back(account, BIG), ledger.take_kept(account, PER_CALL, limit)]
        seen.append(ledger.settle_kept(SCOPE, account, PER_CALL, BIG, None))
    store.append_row(rows[2])
    ledger.acknowledge_ids([rows[2][0]])
    seen += [ledger.standing(SCOPE), len(store.entries()), ledger.standing(SCOPE)]
    return seen


@pytest.mark.parametrize("fed", [True, False], ids=["fed", "read"])
def test_every_step_of_a_local_ledger_counts_exactly_in_a_narrow_context(fed: bool) -> None:
    exact = _ledger_figures(fed)
    with decimal.localcontext(_narrow()):
        assert _ledger_figures(fed) == exact


def _tagged_scopes() -> list[BudgetScope]:
    """Budgets of several shapes over one day: plain, one tag, two tags (either order), a tag and a resource, and a
    model (the accounts a row finds by its tags, and those it is checked against whatever its tags)."""
    until = DAY + timedelta(days=1)
    return [
        BudgetScope("all", since=DAY, until=until),
        *(BudgetScope(f"user-{u}", since=DAY, until=until, tags=to_tags({"user": f"u{u}"})) for u in range(6)),
        BudgetScope("u1-search", since=DAY, until=until, tags=to_tags({"user": "u1", "team": "search"})),
        BudgetScope("search-u1", since=DAY, until=until, tags=to_tags({"team": "search", "user": "u1"})),
        BudgetScope("search-bot", since=DAY, until=until, tags=to_tags({"team": "search"}), resource="bot"),
        BudgetScope("model", since=DAY, until=until, model="gpt-4o"),
        BudgetScope("ever-u2", tags=to_tags({"user": "u2"})),
    ]


@pytest.mark.parametrize("told", ["one at a time", "together", "as entries"])
def test_accounts_with_tags_count_exactly_the_rows_of_their_tags(told: str) -> None:
    import random

    rng = random.Random(7)
    store = MemoryStore()
    ledger = store.ledger()
    scopes = _tagged_scopes()
    for scope in scopes:
        ledger.standing(scope)
    entries = []
    for _ in range(300):
        drawn: dict[str, str] = {}
        if rng.random() < 0.8:
            drawn["user"] = f"u{rng.randrange(8)}"  # (u6 and u7 have no budget)
        if rng.random() < 0.5:
            drawn["team"] = rng.choice(["search", "ads"])
        if rng.random() < 0.2:
            drawn["env"] = "prod"
        entries.append(
            make_entry(
                amount=f"0.{rng.randrange(1, 10**6):06d}",
                timestamp=DAY + timedelta(minutes=rng.randrange(-120, 25 * 60)),  # some the day before or after
                tags=drawn,
                resource=rng.choice(["bot", "api"]),
                model=rng.choice(["gpt-4o", "gpt-4o-mini"]),
            )
        )
    if told == "as entries":
        store.append(entries)
    else:
        rows = [_row(entry) for entry in entries]
        for chunk in [rows[:100], rows[100:]] if told == "together" else [[row] for row in rows]:
            for row in chunk:
                store.append_row(row)
            ledger.standing(scopes[0])  # (the ledger looks: one row, or a batch of them)
    spent = {scope.budget: ledger.standing(scope).spent for scope in scopes}
    expected = {scope.budget: sum((e.amount for e in entries if scope.matches(e)), Decimal(0)) for scope in scopes}
    assert spent == expected
    assert all(spent.values())  # (every budget counted some rows: the draw reaches each)


def test_a_row_is_checked_against_the_accounts_of_its_own_tags_and_not_every_users(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    # A thousand users' daily budgets: each call's row is counted in its user's account alone, without being
    # checked against the other 999 (a check of each made every call of a per-user budget slower with each user).
    tracker = CostTracker(clock=clock)  # (a day of its own: every call counts in the budget's day)
    calls = 0
    checked = _ledger._row_matches

    def counting(scope: BudgetScope, row: tuple[Any, ...]) -> bool:
        nonlocal calls
        calls += 1
        return checked(scope, row)

    @track_cost(tracker=tracker, estimate=Decimal("0.001"))
    def ask() -> dict[str, Any]:
        return {"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 20}}

    for user in range(1000):
        with budget(1, period="daily", tracker=tracker, tags={"user": f"u{user}"}), tags(user=f"u{user}"):
            ask()
    monkeypatch.setattr(_ledger, "_row_matches", counting)
    with budget(1, period="daily", tracker=tracker, tags={"user": "u500"}) as mine, tags(user="u500"):
        ask()
        ask()
        assert mine.spent == 3 * Decimal("0.00045")  # (100 x $2.50 + 20 x $10 per 1M tokens, each of its 3 calls)
    assert calls <= 2  # each row checked against u500's account only


def test_accounts_of_periods_long_over_are_dropped_as_new_ones_open_and_read_again_if_needed() -> None:
    now = [DAY + timedelta(hours=12)]
    tracker = CostTracker(clock=lambda: now[0])
    ledger = tracker.store.ledger()

    @track_cost(tracker=tracker, estimate=Decimal("0.001"))
    def ask() -> dict[str, Any]:
        return {"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 20}}

    users = _ledger._SWEEP_ACCOUNTS + 10
    for user in range(users):
        with budget(1, period="daily", tracker=tracker, tags={"user": f"u{user}"}), tags(user=f"u{user}"):
            ask()
    assert len(ledger._accounts) == users  # (all of today's: none dropped)
    now[0] += timedelta(days=1)  # the next day: yesterday's accounts are kept (a late call may settle there)
    with budget(1, period="daily", tracker=tracker, tags={"user": "new"}), tags(user="new"):
        ask()
    assert len(ledger._accounts) == users + 1
    now[0] += timedelta(days=1)  # two days on: the first day's accounts go as the next one opens
    with budget(1, period="daily", tracker=tracker, tags={"user": "u3"}) as today, tags(user="u3"):
        ask()
        assert today.spent == Decimal("0.00045")
    assert len(ledger._accounts) == 2  # "new"'s of yesterday and u3's of today
    now[0] -= timedelta(days=2)  # a late look at the first day: its spend read again from the store
    with budget(1, period="daily", tracker=tracker, tags={"user": "u3"}) as first_day, tags(user="u3"):
        assert first_day.spent == Decimal("0.00045")
        ask()
    assert first_day.spent == Decimal("0.0009")


def test_an_account_whose_call_is_in_flight_is_not_dropped_when_a_later_period_opens() -> None:
    # Over a MemoryStore a kept account's calls in flight hold their estimates in its figures alone: a period two
    # days later opened on the same store (another tracker's clock) drops idle accounts of long-past periods, but
    # not this one, whose next call must still see the call in flight.
    import threading

    store = MemoryStore()
    then = CostTracker(store=store, clock=lambda: DAY + timedelta(hours=12))
    later = CostTracker(store=store, clock=lambda: DAY + timedelta(days=2, hours=12))
    response = {"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 20}}  # $0.00045
    go, inside = threading.Event(), threading.Event()

    @track_cost(tracker=then, estimate=Decimal("0.00045"))
    def slow() -> dict[str, Any]:
        inside.set()
        go.wait(10)
        return response

    @track_cost(tracker=then, estimate=Decimal("0.00045"))
    def fast() -> dict[str, Any]:
        return response

    @track_cost(tracker=later, estimate=Decimal("0.00045"))
    def other() -> dict[str, Any]:
        return response

    def in_flight() -> None:
        with budget(Decimal("0.0012"), period="daily", tracker=then, name="b"):  # (a thread enters it anew)
            slow()

    with budget(Decimal("0.0012"), period="daily", tracker=then, name="b") as b:
        fast()
        worker = threading.Thread(target=in_flight)
        worker.start()
        assert inside.wait(5)
        with budget(10, period="daily", tracker=later, name="live"):
            other()  # (day D+2's account opens: D's would go, were it idle)
        try:
            with pytest.raises(BudgetExceeded, match="held by calls in flight"):
                fast()  # 0.00045 spent + 0.00045 in flight + 0.00045 > 0.0012
        finally:
            go.set()
            worker.join()
        assert b.spent == Decimal("0.0009")


def test_a_scope_made_with_a_plain_dict_of_tags_is_counted_as_one_with_frozen_tags() -> None:
    tracker = CostTracker()
    tracker.record(model="gpt-4o", input_tokens=1000, output_tokens=100, tags={"team": "a"})
    tracker.record(model="gpt-4o", input_tokens=1000, output_tokens=100, tags={"team": "b"})
    store = tracker.store
    scope = BudgetScope("team-a", tags={"team": "a"})  # type: ignore[arg-type]  # (a dict, as a user may pass)
    assert store.ledger().standing(scope).spent == Decimal("0.0035")
    assert store.reserve(scope, Decimal("0.01"), limit=Decimal("1")).granted
    tracker.record(model="gpt-4o", input_tokens=1000, output_tokens=100, tags={"team": "a"})
    assert store.ledger().standing(scope).spent == Decimal("0.0070")
