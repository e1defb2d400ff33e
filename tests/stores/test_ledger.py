"""The budget ledger: reserve/settle/release on every store, and budgets that hold across real processes.

The process tests start real Python processes on one DuckDB, Parquet or PostgreSQL store, each calling a tracked
function as fast as it can under one daily limit, and check what the store recorded in the end. On PostgreSQL each
process has its own connection, as a process on another host would: they stand in for hosts.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from freezegun import freeze_time

import llmcost
from llmcost import BudgetExceeded, BudgetManager, CostTracker, StoreError, Usage, budget, track_cost
from llmcost.stores import BudgetScope, CostStore, DuckDBStore, ParquetStore, PostgresStore, Standing
from llmcost.stores._ledger import LeaseTerms
from llmcost.stores._ledger_sqlite import SqliteLedger
from tests.conftest import Clock, Periods

from . import postgres_server
from .conftest import Children, make_entry

UTC = timezone.utc
COST = Decimal("0.0025")  # gpt-4o, 1000 input tokens: what every child call costs
DAY = datetime(2024, 5, 1, tzinfo=UTC)


def scope(**filters: object) -> BudgetScope:
    return BudgetScope("test", since=DAY, until=DAY + timedelta(days=1), **filters)  # type: ignore[arg-type]


Home = Callable[[str], str]


@pytest.fixture
def home(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Home:
    """``home(kind)``: a new place for a store of ``kind``: a directory, or for ``postgres`` the DSN of a schema of
    its own in the session's database."""
    made = iter(range(1_000_000))

    def make(kind: str) -> str:
        if kind == "postgres":
            return postgres_server.fresh_schema(request.getfixturevalue("postgres_database"))
        where = os.path.join(tmp_path, f"home-{next(made)}")
        os.mkdir(where)
        return where

    return make


# -- the ledger on every store ----------------------------------------------------------------------------------
def test_reserve_settle_release_and_recorded_spend(store: CostStore):
    recorded = make_entry(0, timestamp=DAY + timedelta(hours=1), amount=Decimal("0.30"), category="compute")
    store.append([recorded])
    s = scope(category="compute")
    assert store.standing(s).spent == Decimal("0.30")  # starts from what the store holds
    first = store.reserve(s, Decimal("0.50"), limit=Decimal("1"))
    assert first.granted and (first.spent, first.reserved) == (Decimal("0.30"), 0)
    refused = store.reserve(s, Decimal("0.25"), limit=Decimal("1"))
    assert not refused.granted and refused.reserved == Decimal("0.50")
    # The call cost more than reserved: the next check sees the actual amount at once.
    entry = make_entry(1, timestamp=DAY + timedelta(hours=2), amount=Decimal("0.60"), category="compute")
    after = store.settle(s, entry.amount, reservation=first, entry_id=entry.id)
    assert (after.spent, after.reserved) == (Decimal("0.90"), 0)
    # Written and acknowledged: counted once, from the store now.
    store.append([entry])
    store.acknowledge([entry])
    assert store.standing(s) == store.standing(s, refresh=True)
    assert store.standing(s).spent == Decimal("0.90")
    second = store.reserve(s, Decimal("0.10"), limit=Decimal("1"))
    assert second.granted
    store.release(second)
    store.release(second)  # a no-op the second time
    assert store.standing(s).reserved == 0
    forced = store.reserve(s, Decimal("5"), limit=Decimal("1"), force=True)
    assert forced.granted
    store.release(forced)


def test_an_entry_written_before_it_is_settled_counts_once(store: CostStore):
    s = scope()
    store.standing(s)
    store.ledger().begin()
    r = store.reserve(s, COST, limit=Decimal("1"))
    entry = make_entry(2, timestamp=DAY + timedelta(hours=3), amount=COST, category="llm_inference", tags={})
    store.append([entry])  # a background flush wrote it first
    store.acknowledge([entry])
    assert store.settle(s, entry.amount, reservation=r, entry_id=entry.id).spent == COST


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_two_store_objects_on_one_path_share_the_ledger(home, kind):
    # What two processes see, in one: a reservation and a settled amount are visible through the other object at
    # once, before anything is written to the store.
    where = home(kind)
    first, second = open_store(kind, where), open_store(kind, where)
    s = scope()
    r = first.reserve(s, Decimal("0.6"), limit=Decimal("1"))
    assert second.standing(s).reserved == Decimal("0.6")
    assert not second.reserve(s, Decimal("0.5"), limit=Decimal("1")).granted
    first.settle(s, Decimal("0.7"), reservation=r, entry_id="not-written-yet")
    assert second.standing(s) == first.standing(s)
    assert (second.standing(s).spent, second.standing(s).reserved) == (Decimal("0.7"), 0)
    assert not second.reserve(s, Decimal("0.31"), limit=Decimal("1")).granted
    assert second.reserve(s, Decimal("0.3"), limit=Decimal("1")).granted
    first.close()
    second.close()


FIRST_OPEN = """
import os, sys
from datetime import datetime, timezone
from decimal import Decimal
from llmcost.stores import BudgetScope
from llmcost.stores._ledger import LeaseTerms
from llmcost.stores._ledger_sqlite import SqliteLedger

path, n = sys.argv[1], int(sys.argv[2])
scope = BudgetScope("first-open", since=datetime(2024, 5, 1, tzinfo=timezone.utc))
pids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        ledger = SqliteLedger(path, total=lambda **filters: Decimal(0))
        granted = ledger.reserve(scope, Decimal(1), limit=Decimal(n // 2)).granted
        os._exit(0 if granted else 3)
    pids.append(pid)
codes = sorted(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids)
print(codes)
"""


def test_processes_opening_a_fresh_ledger_at_once(children, tmp_path):
    # Eight processes create the SQLite file and switch it to WAL at the same moment; half of them get a reservation.
    proc = children.spawn(FIRST_OPEN, str(tmp_path / "ledger.sqlite"), "8")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == str([0, 0, 0, 0, 3, 3, 3, 3]), err


class _Spend:
    """A store's ``total``: recorded spend that stops answering while ``fails`` (a DuckDB file another program keeps
    locked)."""

    def __init__(self) -> None:
        self.amount = Decimal(0)
        self.fails = False
        self.reads = 0

    def __call__(self, **filters: object) -> Decimal:
        self.reads += 1
        if self.fails:
            raise StoreError("could not read costs.duckdb: another process holds the store's lock")
        return self.amount


def test_a_ledger_that_cannot_read_the_store_counts_every_call_once_until_it_can(tmp_path, caplog):
    """While the store's spend cannot be read, the ledger counts from its last reading: what an acknowledgement
    takes off the settled amounts (a batch row's), what leases held of the acknowledged entries, and entries
    written before they were settled (alone or in a batch) each join the base once, so the standing never drops.
    The store is not tried again within ``refresh`` seconds of a failed read (each waits its ``retry_timeout``); a
    forced reading, once it answers, replaces the count."""
    spend = _Spend()
    ledger = SqliteLedger(str(tmp_path / "costs.duckdb.ledger"), total=spend, refresh=60)
    limit, s = Decimal(1), scope()
    ledger.begin()
    r = ledger.reserve(s, COST, limit=limit)
    spend.fails, reads = True, spend.reads
    # A batch row (entries "b" and "c"), then "b" written and acknowledged: its amount moves into the base.
    ledger.settle_batch(s, {"b": COST, "c": COST}, reservation=None, keep=Decimal(0), renew=None, limit=limit)
    assert ledger.standing(s).spent == 2 * COST
    ledger.acknowledge_ids(["b"])
    assert "cannot read the store's recorded spend" in caplog.text
    assert ledger.standing(s) == Standing(2 * COST, COST)
    # "a" written and acknowledged before its call settles it (the writer was quicker than the call's end).
    ledger.acknowledge_ids(["a"])
    assert ledger.settle(s, COST, reservation=r, entry_id="a") == Standing(3 * COST, Decimal(0))
    # "d" and "e" written before the batch that settles them, one acknowledged, one not yet.
    ledger.acknowledge_ids(["d"])
    with ledger.writing(["e"]):
        pass
    renewal = ledger.settle_batch(
        s, {"d": COST, "e": COST, "f": COST}, reservation=None, keep=Decimal(0), renew=None, limit=limit
    )
    assert renewal.standing.spent == 6 * COST
    # A lease held "g" for its next batch when it was acknowledged: the ledger never had it, the store does.
    ledger.acknowledge_ids(["c", "e", "f", "g"], leased=lambda: {s.key: COST})
    assert ledger.standing(s).spent == 7 * COST
    assert spend.reads == reads + 1  # the first read that failed; none since
    # The store answers again (with another tracker's spend in it too): a forced reading has it all.
    spend.fails, spend.amount = False, 7 * COST + Decimal("0.5")
    assert ledger.standing(s, refresh=True) == Standing(7 * COST + Decimal("0.5"), Decimal(0))
    ledger.close()


def test_what_a_process_that_cannot_read_the_store_adds_is_not_overwritten_by_an_older_reading(tmp_path, monkeypatch):
    """Two processes on one ledger (two ``SqliteLedger`` objects: two holders). The first acknowledges a write and
    reads the store's spend; before it stores that reading, the second settles a call written before its batch while
    its own read of the store fails, so it adds the call to the base itself. That must make the first's reading
    stale (the generation moves): stored, it dropped the call for every process that cannot read the store."""
    store = {"total": Decimal(0), "second fails": False}

    def first_total(**filters: object) -> Decimal:
        return store["total"]

    def second_total(**filters: object) -> Decimal:
        if store["second fails"]:
            raise StoreError("could not read costs.duckdb: another process holds the store's lock")
        return store["total"]

    path = str(tmp_path / "costs.duckdb.ledger")
    first, second = SqliteLedger(path, total=first_total), SqliteLedger(path, total=second_total)
    first.begin()
    second.begin()
    s, batch = scope(), {"reservation": None, "keep": Decimal(0), "renew": None, "limit": Decimal(100)}
    first.settle_batch(s, {"a": COST}, **batch)
    first.standing(s)  # (in use again after its release: the acknowledgement below reads its spend)
    store["total"] += COST
    with first.writing(["a"]):  # the first's writer appends "a"
        pass
    read = first._fresh_totals

    def then_the_second_settles(scopes):  # type: ignore[no-untyped-def]
        fresh = read(scopes)  # the first read the spend: COST
        store["total"] += 2 * COST
        with second.writing(["x"]):  # the second appends "x", then settles it (written first) and cannot read
            pass
        store["second fails"] = True
        second.settle_batch(s, {"x": 2 * COST}, **batch)
        return fresh

    monkeypatch.setattr(first, "_fresh_totals", then_the_second_settles)
    first.acknowledge_ids(["a"])
    assert second.standing(s).spent == 3 * COST
    second.acknowledge_ids(["x"])
    assert second.standing(s).spent == 3 * COST == first.standing(s).spent
    first.close()
    second.close()


def test_a_store_that_stays_unreadable_is_tried_less_and_less_often(tmp_path, caplog):
    """After a failed read the calls' path does not try the store for ``refresh`` seconds, then twice as long after
    each failure (each try waits the store's ``retry_timeout``: a file locked for an hour held a call every few
    seconds), at most a minute; a read that succeeds starts over."""
    spend = _Spend()
    ledger = SqliteLedger(str(tmp_path / "costs.duckdb.ledger"), total=spend, refresh=5)
    s = scope()
    with freeze_time("2024-05-01 12:00:00") as frozen:
        ledger.begin()
        spend.fails = True
        tried = []
        for _ in range(600):  # ten minutes, a look every second
            before = spend.reads
            ledger.standing(s)
            assert ledger.spend_unreadable()
            if spend.reads > before:
                tried.append(int(time.monotonic()))
            frozen.tick(1)
        gaps = [b - a for a, b in itertools.pairwise(tried)]
        assert gaps[:5] == [5, 10, 20, 40, 60] and set(gaps[5:]) == {60}
        assert caplog.text.count("cannot read the store's recorded spend") == 1
        spend.fails, before = False, spend.reads
        frozen.tick(60)
        ledger.standing(s)
        assert not ledger.spend_unreadable() and spend.reads == before + 1
        spend.fails = True
        ledger.standing(s, refresh=True)  # (a reading asked for is always tried)
        assert ledger.spend_unreadable() and spend.reads == before + 2
        frozen.tick(6)
        ledger.standing(s)  # tried again after ``refresh`` seconds, as at the first failure
        assert spend.reads == before + 3
    ledger.close()


# -- entries set aside still count ------------------------------------------------------------------------------
NUL_TAG = {"user": "mallory\x00"}  # PostgreSQL text cannot hold it: such an entry is set aside, not stored


def _store_refusing_nul(kind: str, where: str, monkeypatch: pytest.MonkeyPatch) -> CostStore:
    """A store of ``kind`` that cannot take an entry whose tag holds a NUL character: PostgreSQL sets it aside inside
    ``append`` (``PostgresStore.refuse``); the others are made to refuse such a batch, as they refuse a value beyond
    their types, so the writer's ``append_or_set_aside`` sets it aside."""
    if kind == "postgres":
        return PostgresStore(where)
    store: CostStore = DuckDBStore(os.path.join(where, "c.duckdb")) if kind == "duckdb" else ParquetStore(where)
    append, append_columns = store.append, store.append_columns

    def refusing(entries):
        if any("\x00" in value for entry in entries for value in entry.tags.values()):
            raise StoreError("a value beyond the stored types")
        append(entries)

    def refusing_columns(columns):
        if any("\x00" in value for tags in columns.column("tags") for value in dict(tags or {}).values()):
            raise StoreError("a value beyond the stored types")
        append_columns(columns)

    monkeypatch.setattr(store, "append", refusing)
    monkeypatch.setattr(store, "append_columns", refusing_columns)
    return store


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_calls_whose_entries_are_set_aside_count_against_the_limit(home, kind, monkeypatch, clock):
    # Near the limit each call reserves exactly: an entry set aside must not be acknowledged (that dropped its
    # settled amount, and the store never has it), so 4 calls of 0.0025 fill 0.01 whatever becomes of their entries.
    # (On a clock of the test's own: on the system clock a run across midnight UTC had a new day's limit.)
    store = _store_refusing_nul(kind, home(kind), monkeypatch)
    tracker = CostTracker(store, clock=clock)
    ask = track_cost(tracker=tracker, model="gpt-4o", estimate=COST, usage=lambda r: Usage(input_tokens=1000))(
        lambda tags: "ok"
    )
    made = 0
    with budget(COST * 4, period="daily", tracker=tracker) as b:
        for _ in range(10):
            for tags in (NUL_TAG, {"user": "bob"}):  # (one stored beside it: the store works, the entry is refused)
                try:
                    with llmcost.tags(**tags):
                        ask(tags)
                    made += 1
                except BudgetExceeded:
                    pass
            tracker.flush()
        assert b.spent == COST * 4
    assert made == 4 and len(store.dead_letters()) == 2
    tracker.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_calls_served_from_a_lease_whose_entries_are_set_aside_count(home, kind, monkeypatch, same_period):
    # Far from the limit calls are served from a lease, their amounts settled in its batches: an acknowledgement
    # must not take the set-aside ones out of the lease's batch either.
    store = _store_refusing_nul(kind, home(kind), monkeypatch)
    tracker = CostTracker(store)
    ask = track_cost(tracker=tracker, model="gpt-4o", estimate=COST, usage=lambda r: Usage(input_tokens=1000))(
        lambda: "ok"
    )
    with budget(100, period="daily", tracker=tracker) as b:
        for i in range(40):
            with llmcost.tags(**(NUL_TAG if i % 10 == 3 else {"user": "bob"})):
                ask()
        tracker.flush()
    scope = BudgetScope(b.key, since=b.period_start, until=b.period_end)
    if same_period():  # (across midnight UTC, today's account has today's calls alone)
        assert store.standing(scope).spent == COST * 40
    assert tracker.total() == COST * 36 and len(store.dead_letters()) == 4
    tracker.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
@pytest.mark.parametrize("order", ["settled, then set aside", "set aside, then settled"])
def test_an_entry_set_aside_keeps_counting_and_nothing_waits_for_its_acknowledgement(home, kind, order):
    # Its amount, settled in a lease's batch beside one written, counts for the rest of the period, whichever comes
    # first; the ledger keeps nothing in memory for an acknowledgement that will never come (batch rows, receipts).
    store = _store_refusing_nul(kind, home(kind), pytest.MonkeyPatch())
    s = scope()
    written = make_entry(1, timestamp=DAY, amount=Decimal("0.25"))
    aside = make_entry(2, timestamp=DAY, amount=Decimal("0.5"), tags=NUL_TAG)
    ledger = store.ledger()
    ledger.begin()
    batch = {written.id: Decimal("0.25"), aside.id: Decimal("0.5")}
    if order == "set aside, then settled":
        store.set_aside_counted([aside])
    store.settle_batch(s, batch, reservation=None, keep=Decimal(0), renew=None, limit=Decimal(10))
    store.set_aside_counted([aside])
    store.append([written])
    store.acknowledge([written, aside])  # (the writer's acknowledgement of its whole batch leaves ``aside`` out)
    assert store.standing(s, refresh=True).spent == Decimal("0.75")
    assert ledger.receipts.settled == set()
    assert not ledger.held_unwritten(s)
    if kind != "postgres":
        assert ledger._batches.rows == {}
    else:
        assert ledger._held_in == {}
    store.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_held_unwritten_names_a_scopes_settled_entries_until_they_are_written(home, kind):
    # What a budget need not write before it reads its scope's spend: the entries whose amounts the ledger counts in
    # that scope's account already (settled in a lease's batch, or one by one), until they are written.
    store = open_store(kind, home(kind))
    ledger = store.ledger()
    ledger.begin()
    mine, other = scope(), BudgetScope("other", since=DAY, until=DAY + timedelta(days=1))
    first, second, third, fourth = (make_entry(i, timestamp=DAY, amount=COST) for i in range(1, 5))
    batch = {"reservation": None, "keep": Decimal(0), "renew": None, "limit": Decimal(10)}
    store.settle_batch(mine, {first.id: COST, second.id: COST}, **batch)
    store.settle_batch(other, {third.id: COST}, **batch)
    store.settle(mine, COST, entry_id=fourth.id)
    # (The SQLite ledger names the entries of its batch rows only: one settled alone is not, and a budget writes it
    # before reading, as before.)
    alone = {fourth.id} if kind == "postgres" else set()
    assert set(ledger.held_unwritten(mine)) == {first.id, second.id, *alone}
    assert set(ledger.held_unwritten(other)) == {third.id}
    store.append([first, third])
    store.acknowledge([first, third])
    assert set(ledger.held_unwritten(mine)) == {second.id, *alone}
    assert not ledger.held_unwritten(other)
    # Two written (the scope has no filter: the other scope's entry counts here too) and two held: each once.
    assert store.standing(mine, refresh=True).spent == COST * 4
    store.close()


def test_an_entry_acknowledged_as_its_settle_commits_is_not_named_held(home, monkeypatch):
    # The writer may acknowledge an entry between the settle's commit and the ledger noting it held: it is written,
    # so it is neither named nor kept (the acknowledgement found nothing to forget yet).
    store = open_store("postgres", home("postgres"))
    ledger = store.ledger()
    ledger.begin()
    entry = make_entry(1, timestamp=DAY, amount=COST)
    run, settles = ledger._run, []

    def acknowledged_at_commit(*args: object, **kwargs: object) -> object:
        done = run(*args, **kwargs)
        if not settles:  # (the settle's own transaction, once: the acknowledgement runs one too)
            settles.append(done)
            store.append([entry])
            store.acknowledge([entry])
        return done

    monkeypatch.setattr(ledger, "_run", acknowledged_at_commit)
    store.settle_batch(scope(), {entry.id: COST}, reservation=None, keep=Decimal(0), renew=None, limit=Decimal(10))
    monkeypatch.undo()
    assert not ledger.held_unwritten(scope()) and ledger._held_in == {}
    assert store.standing(scope(), refresh=True).spent == COST
    store.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
@pytest.mark.parametrize("how", ["release", "lease released"])
def test_a_reservation_whose_release_failed_is_released_by_the_next_heartbeat(home, kind, how, monkeypatch):
    # Else the heartbeat kept it alive with this process's others (it renews the process, not each reservation),
    # its headroom taken from every process for as long as this one ran (docs/budgets.md: never renewed).
    where = home(kind)
    store = DuckDBStore(os.path.join(where, "c.duckdb")) if kind == "duckdb" else ParquetStore(where)
    s = scope()
    ledger = store.ledger()
    if how == "release":
        held = store.reserve(s, Decimal("0.25"), limit=Decimal("1"))
    else:
        terms = LeaseTerms(Decimal("0.25"), Decimal("0.01"))
        held = store.settle_batch(s, {}, reservation=None, keep=Decimal(0), renew=terms, limit=Decimal(10)).reservation
    assert held is not None and store.standing(s).reserved == Decimal("0.25")

    def locked(*args, **kwargs):
        raise StoreError("could not lock the budget ledger: database is locked")

    with monkeypatch.context() as m:
        m.setattr(ledger, "_transaction", locked)
        releasing = (
            (lambda: store.release(held))
            if how == "release"
            else (lambda: store.settle_batch(s, {}, reservation=held, keep=Decimal(0), renew=None, limit=Decimal(10)))
        )
        with pytest.raises(StoreError):
            releasing()
    ledger.beat()
    assert store.standing(s).reserved == 0
    store.close()


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda st: st.reserve(scope(), Decimal(-1), limit=Decimal(1)), ValueError, "amount must be zero or more"),
        (lambda st: st.reserve(scope(), "abc", limit=Decimal(1)), ValueError, "amount must be a number, got 'abc'"),
        (lambda st: st.reserve(scope(), Decimal("NaN"), limit=Decimal(1)), ValueError, "amount must be a finite"),
        (lambda st: st.reserve(scope(), Decimal("1e30"), limit=Decimal("1e31")), ValueError, "amount must be zero"),
        (lambda st: st.reserve(scope(), Decimal(1), limit=None), TypeError, "limit must be a Decimal"),
        (lambda st: st.reserve(scope(), Decimal(1), limit=float("inf")), ValueError, "limit must be a finite"),
        (lambda st: st.reserve("daily", Decimal(1), limit=Decimal(2)), TypeError, "scope must be a llmcost.stores"),
        (lambda st: st.settle(scope(), Decimal("NaN"), entry_id="e1"), ValueError, "amount must be a finite"),
        (lambda st: st.settle(scope(), Decimal("1e21"), entry_id="e1"), ValueError, "amount must be below 10**20"),
        (lambda st: st.settle(scope(), Decimal(1), entry_id=5), TypeError, "entry_id must be a str or None, got 5"),
        (lambda st: st.release(7), TypeError, "reservation must be a Reservation"),
        (
            lambda st: st.settle_batch(scope(), {"e1": "x"}, reservation=None, keep=0, renew=None, limit=1),
            ValueError,
            "amounts['e1'] must be a number, got 'x'",
        ),
        (
            lambda st: st.settle_batch(scope(), {}, reservation=None, keep=-1, renew=None, limit=1),
            ValueError,
            "keep must be zero or more",
        ),
    ],
)
def test_ledger_calls_with_bad_arguments_raise_naming_the_field_and_change_nothing(store, call, error, words):
    with pytest.raises(error) as raised:
        call(store)
    assert words in str(raised.value)
    assert store.standing(scope()) == Standing(Decimal(0), Decimal(0))


def test_ledger_amounts_take_floats_by_their_text_on_every_store(store):
    held = store.reserve(scope(), 0.1, limit=1)
    assert held.granted and held.amount == Decimal("0.1") and store.standing(scope()).reserved == Decimal("0.1")
    assert store.settle(scope(), 0.3, reservation=held, entry_id="e1") == Standing(Decimal("0.3"), Decimal(0))


def test_model_scope_matches_the_entry_model():
    s = scope(model="gpt-4o")
    assert s.matches(make_entry(1, timestamp=DAY, model="gpt-4o"))
    assert not s.matches(make_entry(1, timestamp=DAY, model="claude-3-5-sonnet"))
    assert not s.matches(make_entry(1, timestamp=DAY - timedelta(seconds=1), model="gpt-4o"))


def test_per_model_budget_counts_only_its_model(tracker):
    cheap = track_cost(tracker=tracker, model="gpt-4o-mini", usage=lambda r: Usage(input_tokens=1000))(lambda: 1)
    dear = track_cost(tracker=tracker, model="gpt-4o", usage=lambda r: Usage(input_tokens=1000))(lambda: 1)
    with budget(COST * 2, period="daily", model="gpt-4o", tracker=tracker) as b:
        for _ in range(5):
            cheap()  # another model: not counted, never refused
        dear()
        dear()
        with pytest.raises(BudgetExceeded):
            dear()
        cheap()
    assert b.spent == COST * 2


# -- budgets across real processes ------------------------------------------------------------------------------
# One interpreter per test imports llmcost and the price catalog once, then forks the workers when told to go: real
# processes (own pids, own ledger connections and leases) that start together and in milliseconds, not seconds.
CHILD = """
import json, os, sys, threading, time
from contextlib import nullcontext
from datetime import datetime, timedelta
from decimal import Decimal
import llmcost
from llmcost import BudgetExceeded, CostTracker, budget, track_cost
from llmcost.stores import DuckDBStore, ParquetStore, PostgresStore

n, kind, path, mode, limit, calls, factor, start, lease, pause = sys.argv[1:11]
llmcost.cost_of("gpt-4o", input_tokens=1)  # load the catalog before forking
response = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}  # $0.0025


def work():
    store = {"duckdb": DuckDBStore, "parquet": ParquetStore, "postgres": PostgresStore}[kind](path, lease=float(lease))
    clock = None
    began = [time.monotonic()]
    if start != "-":
        origin = datetime.fromisoformat(start)
        clock = lambda: origin + timedelta(seconds=time.monotonic() - began[0])  # the worker's injected clock
    tracker = CostTracker(store, clock=clock)
    entered = threading.Semaphore(0)

    def body():
        if mode == "hold":
            entered.release()
            threading.Event().wait()  # holds its reservation until the process is killed
        return response

    call = track_cost(tracker=tracker, resource="child", estimate=Decimal("0.0025") * Decimal(factor))(body)
    block = budget(limit, period="daily", tracker=tracker) if mode in ("block", "hold") else nullcontext()
    made = refused = 0
    if mode == "hold":
        def held():
            with block:  # a worker thread enters the budget again (budgets follow contextvars)
                call()
        for _ in range(int(calls)):
            threading.Thread(target=held, daemon=True).start()
        for _ in range(int(calls)):
            entered.acquire()
        print("holding", flush=True)
        threading.Event().wait()
    began[0] = time.monotonic()  # the clock starts with the calls, not with opening the store (slow under load)
    with block:
        for _ in range(int(calls)):
            try:
                call()
                made += 1
            except BudgetExceeded:
                refused += 1
            if float(pause):
                time.sleep(float(pause))
    tracker.close()
    os.write(1, (json.dumps({"made": made, "refused": refused}) + "\\n").encode())  # one write: lines never mix


print("ready", flush=True)
sys.stdin.readline()
if int(n) == 1:
    work()
    sys.exit(0)
pids = []
for _ in range(int(n)):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            work()
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        os._exit(code)
    pids.append(pid)
sys.exit(max(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in pids))
"""


def open_store(kind: str, where: str, lease: float = 60.0) -> CostStore:
    """A store of ``kind`` at ``where`` (a directory; for ``postgres`` a DSN)."""
    if kind == "duckdb":
        return DuckDBStore(os.path.join(where, "costs.duckdb"), lease=lease)
    if kind == "postgres":
        return PostgresStore(where, lease=lease)
    return ParquetStore(os.path.join(where, "costs"), lease=lease)


def location(store: CostStore) -> str:
    if isinstance(store, PostgresStore):
        return store.dsn
    return store.path if isinstance(store, DuckDBStore) else store.directory  # type: ignore[attr-defined]


def run_children(
    children: Children,
    store: CostStore,
    kind: str,
    n: int,
    *,
    mode: str = "block",
    limit: Decimal = Decimal("0.05"),
    calls: int = 40,
    factor: str = "1",
    start: str = "-",
    lease: float = 60.0,
    pause: float = 0.0,
) -> list[dict[str, int]]:
    """Start ``n`` worker processes on ``store`` at once; return what each made and was refused."""
    args = [str(n), kind, location(store), mode, str(limit), str(calls), factor, start, str(lease), str(pause)]
    proc = children.spawn(CHILD, *args)
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr
    proc.stdin.write("go\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(results) == n, (out, err)
    return results


def within_each_day(store: CostStore, same_period: Periods, limit: Decimal, n: int) -> list[Decimal]:
    """The store's total, as ``[total]``, asserted within ``limit``; or, for children on the system clock whose run
    crossed midnight UTC, each day's, the next days' within ``limit`` and one call of each of the ``n`` processes (a
    call reserved the day before and recorded in the new day counts there without a reservation, as in
    ``test_rollover_at_midnight_utc_while_processes_run``)."""
    totals = [store.total(**part) for part in same_period.parts()]
    assert totals[0] <= limit and all(total <= limit + COST * n for total in totals[1:]), totals
    return totals


@pytest.mark.parametrize(("kind", "n"), [("duckdb", 4), ("duckdb", 8), ("parquet", 4), ("parquet", 8), ("postgres", 8)])
def test_processes_with_exact_estimates_stay_within_the_limit(children, home, kind, n, same_period):
    limit = Decimal("0.05")  # 20 calls among n processes making 40 each
    store = open_store(kind, home(kind))
    results = run_children(children, store, kind, n, limit=limit)
    totals = within_each_day(store, same_period, limit, n)
    assert max(totals) >= limit - COST * n  # and they used it: a refusal means the limit was (nearly) reached
    assert sum(r["made"] for r in results) * COST == store.total()
    store.close()


def test_eight_hosts_under_one_daily_budget_on_postgres(children, home, same_period):
    # budget("1.00", period="daily", tracker=CostTracker(PostgresStore(dsn))) in 8 processes, each with its own
    # connection as on 8 hosts: 480 calls tried, 400 fit.
    limit = Decimal("1.00")
    store = open_store("postgres", home("postgres"))
    results = run_children(children, store, "postgres", 8, limit=limit, calls=60)
    assert store.total() == sum(r["made"] for r in results) * COST
    within_each_day(store, same_period, limit, 8)
    tracker = CostTracker(store)
    b = budget(limit, period="daily", tracker=tracker)  # the same budget: one account in the database
    today = store.total(since=b.period_start, until=b.period_end)
    assert (b.spent, b.reserved) == (today, 0)  # every reservation settled or released, none left held
    if same_period():  # (across midnight UTC, each day had a limit of its own)
        assert store.total() == today == limit
        assert sum(r["refused"] for r in results) == 80
    tracker.close()
    store.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_processes_with_low_estimates_pass_by_at_most_one_error_each(children, home, kind, same_period):
    n, limit = 4, Decimal("0.05")
    store = open_store(kind, home(kind))
    run_children(children, store, kind, n, limit=limit, factor="0.8")
    within_each_day(store, same_period, limit + n * COST * Decimal("0.2"), n)
    store.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_manager_budgets_and_period_blocks_behave_the_same(children, home, kind, same_period):
    # A BudgetManager budget saved in the store, enforced by plain trackers in other processes (no manager, no
    # block there), holds as a budget(period=...) block in each process does.
    limit = Decimal("0.03")
    outcomes = []
    for mode in ("block", "manager"):
        store = open_store(kind, home(kind))
        if mode == "manager":
            llmcost.BudgetManager(CostTracker(store)).create("cap", limit, "daily")
        results = run_children(children, store, kind, 4, mode="plain" if mode == "manager" else "block", limit=limit)
        assert sum(r["refused"] for r in results) > 0
        within_each_day(store, same_period, limit, 4)
        outcomes.append((store.total(), sum(r["made"] for r in results)))
        store.close()
    assert all(total == made * COST for total, made in outcomes)
    if same_period():  # (across midnight UTC, each day had a limit of its own)
        assert outcomes[0] == outcomes[1] == (limit, 12)


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_reservations_of_a_killed_process_are_released_after_the_lease(children, home, kind):
    lease, limit = 1.0, COST * 4
    store = open_store(kind, home(kind), lease=lease)
    # Both processes on clocks of the test's own, in one day (on the system clock a run across midnight UTC found
    # the victim's reservations in the day before).
    noon = datetime(2024, 5, 1, 12, tzinfo=UTC)
    args = ["1", kind, location(store), "hold", str(limit), "4", "1", noon.isoformat(), str(lease), "0"]
    victim = children.spawn(CHILD, *args)
    assert victim.stdout is not None and victim.stdout.readline().strip() == "ready"
    assert victim.stdin is not None
    victim.stdin.write("go\n")
    victim.stdin.flush()
    assert victim.stdout.readline().strip() == "holding"  # four calls in flight hold the whole limit

    tracker = CostTracker(store, clock=Clock(noon))
    call = track_cost(tracker=tracker, resource="child", estimate=COST)(
        lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
    )
    b = budget(limit, period="daily", tracker=tracker)  # the same budget as the victim's: one account
    with b, pytest.raises(BudgetExceeded):
        call()
    time.sleep(lease * 1.5)  # alive: it renews its lease, so nothing is released
    with b, pytest.raises(BudgetExceeded):
        call()
    assert b.reserved == limit
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(lease * 1.5)
    with b:
        for _ in range(4):
            call()
        with pytest.raises(BudgetExceeded):
            call()
    tracker.flush()
    assert store.total() == limit
    tracker.close()


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_rollover_at_midnight_utc_while_processes_run(children, home, kind):
    limit = Decimal("0.02")  # 8 calls a day
    store = open_store(kind, home(kind))
    # The children's clocks start a second before midnight; they call every 20 ms for ~2 seconds.
    results = run_children(
        children, store, kind, 4, limit=limit, calls=100, start="2024-05-01T23:59:59+00:00", pause=0.02
    )
    midnight = datetime(2024, 5, 2, tzinfo=UTC)
    before = store.total(until=midnight)
    after = store.total(since=midnight)
    # The first day used its limit, and the second started at 0 and used its own. (A call reserved at 23:59:59.999
    # and recorded at 00:00 counts in the new day without a reservation there: one call per process at most.)
    assert limit - COST * 4 <= before <= limit
    assert limit - COST * 4 <= after <= limit + COST * 4
    assert sum(r["made"] for r in results) * COST == before + after
    tracker = CostTracker(store)
    for now, spent in (("2024-05-01 23:00", before), ("2024-05-02 12:00", after)):
        with freeze_time(now):
            b = budget(limit, period="daily", tracker=tracker)
            assert (b.spent, b.reserved) == (spent, 0)  # no reservation leaked into either day
    tracker.close()


HOLD_SAVED = """
import sys, threading
from decimal import Decimal
from llmcost import CostTracker, track_cost
from llmcost.stores import DuckDBStore, ParquetStore, PostgresStore

kind, path, lease = sys.argv[1:4]
store = {"duckdb": DuckDBStore, "parquet": ParquetStore, "postgres": PostgresStore}[kind](path, lease=float(lease))
tracker = CostTracker(store)


def body():
    print("holding", flush=True)
    threading.Event().wait()  # an LLM call in flight, holding its reservation until the process is killed


track_cost(tracker=tracker, estimate=Decimal("0.9"))(body)()  # under the saved "daily" budget: no `with` needed
"""


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "postgres"])
def test_readings_leave_out_a_killed_processs_reservation_after_the_lease(children, home, kind, same_period):
    # A killed process's reservation was released by the next reservation anyone made; until then every reading
    # (a budget's reserved and remaining, a manager's can_spend and status) kept counting it on DuckDB and Parquet,
    # for as long as no process reserved (PostgreSQL leaves expired reservations out of its readings).
    lease = 2.0  # (its heartbeat every 2/3 s: on a loaded machine a heartbeat thread can wait a second for the CPU)
    store = open_store(kind, home(kind), lease=lease)
    tracker = CostTracker(store)
    manager = BudgetManager(tracker)
    manager.create("daily", 1, "daily")
    victim = children.spawn(HOLD_SAVED, kind, location(store), str(lease))
    assert victim.stdout is not None and victim.stdout.readline().strip() == "holding"
    daily = manager.get("daily")
    held = daily.reserved
    time.sleep(lease * 1.5)
    alive = (daily.reserved, manager.can_spend("0.5"))
    if same_period():  # (on the system clock: across midnight UTC the reservation is of the day before)
        assert held == Decimal("0.9")
        assert alive == (Decimal("0.9"), False)  # alive: its heartbeat keeps the reservation
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(lease * 1.5)
    # Read without a reservation made by anyone since.
    assert manager.can_spend("0.5")
    assert (daily.reserved, daily.remaining) == (0, 1)
    row = manager.status().set_index("name").loc["daily"]
    assert Decimal(str(row["remaining"])) == 1
    tracker.close()
