import contextlib
import itertools
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

import llmcost
from llmcost import CostCategory, CostTracker, MemoryStore, StoreError, UnknownModelError, Usage
from llmcost._entry import CostEntry
from llmcost.stores import CostStore, DuckDBStore, Filters
from tests.conftest import in_threads

UTC = timezone.utc


def test_record_prices_from_the_catalog(tracker, clock):
    e = tracker.record(model="gpt-4o", input_tokens=1_000_000, output_tokens=100_000, resource="r")
    assert e.amount == Decimal("3.5")
    assert e.provider == "openai"
    assert e.pricing.startswith("catalog@")
    assert e.timestamp == clock.now
    assert tracker.entries() == [e]


def test_record_with_cache_tokens_uses_cache_prices(tracker):
    e = tracker.record(
        model="claude-3-5-sonnet-20241022",
        input_tokens=10_000,
        cache_read_tokens=6_000,
        cache_write_tokens=2_000,
        output_tokens=1_000,
    )
    # 2000 plain input at $3, 6000 cache reads at $0.30, 2000 cache writes at $3.75, 1000 output at $15 (per MTok)
    assert e.amount == Decimal("0.006") + Decimal("0.0018") + Decimal("0.0075") + Decimal("0.015")


def test_record_given_amount_needs_no_model(tracker):
    e = tracker.record(amount=0.1, category="compute", resource="gpu")
    assert e.amount == Decimal("0.1") and e.pricing == "given" and e.category is CostCategory.COMPUTE


def test_record_without_model_or_amount_is_a_clear_error(tracker):
    with pytest.raises(ValueError, match="model"):
        tracker.record(input_tokens=5)


def test_unknown_model_policies(clock, caplog):
    warn = CostTracker(clock=clock)
    with caplog.at_level(logging.WARNING, logger="llmcost"):
        e = warn.record(model="my-secret-model", input_tokens=10)
        warn.record(model="my-secret-model", input_tokens=10)
    assert e.amount == 0 and e.pricing == "unpriced"
    assert sum("my-secret-model" in r.getMessage() for r in caplog.records) == 1  # logged once per cause
    strict = CostTracker(clock=clock, on_unknown_model="raise")
    with pytest.raises(UnknownModelError):
        strict.record(model="my-secret-model", input_tokens=10)
    assert strict.entries() == []
    with pytest.raises(ValueError, match="on_unknown_model"):
        CostTracker(on_unknown_model="explode")  # type: ignore[arg-type]


def test_prices_follow_the_request_time(tracker):
    before = tracker.record(model="o3", input_tokens=1_000_000, timestamp=datetime(2025, 6, 1, tzinfo=UTC))
    after = tracker.record(model="o3", input_tokens=1_000_000, timestamp=datetime(2025, 6, 11, tzinfo=UTC))
    assert before.amount == Decimal(10)
    assert after.amount == Decimal(2)


def test_filters_and_summary(tracker, clock):
    tracker.record(model="gpt-4o", input_tokens=1000, resource="a", tags={"team": "x"})
    tracker.record(model="gpt-4o-mini", input_tokens=1000, resource="b", tags={"team": "y", "env": "prod"})
    tracker.record(amount="1.5", category="compute", resource="a", timestamp=clock.now - timedelta(days=2))
    assert [e.resource for e in tracker.entries(resource="a")] == ["a", "a"]
    assert len(tracker.entries(tags={"team": "y"})) == 1
    assert len(tracker.entries(tags={"team": "y", "env": "dev"})) == 0
    assert len(tracker.entries(category="compute")) == 1
    assert len(tracker.entries(since=clock.now - timedelta(hours=1))) == 2
    assert len(tracker.entries(limit=1)) == 1
    day = tracker.summary(period="daily")
    assert day.calls == 2
    assert day.total == Decimal("0.0025") + Decimal("0.00015")
    assert day.by_model == {"gpt-4o": Decimal("0.0025"), "gpt-4o-mini": Decimal("0.00015")}
    assert day.by_tag == {
        "env": {"prod": Decimal("0.00015")},
        "team": {"x": Decimal("0.0025"), "y": Decimal("0.00015")},
    }
    assert day.start == datetime(2024, 5, 17, tzinfo=UTC) and day.end == datetime(2024, 5, 18, tzinfo=UTC)
    everything = tracker.summary()
    assert everything.total == day.total + Decimal("1.5")
    assert everything.by_category == {"compute": Decimal("1.5"), "llm_inference": day.total}
    assert everything.usage == Usage(input_tokens=2000)


def test_sums_are_exact_over_many_small_amounts(tracker):
    for _ in range(1000):
        tracker.record(amount="0.000001")
    assert tracker.summary().total == Decimal("0.001")


def test_frame_has_one_row_per_entry_with_dict_tags(tracker):
    tracker.record(model="gpt-4o", input_tokens=10, tags={"team": "x"})
    df = tracker.frame()
    assert len(df) == 1
    assert df.loc[0, "tags"] == {"team": "x"}
    assert df.loc[0, "amount"] == Decimal("0.000025")
    assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"


def test_subscribers_get_entries_and_failures_never_break(tracker, caplog):
    seen = []
    tracker.subscribe("cost.recorded", seen.append)
    tracker.subscribe("cost.recorded", lambda e: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="llmcost"):
        e = tracker.record(amount=1)
    assert seen == [e]
    assert any("subscriber" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match=r"cost\.spent"):
        tracker.subscribe("cost.spent", print)


def test_unsubscribe(tracker):
    seen = []
    off = tracker.subscribe("cost.recorded", seen.append)
    off()
    tracker.record(amount=1)
    assert seen == []


def test_tags_context_applies_and_explicit_tags_win(tracker):
    with llmcost.tags(team="search", env="prod"):
        with llmcost.tags(env="staging"):
            e = tracker.record(amount=1, tags={"team": "override"})
        f = tracker.record(amount=1)
    g = tracker.record(amount=1)
    assert e.tags == {"team": "override", "env": "staging"}
    assert f.tags == {"team": "search", "env": "prod"}
    assert g.tags == {}


class FlakyStore(MemoryStore):
    """A store that fails its first ``failures`` appends; ``appended`` is set after each attempt, so a test can await
    the background writer instead of sleeping."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.appended = threading.Event()

    def append(self, entries):
        try:
            if self.failures:
                self.failures -= 1
                raise OSError("disk on fire")
            super().append(entries)
        finally:
            self.appended.set()


class BufferedStore(FlakyStore):
    buffered = True


def test_buffered_store_keeps_entries_when_the_store_fails(clock):
    store = BufferedStore(failures=10**6)  # down: every append fails, whatever part of the batch
    t = CostTracker(store, clock=clock, batch_size=1000, flush_interval=60)
    t.record(amount=1)
    t.record(amount=2)
    assert t.pending() == 2
    with pytest.raises(StoreError, match="disk on fire"):
        t.flush()
    with pytest.raises(StoreError):
        t.flush()
    assert t.pending() == 2  # nothing lost
    assert store.dead_letters() == []  # nothing set aside: no part went in, so the store is down, not the entries
    store.failures = 0
    t.flush()
    assert t.pending() == 0
    assert store.total() == Decimal(3)
    t.close()


def test_a_passing_fault_sets_nothing_aside(clock):
    # The first two appends fail (the whole batch, then its first half): the second half goes in, and the first
    # half's entry goes in on its second try alone. Only an entry that fails alone, twice, is set aside.
    store = BufferedStore(failures=2)
    t = CostTracker(store, clock=clock, batch_size=1000, flush_interval=60)
    t.record(amount=1)
    t.record(amount=2)
    t.flush()
    assert store.total() == Decimal(3) and store.dead_letters() == []
    t.close()


class FullDiskParquetStore(llmcost.ParquetStore):
    """A Parquet store on a disk that fills up: an append past ``room`` entries fails (as when the store and every
    spill place are full, so nothing of it is written), entries that name resource ``poison`` are refused always,
    and while the disk is full ``set_aside`` fails too (its place is on the same disk)."""

    def __init__(self, path: str, room: int) -> None:
        super().__init__(path)
        self.room = room
        self.taken = 0

    def append(self, entries):
        if any(entry.resource == "poison" for entry in entries):
            raise StoreError("an amount past DECIMAL(38, 18)")
        if self.taken + len(entries) > self.room:
            raise StoreError("no place could take the entries: No space left on device")
        super().append(entries)
        self.taken += len(entries)

    def append_columns(self, columns):
        self.append(columns.entries())

    def set_aside(self, entries, reason, *, error=None):
        if self.taken >= self.room:
            raise StoreError("could not set aside 1 entries anywhere: No space left on device")
        super().set_aside(entries, reason, error=error)


def _ids_in(store: CostStore, resource: str) -> list[str]:
    return sorted(entry.id for entry in store.entries(resource=resource))


def test_a_batch_written_in_part_keeps_only_what_is_not_stored(clock, tmp_path):
    # A bad entry among good ones while the disk is full: the good ones around it go in, it fails alone, and setting
    # it aside fails too. Only the bad entry stays buffered: kept whole, the batch would be stored twice.
    store = FullDiskParquetStore(str(tmp_path / "costs"), room=63)
    t = CostTracker(store, clock=clock, batch_size=1000, flush_interval=60)
    ids = [t.record(amount=Decimal(i) / 100, resource="good").id for i in range(1, 33)]
    t.record(amount=1, resource="poison")
    ids += [t.record(amount=Decimal(i) / 100, resource="good").id for i in range(33, 64)]
    with pytest.raises(StoreError, match="No space left"):
        t.flush()
    assert t.pending() == 1
    store.room = 10**6  # space is back
    ids.append(t.record(amount="0.64", resource="good").id)
    t.flush()  # the bad entry beside a good one: set aside now
    assert t.pending() == 0
    assert _ids_in(store, "good") == sorted(ids)  # each once
    assert store.total(resource="good") == sum(Decimal(i) / 100 for i in range(1, 65))
    assert [letter["entry"]["resource"] for letter in store.dead_letters()] == ["poison"]
    t.close()


def test_a_disk_that_fills_up_mid_batch_stores_each_entry_once_and_sets_none_aside(clock, tmp_path):
    # The batch fails whole, its first half and some more go in, then the disk is full: every entry is valid, so
    # none is set aside; those not stored stay buffered and go in, once, when there is space again.
    store = FullDiskParquetStore(str(tmp_path / "costs"), room=45)
    t = CostTracker(store, clock=clock, batch_size=1000, flush_interval=60)
    ids = [t.record(amount=Decimal(i) / 100, resource="good").id for i in range(1, 65)]
    with pytest.raises(StoreError):
        t.flush()
    store.room = 10**6
    t.flush()
    assert _ids_in(store, "good") == sorted(ids)
    assert store.dead_letters() == []
    t.close()


class OutageStore(MemoryStore):
    """A store whose first append fails (a batch too large for one request) and which is down from its third."""

    buffered = True

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.down = False

    def append(self, entries):
        self.calls += 1
        self.down = self.down or self.calls == 3
        if self.calls == 1 or self.down:
            raise ConnectionError("connection refused")
        super().append(entries)


def test_a_store_down_mid_split_sets_no_valid_entry_aside(clock):
    store = OutageStore()
    t = CostTracker(store, clock=clock, batch_size=1000, flush_interval=60)
    ids = [t.record(amount=Decimal(i) / 100).id for i in range(1, 65)]
    with pytest.raises(StoreError, match="connection refused"):
        t.flush()
    assert store.dead_letters() == [] and t.pending() == 32  # the half not stored stays buffered
    store.down = False
    t.flush()
    assert sorted(entry.id for entry in store.entries()) == sorted(ids)
    assert store.dead_letters() == [] and t.pending() == 0
    t.close()


class NowAndThenStore(MemoryStore):
    """A store whose appends fail by a repeating pattern (a flaky network): 1 fails, 0 goes in."""

    buffered = True

    def __init__(self, pattern: tuple[int, ...]) -> None:
        super().__init__()
        self.pattern = itertools.cycle(pattern)

    def append(self, entries):
        if next(self.pattern):
            raise ConnectionError("temporary network failure")
        super().append(entries)


@pytest.mark.parametrize("pattern", [(1, 0), (1, 1, 0), (1, 1, 0, 0)])
def test_a_store_failing_now_and_then_sets_no_valid_entry_aside(clock, pattern):
    store = NowAndThenStore(pattern)
    t = CostTracker(store, clock=clock, batch_size=1000, flush_interval=60)
    ids = [t.record(amount=Decimal(i) / 100).id for i in range(1, 65)]
    for _ in range(10):  # the flush fails while a whole level of the split fails; the entries wait for the next
        with contextlib.suppress(StoreError):
            t.flush()
    assert sorted(entry.id for entry in store.entries()) == sorted(ids)
    assert store.dead_letters() == [] and t.pending() == 0


class RefusingStore(MemoryStore):
    """A store that refuses any batch holding an entry of resource ``bad``."""

    buffered = True

    def append(self, entries):
        if any(entry.resource == "bad" for entry in entries):
            raise StoreError("an amount past DECIMAL(38, 18)")
        super().append(entries)


def test_bad_entries_one_in_each_half_are_set_aside_and_the_rest_stored(clock):
    # Both halves fail (a bad entry in each), as would a store that is down: the split goes on, and once parts go in
    # beside them the bad entries are set aside; the flush succeeds.
    store = RefusingStore()
    t = CostTracker(store, clock=clock, batch_size=1000, flush_interval=60)
    for i in range(64):
        t.record(amount=1, resource="bad" if i in (5, 40, 60) else "good")
    t.flush()
    assert t.pending() == 0 and len(store.entries(resource="good")) == 61
    assert len(store.dead_letters()) == 3
    t.close()


def test_buffer_flushes_on_size_in_the_background(clock):
    store = BufferedStore(failures=0)
    t = CostTracker(store, clock=clock, batch_size=5, flush_interval=60)
    for _ in range(4):
        t.record(amount=1)
    assert not store.appended.is_set()  # below the batch size: nothing written yet
    t.record(amount=1)
    assert store.appended.wait(10)  # the full batch woke the writer long before its 60 s interval
    assert len(store.entries()) == 5
    t.close()


def test_a_tracked_call_never_waits_for_the_store(clock):
    # The store takes 2 s per append (a lock held by another process, say): recording only appends to the buffer.
    class SlowStore(BufferedStore):
        def append(self, entries):
            threading.Event().wait(2)
            super().append(entries)

    store = SlowStore(failures=0)
    t = CostTracker(store, clock=clock, batch_size=2, flush_interval=60)
    started = time.perf_counter()
    for _ in range(10):  # five full batches
        t.record(amount=1)
    assert time.perf_counter() - started < 1.0
    t.close()  # the acknowledgement point waits, as it must
    assert store.total() == 10


def test_buffer_flushes_on_time(clock):
    store = BufferedStore(failures=0)
    t = CostTracker(store, clock=clock, batch_size=1000, flush_interval=0.05)
    t.record(amount=1)
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while t.pending() and datetime.now(UTC) < deadline:
        threading.Event().wait(0.01)
    assert t.pending() == 0 and store.total() == 1
    t.close()


def test_threads_record_without_losing_entries(tracker):
    def work():
        for _ in range(500):
            tracker.record(amount="0.01")

    in_threads(work)
    assert tracker.summary().calls == 4000
    assert tracker.summary().total == Decimal("40.00")
    assert len({e.id for e in tracker.entries()}) == 4000


def test_store_abc_contract_shape():
    assert issubclass(MemoryStore, CostStore)
    with pytest.raises(TypeError):
        CostStore()  # type: ignore[abstract]
    with pytest.raises(ValueError, match="limit"):
        Filters(limit=-1)
    with pytest.raises(ValueError, match="category"):
        Filters(category="beer")


def test_add_accepts_only_entries(tracker):
    with pytest.raises(TypeError, match="entry"):
        tracker.add({"amount": 1})  # type: ignore[arg-type]
    e = CostEntry(id="a", timestamp=datetime(2024, 1, 1, tzinfo=UTC), amount=1)
    tracker.add(e)
    assert tracker.entries() == [e]


def test_ids_outside_every_provider_pattern_still_resolve_to_their_maker(tracker):
    e = tracker.record(model="text-embedding-3-small", input_tokens=1_000_000, category="llm_embedding")
    assert e.amount == Decimal("0.02")
    assert e.provider == "openai"


@pytest.mark.parametrize(
    ("input_per_mtok", "tokens", "exact", "recorded"),
    [
        ("2.5", 1000, "0.0025", "0.0025"),  # fits 18 places as it is: not rounded
        ("3.000000000051", 7, "0.000021000000000357", "0.000021000000000357"),  # 12 places per Mtok: still fits
        ("1.0000000000001", 7, "0.0000070000000000007", "0.000007000000000001"),  # 19 places: rounded half-even
        ("0.0000000000004", 1, "4E-19", "0"),
    ],
)
def test_amounts_are_rounded_to_the_store_scale_only_when_needed(tracker, input_per_mtok, tokens, exact, recorded):
    price = llmcost.ModelPrice("scale-test-model", "acme", input_per_mtok=input_per_mtok, output_per_mtok="0")
    llmcost.register_price(price)
    assert price.cost(Usage(tokens)) == Decimal(exact)
    entry = tracker.record(model="scale-test-model", input_tokens=tokens)
    assert entry.amount == Decimal(recorded)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "gpt-4o", "input_tokens": 2**63}, r"input_tokens must be at most 2\*\*63 - 1.*9223372036854775808"),
        ({"model": "gpt-4o", "output_tokens": 2**70}, r"output_tokens must be at most 2\*\*63 - 1"),
        ({"amount": 1e30, "category": "compute"}, r"amount must be below 10\*\*20 in magnitude.*1e\+30"),
        ({"amount": "-1E+21", "category": "compute"}, r"amount must be below 10\*\*20.*-1E\+21"),
        ({"amount": 1, "resource": "bad\ud800"}, r"resource must be valid Unicode text.*bad\\ud800"),
        ({"amount": 1, "description": "\udfff"}, r"description must be valid Unicode text"),
        ({"model": "gpt-4o\ud800", "input_tokens": 1}, r"model must be valid Unicode text"),
        ({"amount": 1, "provider": "x\ud83d"}, r"provider must be valid Unicode text"),
        ({"amount": 1, "tags": {"team": "a\ud800"}}, r"tags\['team'\] must be valid Unicode text"),
        ({"amount": 1, "tags": {"\ud800": "a"}}, r"tags key must be valid Unicode text"),
    ],
)
def test_record_refuses_what_no_store_could_keep(tracker, fields, message):
    # A value that would fail the store's append later (and, buffered, poison the batch around it) is refused here,
    # with the field and the value named.
    with pytest.raises(ValueError, match=message):
        tracker.record(**fields)
    assert tracker.entries() == []
    tracker.record(amount="99999999999999999999.999999999999999999", category="compute", resource="ok é ✓")
    assert tracker.store.total() == Decimal("99999999999999999999.999999999999999999")


# -- the forms users try (issue 17) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "period"),
    [("today", "daily"), ("day", "daily"), ("week", "weekly"), ("month", "monthly"), ("hour", "hourly")],
)
def test_summary_and_total_take_period_aliases(alias, period):
    now = datetime(2024, 5, 15, 12, 30, tzinfo=timezone.utc)  # a Wednesday
    tracker = CostTracker(clock=lambda: now)
    for when, amount in [(now, "1"), (now - timedelta(hours=2), "2"), (now - timedelta(days=2), "4")]:
        tracker.record(amount=amount, timestamp=when)
    tracker.record(amount="8", timestamp=datetime(2024, 4, 30, tzinfo=timezone.utc))
    assert tracker.summary(period=alias).total == tracker.summary(period=period).total
    assert tracker.total(period=alias) == tracker.summary(period=period).total
    assert tracker.total() == Decimal(15) and isinstance(tracker.total(), Decimal)
    assert tracker.total(period="today") == Decimal(3)


def test_a_period_with_a_naive_since_or_until_takes_them_as_utc(tmp_path):
    now = datetime(2024, 5, 15, 12, tzinfo=timezone.utc)
    with CostTracker(DuckDBStore(tmp_path / "costs.duckdb"), clock=lambda: now) as tracker:
        tracker.record(amount="1", timestamp=datetime(2024, 5, 2, 1))  # naive: UTC
        tracker.record(amount="2", timestamp=datetime(2024, 5, 14, 23))
        tracker.record(amount="4", timestamp=datetime(2024, 4, 30, 23))  # before the month
        assert tracker.summary(period="monthly", since=datetime(2024, 5, 2)).total == Decimal(3)
        assert tracker.total(period="monthly", since=datetime(2024, 5, 2, 2)) == Decimal(2)
        assert tracker.total(period="monthly", until=datetime(2024, 5, 14)) == Decimal(1)
        assert tracker.summary(period="monthly", since=datetime(2024, 4, 1)).start == datetime(
            2024, 5, 1, tzinfo=timezone.utc
        )


def test_total_takes_the_summary_filters():
    tracker = CostTracker()
    tracker.record(amount="1.25", resource="a", tags={"team": "x"})
    tracker.record(amount="2", resource="b", category="compute")
    assert tracker.total(resource="a") == Decimal("1.25")
    assert tracker.total(category="compute") == Decimal(2)
    assert tracker.total(tags={"team": "x"}) == Decimal("1.25")


def test_an_unknown_period_names_the_right_ones():
    with pytest.raises(
        ValueError, match=r"hourly, daily, weekly, monthly, total \(or hour, today, day, week, month\); got 'fortnight'"
    ):
        CostTracker().summary(period="fortnight")


# -- acknowledging written entries ----------------------------------------------------------------------------------
class _BufferedStore(CostStore):
    """A buffered store (the tracker writes it in batches) whose ledger is ``ledger``."""

    url = "buffered://"
    buffered = True

    def __init__(self, ledger_by_id: bool) -> None:
        self.rows: list[CostEntry] = []
        self.by_id = ledger_by_id
        self.told: list[object] = []  # what the ledger was told was written: ids, or entries

    def append(self, entries):  # type: ignore[no-untyped-def]
        self.rows.extend(entries)

    def append_columns(self, columns):  # type: ignore[no-untyped-def]
        from llmcost._entry import trusted_entry

        self.rows.extend(map(trusted_entry, *columns.fields))  # (not ``columns.entries()``, which the test counts)

    def close(self) -> None:
        pass

    def _entries(self, filters: Filters) -> list[CostEntry]:
        return [e for e in self.rows if filters.matches(e)]

    def _total(self, filters: Filters) -> Decimal:
        return sum((e.amount for e in self._entries(filters)), Decimal(0))

    def save_budget(self, name: str, definition: str) -> None:
        pass

    def load_budgets(self) -> dict[str, str]:
        return {}

    def delete_budget(self, name: str) -> bool:
        return False

    def open_ledger(self):  # type: ignore[no-untyped-def]
        from llmcost.stores._ledger import LocalLedger

        store = self

        class Told(LocalLedger):
            by_id = store.by_id

            def acknowledge(self, entries):  # type: ignore[no-untyped-def]
                store.told.extend(entries)
                LocalLedger.acknowledge_ids(self, [e.id for e in entries])  # (not this class's: it would note them)

            def acknowledge_ids(self, ids, **options):  # type: ignore[no-untyped-def]
                store.told.extend(ids)
                super().acknowledge_ids(ids, **options)

        return Told(self.total)


@pytest.mark.parametrize("by_id", [True, False])
def test_the_writer_acknowledges_what_it_wrote_by_id_or_as_entries(by_id, monkeypatch, clock):
    # A ledger that acknowledges by id (``Ledger.by_id``) is told the written entries' ids, and no CostEntry is built
    # for it; another ledger gets the entries, equal to those recorded. Either way the budget counts each call once.
    from llmcost._rows import FieldColumns

    store = _BufferedStore(by_id)
    tracker = CostTracker(store, flush_interval=3600, clock=clock)  # (a day of its own: all of it counts in it)
    cap = llmcost.budget(Decimal("10"), period="daily", tracker=tracker)
    response = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}  # $0.0025
    call = llmcost.track_cost(tracker=tracker, resource="r", estimate=Decimal("0.01"))(lambda: response)
    recorded = [tracker.record(amount="0.25", resource="r") for _ in range(3)]
    with cap:
        for _ in range(2):
            call()
        recorded += [tracker.record(amount="0.5", resource="r")]
        built = FieldColumns.entries
        entries_built: list[int] = []

        def counting(self):  # type: ignore[no-untyped-def]
            entries_built.append(len(self))
            return built(self)

        monkeypatch.setattr(FieldColumns, "entries", counting)
        before = len(store.rows)
        tracker.flush()
        written = store.rows[before:]
        assert len(written) == 3
        if by_id:
            assert store.told == [e.id for e in store.rows] and not entries_built
        else:
            assert store.told == store.rows and entries_built == [len(written)]
        assert [e for e in store.rows if e.amount != Decimal("0.0025")] == recorded
        assert (cap.spent, cap.reserved) == (Decimal("1.255"), 0) == (store.total(), 0)
    tracker.close()


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
@pytest.mark.parametrize(
    "reading",
    [datetime(2024, 3, 1, 2, 0), datetime(2024, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=5)))],
    ids=["naive", "plus-5h"],
)
def test_a_given_clock_is_read_in_utc(tmp_path, kind, reading):
    # A naive clock made every tracked call record nothing and record() raise; an aware non-UTC one gave entries
    # non-UTC timestamps. Naive readings are UTC (as naive timestamps are), aware ones converted.
    store = MemoryStore() if kind == "memory" else llmcost.DuckDBStore(str(tmp_path / "costs.duckdb"))
    when = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)
    with CostTracker(store, clock=lambda: reading) as tracker:
        call = llmcost.track_cost(tracker=tracker, resource="call")(
            lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 20}}
        )
        call()
        entry = tracker.record(amount="1", category="compute", resource="record")
        assert entry.timestamp == when and entry.timestamp.tzinfo is UTC
        assert tracker.clock() == when
        assert [(e.resource, e.timestamp) for e in tracker.entries()] == [("call", when), ("record", when)]
        assert tracker.total(period="daily") == entry.amount + tracker.entries(resource="call")[0].amount


def test_a_latency_beyond_any_float_is_refused_with_value_error(tmp_path):
    # latency_ms=10**400 raised OverflowError from record(), not the ValueError bad values raise.
    with CostTracker(llmcost.DuckDBStore(str(tmp_path / "costs.duckdb"))) as tracker:
        with pytest.raises(ValueError, match="latency_ms"):
            tracker.record(amount="1", category="compute", latency_ms=10**400)
        tracker.record(amount="1", category="compute", latency_ms=10**300)  # large, but a float
        assert [e.latency_ms for e in tracker.entries()] == [1e300]


@pytest.mark.parametrize("keyword", ["input_tokens", "output_tokens", "cache_read_tokens", "reasoning_tokens"])
@pytest.mark.parametrize("method", ["record", "build"])
def test_usage_and_token_keywords_together_are_refused_not_the_keywords_dropped(keyword, method):
    tracker = CostTracker()
    with pytest.raises(TypeError, match=rf"usage= or the token keywords, not both: got usage=Usage\(.*{keyword}=5"):
        getattr(tracker, method)(model="gpt-4o", usage=Usage(10, 10), **{keyword: 5})
    assert tracker.entries() == []
    entry = getattr(tracker, method)(model="gpt-4o", usage=Usage(10), input_tokens=0)  # a zero keyword says nothing
    assert entry.usage == Usage(10)


def test_an_outage_of_a_store_raising_its_own_errors_is_logged_once_and_remembered_once(tmp_path, caplog):
    # A store whose append raises something other than a StoreError: the tracker puts the buffer back and raises a
    # StoreError counting the entries waiting. Keyed by that message, every background retry was a new cause: a
    # warning and a remembered key per flush (86,000 a day at the default interval), for one outage.
    from llmcost import _state

    class Down(DuckDBStore):
        down = True

        def append(self, entries):
            if self.down:
                raise ConnectionRefusedError("connection refused")
            super().append(entries)

        def append_columns(self, columns):
            if self.down:
                raise ConnectionRefusedError("connection refused")
            super().append_columns(columns)

    tracker = CostTracker(Down(str(tmp_path / "c.duckdb")), flush_interval=0.02)
    before = len(_state.logged)
    with caplog.at_level(logging.WARNING, logger="llmcost"):
        for _ in range(5):
            tracker.record(amount="0.01")
            time.sleep(0.1)  # (several background flushes, each with more entries waiting)
    warned = [r for r in caplog.records if "could not write entries yet" in r.getMessage()]
    assert len(warned) == 1 and len(_state.logged) - before == 1
    assert tracker.pending() == 5  # (all kept for the next try)
    tracker.store.down = False  # type: ignore[attr-defined]
    tracker.close()
    assert len(tracker.store.entries()) == 5


def test_log_once_remembers_a_bounded_number_of_causes():
    from llmcost import _state
    from llmcost._tracker import LOGGED_KEPT, log_once

    for i in range(LOGGED_KEPT + 10):
        log_once(("test-cause", i), "llmcost test %s", i, level=logging.DEBUG)
    assert len(_state.logged) <= LOGGED_KEPT
