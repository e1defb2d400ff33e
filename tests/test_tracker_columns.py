"""The tracker's buffer for durable stores keeps older entries as columns (``FieldColumns``), so the entries die
young; everything the buffer guarantees still holds: order, nothing lost or duplicated, ``pending`` counts, a failed
write keeps the batch in front."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest

from llmcost import CostEntry, CostTracker, StoreError, Usage
from llmcost import _tracker as tracker_module
from llmcost._rows import FieldColumns, ingest_columns, ingest_field_columns
from llmcost._tracker import holds_unwritten
from llmcost.stores import DuckDBStore, MemoryStore


class Kept(MemoryStore):
    """A buffered store counting how it was handed entries; ``fail`` makes appends raise."""

    buffered = True

    def __init__(self) -> None:
        super().__init__()
        self.fail = False
        self.batches: list[int] = []

    def append(self, entries):
        if self.fail:
            raise OSError("disk on fire")
        self.batches.append(len(entries))
        super().append(entries)


def _entries(tracker: CostTracker, n: int) -> list[CostEntry]:
    return [
        tracker.build(
            model="gpt-4o" if i % 3 else None,
            amount=None if i % 3 else f"0.{i:04d}",
            input_tokens=i,
            output_tokens=2 * i,
            tags={"k": str(i % 4)} if i % 2 else None,
            latency_ms=None if i % 5 else 1.5,
            resource="r" if i % 7 else None,
        )
        for i in range(n)
    ]


def test_field_columns_give_the_entries_back(clock):
    entries = _entries(CostTracker(clock=clock), 50)
    columns = FieldColumns.of(entries)
    assert len(columns) == 50
    assert columns.entries() == entries
    joined = FieldColumns.joined([FieldColumns.of(entries[:7]), FieldColumns.of([]), FieldColumns.of(entries[7:])])
    assert joined.entries() == entries
    assert len(FieldColumns.of([])) == 0 and FieldColumns.of([]).entries() == []


def test_ingest_from_columns_equals_ingest_from_entries(clock):
    entries = _entries(CostTracker(clock=clock), 40)
    raw, tags = ingest_columns(entries)
    raw2, tags2 = ingest_field_columns(FieldColumns.of(entries))
    assert raw.keys() == raw2.keys()
    for name in raw:
        assert [repr(v) for v in raw[name].tolist()] == [repr(v) for v in raw2[name].tolist()], name
    assert tags["tags"].tolist() == tags2["tags"].tolist()


def test_buffered_entries_are_kept_as_columns_in_order_and_counted(clock):
    store = Kept()
    t = CostTracker(store, clock=clock, batch_size=100_000, flush_interval=60)
    recorded = [t.record(amount=i, tags={"i": str(i % 3)}) for i in range(1000)]
    assert t.pending() == 1000
    t.flush()
    assert t.pending() == 0
    assert store.entries() == sorted(recorded, key=lambda e: (e.timestamp, e.id))
    assert [e.id for e in store.entries()] == [e.id for e in recorded]  # one clock tick: ids keep record order
    t.close()


def test_buffered_entries_die_young(clock, tmp_path):
    t = CostTracker(DuckDBStore(tmp_path / "c.duckdb"), clock=clock, batch_size=100_000, flush_interval=60)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(3000):
        t.record(amount="0.01", timestamp=clock.now + timedelta(seconds=i))
    gc.collect()
    assert len(gc.get_objects()) - before < 300  # the entries are columns now, not 3000 tracked objects
    assert t.pending() == 3000
    t.close()
    assert DuckDBStore(tmp_path / "c.duckdb").total() == Decimal("30.00")


def test_a_failed_write_keeps_the_batch_in_front_in_order(clock):
    store = Kept()
    t = CostTracker(store, clock=clock, batch_size=100_000, flush_interval=60)
    first = [t.record(amount=1) for _ in range(600)]
    store.fail = True
    with pytest.raises(StoreError, match="disk on fire"):
        t.flush()
    assert t.pending() == 600
    later = [t.record(amount=2) for _ in range(300)]
    assert t.pending() == 900
    store.fail = False
    t.flush()
    assert t.pending() == 0
    assert [e.id for e in store.entries()] == [e.id for e in first + later]
    t.close()


def test_threads_recording_while_the_writer_flushes_lose_and_duplicate_nothing(clock):
    store = Kept()
    t = CostTracker(store, clock=clock, batch_size=700, flush_interval=0.001)
    ids: list[list[str]] = [[] for _ in range(4)]

    def work(k: int) -> None:
        for _ in range(3000):
            ids[k].append(t.record(amount="0.01", usage=Usage(input_tokens=1)).id)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    t.close()
    stored = [e.id for e in store.entries()]
    assert len(stored) == 12000 and set(stored) == {i for part in ids for i in part}


def test_duckdb_append_columns_equals_append(clock, tmp_path):
    entries = _entries(CostTracker(clock=clock), 60)
    a, b = DuckDBStore(tmp_path / "a.duckdb"), DuckDBStore(tmp_path / "b.duckdb")
    a.append(entries)
    b.append_columns(FieldColumns.of(entries))
    b.append_columns(FieldColumns.of(entries))  # again: ids already stored are skipped
    assert b.entries() == a.entries() == sorted(entries, key=lambda e: (e.timestamp, e.id))


def test_holds_unwritten_looks_through_the_buffer_its_columns_and_a_write_under_way(clock, monkeypatch):
    # A period budget writes the buffer before it reads its spend only when an unwritten entry is of its scope
    # (``holds_unwritten``): every entry recorded and not yet in the store is looked at, wherever it waits.
    store = Kept()
    t = CostTracker(store, clock=clock, batch_size=100_000, flush_interval=60)
    t.record(amount=1, resource="old")
    for _ in range(299):
        t.record(amount=1)
    t.record(amount=1, resource="new")

    def of(resource: str) -> Callable[[CostEntry], bool]:
        return lambda entry: entry.resource == resource

    assert t.pending() == 301  # (the first 256 are columns by now, the rest entries)
    assert holds_unwritten(t, of("old")) and holds_unwritten(t, of("new")) and not holds_unwritten(t, of("other"))
    # A write under way: its batch, off the buffer, is looked at until it is in the store.
    entered, release = threading.Event(), threading.Event()

    def slow(entries: list[CostEntry]) -> None:
        entered.set()
        release.wait(10)
        Kept.append(store, entries)

    monkeypatch.setattr(store, "append", slow)
    writer = threading.Thread(target=t.flush)
    writer.start()
    assert entered.wait(10)
    assert t.pending() == 0 and holds_unwritten(t, of("old")) and not holds_unwritten(t, of("other"))
    release.set()
    writer.join()
    assert not holds_unwritten(t, of("old")) and not holds_unwritten(t, of("new"))
    # A failed write's batch is back in the buffer, and looked at there.
    t.record(amount=1, resource="again")
    store.fail = True
    monkeypatch.undo()
    with pytest.raises(StoreError):
        t.flush()
    assert holds_unwritten(t, of("again"))
    # More entries than are worth looking through (a write of them costs less): they may be of any scope.
    monkeypatch.setattr(tracker_module, "UNWRITTEN_LOOKED_AT", 10)
    for _ in range(10):
        t.record(amount=1)
    assert holds_unwritten(t, of("other"))
    store.fail = False
    t.close()
    assert [e.resource for e in store.entries()].count("again") == 1
