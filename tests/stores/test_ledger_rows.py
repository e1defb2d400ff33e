"""A fed ``LocalLedger`` (a ``MemoryStore``'s) is told of appends as rows (``ROW_FIELDS``, epoch microseconds):
it counts each row in the accounts whose period and filters it matches, as ``BudgetScope.matches`` would its
entry, with no ``CostEntry`` built."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from llmcost import CostTracker, MemoryStore
from llmcost._entry import to_tags
from llmcost._time import micros
from llmcost.stores import BudgetScope, _ledger
from llmcost.stores._memory import ROW_FIELDS

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
