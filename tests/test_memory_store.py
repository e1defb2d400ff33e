"""MemoryStore internals: columns, batches, order; the shared contract suite lives in tests/stores/."""

import signal
from array import array
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from llmcost import CostEntry, MemoryStore, Usage
from llmcost._entry import new_entry_id
from llmcost._rows import frame_to_entries
from llmcost._usage import NO_UNITS
from llmcost.stores import _memory

T0 = datetime(2024, 5, 17, tzinfo=timezone.utc)


def make(i, ts=None, **kw):
    ts = ts or T0 + timedelta(seconds=i)
    base = {
        "id": new_entry_id(ts),
        "timestamp": ts,
        "amount": Decimal(i) / 1000,
        "model": f"m{i % 3}",
        "resource": None if i % 4 == 0 else f"r{i % 5}",
        "usage": Usage(i, i // 2, i // 4, 0, 0),
        "latency_ms": None if i % 2 else float(i),
        "tags": {"team": f"t{i % 2}"} if i % 3 else {},
        "pricing": "given",
    }
    return CostEntry(**{**base, **kw})


@pytest.fixture(params=[1, 7, _memory._BATCH + 5], ids=["one", "few", "past-a-batch"])
def many(request):
    return [make(i) for i in range(request.param)]


def test_round_trip_is_exact(many):
    store = MemoryStore()
    store.append(many)
    assert store.entries() == many
    assert len(store) == len(many)
    assert frame_to_entries(store.scan()) == many
    assert store.total() == sum((e.amount for e in many), Decimal(0))


def test_out_of_order_appends_come_back_in_time_order():
    entries = [make(i) for i in range(50)]
    store = MemoryStore()
    store.append(entries[25:])
    store.append(entries[:25])
    assert [e.id for e in store.entries()] == [e.id for e in entries]
    assert [e.id for e in store.entries(limit=3)] == [e.id for e in entries[:3]]


def test_ids_that_are_not_ours_survive():
    odd = make(1, id="my-own-id")
    store = MemoryStore()
    store.append([odd, make(2)])
    assert store.entries()[0].id == "my-own-id"
    assert store.scan()["id"].tolist()[0] == "my-own-id"


def test_filters_on_interned_columns():
    entries = [make(i) for i in range(40)]
    store = MemoryStore()
    store.append(entries)
    assert store.entries(resource="r1") == [e for e in entries if e.resource == "r1"]
    assert store.entries(model=["m0", "m2"]) == [e for e in entries if e.model in ("m0", "m2")]
    assert store.entries(tags={"team": "t1"}) == [e for e in entries if e.tags.get("team") == "t1"]
    assert store.entries(resource="nope") == []
    cut = T0 + timedelta(seconds=10)
    assert store.total(since=cut) == sum((e.amount for e in entries if e.timestamp >= cut), Decimal(0))


def test_query_runs_sql_over_the_rows():
    store = MemoryStore()
    store.append([make(i) for i in range(10)])
    frame = store.query("SELECT sum(amount) AS s, count(*) AS n FROM entries WHERE tags['team'] = ?", ["t1"])
    expected = sum((Decimal(i) / 1000 for i in range(10) if i % 3 and i % 2), Decimal(0))
    assert frame.loc[0, "s"] == expected


@pytest.mark.parametrize(
    "odd_ids",
    [
        ["demo-000000000000000000001"],
        ["A" * 26],
        ["ab cd" + "0" * 21],
        ["zz" + "0" * 24],
        ["0" * 25, "1" * 27],  # together as long as two ids, but not split at 26
        [],
    ],
)
def test_ids_of_any_shape_come_back_as_given(odd_ids):
    given = [make(0), *(make(k, id=odd) for k, odd in enumerate(odd_ids, 1)), make(9, id="f" * 25 + "e")]
    store = MemoryStore()
    store.append(given)
    assert sorted(e.id for e in store.entries()) == sorted(e.id for e in given)


def test_threads_appending_and_reading_at_once_lose_nothing_and_budgets_count_each_entry_once():
    # Appends take no lock: entries join the pending list in one step and the ledger is told of them before it reads.
    import threading

    import llmcost

    store = MemoryStore()
    tracker = llmcost.CostTracker(store)
    limit = Decimal(10**6)
    watched = llmcost.budget(limit, period="total", name="all", tracker=tracker)
    threads, each, cost = 4, _memory._BATCH + 300, Decimal("0.001")
    start = threading.Barrier(threads + 1)
    stop = threading.Event()
    seen: list[Decimal] = []

    @llmcost.track_cost(tracker=tracker, estimate=cost)
    def call() -> dict[str, object]:
        return {"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 10}}

    def record() -> None:
        with watched:
            start.wait()
            for i in range(each):
                if i % 4:
                    tracker.record(amount=cost, resource="r")
                else:
                    call()  # reserves its estimate in the ledger, then settles the priced amount

    def read() -> None:
        start.wait()
        while not stop.is_set():
            seen.append(store.total())
            seen.append(watched.spent)

    workers = [threading.Thread(target=record) for _ in range(threads)]
    reader = threading.Thread(target=read)
    for t in [*workers, reader]:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    reader.join()
    entries = store.entries()
    expected = sum((e.amount for e in entries), Decimal(0))
    assert len(store) == len(entries) == threads * each
    assert len({e.id for e in entries}) == threads * each
    assert store.total() == expected
    assert watched.spent == expected  # the ledger's running total: every entry counted once
    assert watched.reserved == 0
    assert all(0 <= amount <= expected for amount in seen)


def test_appends_do_not_wait_for_a_thread_holding_the_store():
    # Recording threads never queue on a reader holding the store's lock: entries join the pending list and are
    # moved into the columns by whoever next gets the lock.
    import threading

    store = MemoryStore()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._lock:
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    batch = [make(i) for i in range(_memory._BATCH + 5)]
    appender = threading.Thread(target=store.append, args=(batch,))
    appender.start()
    appender.join(5)
    done = not appender.is_alive()
    release.set()
    holder.join()
    assert done, "append waited for the thread holding the store's lock"
    assert store.entries() == batch


def test_appends_let_a_move_that_was_switched_away_finish_before_piling_up_more():
    # A thread the interpreter switched away from in the middle of a move holds the lock; the threads that run
    # meanwhile wait for it (asleep, holding nothing) once a batch is pending again, rather than appending for their
    # whole switch intervals: no move takes much more than a batch, and nothing is lost.
    import threading
    import time

    store = MemoryStore()
    convert, sizes, stalled = store._convert, [], threading.Event()

    def switched_away(batch):
        sizes.append(len(batch))
        if not stalled.is_set():
            stalled.set()
            time.sleep(0.2)  # the first move, away from the interpreter (sleeping, as a thread switched out is)
        return convert(batch)

    store._convert = switched_away
    threads, each = 4, 3 * _memory._BATCH
    made = [[make(t * each + i) for i in range(each)] for t in range(threads)]

    def record(mine) -> None:
        for entry in mine:
            store.append([entry])

    workers = [threading.Thread(target=record, args=(mine,)) for mine in made]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert stalled.is_set()
    assert max(sizes) <= _memory._BATCH + threads, sizes
    assert store.entries() == sorted((e for mine in made for e in mine), key=lambda e: (e.timestamp, e.id))


def _row(entry):
    """``entry`` as the field values ``append_row`` takes (the timestamp in epoch microseconds)."""
    values = [getattr(entry, name) for name in _memory.ROW_FIELDS]
    values[1] = _micros(entry.timestamp)
    return (*values, None)


def _micros(ts):
    since = ts - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (since.days * 86400 + since.seconds) * 1_000_000 + since.microseconds


def test_rows_and_entries_mixed_read_back_exactly(many):
    # The tracker hands rows (append_row) when nothing else needs the entry, entries otherwise: both kinds wait in
    # the pending list together and come back as the same entries, in order, past a columnize too.
    store = MemoryStore()
    for k, entry in enumerate(many):
        if k % 2:
            store.append_row(_row(entry))
        else:
            store.append([entry])
    assert len(store) == len(many)
    assert store.entries() == many
    assert _memory.entry_of_row(_row(many[0])) == many[0]
    assert _memory.entry_of_row((*_row(many[0])[:-1], many[0])) is many[0]


def test_a_row_a_column_cannot_hold_raises_and_adds_nothing():
    import llmcost

    store = MemoryStore()
    entry = make(1)
    row = list(_row(entry))
    row[10] = Usage._trusted(2**63, 0, 0, 0, 0)
    with pytest.raises(llmcost.StoreError, match="64-bit"):
        store.append_row(tuple(row))
    assert len(store) == 0


def test_decorated_calls_into_a_memory_store_read_back_as_recorded():
    import llmcost

    clock_times = iter([T0 + timedelta(seconds=i) for i in range(3000)])
    tracker = llmcost.CostTracker(clock=lambda: next(clock_times))
    tracked = llmcost.track_cost(tracker=tracker, resource="bot", tags={"team": "a"})(
        lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}
    )
    with llmcost.tags(env="prod"):
        for _ in range(_memory._BATCH + 3):
            tracked()
    entries = tracker.entries()
    assert len(entries) == _memory._BATCH + 3 and len({e.id for e in entries}) == len(entries)
    first = entries[0]
    assert first.timestamp == T0 and first.amount == llmcost.cost_of("gpt-4o", 1000, 100)
    assert dict(first.tags) == {"env": "prod", "team": "a"} and first.resource == "bot"
    assert first.canonical_model == "gpt-4o" and first.pricing.startswith("catalog@")
    assert [e.timestamp for e in entries] == sorted(e.timestamp for e in entries)
    assert tracker.summary().total == first.amount * len(entries)


def test_a_store_assigned_to_a_tracker_later_gets_the_calls():
    import llmcost

    tracker = llmcost.CostTracker()
    tracked = llmcost.track_cost(tracker=tracker)(
        lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 10, "completion_tokens": 1}}
    )
    tracked()
    first, tracker.store = tracker.store, MemoryStore()
    tracked()
    assert len(first) == 1 and len(tracker.store) == 1


@pytest.mark.parametrize("every", [1, 3, 0], ids=["all-rows", "some-rows", "no-rows"])
def test_units_stay_with_their_rows_across_batches(every):
    # Batches where every row, some rows or no row has units (each case is converted its own way), past several
    # batches so that batch rows map to store rows at an offset.
    def usage(i):
        if every and i % every == 0:
            return Usage(100 + i, 10, 0, 50, 0, units={"cache_write_1h_tokens": i % 50 + 1, "web_searches": 1})
        return Usage(100 + i, 10, 0, 0, 0)

    entries = [make(i, usage=usage(i)) for i in range(_memory._BATCH * 3 + 7)]
    store = MemoryStore()
    for start in range(0, len(entries), 100):
        store.append(entries[start : start + 100])
    assert store.entries() == entries
    assert [e.usage.units for e in store.entries()] == [e.usage.units for e in entries]
    with_units = sum(1 for e in entries if e.usage.units)
    assert with_units == (0 if not every else len(range(0, len(entries), every)))


def test_units_of_rows_after_batches_without_any_read_back_in_place():
    # Units are kept for the rows up to the last that has any: batches without units before, between and after
    # batches with them, read back as entries and as a frame (rows without units: NO_UNITS / no units).
    n = _memory._BATCH
    with_units = {n + 3, n + 4, 3 * n + 1}

    def usage(i):
        if i in with_units:
            return Usage(100 + i, 10, 0, 50, 0, units={"cache_write_1h_tokens": i % 50 + 1, "web_searches": 1})
        return Usage(100 + i, 10, 0, 0, 0)

    entries = [make(i, usage=usage(i)) for i in range(4 * n + 9)]
    store = MemoryStore()
    for start in range(0, len(entries), n):
        store.append(entries[start : start + n])
        assert store.entries() == entries[: start + n]  # columnized batch by batch
    assert [i for i, e in enumerate(store.entries()) if e.usage.units] == sorted(with_units)
    assert all(e.usage.units is NO_UNITS for e in store.entries() if not e.usage.units)
    assert frame_to_entries(store.scan()) == entries
    store.append([make(len(entries), usage=Usage(5, 1, units={"web_searches": 2}))])  # a row past the kept ones
    assert store.entries()[-1].usage.units == {"web_searches": 2} and len(store) == len(entries) + 1


@pytest.mark.parametrize("mixed", [False, True], ids=["one-value-all-along", "mixed"])
def test_columns_of_one_value_all_along_and_of_mixed_values_read_back(mixed):
    # A batch whose category, tag map and latency kind are one all along takes a shorter way into the columns than
    # one where they differ: both read back exactly.
    from llmcost import CostCategory

    tags = {"team": "search"}
    categories = [CostCategory.LLM_INFERENCE, CostCategory.LLM_EMBEDDING]

    def entry(i):
        return make(
            i,
            category=categories[i % 2] if mixed else categories[0],
            tags=({"team": f"t{i % 3}"} if i % 3 else {}) if mixed else tags,
            latency_ms=(None if i % 2 else i / 7) if mixed else i / 7,
        )

    entries = [entry(i) for i in range(_memory._BATCH * 2 + 3)]
    store = MemoryStore()
    store.append(entries[: _memory._BATCH])
    for e in entries[_memory._BATCH :]:
        store.append_row(_row(e))
    assert store.entries() == entries
    assert frame_to_entries(store.scan()) == entries


@pytest.mark.parametrize("read", ["scan", "query"])
def test_a_writers_move_while_a_reader_copies_the_columns_out_neither_raises_nor_loses_a_row(read):
    # A frame (``scan``, ``query``) copies each column out of the store through a view of its buffer; a move grows
    # every column, and an array exporting its buffer cannot grow. The reader is paused here with such a view open
    # (a real thread, as the interpreter or NumPy's copy switches away from it) while a writer's appends reach a
    # move: read without the store's lock, the move raised ``BufferError`` out of ``append`` and lost its batch.
    import sys
    import threading

    import numpy as np

    store = MemoryStore()
    first = [make(i) for i in range(1000)]
    store.append(first)
    paused, resume = threading.Event(), threading.Event()
    frames, errors = [], []

    def pause_with_a_view_open(frame, event, arg) -> None:
        if event == "c_return" and arg is np.frombuffer and not paused.is_set():
            paused.set()
            resume.wait(10)

    def reader() -> None:
        sys.setprofile(pause_with_a_view_open)
        try:
            frames.append(store.scan() if read == "scan" else store.query("SELECT count(*) AS n FROM entries"))
        finally:
            sys.setprofile(None)

    later = [make(1000 + i) for i in range(_memory._BATCH + 10)]

    def writer() -> None:
        try:
            for entry in later:
                store.append([entry])
        except Exception as exc:  # (reported by the assertion below)
            errors.append(exc)

    reading = threading.Thread(target=reader)
    reading.start()
    assert paused.wait(10), "the reader never viewed a column in place"
    writing = threading.Thread(target=writer)
    writing.start()
    writing.join(10)
    resume.set()
    reading.join(10)
    assert not errors
    assert len(frames[0]) == 1000 if read == "scan" else frames[0]["n"].tolist() == [1000]
    assert store.entries() == first + later
    assert len(store) == 1000 + len(later)


@pytest.mark.parametrize("odd", [False, True], ids=["our-ids", "with-an-id-of-its-own"])
def test_rows_out_of_order_read_back_by_timestamp_then_id_through_later_batches(odd):
    # Timestamps shared by many rows and ids that differ in their first or only in their last bytes: the order is
    # (timestamp, id) as text, each row once, also after batches in order (which follow) and out of order (which
    # make the store sort again), read between them.
    import random

    pick = random.Random(7)
    stamps = [T0 + timedelta(microseconds=pick.randrange(40)) for _ in range(3 * _memory._BATCH)]

    def one(i, ts):
        head = "".join(pick.choice("0123456789abcdef") for _ in range(16))
        tail = "".join(pick.choice("0f") for _ in range(10))  # (few distinct tails: ties on the first 8 bytes)
        return make(i, ts, id=(head[: pick.choice([1, 16])].ljust(16, "0") + tail))

    made = [one(i, ts) for i, ts in enumerate(stamps)]
    if odd:
        made[5] = make(5, stamps[5], id="zz-my-own-id")
        made[6] = make(6, stamps[6], id="A-upper")
    later = [one(len(made) + i, T0 + timedelta(seconds=1 + i)) for i in range(_memory._BATCH + 3)]
    store = MemoryStore()
    expected: list[CostEntry] = []
    for batch in (made[: _memory._BATCH], made[_memory._BATCH :], later[:10], later[10:], made[:0]):
        store.append(batch)
        expected = sorted([*expected, *batch], key=lambda e: (e.timestamp, e.id))
        assert store.entries() == expected
        assert store.entries(limit=7) == expected[:7]
        assert store.total() == sum((e.amount for e in expected), Decimal(0))
    early = [one(10_000 + i, T0 - timedelta(seconds=1)) for i in range(3)]
    store.append(early)
    assert store.entries() == sorted([*expected, *early], key=lambda e: (e.timestamp, e.id))
    assert frame_to_entries(store.scan()) == store.entries()


class _SignalledColumn(array):
    """A column that, once armed, raises ``SIGUSR1`` as it is extended: its handler runs at once, in the middle of the
    store's move (as a real signal's handler runs between any two calls of it)."""

    armed = False

    def extend(self, values) -> None:
        super().extend(values)
        if _SignalledColumn.armed:
            _SignalledColumn.armed = False
            signal.raise_signal(signal.SIGUSR1)


@pytest.fixture
def signalled_store():
    """A tracker over a MemoryStore whose category column raises ``SIGUSR1`` in the move once armed, and a setter of
    the signal's handler (the previous handler back after the test)."""
    import llmcost

    store = MemoryStore()
    store._cat = _SignalledColumn("b", store._cat)
    previous = signal.getsignal(signal.SIGUSR1)
    yield llmcost.CostTracker(store), lambda handler: signal.signal(signal.SIGUSR1, handler)
    _SignalledColumn.armed = False
    signal.signal(signal.SIGUSR1, previous)


def _aligned(entries) -> bool:
    """Whether each entry's amount still goes with its model (``_record_pair`` records them so)."""
    return all((e.amount == Decimal("0.5")) == (e.model == "claude-3-5-haiku-20241022") for e in entries)


def _record_pair(tracker, big: bool) -> None:
    if big:
        tracker.record(amount="0.5", model="claude-3-5-haiku-20241022", provider="anthropic")
    else:
        tracker.record(amount="0.0025", model="gpt-4o", provider="openai")


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 here")
def test_a_signal_handler_recording_into_and_reading_the_store_in_the_middle_of_its_move_mixes_no_rows(
    signalled_store,
):
    # A Python signal handler runs on the thread it interrupted, and the store's lock is an RLock: a handler that
    # records and reads in the middle of that thread's move entered the move again, which extended the columns in
    # the middle of the interrupted extend (real timer signals mixed the fields of hundreds of rows in 100,000).
    import llmcost

    tracker, on_signal = signalled_store
    other = llmcost.CostTracker(store=tracker.store)
    read: list[tuple[Decimal, int]] = []

    def handler(signum, frame) -> None:
        for _ in range(_memory._BATCH + 1):  # (enough for a move of its own)
            _record_pair(other, True)
        read.append((tracker.store.total(), len(tracker.store.entries())))

    on_signal(handler)
    for _ in range(_memory._BATCH - 1):
        _record_pair(tracker, False)
    _SignalledColumn.armed = True
    _record_pair(tracker, False)  # the batch's last row: its move raises the signal
    assert not _SignalledColumn.armed and len(read) == 1
    entries = tracker.store.entries()
    assert len(entries) == len(tracker.store) == 2 * _memory._BATCH + 1
    assert _aligned(entries)
    assert tracker.store.total() == Decimal("0.0025") * _memory._BATCH + Decimal("0.5") * (_memory._BATCH + 1)
    assert read[0] == (Decimal(0), 0)  # (the handler read the store as the move found it)


class _Interrupted(Exception):
    pass


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 here")
@pytest.mark.parametrize("budgeted", [False, True], ids=["alone", "under-a-budget"])
def test_a_move_an_exception_interrupts_part_way_is_undone_and_loses_nothing(signalled_store, budgeted):
    # Ctrl-C, or a signal handler's exception (a timeout), can land between two of a move's column extends: the batch
    # was off the pending list and the columns extended part-way, so the batch was lost and the columns misaligned.
    # Now the move is undone: the columns as they were, the batch pending again, counted by the ledger once.
    import contextlib

    import llmcost

    tracker, on_signal = signalled_store

    def handler(signum, frame) -> None:
        raise _Interrupted

    on_signal(handler)
    watched = llmcost.budget(10**6, period="total", tracker=tracker)
    with watched if budgeted else contextlib.nullcontext():
        for i in range(_memory._BATCH - 1):
            _record_pair(tracker, i % 2 == 0)
        _SignalledColumn.armed = True
        with pytest.raises(_Interrupted):
            _record_pair(tracker, False)  # acknowledged before the move: it is in the store
        assert len(tracker.store) == _memory._BATCH  # (moved again by this read)
        for i in range(_memory._BATCH + 3):
            _record_pair(tracker, i % 3 == 0)
        entries = tracker.store.entries()
        expected = sum((e.amount for e in entries), Decimal(0))
        assert len(entries) == len({e.id for e in entries}) == 2 * _memory._BATCH + 3
        assert _aligned(entries)
        assert tracker.store.total() == expected == Decimal("0.5") * (128 + 87) + Decimal("0.0025") * (127 + 1 + 172)
        if budgeted:
            assert watched.spent == expected  # the ledger counted the returned batch once


@pytest.mark.parametrize("by", ["tags", "resource", "model"])
def test_a_filtered_read_finds_its_rows_while_a_writers_move_adds_strings_and_tag_maps(by):
    # A filter's allowed values are read off the store's tables of strings and tag maps, which a move adds to. The
    # reader is paused as it goes through a table (a real thread) while a writer records calls with new tags,
    # resources and models through a move: read without the lock, the table grew under it and the read raised
    # "dictionary changed size during iteration".
    import sys
    import threading

    import llmcost

    store = MemoryStore()
    tracker = llmcost.CostTracker(store)
    for _ in range(10):
        tracker.record(amount="0.01", model="gpt-4o", resource="r0", tags={"team": "a"})
    paused, resume = threading.Event(), threading.Event()
    found, errors = [], []

    def pause_in_a_table(frame, event, arg) -> None:
        if event == "call" and frame.f_code.co_name == "<setcomp>" and not paused.is_set():
            paused.set()
            resume.wait(10)

    wanted = {"tags": {"tags": {"team": "a"}}, "resource": {"resource": "r0"}, "model": {"model": "gpt-4o"}}[by]

    def reader() -> None:
        sys.setprofile(pause_in_a_table)
        try:
            found.append(store.total(**wanted))
        except Exception as exc:  # (reported by the assertion below)
            errors.append(exc)
        finally:
            sys.setprofile(None)

    reading = threading.Thread(target=reader)
    reading.start()
    assert paused.wait(10), "the reader never went through a table"
    for i in range(_memory._BATCH + 10):  # (new strings and tag maps, through a move)
        tracker.record(amount="0.5", model=f"m-{i}", resource=f"job-{i}", tags={"team": f"t{i}"})
    resume.set()
    reading.join(10)
    assert not errors
    assert found == [Decimal("0.10")]
    assert store.total(**wanted) == Decimal("0.10")
    assert len(store) == 10 + _memory._BATCH + 10


@pytest.mark.parametrize("arrival", ["in order", "out of order, order found", "out of order", "out of order, many"])
def test_reads_bounded_in_time_find_the_rows_of_their_period_however_rows_arrived(arrival, monkeypatch):
    # Rows in timestamp order (as appended, or as an ordered read sorted them) are sliced by bisection for a period
    # (a budget's first look at a day); rows out of order that no read sorted yet are checked one by one, unless
    # there are many ("many": more than ``_SORT_TO_SLICE``, lowered here): then sorted for the read. Every way,
    # each bound's rows are those a check of every row finds, bounds on a row's timestamp and between rows included.
    import random

    pick = random.Random(11)
    stamps = sorted(
        T0 + timedelta(seconds=pick.randrange(0, 3 * 86400), microseconds=pick.randrange(2)) for _ in range(600)
    )
    made = [make(i, ts, tags={"user": f"u{i % 4}"}) for i, ts in enumerate(stamps)]
    if arrival != "in order":
        pick.shuffle(made)
    if arrival == "out of order, many":
        monkeypatch.setattr(_memory, "_SORT_TO_SLICE", 500)
    store = MemoryStore()
    for start in range(0, len(made), 100):
        store.append(made[start : start + 100])
    if arrival == "out of order, order found":
        store.entries(limit=1)  # (an ordered read: the store sorts its rows, and keeps the order)
    day = _memory.Filters(since=T0 + timedelta(days=1), until=T0 + timedelta(days=2))
    in_day = sum(1 for e in made if day.since <= e.timestamp < day.until)
    window = store._select(day, ordered=False)
    assert len(window) == in_day
    assert (store._order is not None) == (arrival != "in order" and arrival != "out of order")  # (sorted for it)
    if arrival == "in order":
        assert window == range(window[0], window[0] + in_day)  # a slice of the rows, found without checking each
    bounds = [None, T0, T0 + timedelta(days=1), stamps[17], stamps[300], stamps[-1], T0 + timedelta(days=9)]
    for since in bounds:
        for until in bounds:
            for tags in (None, {"user": "u1"}):
                expected = [
                    e
                    for e in made
                    if (since is None or e.timestamp >= since)
                    and (until is None or e.timestamp < until)
                    and (tags is None or e.tags == tags)
                ]
                assert store.total(since=since, until=until, tags=tags) == sum((e.amount for e in expected), Decimal(0))
                assert store.entries(since=since, until=until, tags=tags) == sorted(
                    expected, key=lambda e: (e.timestamp, e.id)
                )


def test_rows_a_handler_moves_in_out_of_order_during_a_sort_are_not_taken_as_in_order(monkeypatch):
    # A signal handler recording into the store in the middle of a read that sorts its rows (the lock is the
    # thread's already, so the handler's rows are moved in there, out of order): the order the read found is not
    # kept as the store's, which would have the handler's rows read as following it, in order, and a read bounded in
    # time that slices by bisection miss them.
    store = MemoryStore()
    store.append([make(i, T0 + timedelta(hours=2, seconds=i)) for i in range(300)])
    store.append([make(1000, T0 + timedelta(hours=1, seconds=1))])  # (out of order: the store sorts to read)
    late = [make(3000 + i, T0 + timedelta(hours=1, microseconds=i)) for i in range(_memory._BATCH)]
    sorting = store._sorted_rows

    def handler_records_meanwhile(n):
        if late:
            store.append([late.pop() for _ in range(len(late))])  # (what the handler records, moved in at once)
        return sorting(n)

    monkeypatch.setattr(store, "_sorted_rows", handler_records_meanwhile)
    (first,) = store.entries(limit=1)  # (the read the handler comes in: the rows as of its start, not the handler's)
    assert first.timestamp == T0 + timedelta(hours=1, seconds=1)
    hour = {"since": T0 + timedelta(hours=1), "until": T0 + timedelta(hours=1, seconds=2)}
    everything = store.entries()
    assert everything == sorted(everything, key=lambda e: (e.timestamp, e.id))
    expected = [e for e in everything if hour["since"] <= e.timestamp < hour["until"]]
    assert len(expected) == _memory._BATCH + 1
    assert store.total(**hour) == sum((e.amount for e in expected), Decimal(0))
    assert store.entries(**hour) == expected


def test_rows_out_of_order_with_ids_of_our_own_are_checked_one_by_one_not_sorted_for_a_bounded_read(monkeypatch):
    # Ids not of 26 hex digits sort by a Python key per row, slower than checking each row: a read bounded in time
    # does not sort the rows for its slice then (``_SORT_TO_SLICE``, lowered here, notwithstanding).
    monkeypatch.setattr(_memory, "_SORT_TO_SLICE", 10)
    store = MemoryStore()
    made = [make(i, T0 + timedelta(seconds=100 - i)) for i in range(50)]  # (out of order)
    made[3] = make(3, made[3].timestamp, id="my-own-id")
    store.append(made)
    day = {"since": T0 + timedelta(seconds=60), "until": T0 + timedelta(seconds=80)}
    assert store.total(**day) == sum((e.amount for e in made if day["since"] <= e.timestamp < day["until"]), Decimal(0))
    assert store._order is None  # (not sorted for it)
