"""A fed ``LocalLedger`` (a ``MemoryStore``'s) is told of appends as rows (``ROW_FIELDS``, epoch microseconds):
it counts each row in the accounts whose period and filters it matches, as ``BudgetScope.matches`` would its
entry, with no ``CostEntry`` built."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

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
