"""Acknowledgements by id (review tests): the tracker's writer tells leases and by-id ledgers the ids of what it
wrote, and every settled amount leaves its ledger exactly once, when its entry is written; never twice, never not.

The model-based test drives ``SqliteLedger`` with random settles, writes, failed and repeated acknowledgements and
compares its settled amounts, per scope, with a plain model; the tracker tests run budgets over DuckDB and Parquet
stores (and PostgreSQL, whose ledger takes entries) through the writer, with ``record`` and tracked calls, a store
that is down for a while, and real child processes sharing one SQLite ledger.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import ClassVar

import pytest

from llmcost import CostTracker, budget, track_cost
from llmcost._errors import StoreError
from llmcost.stores import CostStore, DuckDBStore
from llmcost.stores._ledger import BudgetScope
from llmcost.stores._ledger_sqlite import SqliteLedger
from llmcost.stores._postgres_ledger import PostgresLedger
from tests.stores import conftest as stores_conftest
from tests.stores import test_ledger
from tests.stores.conftest import Children, make_entry
from tests.stores.test_ledger import COST, DAY, location, open_store

# The fixtures of ``tests/stores``: a new place for a store of a kind; the session's PostgreSQL database; children.
home = test_ledger.home
postgres_database = stores_conftest.postgres_database
children = stores_conftest.children

LIMIT = Decimal("100")
RESPONSE = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}  # $0.0025, COST


def _scope(name: str) -> BudgetScope:
    return BudgetScope(name, since=DAY, until=DAY + timedelta(days=1))


def _settled(ledger: SqliteLedger) -> dict[str, Decimal]:
    """Each account's settled amount, read from the ledger's file."""
    with contextlib.closing(sqlite3.connect(ledger.path)) as con:
        return {key: Decimal(value) for key, value in con.execute("SELECT scope, settled FROM accounts")}


def _holds(ledger: SqliteLedger) -> dict[str, Decimal]:
    """Per scope, the sum of the settled rows (each entry's own, and batch rows) left in the ledger's file."""
    with contextlib.closing(sqlite3.connect(ledger.path)) as con:
        rows = con.execute("SELECT scope, amount FROM holds WHERE entry IS NOT NULL").fetchall()
    found: dict[str, Decimal] = {}
    for key, amount in rows:
        found[key] = found.get(key, Decimal(0)) + Decimal(amount)
    return found


@pytest.mark.parametrize("seed", range(6))
def test_settled_amounts_leave_the_sqlite_ledger_once_each_as_their_entries_are_written(tmp_path, monkeypatch, seed):
    # A model of what the ledger must hold: per scope, the amounts settled there whose entries were not yet
    # acknowledged when they were settled, less those acknowledged since (a failed acknowledgement takes effect with
    # the next one). Entries are settled in batches (leases), alone (exact reservations), in two scopes, before or
    # after they are written, and written in random order, partly, twice, or never.
    rng = random.Random(seed)
    recorded: dict[str, Decimal] = {}
    ledger = SqliteLedger(str(tmp_path / "ledger"), total=lambda **filters: sum(recorded.values(), Decimal(0)))
    scopes = [_scope("a"), _scope("b"), _scope("c")]
    ledger.begin()
    for s in scopes:
        ledger.standing(s)
    model: dict[str, dict[str, Decimal]] = {s.key: {} for s in scopes}
    acknowledged: set[str] = set()
    late: set[str] = set()  # written, acknowledgement failed: leaves with the next acknowledgement
    made = iter(range(1_000_000))
    unwritten: list[str] = []
    amounts: dict[str, Decimal] = {}

    def new_ids(n: int) -> list[str]:
        ids = []
        for _ in range(n):
            entry = make_entry(next(made), amount=COST * rng.randint(1, 9))
            amounts[entry.id] = entry.amount
            unwritten.append(entry.id)
            ids.append(entry.id)
        return ids

    def settle_in(s: BudgetScope, ids: Sequence[str], alone: bool) -> None:
        for i in ids:
            if i not in acknowledged:
                model[s.key][i] = model[s.key].get(i, Decimal(0)) + amounts[i]
        if alone:
            for i in ids:
                ledger.settle(s, amounts[i], entry_id=i)
        else:
            ledger.settle_batch(s, {i: amounts[i] for i in ids}, reservation=None, keep=Decimal(0), renew=None,
                                limit=LIMIT)  # fmt: skip

    original = SqliteLedger._forget_written

    def acknowledge(ids: list[str], fail: bool) -> None:
        if fail:

            def failing(self, *args):  # type: ignore[no-untyped-def]
                raise sqlite3.OperationalError("database is locked")

            monkeypatch.setattr(SqliteLedger, "_forget_written", failing)
            with pytest.raises(sqlite3.OperationalError):
                ledger.acknowledge_ids(ids)
            monkeypatch.setattr(SqliteLedger, "_forget_written", original)
        else:
            ledger.acknowledge_ids(ids)
        late.update(ids)
        acknowledged.update(ids)
        if not fail:  # (those of failed acknowledgements before leave with this one)
            for i in late:
                for held in model.values():
                    held.pop(i, None)
            late.clear()

    for _ in range(60):
        step = rng.random()
        if step < 0.4:
            ids = new_ids(rng.randint(1, 6))
            s = rng.choice(scopes)
            settle_in(s, ids, alone=rng.random() < 0.3)
            if rng.random() < 0.3:  # also settled in another scope (a second budget)
                settle_in(rng.choice([o for o in scopes if o is not s]), ids, alone=rng.random() < 0.5)
        elif step < 0.55:
            # Written before their settle comes (a flush between the call's record and its budget's settle).
            ids = new_ids(rng.randint(1, 4))
            for i in ids:
                recorded[i] = amounts[i]
            unwritten[:] = [i for i in unwritten if i not in ids]
            acknowledge(ids, fail=False)
            settle_in(rng.choice(scopes), ids, alone=rng.random() < 0.5)
        elif unwritten:
            rng.shuffle(unwritten)
            k = rng.randint(1, len(unwritten))
            ids, unwritten[:] = unwritten[:k], unwritten[k:]
            if rng.random() < 0.2 and acknowledged:
                ids = [*ids, *rng.sample(sorted(acknowledged), 1)]  # written twice (a replay, a retried batch)
            for i in ids:
                recorded[i] = amounts[i]
            acknowledge(ids, fail=rng.random() < 0.25)
        want = {key: sum(held.values(), Decimal(0)) for key, held in model.items()}
        assert _settled(ledger) == want
        assert {key: _holds(ledger).get(key, Decimal(0)) for key in want} == want
    # Everything written and acknowledged: each scope's spend is the store's, counted once.
    for i in unwritten:
        recorded[i] = amounts[i]
    ledger.acknowledge_ids(list(unwritten) or [next(iter(recorded))])
    assert set(_settled(ledger).values()) == {Decimal(0)}
    for s in scopes:
        assert ledger.standing(s, refresh=True).spent == sum(recorded.values(), Decimal(0))
    ledger.close()


# -- through the tracker's writer ----------------------------------------------------------------------------------
def _views(home, kind: str) -> tuple[CostTracker, CostTracker]:  # type: ignore[no-untyped-def]
    where = home(kind)
    return CostTracker(open_store(kind, where)), CostTracker(open_store(kind, where))


@pytest.mark.on_system_clock("daily")  # (its daily budgets lease on the system clock: tests/conftest.py)
@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_calls_and_records_count_once_through_flushes_and_a_store_down_a_while(home, kind, monkeypatch):
    # Tracked calls (served by a lease) and ``tracker.record`` entries, under two budgets (one filtered by resource),
    # flushed at random, some flushes failing (the store is down: the batch stays buffered and is written again
    # later): after each successful flush this process and another see exactly what the store holds.
    rng = random.Random(7)
    tracker, other = _views(home, kind)
    call = track_cost(tracker=tracker, resource="r", estimate=COST)(lambda: RESPONSE)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    per_r = budget(LIMIT, period="daily", name="cap-r", resource="r", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    seen_r = budget(LIMIT, period="daily", name="cap-r", resource="r", tracker=other)
    made = made_r = Decimal(0)
    store = tracker.store
    original = type(store).append_columns
    with b, per_r:
        for _ in range(30):
            for _ in range(rng.randint(0, 40)):
                call()
                made += COST
                made_r += COST
            for _ in range(rng.randint(0, 3)):
                amount = COST * rng.randint(1, 4)
                resource = rng.choice(["r", "s"])
                tracker.record(model="gpt-4o", amount=amount, resource=resource)
                made += amount
                made_r += amount if resource == "r" else 0
            if rng.random() < 0.3:

                def down(self, columns):  # type: ignore[no-untyped-def]
                    raise StoreError("the store is down")

                monkeypatch.setattr(type(store), "append_columns", down)
                monkeypatch.setattr(type(store), "append", down)
                with pytest.raises(StoreError):
                    tracker.flush()
                monkeypatch.undo()
                assert type(store).append_columns is original
                continue
            tracker.flush()
            assert other.store.total() == made
            assert (b.spent, b.reserved) == (made, 0)
            assert (per_r.spent, per_r.reserved) == (made_r, 0)
            assert seen.spent + seen.reserved >= made  # (the lease's amounts may wait for its batch)
            assert seen_r.spent + seen_r.reserved >= made_r
    tracker.flush()
    assert (seen.spent, seen.reserved) == (made, 0) == (other.store.total(), 0)
    assert (seen_r.spent, seen_r.reserved) == (made_r, 0)
    tracker.close()
    other.close()


class _Acknowledging(DuckDBStore):
    """A DuckDB store whose ``acknowledge`` is its own: the writer gives it the entries it wrote."""

    seen: ClassVar[list[str]] = []

    def acknowledge(self, entries):  # type: ignore[no-untyped-def]
        type(self).seen.extend(entry.id for entry in entries)
        super().acknowledge(entries)


@pytest.mark.on_system_clock("daily")  # (its daily budgets lease on the system clock: tests/conftest.py)
def test_a_store_that_acknowledges_in_its_own_way_gets_the_written_entries(home):
    store = _Acknowledging(os.path.join(home("duckdb"), "costs.duckdb"))
    tracker = CostTracker(store)
    call = track_cost(tracker=tracker, resource="r", estimate=COST)(lambda: RESPONSE)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    _Acknowledging.seen = []
    with b:
        for _ in range(5):
            call()
        recorded = tracker.record(model="gpt-4o", amount=COST, resource="r")
        tracker.flush()
    assert len(_Acknowledging.seen) == 6 and recorded.id in _Acknowledging.seen
    assert sorted(_Acknowledging.seen) == sorted(e.id for e in store.entries())
    assert (b.spent, b.reserved) == (COST * 6, 0)
    tracker.close()


@pytest.mark.on_system_clock("daily")  # (its daily budgets lease on the system clock: tests/conftest.py)
def test_a_postgres_ledger_is_given_the_written_entries(home, monkeypatch):
    # PostgresLedger acknowledges entries, not ids (``by_id`` False): the writer's columns are made entries for it.
    assert not PostgresLedger.by_id
    given: list[str] = []
    original = PostgresLedger.acknowledge

    def spy(self, entries):  # type: ignore[no-untyped-def]
        given.extend(entry.id for entry in entries)
        return original(self, entries)

    monkeypatch.setattr(PostgresLedger, "acknowledge", spy)
    tracker, other = _views(home, "postgres")
    call = track_cost(tracker=tracker, resource="r", estimate=COST)(lambda: RESPONSE)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    with b:
        for _ in range(5):
            call()
        tracker.record(model="gpt-4o", amount=COST, resource="r")
        tracker.flush()
        assert sorted(given) == sorted(e.id for e in other.store.entries())
        assert (b.spent, b.reserved) == (COST * 6, 0)
    tracker.flush()
    assert (seen.spent, seen.reserved) == (COST * 6, 0) == (other.store.total(), 0)
    tracker.close()
    other.close()


_CHILD = """
import json, random, sys
from decimal import Decimal
from typing import ClassVar
from llmcost import CostTracker, budget, track_cost
from llmcost.stores import DuckDBStore, ParquetStore

kind, where, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
store = DuckDBStore(where) if kind == "duckdb" else ParquetStore(where)
tracker = CostTracker(store, flush_interval=0.05)
response = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
call = track_cost(tracker=tracker, resource="r", estimate=Decimal("0.0025"))(lambda: response)
b = budget(Decimal("100"), period="daily", name="cap", tracker=tracker)
made = Decimal(0)
with b:
    for i in range(300):
        call()
        made += Decimal("0.0025")
        if rng.random() < 0.05:
            amount = Decimal("0.0025") * rng.randint(1, 4)
            tracker.record(model="gpt-4o", amount=amount, resource=rng.choice(["r", "s"]))
            made += amount
        if rng.random() < 0.03:
            tracker.flush()
tracker.close()
print(json.dumps({"made": str(made)}))
"""


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_processes_sharing_the_sqlite_ledger_count_each_entry_once(children: Children, home, kind):
    # Real processes, each with its background writer acknowledging by id as it writes: once all are done, the
    # ledger's account holds nothing settled and its spend is the store's, to the cent.
    store: CostStore = open_store(kind, home(kind))
    where = location(store)
    started = datetime.now(timezone.utc)
    procs = [children.spawn(_CHILD, kind, where, str(seed)) for seed in range(3)]
    made = Decimal(0)
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        made += Decimal(json.loads(out.splitlines()[-1])["made"])
    tracker = CostTracker(store)
    seen = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    assert store.total() == made
    # (The day's spend: children running across midnight UTC wrote entries of two days, and the budget counts today's.)
    today = store.total(since=seen.period_start, until=seen.period_end)
    assert (seen.spent, seen.reserved) == (today, 0)
    if seen.period_start is not None and seen.period_start <= started:
        assert today == made  # (no midnight since the children started: every entry is of today)
    ledger = store.current_ledger()
    assert isinstance(ledger, SqliteLedger)
    assert set(_settled(ledger).values()) <= {Decimal(0)}
    tracker.close()


@pytest.mark.on_system_clock("daily")  # (its daily budgets lease on the system clock: tests/conftest.py)
@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_entries_spilled_while_the_store_is_down_count_once_when_replayed(home, kind, monkeypatch):
    # While the store cannot be written its appends are spilled to files (they count as written, and the writer
    # acknowledges them); once it is back, a read replays them: each entry then counts once, for this process and for
    # another, with nothing left settled in the ledger.
    tracker, other = _views(home, kind)
    call = track_cost(tracker=tracker, resource="r", estimate=COST)(lambda: RESPONSE)
    b = budget(LIMIT, period="daily", name="cap", tracker=tracker)
    seen = budget(LIMIT, period="daily", name="cap", tracker=other)
    store = tracker.store
    with b:
        for _ in range(10):
            call()
        tracker.flush()
        original = type(store)._write

        def down(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise StoreError("the disk is full")

        monkeypatch.setattr(type(store), "_write", down)
        for _ in range(10):
            call()
        tracker.record(model="gpt-4o", amount=COST, resource="s")
        tracker.flush()  # spilled, and acknowledged
        assert store._durable.spill.pending()  # type: ignore[attr-defined]
        monkeypatch.setattr(type(store), "_write", original)
        for _ in range(5):
            call()
        tracker.flush()
        assert other.store.total() == COST * 26
        assert (b.spent, b.reserved) == (COST * 26, 0)
    tracker.flush()
    assert not store._durable.spill.pending()  # type: ignore[attr-defined]
    assert (seen.spent, seen.reserved) == (COST * 26, 0) == (other.store.total(), 0)
    ledger = store.current_ledger()
    assert isinstance(ledger, SqliteLedger)
    assert set(_settled(ledger).values()) <= {Decimal(0)}
    tracker.close()
    other.close()


def test_a_writer_acknowledging_while_threads_settle_batches_leaves_each_amount_once(tmp_path):
    # Call threads settle batches (and some entries alone) while the writer thread acknowledges ids as it "writes"
    # them, some before their settle comes: at every point no scope holds less than nothing, and once every entry is
    # written and acknowledged nothing is left settled (an amount taken off twice, or never, would show).
    import threading

    ledger = SqliteLedger(str(tmp_path / "ledger"), total=lambda **filters: Decimal(0))
    scopes = [_scope("a"), _scope("b")]
    ledger.begin()
    made: list[str] = []
    lock = threading.Lock()
    done = threading.Event()
    errors: list[BaseException] = []

    def caller(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for k in range(60):
                batch = {make_entry(seed * 100_000 + k * 10 + j).id: COST * (j + 1) for j in range(rng.randint(1, 5))}
                with lock:
                    made.extend(batch)  # recorded: the writer may write them before they settle
                s = rng.choice(scopes)
                if rng.random() < 0.2:
                    for i, amount in batch.items():
                        ledger.settle(s, amount, entry_id=i)
                else:
                    ledger.settle_batch(s, batch, reservation=None, keep=Decimal(0), renew=None, limit=LIMIT)
        except BaseException as exc:
            errors.append(exc)

    def writer() -> None:
        rng = random.Random(99)
        try:
            while not done.is_set() or made:
                with lock:
                    rng.shuffle(made)
                    k = rng.randint(0, len(made))
                    ids, made[:] = made[:k], made[k:]
                if ids:
                    ledger.acknowledge_ids(ids)
                    assert all(v >= 0 for v in _settled(ledger).values())
        except BaseException as exc:
            errors.append(exc)

    callers = [threading.Thread(target=caller, args=(seed,)) for seed in (1, 2, 3)]
    writing = threading.Thread(target=writer)
    for thread in [*callers, writing]:
        thread.start()
    for thread in callers:
        thread.join()
    done.set()
    writing.join()
    assert not errors
    assert set(_settled(ledger).values()) == {Decimal(0)}
    assert _holds(ledger) == {}
    ledger.close()
