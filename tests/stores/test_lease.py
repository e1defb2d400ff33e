"""Leased headroom (``stores._lease``): a period budget over a shared ledger serves calls from a lease and settles
them in batches, and the limit holds as it does call by call.

"Another process" is, where the test says so, a second store object on the same path: its own ledger connection
and holder, reading the shared ledger as another process does; the process tests start real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from llmcost import Budget, BudgetExceeded, CostTracker, budget, tags, track_cost
from llmcost._money import atto_of
from llmcost.stores import CostStore, _lease
from llmcost.stores._lease import LEASE_CALLS, LEASE_SHARE, MOST_LEASE_CALLS
from llmcost.stores._ledger import BudgetScope, LeaseTerms, headroom
from llmcost.stores._ledger_sqlite import SqliteLedger, _Batches
from llmcost.stores._postgres_ledger import PostgresLedger

from . import test_ledger
from .conftest import Children, make_entry
from .test_ledger import COST, DAY, location, open_store, scope, within_each_day

home = test_ledger.home  # the fixture: a new place for a store of a kind

# The budgets here are daily, on the system clock (the lease's own: ``Lease.period_due``), and their figures count
# every call a test made: a test that fails in a run across midnight UTC is skipped (tests/conftest.py). The tests of
# processes also check each day's figures then.
pytestmark = pytest.mark.on_system_clock("daily")

UTC = timezone.utc
RESPONSE = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}  # $0.0025
PRICEY = {"model": "gpt-4o", "usage": {"prompt_tokens": 400_000, "completion_tokens": 0}}  # $1.00
LIMIT = Decimal("10")  # 4,000 calls: far from the limit, so a lease is granted
TERMS = LeaseTerms(COST * LEASE_CALLS, COST, LEASE_SHARE)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """How many times each shared ledger's operation ran (each is one transaction) in this process (batches are not
    also made every second: on a loaded machine a test's calls may take that long)."""
    monkeypatch.setattr(_lease, "RENEW_SECONDS", 3600.0)
    monkeypatch.setattr(_lease, "IDLE_SECONDS", 3600.0)
    counted: Counter[str] = Counter()
    names = ("reserve", "settle", "settle_batch", "release")
    originals = {(cls, name): getattr(cls, name) for cls in (SqliteLedger, PostgresLedger) for name in names}

    def spy(name: str, method):  # type: ignore[no-untyped-def]
        def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            counted[name] += 1
            return method(self, *args, **kwargs)

        return wrapper

    for (cls, name), method in originals.items():
        setattr(cls, name, spy(name, method))
    yield counted
    for (cls, name), method in originals.items():
        setattr(cls, name, method)


def tracked(tracker: CostTracker, response: object = RESPONSE, estimate: Decimal = COST):  # type: ignore[no-untyped-def]
    return track_cost(tracker=tracker, resource="r", estimate=estimate)(lambda: response)


def two_views(home, kind: str) -> tuple[CostTracker, CostTracker]:  # type: ignore[no-untyped-def]
    where = home(kind)
    return CostTracker(open_store(kind, where)), CostTracker(open_store(kind, where))


# -- the ledger operation --------------------------------------------------------------------------------------
def test_headroom_is_whole_calls_within_both_bounds():
    assert headroom(TERMS, Decimal("100")) == COST * LEASE_CALLS  # far from the limit: K calls
    assert headroom(TERMS, COST * 8 * 10) == COST * 10  # 1/8 of the room, in whole calls
    assert headroom(TERMS, COST * 8 * Decimal("2.9")) == COST * 2
    assert headroom(TERMS, COST * 8 * Decimal("1.9")) == 0  # not more than one call: reserve exactly
    assert headroom(TERMS, Decimal(0)) == headroom(TERMS, Decimal(-1)) == headroom(None, Decimal(100)) == 0


def test_settle_batch_settles_keeps_and_renews_in_one_step(store: CostStore):
    s = scope()
    store.standing(s)
    store.ledger().begin()
    first = store.settle_batch(s, {}, reservation=None, keep=Decimal(0), renew=TERMS, limit=LIMIT)
    assert first.headroom == COST * LEASE_CALLS and first.reservation is not None
    assert first.standing == store.standing(s)
    assert (first.standing.spent, first.standing.reserved) == (0, COST * LEASE_CALLS)
    done = [make_entry(i, timestamp=DAY + timedelta(hours=1), amount=COST) for i in range(3)]
    # Three calls settled, one still in flight (its estimate kept), the lease renewed: one step.
    second = store.settle_batch(
        s,
        {e.id: e.amount for e in done},
        reservation=first.reservation,
        keep=COST,
        renew=TERMS,
        limit=LIMIT,
    )
    assert second.reservation is not None and second.reservation.amount == COST + COST * LEASE_CALLS
    assert (second.standing.spent, second.standing.reserved) == (COST * 3, COST + COST * LEASE_CALLS)
    store.append(done)
    store.acknowledge(done)  # written: counted once, from the store now
    assert store.standing(s).spent == COST * 3
    # Released, keeping nothing: the scope holds only what was spent.
    third = store.settle_batch(s, {}, reservation=second.reservation, keep=Decimal(0), renew=None, limit=LIMIT)
    assert third.reservation is None and third.headroom == 0
    assert (store.standing(s).spent, store.standing(s).reserved) == (COST * 3, 0)
    # Near the limit no headroom is granted; what is kept is kept whatever the limit.
    near = store.settle_batch(s, {}, reservation=None, keep=COST, renew=TERMS, limit=COST * 10)
    assert near.headroom == 0 and near.reservation is not None and near.reservation.amount == COST
    store.release(near.reservation)


def test_an_entry_written_before_its_batch_counts_once(store: CostStore):
    s = scope()
    store.standing(s)
    store.ledger().begin()
    lease = store.settle_batch(s, {}, reservation=None, keep=Decimal(0), renew=TERMS, limit=LIMIT)
    entry = make_entry(7, timestamp=DAY + timedelta(hours=3), amount=COST)
    store.append([entry])  # a background flush wrote it before the batch settled it
    store.acknowledge([entry])
    after = store.settle_batch(
        s, {entry.id: entry.amount}, reservation=lease.reservation, keep=Decimal(0), renew=None, limit=LIMIT
    )
    assert after.standing.spent == COST == store.standing(s, refresh=True).spent


def test_a_batch_is_one_settled_row_reduced_as_its_entries_are_written(home):
    # (SqliteLedger) one row for the batch's amounts, not one per entry: an acknowledgement takes the written entries'
    # amounts off it, and the last one deletes it; another process sees the same spend all along.
    where = home("duckdb")
    store, other = open_store("duckdb", where), open_store("duckdb", where)
    s = scope()
    store.standing(s)
    store.ledger().begin()
    done = [make_entry(i, timestamp=DAY + timedelta(hours=1), amount=COST * (i + 1)) for i in range(3)]
    batch = {e.id: e.amount for e in done}
    # (``elsewhere``: an entry of another store, counted for the period)
    store.settle_batch(s, batch, elsewhere=COST, reservation=None, keep=Decimal(0), renew=None, limit=LIMIT)

    def settled() -> list[tuple[str, Decimal]]:
        with contextlib.closing(sqlite3.connect(store.ledger().path)) as con:  # type: ignore[attr-defined]
            rows = con.execute("SELECT entry, amount FROM holds WHERE entry IS NOT NULL ORDER BY entry").fetchall()
        return [(entry, Decimal(amount)) for entry, amount in rows]

    assert settled() == [("", COST), ("*", COST * 6)]
    assert other.standing(s).spent == COST * 7
    store.append(done[1:2])
    store.acknowledge(done[1:2])
    assert settled() == [("", COST), ("*", COST * 4)]
    assert other.standing(s).spent == COST * 7 == store.standing(s, refresh=True).spent
    store.append([done[0], done[2]])
    store.acknowledge([done[0], done[2]])
    assert settled() == [("", COST)]
    assert other.standing(s).spent == COST * 7 == store.standing(s, refresh=True).spent
    store.close()
    other.close()


@pytest.mark.parametrize("seed", range(20))
def test_batch_rows_give_up_exactly_what_their_written_entries_hold(seed):
    # (SqliteLedger's ``_Batches``) whatever the order of writes, partial or whole rows, entries settled in two scopes
    # (held by two rows) or alone: each row gives up the amounts of its entries written, and goes with its last one.
    rng = random.Random(seed)
    batches, model = _Batches(), {}  # model: row -> {entry id: amount} still held
    ids = [f"e{i}" for i in range(60)]
    free = list(ids)
    rng.shuffle(free)
    for row in range(1, 7):
        if seed % 2:  # (odd seeds: some entries in two rows; even: each entry in one row)
            chosen = rng.sample(ids, rng.randint(1, 20))
        else:
            chosen, free = free[: rng.randint(1, 10)], free[10:]
        amounts = {i: Decimal(rng.randint(1, 9)) / 1000 for i in chosen}
        batches.add(row, scope(), dict(amounts), sum(amounts.values(), Decimal(0)))
        model[row] = dict(amounts)
    unwritten = list(ids)
    rng.shuffle(unwritten)
    while unwritten:
        cut = rng.randint(1, 15)
        part, unwritten = unwritten[:cut], unwritten[cut:]
        rows = batches.written(set(part))
        expected = {
            row: (sum((held[i] for i in part if i in held), Decimal(0)), sum(i in held for i in part))
            for row, held in model.items()
            if any(i in held for i in part)
        }
        assert rows == expected
        assert batches.holding(set(part)) == {i for i in part if any(i in held for held in model.values())}
        assert bool(batches.scopes(set(part))) == bool(expected)
        batches.forget(set(part), rows)
        for held in model.values():
            for i in part:
                held.pop(i, None)
        model = {row: held for row, held in model.items() if held}
        assert {row: batches.left(row) for row in model} == {
            row: (sum(held.values(), Decimal(0)), len(held)) for row, held in model.items()
        }
        assert set(batches.rows) == set(model)


def test_the_recorded_spend_is_read_outside_the_ledgers_lock(tmp_path):
    # (SqliteLedger) reading the store can take long while other processes write it: it is read before the
    # transaction, so no other process waits for the ledger meanwhile (``refresh=0``: every use reads it).
    path = str(tmp_path / "ledger")
    locked: list[bool] = []

    def total(**filters: object) -> Decimal:
        probe = sqlite3.connect(path, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            locked.append(False)
        except sqlite3.OperationalError:
            locked.append(True)
        finally:
            probe.close()
        return COST

    ledger = SqliteLedger(path, total=total, refresh=0)
    s = scope()
    ledger.begin()
    reservation = ledger.reserve(s, COST, limit=LIMIT)
    ledger.settle(s, COST, reservation=reservation, entry_id="e1")
    lease = ledger.settle_batch(s, {"e2": COST}, reservation=None, keep=Decimal(0), renew=TERMS, limit=LIMIT)
    assert lease.standing.spent == COST * 3 == ledger.standing(s).spent
    assert len(locked) >= 4 and not any(locked)
    ledger.close()


def test_the_writer_that_acknowledges_reads_the_recorded_spend_not_the_next_batch(tmp_path):
    # An acknowledgement makes recorded spend stale: the acknowledging writer reads it again (after its write, outside
    # the ledger's lock) and stores it with the acknowledgement, so neither this process's next batch nor another
    # process reads the store; if that read fails, the next use reads it, as before.
    recorded: list[Decimal] = []
    reads = Counter[str]()

    def total(who: str, fail: list[bool]):  # type: ignore[no-untyped-def]
        def read(**filters: object) -> Decimal:
            reads[who] += 1
            if fail:
                raise OSError("the store is busy")
            return sum(recorded, Decimal(0))

        return read

    failing: list[bool] = []
    path = str(tmp_path / "ledger")
    ledger, other = SqliteLedger(path, total=total("this", failing)), SqliteLedger(path, total=total("other", []))
    s = scope()
    ledger.begin()
    done = [make_entry(i, timestamp=DAY + timedelta(hours=1), amount=COST) for i in range(4)]
    first = ledger.settle_batch(s, {e.id: e.amount for e in done[:2]}, reservation=None,
                                keep=Decimal(0), renew=TERMS, limit=LIMIT)  # fmt: skip
    start = reads["this"]  # (the account's first reads)
    recorded.append(COST)
    ledger.acknowledge(done[:1])
    assert reads == {"this": start + 1}
    second = ledger.settle_batch(s, {e.id: e.amount for e in done[2:]}, reservation=first.reservation,
                                 keep=Decimal(0), renew=TERMS, limit=LIMIT)  # fmt: skip
    assert second.standing.spent == COST * 4 == other.standing(s).spent
    assert reads == {"this": start + 1}  # neither the batch nor the other process read the store
    failing.append(True)
    recorded.append(COST)
    ledger.acknowledge(done[1:2])
    assert reads == {"this": start + 2}
    assert other.standing(s).spent == COST * 4 and reads == {"this": start + 2, "other": 1}  # read by the next use
    failing.clear()
    recorded.extend([COST, COST])
    ledger.acknowledge(done[2:])
    assert ledger.standing(s).spent == COST * 4 == other.standing(s).spent
    ledger.close()
    other.close()


def test_an_entry_in_a_batch_and_settled_alone_in_another_scope_leaves_both_when_written(tmp_path):
    # (SqliteLedger) one budget settled the entry in its lease's batch, another (near its limit) settled it alone: once
    # written it is counted once in each scope, from the store (the row of its own used to stay, counted twice).
    recorded: list[Decimal] = []
    ledger = SqliteLedger(str(tmp_path / "ledger"), total=lambda **filters: sum(recorded, Decimal(0)))
    leasing, exact = scope(), BudgetScope("other", since=DAY, until=DAY + timedelta(days=1))
    ledger.begin()
    entry = make_entry(1, timestamp=DAY + timedelta(hours=1), amount=COST)
    ledger.settle_batch(leasing, {entry.id: COST}, reservation=None, keep=Decimal(0), renew=None, limit=LIMIT)
    ledger.settle(exact, COST, entry_id=entry.id)
    assert ledger.standing(leasing).spent == COST == ledger.standing(exact).spent
    recorded.append(COST)
    ledger.acknowledge_ids([entry.id])
    assert ledger.standing(leasing).spent == COST == ledger.standing(exact).spent
    with contextlib.closing(sqlite3.connect(ledger.path)) as con:
        assert con.execute("SELECT count(*) FROM holds WHERE entry IS NOT NULL").fetchone() == (0,)
    ledger.close()


def test_an_acknowledgement_reads_the_spend_of_the_scopes_in_use(tmp_path):
    # Any acknowledgement makes every account's recorded spend stale. Written entries that still wait for their lease's
    # batch (held by no batch row yet) are acknowledged too: the writer reads the spend of the scopes this process
    # used lately, so the lease's next batch, on the calls' path, reads nothing.
    recorded: list[Decimal] = []
    reads = Counter[str]()

    def total(**filters: object) -> Decimal:
        reads[threading.current_thread().name] += 1
        return sum(recorded, Decimal(0))

    ledger = SqliteLedger(str(tmp_path / "ledger"), total=total)
    s = scope()
    ledger.begin()
    lease = ledger.settle_batch(s, {}, reservation=None, keep=Decimal(0), renew=TERMS, limit=LIMIT)
    done = [make_entry(i, timestamp=DAY + timedelta(hours=1), amount=COST) for i in range(3)]
    recorded.extend(e.amount for e in done)

    def writer() -> None:
        ledger.acknowledge_ids([e.id for e in done])  # (the lease took them out of its batch: ``_take_acks``)

    thread = threading.Thread(target=writer, name="writer")
    thread.start()
    thread.join()
    assert reads["writer"] == 1
    before = dict(reads)
    renewed = ledger.settle_batch(s, {}, reservation=lease.reservation, keep=Decimal(0), renew=TERMS, limit=LIMIT)
    assert dict(reads) == before  # the batch read nothing
    assert renewed.standing.spent == COST * 3 == ledger.standing(s, refresh=True).spent
    ledger.close()


def _users_ledger(tmp_path: Path, users: int) -> tuple[SqliteLedger, list[object], list[BudgetScope]]:
    """A ledger over a store whose total records the tags of each scope read (``reads``, in order), and a day's scope
    for each of ``users`` users."""
    reads: list[object] = []

    def total(**filters: object) -> Decimal:
        reads.append(filters["tags"])
        return Decimal(0)

    ledger = SqliteLedger(str(tmp_path / "ledger"), total=total)
    ledger.begin()
    scopes = [
        BudgetScope(f"user-{i}", since=DAY, until=DAY + timedelta(days=1), tags={"user": str(i)})  # type: ignore[arg-type]
        for i in range(users)
    ]
    return ledger, reads, scopes


def test_an_acknowledgement_reads_the_spend_of_a_few_scopes_in_use_at_most(tmp_path, monkeypatch):
    # Each scope read is a query of the store: a process with many budgets reads at an acknowledgement only the last
    # few scopes it used (and those of the batch rows written); the others read theirs at their next use.
    from llmcost.stores import _ledger_sqlite

    monkeypatch.setattr(_ledger_sqlite, "_FRESH_USED", 3)
    ledger, reads, scopes = _users_ledger(tmp_path, 6)
    for s in scopes:
        ledger.standing(s)
    reads.clear()
    ledger.acknowledge_ids([make_entry(1).id])
    assert reads == [s.tags for s in scopes[-3:]]
    ledger.close()


def test_an_acknowledgement_does_not_read_the_spend_of_scopes_whose_lease_was_released(tmp_path):
    # A budget entered per request (a user's, in a web handler) releases its lease as its block ends: the next
    # request's flush was followed by reads of the last users' spend, 2-3 ms each on a DuckDB file. Scopes whose
    # lease is released are read at their next use, and are in use again from there; one still leased is read.
    ledger, reads, scopes = _users_ledger(tmp_path, 4)
    leases = [
        ledger.settle_batch(s, {}, reservation=None, keep=Decimal(0), renew=TERMS, limit=LIMIT).reservation
        for s in scopes
    ]
    for s, held in zip(scopes[:3], leases, strict=False):  # three blocks end; the last user's is still open
        ledger.settle_batch(s, {}, reservation=held, keep=Decimal(0), renew=None, limit=LIMIT)
    reads.clear()
    ledger.acknowledge_ids([make_entry(1).id])
    assert reads == [scopes[3].tags]
    ledger.standing(scopes[0])  # (a use again: read, as it was stale)
    assert reads == [scopes[3].tags, scopes[0].tags]
    reads.clear()
    ledger.acknowledge_ids([make_entry(2).id])
    assert reads == [scopes[3].tags, scopes[0].tags]  # (in the order of their last use)
    ledger.close()


def test_an_acknowledgement_of_entries_settled_in_a_released_lease_does_not_read_its_scopes_spend(tmp_path):
    # Budgets entered per request, per user: a request whose user's entry is buffered writes the buffer as the budget
    # opens, and that write holds the entries of every user since the last one, each settled in a batch row of its
    # user's lease, released as that request ended. Reading each of those users' spend at the acknowledgement made
    # that one request wait for them all (30 users: 120 ms on a DuckDB file). Read at their next use instead; a
    # lease still held has its scope read, as before, and so has a released one used again.
    ledger, reads, scopes = _users_ledger(tmp_path, 4)
    entries = [make_entry(i) for i in range(4)]
    leases = [
        ledger.settle_batch(s, {}, reservation=None, keep=Decimal(0), renew=TERMS, limit=LIMIT).reservation
        for s in scopes
    ]
    for s, held, entry in zip(scopes[:3], leases, entries, strict=False):  # three requests end; the last is open
        ledger.settle_batch(s, {entry.id: COST}, reservation=held, keep=Decimal(0), renew=None, limit=LIMIT)
    ledger.settle_batch(scopes[3], {entries[3].id: COST}, reservation=leases[3], keep=Decimal(0), renew=TERMS,
                        limit=LIMIT)  # fmt: skip
    ledger.standing(scopes[0])  # (the first user is back)
    reads.clear()
    ledger.acknowledge_ids([entry.id for entry in entries])
    assert sorted(reads, key=str) == sorted([scopes[0].tags, scopes[3].tags], key=str)
    reads.clear()
    ledger.standing(scopes[1])  # (its next use reads it)
    assert reads == [scopes[1].tags]
    ledger.close()


def test_a_failed_acknowledgement_of_batch_entries_is_made_with_the_next_one(tmp_path, monkeypatch):
    # (SqliteLedger) the written entries of a batch row whose acknowledgement failed leave it with the next
    # acknowledgement: else their amounts would count twice (in the store, and in the row) for the rest of the period.
    recorded: list[Decimal] = []
    ledger = SqliteLedger(str(tmp_path / "ledger"), total=lambda **filters: sum(recorded, Decimal(0)))
    s = scope()
    ledger.begin()
    done = [make_entry(i, timestamp=DAY + timedelta(hours=1), amount=COST * (i + 1)) for i in range(4)]
    ledger.settle_batch(s, {e.id: e.amount for e in done[:3]}, reservation=None, keep=Decimal(0), renew=None,
                        limit=LIMIT)  # fmt: skip
    ledger.settle(s, done[3].amount, entry_id=done[3].id)
    recorded.extend(e.amount for e in done[:2])
    original = SqliteLedger._forget_written

    def failing(self, *args):  # type: ignore[no-untyped-def]
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(SqliteLedger, "_forget_written", failing)
    with pytest.raises(sqlite3.OperationalError):
        ledger.acknowledge_ids([e.id for e in done[:2]])
    monkeypatch.setattr(SqliteLedger, "_forget_written", original)
    recorded.extend(e.amount for e in done[2:])
    ledger.acknowledge_ids([e.id for e in done[2:]])
    assert ledger.standing(s, refresh=True).spent == COST * 10 == sum(recorded, Decimal(0))
    with contextlib.closing(sqlite3.connect(ledger.path)) as con:
        assert con.execute("SELECT count(*) FROM holds WHERE entry IS NOT NULL").fetchone() == (0,)
    ledger.close()


# -- a budget that leases ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_calls_are_served_from_a_lease_and_settled_in_batches(home, kind, calls):
    tracker, other = two_views(home, kind)
    call = tracked(tracker)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)  # the same account, as another process sees it
    with b:
        for _ in range(100):
            call()
        # This process: exact, and none of its unused headroom shown as reserved.
        assert (b.spent, b.reserved, b.remaining) == (COST * 100, 0, LIMIT - COST * 100)
        # Another process: the amounts not yet settled are still inside the lease, so reserved.
        assert seen.spent + seen.reserved >= COST * 100
        assert seen.spent + seen.reserved <= COST * 100 + COST * MOST_LEASE_CALLS  # (leases grow as calls come fast)
    assert calls["reserve"] == 0 and calls["settle"] == 0
    assert calls["settle_batch"] <= 100 // LEASE_CALLS + 2  # a lease, its renewals, the batch at exit
    # Exited: the batch settled and the lease released, for every process.
    assert (seen.spent, seen.reserved) == (COST * 100, 0)
    tracker.flush()
    assert (seen.spent, seen.reserved) == (COST * 100, 0) == (other.store.total(), 0)
    tracker.close()
    other.close()


def test_a_lease_grows_while_calls_come_fast_and_shrinks_when_they_slow(home, calls, monkeypatch):
    monkeypatch.setattr(_lease, "FAST_SECONDS", 3600.0)  # every lease runs out "fast"
    tracker, other = two_views(home, "duckdb")
    call = tracked(tracker)
    limit = Decimal(1000)  # far from the limit: 1/8 of the room left is far more than any lease
    b = budget(limit, period="daily", name="cap", tracker=tracker)
    seen = budget(limit, period="daily", name="cap", tracker=other)
    with b:
        for _ in range(LEASE_CALLS * 7):  # leases of 64, 128 and 256 calls (without growing: seven of 64)
            call()
        assert calls["settle_batch"] == 3
        monkeypatch.setattr(_lease, "FAST_SECONDS", -1.0)
        monkeypatch.setattr(_lease, "SLOW_SECONDS", -1.0)  # every lease now lasts "long"
        call()  # the lease ran out: settled, and renewed at half its size
        assert calls["settle_batch"] == 4
        assert (seen.spent, seen.reserved) == (COST * LEASE_CALLS * 7, COST * LEASE_CALLS * 2)
    assert LEASE_CALLS < MOST_LEASE_CALLS
    tracker.close()
    other.close()


def test_a_lease_no_call_uses_is_settled_and_released(home, calls, monkeypatch):
    # A process gone quiet would hold its lease, and with many processes idle ones would keep most of the room left
    # from those still calling: a lease unused for IDLE_SECONDS is settled and released by the settler thread.
    tracker, other = two_views(home, "duckdb")
    call = tracked(tracker)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    with b:
        for _ in range(10):
            call()
        assert seen.reserved > 0  # the lease
        monkeypatch.setattr(_lease, "IDLE_SECONDS", 0.3)
        deadline = time.monotonic() + 10
        while seen.reserved and time.monotonic() < deadline:
            time.sleep(0.1)
            seen.sync()
        assert (seen.spent, seen.reserved) == (COST * 10, 0)
        call()  # leases again
        assert b.spent == COST * 11
    assert (seen.spent, seen.reserved) == (COST * 11, 0)
    tracker.close()
    other.close()


def test_a_budget_on_the_default_tracker_leases_from_its_new_store_after_configure(home, calls):
    # The default tracker's store changed (``configure``): its calls reserve in the new store's ledger, where another
    # process has spent $0.95 of the $1 cap; the old store's lease is settled and released.
    import llmcost

    old, new = open_store("duckdb", home("duckdb")), open_store("duckdb", home("duckdb"))
    llmcost.configure(old)
    call = track_cost(resource="r", estimate=COST)(lambda: RESPONSE)
    other = CostTracker(open_store("duckdb", location(new).rsplit(os.sep, 1)[0]))
    other.record(amount="0.95", resource="other")
    other.flush()
    cap = budget(Decimal(1), period="daily", name="cap")
    let_through = 0
    with cap:
        call()  # leased from the old store
        llmcost.configure(new)
        for _ in range(40):
            try:
                call()
            except BudgetExceeded:
                break
            let_through += 1
    llmcost.get_tracker().flush()
    assert let_through == 20  # $0.05 of room, $0.0025 a call
    assert new.total() == Decimal(1)
    seen = budget(Decimal(1), period="daily", name="cap", tracker=CostTracker(old))
    assert (seen.spent, seen.reserved) == (COST, 0)  # the old store's lease settled, and released
    other.close()


def test_an_acknowledgement_that_failed_is_made_with_the_next_one(home, calls, monkeypatch):
    # The ledger could not be reached as written entries were acknowledged: their settled amounts would count
    # twice (in the store, and as settled) for the rest of the period. The next acknowledgement removes them.
    import contextlib

    tracker, other = two_views(home, "duckdb")
    call = tracked(tracker)
    small = budget(COST * 200, period="daily", name="small", tracker=tracker)  # leases little: settles call by call
    original = SqliteLedger._transaction
    failing = [False]

    @contextlib.contextmanager
    def flaky(self):  # type: ignore[no-untyped-def]
        if failing[0]:
            failing[0] = False
            from llmcost import StoreError

            raise StoreError("could not lock the budget ledger (as a lock timeout would)")
        with original(self) as con:
            yield con

    monkeypatch.setattr(SqliteLedger, "_transaction", flaky)
    with small:
        for _ in range(30):
            call()
        failing[0] = True
        tracker.flush()  # written; acknowledging them fails once (logged)
    call()
    tracker.flush()  # a later write: its acknowledgement takes the failed one with it
    seen = budget(COST * 200, period="daily", name="small", tracker=other)
    seen.sync(force=True)
    assert (seen.spent, seen.reserved) == (COST * 31, 0) == (other.store.total(), 0)
    tracker.close()
    other.close()


def test_a_batch_made_while_the_writer_acknowledges_leaves_no_written_call_uncounted(home, monkeypatch):
    """The writer wrote calls a lease held for its next batch and is acknowledging them; the lease's batch comes
    before the ledger has them (here the ledger's step waits on an event; in use, on its lock or a read of the
    store). The batch must not drop them as "in the store" while the ledger does not count them yet: it granted
    headroom past the limit (408 calls made where 399 fit)."""
    monkeypatch.setattr(_lease, "RENEW_SECONDS", 0.2)
    tracker = CostTracker(open_store("duckdb", home("duckdb")), flush_interval=3600)
    call = tracked(tracker)
    call()
    tracker.flush()  # $0.0025 recorded before the budget: 399 calls fit under $1
    gate, waiting = threading.Event(), threading.Event()
    acknowledge = SqliteLedger.acknowledge_ids

    def held_up(self, ids, **options):  # type: ignore[no-untyped-def]
        if not gate.is_set():
            waiting.set()
            assert gate.wait(30)
        return acknowledge(self, ids, **options)

    monkeypatch.setattr(SqliteLedger, "acknowledge_ids", held_up)
    gate.set()
    made = 0

    def calls_made(n: int) -> None:
        nonlocal made
        for _ in range(n):
            with contextlib.suppress(BudgetExceeded):
                call()
                made += 1

    with budget(Decimal(1), period="daily", tracker=tracker):
        calls_made(300)
        gate.clear()
        writer = threading.Thread(target=tracker.flush)
        writer.start()
        assert waiting.wait(30)  # the calls are written; the ledger's acknowledgement waits
        monkeypatch.setattr(tracker, "flush", lambda: None)  # (the budget's write before leasing would wait too)
        time.sleep(0.3)  # the lease's batch is due
        calls_made(150)
        gate.set()
        writer.join(30)
        monkeypatch.undo()
        calls_made(10)
    tracker.flush()
    assert made == 399 and tracker.store.total() == Decimal(1)
    tracker.close()


def test_a_batch_made_while_the_writer_reads_the_spend_after_acknowledging_reads_no_store_in_its_transaction(
    home, monkeypatch
):
    """The writer acknowledged calls a lease held and reads the store's spend again (slow: a large store, another
    process writing). A lease's batch meanwhile must not read the store inside the ledger's transaction, which holds
    the lock every process waits for: the leases are told before that read, so the batch leaves those calls to the
    store's total (and reads it before its transaction, if the account is due)."""
    monkeypatch.setattr(_lease, "RENEW_SECONDS", 0.2)
    tracker = CostTracker(open_store("duckdb", home("duckdb")), flush_interval=3600)
    call = tracked(tracker)
    inside: list[bool] = []
    read = SqliteLedger._read_spend

    def spy(self, scope, *, now=False):  # type: ignore[no-untyped-def]
        if threading.current_thread() is threading.main_thread():
            con = self._con
            inside.append(con is not None and con.in_transaction)
        return read(self, scope, now=now)

    monkeypatch.setattr(SqliteLedger, "_read_spend", spy)
    gate, waiting = threading.Event(), threading.Event()
    fresh = SqliteLedger._fresh_totals

    def held_up(self, scopes):  # type: ignore[no-untyped-def]
        if not gate.is_set():
            waiting.set()
            assert gate.wait(30)
        return fresh(self, scopes)

    monkeypatch.setattr(SqliteLedger, "_fresh_totals", held_up)
    gate.set()
    with budget(LIMIT, period="daily", tracker=tracker) as b:
        for _ in range(5):
            call()
        gate.clear()
        writer = threading.Thread(target=tracker.flush)
        writer.start()
        assert waiting.wait(30)  # acknowledged; the writer's read of the spend waits
        write = tracker.flush
        monkeypatch.setattr(tracker, "flush", lambda: None)  # (the budget's write before leasing would wait too)
        time.sleep(0.3)  # the lease's batch is due
        inside.clear()
        call()  # the batch
        assert inside == [False]  # the spend read once, outside the ledger's transaction
        gate.set()
        writer.join(30)
        monkeypatch.setattr(tracker, "flush", write)
    assert b.spent == COST * 6
    tracker.flush()
    assert tracker.store.total() == COST * 6
    tracker.close()


@pytest.mark.parametrize("unreadable", [False, True], ids=["readable", "unreadable"])
@pytest.mark.parametrize("held", ["in-its-step", "before-the-ledger"])
def test_a_batch_waiting_for_the_ledger_while_the_writer_acknowledges_leaves_out_what_it_counted(
    home, monkeypatch, unreadable, held
):
    """A lease's batch takes what its calls settled, then waits for the ledger's lock, which the writer holds while
    it acknowledges some of those calls (counting what the lease held) and tells the lease. The batch must leave
    those calls out once it has the lock: settling them as "written before their batch", it read the store inside
    its transaction (the lock every process waits for) or, the store unreadable, counted them twice. Or the batch
    runs whole before the writer's acknowledgement takes the ledger's lock: the acknowledgement must not count what
    the batch settled (looked at before the lock, the lease's calls were counted by both)."""
    from llmcost import StoreError
    from llmcost.stores import DuckDBStore

    monkeypatch.setattr(_lease, "RENEW_SECONDS", 3600.0)
    monkeypatch.setattr(_lease, "IDLE_SECONDS", 3600.0)
    tracker = CostTracker(open_store("duckdb", home("duckdb")), flush_interval=3600)
    call = tracked(tracker)
    total = DuckDBStore._total
    failing = [False]
    read_inside: list[bool] = []  # the batch's reads of the store: inside the ledger's transaction?

    def reading(self, filters):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "batch":
            con = tracker.store.current_ledger()._con  # type: ignore[union-attr]
            read_inside.append(con is not None and con.in_transaction)
        if failing[0]:
            raise StoreError("could not read costs.duckdb: another process holds the store's lock")
        return total(self, filters)

    monkeypatch.setattr(DuckDBStore, "_total", reading)
    in_step, go, batch_waits = threading.Event(), threading.Event(), threading.Event()
    where = "_forget_written" if held == "in-its-step" else "acknowledge_ids"
    step = getattr(SqliteLedger, where)

    def held_up(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "writer":
            in_step.set()
            assert go.wait(30)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(SqliteLedger, where, held_up)
    settle_batch = SqliteLedger.settle_batch

    def waiting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "batch":
            batch_waits.set()
        return settle_batch(self, *args, **kwargs)

    monkeypatch.setattr(SqliteLedger, "settle_batch", waiting)
    with budget(LIMIT, period="daily", tracker=tracker) as b:
        for _ in range(5):
            call()
        (lease,) = [open_lease for open_lease in list(_lease._OPEN) if open_lease.store is tracker.store]
        failing[0] = unreadable
        writer = threading.Thread(target=tracker.flush, name="writer")
        writer.start()
        assert in_step.wait(30)  # the writer holds the ledger's lock in its step, or is about to take it
        batch = threading.Thread(target=lambda: lease.renew(COST), name="batch")
        batch.start()
        assert batch_waits.wait(30)  # the batch took its calls (and waits for the ledger's lock, if held)
        batch.join(0.2 if held == "in-its-step" else 30)
        go.set()
        writer.join(30)
        batch.join(30)
        # (A batch whole before the acknowledgement finds its calls written and not acknowledged: it reads the store
        # in its transaction, as in any write's window before its acknowledgement; see ``_ledger_sqlite``.)
        assert held == "before-the-ledger" or True not in read_inside
        assert b.spent == COST * 5
    failing[0] = False
    assert tracker.store.total() == COST * 5
    tracker.close()


def test_calls_a_lease_held_count_when_acknowledging_them_fails_while_the_store_cannot_be_read(home, monkeypatch):
    """The store's spend cannot be read, and the ledger's step of an acknowledgement fails: the lease that held the
    written calls must still settle them (as written: the ledger counts them in its base). Told before the ledger,
    the lease dropped them at its next batch and the ledger never had them."""
    from llmcost import StoreError
    from llmcost.stores import DuckDBStore

    tracker = CostTracker(open_store("duckdb", home("duckdb")), flush_interval=3600)
    call = tracked(tracker)
    total = DuckDBStore._total
    unreadable = [False]

    def reading(self, filters):  # type: ignore[no-untyped-def]
        if unreadable[0]:
            raise StoreError("could not read costs.duckdb: another process holds the store's lock")
        return total(self, filters)

    monkeypatch.setattr(DuckDBStore, "_total", reading)
    forget = SqliteLedger._forget_written
    failing = [False]

    def flaky(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if failing[0]:
            failing[0] = False
            raise StoreError("could not lock the budget ledger (as a lock timeout would)")
        return forget(self, *args, **kwargs)

    monkeypatch.setattr(SqliteLedger, "_forget_written", flaky)
    with budget(LIMIT, period="daily", tracker=tracker) as b:
        for _ in range(5):
            call()
        unreadable[0] = failing[0] = True
        tracker.flush()  # written; the ledger's step of their acknowledgement fails (logged)
        assert not failing[0]
        for _ in range(5):
            call()
    assert b.spent == COST * 10  # the lease settled all ten as its block ended, none lost
    tracker.flush()
    unreadable[0] = False
    b.sync(force=True)
    assert b.spent == COST * 10 == tracker.store.total()
    tracker.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_an_overage_the_lease_cannot_cover_is_settled_at_once(home, kind, calls):
    tracker, other = two_views(home, kind)
    call, pricey = tracked(tracker), tracked(tracker, PRICEY)  # the second costs $1.00 on a $0.0025 estimate
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    with b:
        call()
        batches = calls["settle_batch"]
        pricey()
        assert calls["settle_batch"] == batches + 1  # settled at once, with the batch
        assert seen.spent == COST + Decimal("1.00")  # another process sees the actual amount as spent at once
        assert b.spent == COST + Decimal("1.00") and b.reserved == 0
        call()  # and the lease serves calls again
    assert (seen.spent, seen.reserved) == (COST * 2 + Decimal("1.00"), 0)
    tracker.close()
    other.close()


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_an_entry_acknowledged_before_its_batch_is_counted_once(home, calls, kind):
    tracker, other = two_views(home, kind)
    call = tracked(tracker)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    with b:
        for _ in range(5):
            call()
        tracker.flush()  # written and acknowledged while their amounts wait for the lease's batch
        assert other.store.total() == COST * 5
        assert (b.spent, b.reserved) == (COST * 5, 0)  # counted once here
        assert seen.spent + seen.reserved >= COST * 5  # still held by the lease for everyone else
        for _ in range(5):
            call()
    assert (seen.spent, seen.reserved) == (COST * 10, 0)  # once each, after the batch
    tracker.flush()
    assert (seen.spent, seen.reserved) == (COST * 10, 0) == (other.store.total(), 0)
    tracker.close()
    other.close()


def test_a_period_change_mid_lease_settles_the_old_period(home, calls):
    now = [datetime(2024, 5, 1, 23, 59, 58, tzinfo=UTC)]
    where = home("duckdb")
    tracker = CostTracker(open_store("duckdb", where), clock=lambda: now[0])
    other = CostTracker(open_store("duckdb", where), clock=lambda: now[0])
    call = tracked(tracker)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    with b:
        for _ in range(10):
            call()
        assert calls["settle_batch"] == 1  # one lease so far
        now[0] = datetime(2024, 5, 2, 0, 0, 1, tzinfo=UTC)
        for _ in range(3):
            call()
        assert (b.spent, b.reserved) == (COST * 3, 0)
        now[0] = datetime(2024, 5, 1, 23, 59, 59, tzinfo=UTC)
        assert (seen.spent, seen.reserved) == (COST * 10, 0)  # the old day: settled, its lease released
        now[0] = datetime(2024, 5, 2, 0, 0, 2, tzinfo=UTC)
    assert (seen.spent, seen.reserved) == (COST * 3, 0)
    tracker.flush()
    assert other.store.total(until=datetime(2024, 5, 2, tzinfo=UTC)) == COST * 10
    tracker.close()
    other.close()


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_near_the_limit_each_call_reserves_exactly(home, calls, kind):
    tracker, other = two_views(home, kind)
    call = tracked(tracker)
    limit = COST * 12  # an eighth of the room is never more than one call's estimate
    b = budget(limit, period="daily", name="cap", tracker=tracker)
    made = 0
    with b:
        for _ in range(13):
            try:
                call()
                made += 1
            except BudgetExceeded:
                break
    assert made == 12  # refused exactly at the limit, as without leases
    assert calls["settle_batch"] == 0 and calls["reserve"] == 13 and calls["settle"] == 12
    tracker.flush()
    assert other.store.total() == limit
    tracker.close()
    other.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_a_lowered_limit_gives_back_the_headroom_a_lease_may_no_longer_hold(home, calls, kind):
    tracker, other = two_views(home, kind)
    call = tracked(tracker)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)  # the same account, as another process sees it
    with b:
        for _ in range(4):
            call()
        assert seen.spent + seen.reserved >= COST * LEASE_CALLS  # a lease of 64 calls at least, under $10
        lowered = COST * 40  # $0.10: the lease holds more than is left
        b.limit = lowered
        call()  # renews the lease under the new limit (an eighth of the room left: a few calls)
        assert COST * 5 <= seen.spent + seen.reserved <= COST * 5 + (lowered - COST * 5) / LEASE_SHARE
        made = 5
        for _ in range(40):
            try:
                call()
                made += 1
            except BudgetExceeded:
                pass
    assert made == 40
    tracker.flush()
    assert other.store.total() == lowered
    tracker.close()
    other.close()


def test_leases_end_in_exact_calls_as_the_limit_nears(home, calls):
    tracker, other = two_views(home, "duckdb")
    call = tracked(tracker)
    limit = COST * 200
    b = budget(limit, period="daily", name="cap", tracker=tracker)
    made = 0
    with b:
        for _ in range(210):
            try:
                call()
                made += 1
            except BudgetExceeded:
                pass
    assert made == 200  # every cent used, none passed
    assert calls["settle_batch"] >= 2 and calls["reserve"] >= 10  # leased first, then call by call
    tracker.flush()
    assert other.store.total() == limit
    seen = budget(limit, period="daily", name="cap", tracker=other)
    assert (seen.spent, seen.reserved) == (limit, 0)
    tracker.close()
    other.close()


def test_nested_and_filtered_budgets_each_lease(home, calls):
    tracker, other = two_views(home, "duckdb")
    call, pricey = tracked(tracker), tracked(tracker, PRICEY)
    other_resource = track_cost(tracker=tracker, resource="s", estimate=COST)(lambda: RESPONSE)
    outer = budget(LIMIT, period="daily", name="outer", tracker=tracker)
    inner = budget(Decimal("1.01"), period="daily", name="inner", resource="r", tracker=tracker)
    with outer:
        with inner:
            for _ in range(4):
                call()
            other_resource()  # not the inner budget's resource: counted by the outer one only
            pricey()  # $1.00: the inner budget's lease cannot cover it
            with pytest.raises(BudgetExceeded):
                call()  # the inner budget is spent ($1.01), its refusal exact
            assert (inner.spent, inner.reserved) == (COST * 4 + Decimal("1.00"), 0)
        assert (outer.spent, outer.reserved) == (COST * 5 + Decimal("1.00"), 0)
    assert calls["reserve"] >= 1 and calls["settle_batch"] >= 2
    seen_outer = budget(LIMIT, period="daily", name="outer", tracker=other)
    seen_inner = budget(Decimal("1.01"), period="daily", name="inner", resource="r", tracker=other)
    assert (seen_outer.spent, seen_outer.reserved) == (COST * 5 + Decimal("1.00"), 0)
    assert (seen_inner.spent, seen_inner.reserved) == (COST * 4 + Decimal("1.00"), 0)
    tracker.close()
    other.close()


def test_a_warning_budget_leases_and_lets_calls_past_the_limit(home, calls):
    tracker, other = two_views(home, "duckdb")
    call = tracked(tracker)
    alerts: list[object] = []
    limit = COST * 40
    b = budget(limit, period="daily", name="cap", tracker=tracker, on_exceed="warn", on_alert=alerts.append)
    with b:
        for _ in range(45):
            call()
        assert (b.spent, b.reserved) == (COST * 45, 0)
    assert calls["settle_batch"] >= 1  # leased while far from the limit
    assert [a.threshold for a in alerts] == [0.5, 0.8, 0.9, 1.0]  # each threshold once, as call by call
    seen = budget(limit, period="daily", name="cap", tracker=other)
    assert (seen.spent, seen.reserved) == (COST * 45, 0)
    tracker.close()
    other.close()


def test_async_tasks_share_one_lease(home, calls):
    tracker, other = two_views(home, "duckdb")

    @track_cost(tracker=tracker, resource="r", estimate=COST)
    async def ask() -> object:
        await asyncio.sleep(0)
        return RESPONSE

    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)

    async def task() -> None:
        async with b:
            for _ in range(25):
                await ask()

    async def main() -> None:
        async with b:
            await asyncio.gather(*(task() for _ in range(8)))
            assert (b.spent, b.reserved) == (COST * 200, 0)

    asyncio.run(main())
    assert calls["reserve"] == 0 and calls["settle_batch"] <= 200 // LEASE_CALLS + 2
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    assert (seen.spent, seen.reserved) == (COST * 200, 0)
    tracker.close()
    other.close()


def test_amounts_are_settled_every_second_of_calls(home, calls, monkeypatch):
    # (Half a second, not less: on a loaded machine the first calls alone, a lease taken in SQLite, took over 0.05 s.)
    monkeypatch.setattr(_lease, "RENEW_SECONDS", 0.5)
    tracker, other = two_views(home, "duckdb")
    call = tracked(tracker)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    tracked(CostTracker())()  # (a first call's one-time costs, e.g. the price catalog, out of the window)
    with b:
        call()
        call()
        assert seen.spent == 0  # waiting in the lease
        time.sleep(0.6)
        call()  # piggybacked: the batch settles, the lease is renewed
        assert calls["settle_batch"] == 2
        assert seen.spent == COST * 2 and seen.reserved >= COST * LEASE_CALLS
    tracker.close()
    other.close()


def test_closing_the_store_settles_and_releases_its_leases(home, calls):
    tracker, other = two_views(home, "duckdb")
    call = tracked(tracker)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    b.__enter__()  # (a budget that is never exited, as one on the tracker's guards)
    for _ in range(5):
        call()
    tracker.close()
    assert (seen.spent, seen.reserved) == (COST * 5, 0) == (other.store.total(), 0)
    b.__exit__(None, None, None)
    other.close()


def test_threads_share_one_lease(home, calls):
    tracker, other = two_views(home, "duckdb")
    call = tracked(tracker)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)

    def worker() -> None:
        with b:  # each thread enters the budget (budgets follow contextvars)
            for _ in range(150):
                call()

    with b:
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (b.spent, b.reserved) == (COST * 600, 0)
    assert calls["reserve"] == 0 and calls["settle_batch"] < 600 // LEASE_CALLS * 2 + 4
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    assert (seen.spent, seen.reserved) == (COST * 600, 0)
    tracker.flush()
    assert other.store.total() == COST * 600
    tracker.close()
    other.close()


CRASH = """
import sys, time
from decimal import Decimal
from pathlib import Path
from llmcost import CostTracker, budget, track_cost
from llmcost.stores import DuckDBStore, _lease

_lease.IDLE_SECONDS = 3600.0  # (its lease is not settled as idle while the test watches it: only killing it ends it)
tracker = CostTracker(DuckDBStore(sys.argv[1], lease=float(sys.argv[2])))
response = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
call = track_cost(tracker=tracker, resource="child", estimate=Decimal("0.0025"))(lambda: response)
with budget(10, period="daily", name="cap", tracker=tracker):
    for _ in range(3):
        call()
    print("leased", flush=True)
    time.sleep(600)
"""


def test_the_lease_of_a_killed_process_is_swept(children, home):
    # A lease of 2 s, its heartbeat every 2/3 s: on a loaded machine a heartbeat thread can wait a second for the CPU.
    # (With a lease of 1 s, and the victim's idle lease settled after 2 s, the test failed several times at load ~20.)
    lease = 2.0
    where = home("duckdb")
    store = open_store("duckdb", where, lease=lease)
    victim = children.spawn(CRASH, location(store), str(lease))
    assert victim.stdout is not None and victim.stdout.readline().strip() == "leased"
    tracker = CostTracker(store)
    seen = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    assert seen.reserved >= COST * LEASE_CALLS  # its lease, with its three calls in it
    time.sleep(lease * 1.5)
    assert seen.reserved >= COST * LEASE_CALLS  # alive: its heartbeat keeps the lease
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(lease * 1.5)
    call = tracked(tracker)
    with seen:
        call()  # leasing sweeps the reservations of processes not seen for a lease
    # Its three calls were written by its background flush before it was killed: they count, its lease does not.
    assert store.total() == COST * 3
    assert (seen.spent, seen.reserved) == (COST * 4, 0)
    tracker.close()


# -- processes -----------------------------------------------------------------------------------------------
HAMMER = """
import json, os, sys, threading, time
from decimal import Decimal
from pathlib import Path
from llmcost import BudgetExceeded, CostTracker, budget, track_cost
from llmcost.stores import DuckDBStore, ParquetStore
from llmcost.stores._ledger_sqlite import SqliteLedger
from llmcost.stores._postgres_ledger import PostgresLedger

n, kind, path, limit, calls, factor, mode = sys.argv[1:]
counted = {"settle_batch": 0, "reserve": 0}
for name in counted:
    def spy(method, name=name):
        def wrapper(self, *args, **kwargs):
            counted[name] += 1
            return method(self, *args, **kwargs)
        return wrapper
    setattr(SqliteLedger, name, spy(getattr(SqliteLedger, name)))
response = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}  # $0.0025


def work():
    store = (DuckDBStore if kind == "duckdb" else ParquetStore)(path)
    tracker = CostTracker(store)
    call = track_cost(tracker=tracker, resource="child", estimate=Decimal("0.0025") * Decimal(factor))(lambda: response)
    b = budget(limit, period="daily", name="cap", tracker=tracker)
    made = refused = 0
    b.__enter__()  # never exited: what is leased is settled at process exit
    for _ in range(int(calls)):
        try:
            call()
            made += 1
        except BudgetExceeded:
            refused += 1
    if mode == "exit":
        line = {"made": made, "refused": refused, **counted}
        os.write(1, (json.dumps(line) + "\\n").encode())
        return  # the process ends with the lease open and the entries buffered: atexit settles and writes them
    b.__exit__(None, None, None)
    tracker.close()
    os.write(1, (json.dumps({"made": made, "refused": refused, **counted}) + "\\n").encode())


pids = []
for _ in range(int(n)):
    pid = os.fork()
    if pid == 0:
        r, w = os.pipe()
        inner = os.fork()  # a child of its own that exits normally, running atexit hooks
        if inner == 0:
            try:
                work()
            except BaseException:
                import traceback
                traceback.print_exc()
                os._exit(1)
            sys.exit(0)
        os._exit(os.waitstatus_to_exitcode(os.waitpid(inner, 0)[1]))
    pids.append(pid)
sys.exit(max(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in pids))
"""


def hammer(
    children: Children,
    store: CostStore,
    kind: str,
    n: int,
    *,
    limit: Decimal,
    calls: int,
    factor: str = "1",
    mode: str = "block",
) -> list[dict[str, int]]:
    proc = children.spawn(HAMMER, str(n), kind, location(store), str(limit), str(calls), factor, mode)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(results) == n, (out, err)
    return results


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_processes_leasing_from_one_daily_budget_stay_within_the_limit(children, home, kind, same_period):
    n, limit = 4, COST * 2000  # 4 x 600 calls tried, 2,000 fit
    store = open_store(kind, home(kind))
    results = hammer(children, store, kind, n, limit=limit, calls=600)
    total = store.total()
    within_each_day(store, same_period, limit, n)  # exact estimates: not a cent over
    if same_period():  # (across midnight UTC, the calls tried are two days' and may fill neither)
        assert total >= limit - COST * n * 2  # and they used it
    assert sum(r["made"] for r in results) * COST == total
    assert sum(r["settle_batch"] for r in results) > 0  # leases were used ...
    # ... mostly: leases far from the limit, call by call only for the last few calls' worth
    assert sum(r["settle_batch"] + r["reserve"] for r in results) < sum(r["made"] for r in results) // 4
    tracker = CostTracker(store)
    seen = budget(limit, period="daily", name="cap", tracker=tracker)
    today = store.total(since=seen.period_start, until=seen.period_end)
    assert (seen.spent, seen.reserved) == (today, 0)  # every lease settled and released
    if same_period():
        assert today == total
    tracker.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_processes_leasing_with_low_estimates_pass_by_at_most_one_error_each(children, home, kind, same_period):
    n, limit = 4, COST * 400
    store = open_store(kind, home(kind))
    hammer(children, store, kind, n, limit=limit, calls=150, factor="0.8")
    within_each_day(store, same_period, limit + n * COST * Decimal("0.2"), n)
    store.close()


def test_leases_are_settled_at_process_exit(children, home, same_period):
    n, limit = 3, LIMIT
    store = open_store("duckdb", home("duckdb"))
    results = hammer(children, store, "duckdb", n, limit=limit, calls=50, mode="exit")
    assert all(r["settle_batch"] >= 1 and r["reserve"] == 0 for r in results)  # each leased
    assert store.total() == COST * 50 * n  # the buffered entries were written at exit ...
    tracker = CostTracker(store)
    seen = budget(limit, period="daily", name="cap", tracker=tracker)
    today = store.total(since=seen.period_start, until=seen.period_end)
    assert (seen.spent, seen.reserved) == (today, 0)  # ... and the leases settled and released
    if same_period():  # (across midnight UTC, the calls are of two days: the budget counts today's)
        assert today == COST * 50 * n
    tracker.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_use_its_parents_lease(home, calls):
    where = home("duckdb")
    # (The parent's writer does not write its call meanwhile: the child counts what the ledger has of it, nothing, not
    # what the store would have once it is written, which on a loaded machine it was, a second in.)
    tracker = CostTracker(open_store("duckdb", where), flush_interval=3600)
    other = CostTracker(open_store("duckdb", where))
    call = tracked(tracker)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    with b:
        call()
        held = seen.spent + seen.reserved  # the parent's lease, as everyone sees it
        assert held >= COST * LEASE_CALLS
        pid = os.fork()
        if pid == 0:  # the child: its calls reserve from a lease of its own
            code = 1
            try:
                for _ in range(3):
                    call()
                tracker.flush()
                b.__exit__(None, None, None)
                code = 0 if seen.spent == COST * 3 else 2  # (the parent's call waits in the parent's lease)
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        # The parent's lease is still in the ledger, whole: the child neither settled into it nor released it.
        assert seen.spent + seen.reserved == held + COST * 3
        call()
    assert (seen.spent, seen.reserved) == (COST * 5, 0)
    tracker.close()
    other.close()


def test_settle_call_settles_as_done_does_with_its_quiet_check(home, monkeypatch):
    """``Lease.settle_call`` (the usual call's settlement, in one step with its quiet check) leaves every figure as
    ``done`` does, and answers the quiet check as the budget made it after ``done``: ``None`` when the amount went to
    the ledger at once, with the batch."""
    for name, seconds in [("RENEW_SECONDS", 600.0), ("FAST_SECONDS", -1.0), ("SLOW_SECONDS", 600.0)]:
        monkeypatch.setattr(_lease, name, seconds)  # (no batch falls due, nor is one sized by time)
    stores = [open_store("duckdb", home("duckdb")) for _ in range(2)]  # (each lease granted as much)
    lock = threading.RLock()
    one, two = (_lease.Lease(store, scope(), limit=LIMIT, lock=lock) for store in stores)
    with lock:
        for lease in (one, two):
            lease.quiet(COST * 6)  # a threshold within the first calls' spend
            assert lease.renew(COST)
        # Under, at and over the estimate; nothing; the quiet bound crossed; an id settled twice; a negative amount;
        # and one the lease cannot cover (settled at once with the batch); then calls served again.
        amounts = [COST, COST * 2, COST / 4, Decimal(0), COST * 3, COST, -COST, LIMIT / 2, COST]
        ids = ["a", "b", "c", "d", "e", "b", "f", "g", "h"]
        for amount, entry_id in zip(amounts, ids, strict=True):
            assert one.take(COST) and two.take(COST)
            quiet = one.settled < one.quiet_settled if one.done(_lease.leased(COST), amount, entry_id) else None
            assert two.settle_call(_lease.leased(COST), amount, atto_of(amount), entry_id) == quiet
            figures = [(x.free, x.settled, x.count, x.elsewhere, x.view(), x.inflight, x.live) for x in (one, two)]
            assert figures[0] == figures[1]
            assert one.pending == two.pending
        assert [x.settled < x.quiet_settled for x in (one, two)] == [False, False]
    for lease, store in zip((one, two), stores, strict=True):
        lease.close()
        store.close()


def test_spend_the_tracker_holds_unwritten_from_outside_the_block_stops_the_next_call(store: CostStore) -> None:
    # Near the limit each call is reserved exactly against the store's spend. A call recorded outside the budget's
    # blocks waited in the tracker's buffer (up to flush_interval) where the ledger could not see it, so the next
    # call in the block passed the limit on every store but a MemoryStore (whose ledger counts appends).
    tracker = CostTracker(store, flush_interval=3600)
    call = track_cost(tracker=tracker, estimate=Decimal("0.0025"))(lambda: RESPONSE)
    daily = budget(Decimal("0.005"), period="daily", tracker=tracker, name=f"outside-{os.urandom(4).hex()}")
    with daily:
        call()
    call()  # outside the block: the same tracker, the same day
    with daily, pytest.raises(BudgetExceeded):
        call()
    tracker.flush()
    assert daily.spent == Decimal("0.005") and daily.reserved == 0
    assert tracker.total() == Decimal("0.005")
    tracker.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_spend_the_tracker_holds_unwritten_counts_before_a_lease_is_granted(home, kind: str) -> None:
    # Far from the limit a budget leases headroom sized from the room left. Spend its own tracker recorded outside
    # the budget's blocks waited in the tracker's buffer (up to flush_interval), where the ledger could not see it:
    # each lease, renewed as it ran dry, was sized from a total that lacked it, and the day passed its limit by
    # about that spend ($1 limit, $0.98 recorded outside: some 385 calls of $0.0025 let through where 7 fit).
    tracker = CostTracker(open_store(kind, home(kind)), flush_interval=3600)
    call = tracked(tracker)
    daily = budget(1, period="daily", tracker=tracker, name="outside")
    with daily:
        call()
    tracker.record(amount="0.98", description="outside the block: the same tracker, the same day")
    ran = 0
    with daily:
        for _ in range(1000):
            try:
                call()
            except BudgetExceeded:
                break
            ran += 1
    assert ran == 7  # (1 - 0.98 - 0.0025) / 0.0025, whole calls
    assert tracker.total() == Decimal("0.98") + COST * 8 <= 1
    assert daily.spent == tracker.total() and daily.reserved == 0
    tracker.close()


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_calls_under_another_budget_count_before_a_lease_is_granted(home, kind: str) -> None:
    # Two budgets used in different parts of one process (one tracker): the calls made under "team-a" alone wait in
    # the tracker's buffer, and the "global" budget, far from its limit, leased against a total without them.
    tracker = CostTracker(open_store(kind, home(kind)), flush_interval=3600)
    call = tracked(tracker, PRICEY, estimate=Decimal("0.01"))  # $1.00 a call, estimated at $0.01
    cheap = tracked(tracker)
    overall = budget(4, period="daily", tracker=tracker, name="global")
    team = budget(50, period="daily", tracker=tracker, name="team-a")
    with overall:
        cheap()
    with team:
        for _ in range(3):
            call()  # $3 under the team's budget only
    ran = 0
    with overall:
        for _ in range(1000):
            try:
                cheap()
            except BudgetExceeded:
                break
            ran += 1
    assert ran == 399  # (4 - 3 - 0.0025) / 0.0025
    assert tracker.total() == 4 and overall.spent == 4
    tracker.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_threads_opening_a_lease_count_what_the_writer_is_writing(home, kind: str) -> None:
    # Threads entering the budget at once, right after $0.98 was recorded outside it: one thread's write of the
    # buffer is under way while the others look, and the buffer they see is empty. Each waits for that write.
    tracker = CostTracker(open_store(kind, home(kind)), flush_interval=3600)
    call = tracked(tracker)
    daily = budget(1, period="daily", tracker=tracker, name="threads")
    with daily:
        call()
    tracker.record(amount="0.98")
    start = threading.Barrier(24)
    ran: list[int] = []

    def worker() -> None:
        start.wait()
        with daily:
            try:
                call()
                ran.append(1)
            except BudgetExceeded:
                pass

    threads = [threading.Thread(target=worker) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ran) == 7
    assert tracker.total() == Decimal("0.98") + COST * 8
    tracker.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_a_users_budget_entered_per_request_writes_the_buffer_only_when_it_holds_that_users_uncounted_calls(
    home, kind
) -> None:
    # A web handler enters the user's daily budget per request. Opening one wrote the tracker's buffer first, so the
    # user's spend read from the store was whole: milliseconds a request on a DuckDB file (and a Parquet file a
    # request) to write other users' entries, which that reading does not count, and the user's own calls of the
    # requests before, which the user's account in the ledger counts until they are written (each settled in a
    # batch of its request's lease). Written now only when the buffer holds an entry of the user's that the account
    # does not count: spend recorded outside the budget, say. Every amount counts once, whichever way.
    tracker = CostTracker(open_store(kind, home(kind)), flush_interval=3600)
    call = tracked(tracker)

    def request(user: str) -> Budget:
        with budget(LIMIT, period="daily", tracker=tracker, tags={"user": user}) as mine, tags(user=user):
            call()
        return mine

    for user in ("a", "b", "c"):
        assert request(user).spent == COST
    assert request("a").spent == COST * 2  # a's first call counted by a's account, still buffered
    assert tracker.pending() == 4 and tracker.store.total() == 0  # no request wrote the buffer
    tracker.record(amount="1", tags={"user": "b"})  # (outside any budget: only the store will count it)
    assert request("b").spent == COST * 2 + 1  # written first, then read
    assert tracker.pending() == 1 and tracker.store.total() == COST * 4 + 1
    assert request("c").spent == COST * 2  # c's first call written by b's request: the store counts it now
    tracker.flush()
    assert [request(user).spent for user in ("a", "b", "c")] == [COST * 3, COST * 3 + 1, COST * 3]
    tracker.close()


def test_a_lease_renewed_for_the_budgets_own_calls_alone_writes_nothing(home, calls) -> None:
    # The buffer is written before a lease is renewed only when it may hold spend the ledger has not counted: while
    # every entry buffered since the last batch is one of the budget's own calls (settled in the ledger already), no
    # write (milliseconds in a DuckDB file) is added to the call that renews the lease; the tracker's writer makes
    # it. An entry recorded outside the budget is written before the next renewal.
    tracker = CostTracker(open_store("duckdb", home("duckdb")), flush_interval=3600)
    call = tracked(tracker)
    daily = budget(LIMIT, period="daily", tracker=tracker, name="own")
    with daily:
        for _ in range(LEASE_CALLS * 8):
            call()
    assert calls["settle_batch"] >= 4  # renewed as each lease ran dry
    assert tracker.pending() == LEASE_CALLS * 8  # and nothing written meanwhile
    with daily:  # a new lease for the same calls: nothing written either
        for _ in range(LEASE_CALLS * 2):
            call()
    assert tracker.pending() == LEASE_CALLS * 10
    tracker.record(amount="1")
    with daily:
        call()  # the new lease's batch counts the outside dollar: written first
    assert tracker.pending() == 1
    assert daily.spent == COST * (LEASE_CALLS * 10 + 1) + 1
    tracker.close()
