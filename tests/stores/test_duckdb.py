"""DuckDBStore: sharing one file between processes, durability, retries and the spill."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import llmcost
from llmcost import CostTracker, StoreError, track_cost
from llmcost.stores import DuckDBStore, MemoryStore, ParquetStore, open_store
from tests.conftest import Periods

from .conftest import CHILD_PREAMBLE, Children, make_entry

WRITER = (
    CHILD_PREAMBLE
    + """
url, n, batches, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = open_store(url)
b = 0
while batches < 0 or b < batches:
    store.append([entry(n, b * size + k) for k in range(size)])
    print("acked", b, flush=True)
    b += 1
store.close()
"""
)

READER = (
    CHILD_PREAMBLE
    + """
import os
store = open_store(sys.argv[1])
counts = []
while not os.path.exists(sys.argv[2]):
    counts.append(int(store.query("SELECT count(*) AS n FROM entries").loc[0, "n"]))
    counts.append(len(store.entries(resource="writer-1")))
    time.sleep(0.02)
print(" ".join(map(str, counts)))
"""
)

HOLD_LOCK = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
"""


def hold_lock(children: Children, db: str) -> subprocess.Popen[str]:
    """A process that holds the DuckDB file ``db`` open (its lock) until ``let_go``."""
    holder = children.spawn(HOLD_LOCK, db)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def let_go(holder: subprocess.Popen[str]) -> None:
    """Tell ``holder`` (``hold_lock``) to close the file, and wait until it has."""
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(timeout=30)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "costs.duckdb")


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"duckdb://{tmp_path}/a.duckdb")
    assert isinstance(store, DuckDBStore)
    assert store.path == str(tmp_path / "a.duckdb")
    assert store.url == f"duckdb://{tmp_path}/a.duckdb"
    assert open_store(store.url).path == store.path
    monkeypatch.chdir(tmp_path)
    relative = open_store("duckdb://rel.duckdb")
    assert isinstance(relative, DuckDBStore)
    assert relative.path == str(tmp_path / "rel.duckdb")
    parquet = open_store(f"parquet://{tmp_path}/pq")
    assert isinstance(parquet, ParquetStore)
    assert parquet.directory == str(tmp_path / "pq")
    assert isinstance(open_store("memory://"), MemoryStore)
    for bad in ("ftp://x", "sqlite:///x.db", "no-scheme", "duckdb://", "duckdb:///", "duckdb:///x.duckdb?mode=ro"):
        with pytest.raises(StoreError, match="store URL"):
            open_store(bad)


@pytest.mark.parametrize(
    ("location", "meant"),
    [
        ("duckdb:costs.duckdb", "duckdb://costs.duckdb"),
        ("DuckDB:/abs/costs.duckdb", "DuckDB:///abs/costs.duckdb"),
        ("parquet:pq", "parquet://pq"),
        ("postgresql:host/db", "postgresql://host/db"),
        ("postgres:host/db", "postgres://host/db"),
        ("memory:", "memory://"),
    ],
)
def test_a_known_scheme_without_its_slashes_is_refused_not_made_a_file_of_that_name(
    location: str, meant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=f"store URL '{location}' lacks the // after .*; write '{meant}'"):
        CostTracker(location)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StoreError) as refused:
        open_store(location)
    assert "has no scheme" not in str(refused.value)


def test_plain_paths_still_open_as_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_store("costs.duckdb"), DuckDBStore)
    assert isinstance(open_store("c:costs.db"), DuckDBStore)  # a drive-relative Windows path: no known scheme
    (tmp_path / "pq").mkdir()
    assert isinstance(open_store("pq"), ParquetStore)


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
@pytest.mark.parametrize(
    ("argument", "value", "error", "words"),
    [
        # (An infinite lease was taken, and a budget's first call failed on it, or a killed process's reservation
        # never lapsed; NaN passes every comparison.)
        ("lease", float("inf"), ValueError, "lease must be a finite, positive number of seconds, got inf"),
        ("lease", float("nan"), ValueError, "lease must be a finite, positive number of seconds, got nan"),
        ("lease", "60", ValueError, "lease must be a finite, positive number of seconds, got '60'"),
        ("spill_dir", 5, TypeError, "spill_dir must be a str, os.PathLike or None, got 5"),
    ],
)
def test_bad_store_arguments_raise_at_construction_naming_them(tmp_path, kind, argument, value, error, words) -> None:
    where = tmp_path / ("c.duckdb" if kind == "duckdb" else "pq")
    with pytest.raises(error) as raised:
        (DuckDBStore if kind == "duckdb" else ParquetStore)(where, **{argument: value})
    assert words in str(raised.value)
    assert list(tmp_path.iterdir()) == []  # checked before anything is made


def test_bad_arguments(db: str) -> None:
    with pytest.raises(ValueError, match="retry_timeout"):
        DuckDBStore(db, retry_timeout=-1)
    # NaN turned retries off; infinity would hang a write on a lock for good.
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"retry_timeout must be a finite, non-negative number .*got {value}"):
            DuckDBStore(db, retry_timeout=value)
    with pytest.raises(ValueError, match="path"):
        DuckDBStore(":memory:")
    with pytest.raises(ValueError, match=r"path must not contain a NUL character, got 'a\\x00b'"):
        DuckDBStore("a\0b")
    with pytest.raises(TypeError, match="path"):
        DuckDBStore(42)  # type: ignore[arg-type]


def test_the_file_is_free_between_calls(db: str) -> None:
    store = DuckDBStore(db)
    store.append([make_entry(1)])
    # Another process (here: another DuckDB instance) can open it at once: the store holds no lock.
    other = duckdb.connect(db)
    try:
        assert other.execute("SELECT count(*) FROM entries").fetchone() == (1,)
        other.execute("SELECT 1")
    finally:
        other.close()
    store.append([make_entry(2)])
    assert [e.id for e in store.entries()] == [make_entry(1).id, make_entry(2).id]


def test_writes_get_a_connection_of_their_own(tmp_path: Path) -> None:
    from llmcost.stores._durable import Durable

    durable = Durable(
        str(tmp_path / "c.duckdb"),
        retry_timeout=1,
        spill_dir=str(tmp_path / "spill"),
        transient=lambda exc: False,
        per_path=True,
        settings=("SET checkpoint_threshold = '0b'",),
        write_settings=("SET threads = 1",),
    )

    def setting(con: duckdb.DuckDBPyConnection, name: str) -> object:
        return con.execute(f"SELECT current_setting('{name}')").fetchone()[0]  # type: ignore[index]

    write, read = durable.connection(write=True), durable.connection()
    assert write is not read and durable.connection(write=True) is write
    assert setting(write, "threads") == 1 and setting(write, "TimeZone") == "UTC"
    assert setting(read, "threads") == duckdb.connect().execute("SELECT current_setting('threads')").fetchone()[0]  # type: ignore[index]
    assert setting(read, "checkpoint_threshold") == setting(write, "checkpoint_threshold")
    durable.drop_connection()
    assert durable.connection(write=True) is not write


def _block_size(path: str) -> int:
    con = duckdb.connect(path, read_only=True)
    try:
        return int(con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def test_block_size_is_chosen_only_for_a_file_the_store_creates(db: str, tmp_path: Path) -> None:
    store = DuckDBStore(db)
    store.append([make_entry(1)])
    store.close()
    assert _block_size(db) == 128 * 1024
    older = str(tmp_path / "older.duckdb")
    duckdb.connect(older).close()  # an existing file with DuckDB's default blocks
    store = DuckDBStore(older)
    store.append([make_entry(1), make_entry(2)])
    assert len(store.entries()) == 2
    store.close()
    assert _block_size(older) == 256 * 1024


def test_a_file_created_between_the_check_and_the_attach_keeps_its_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "raced.duckdb")
    store = DuckDBStore(path)
    duckdb.connect(path).close()  # another process created it, with DuckDB's default blocks
    exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if p == path else exists(p))
    store.append([make_entry(1)])
    monkeypatch.undo()
    assert not os.path.isdir(path + ".spill") or not os.listdir(path + ".spill")  # written, not spilled
    assert store.entries() == [make_entry(1)]
    store.close()
    assert _block_size(path) == 256 * 1024


def test_append_skips_ids_already_stored(db: str) -> None:
    store = DuckDBStore(db)
    batch = [make_entry(i) for i in range(20)]
    store.append(batch)
    store.append([*batch[10:], make_entry(20)])
    assert store.entries() == [*batch, make_entry(20)]


def test_query_types_and_read_only(db: str) -> None:
    store = DuckDBStore(db)
    entries = [make_entry(i) for i in range(10)]
    store.append(entries)
    frame = store.query("SELECT timestamp, amount, tags, latency_ms FROM entries ORDER BY timestamp, id")
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert [t.to_pydatetime() for t in frame["timestamp"]] == [e.timestamp for e in entries]
    assert frame["amount"].tolist() == [e.amount for e in entries]
    assert frame["tags"].tolist() == [dict(e.tags) for e in entries]
    with pytest.raises(duckdb.Error):
        store.query("DELETE FROM entries")
    assert len(store.entries()) == 10


def test_query_asked_again_gives_the_same_frame(db: str) -> None:
    """A query the store has answered before runs once instead of bound and run (``QueryFrames``): same frames,
    converted columns included, and rows written in between are seen."""
    store = DuckDBStore(db)
    store.append([make_entry(i) for i in range(10)])
    plain = "SELECT model, count(*) AS n, CAST(sum(amount) AS DOUBLE) AS cost FROM entries GROUP BY ALL ORDER BY 1"
    exact = "SELECT timestamp, amount FROM entries ORDER BY timestamp, id"
    first = [store.query(plain), store.query(exact)]
    for _ in range(2):
        pd.testing.assert_frame_equal(store.query(plain), first[0], check_exact=True)
        pd.testing.assert_frame_equal(store.query(exact), first[1], check_exact=True)
    store.append([make_entry(i) for i in range(10, 15)])
    assert store.query(plain)["n"].sum() == 15
    assert len(store.query(exact)) == 15


def test_concurrent_writers_and_a_reader(db: str, tmp_path: Path, children: Children) -> None:
    url = f"duckdb://{db}"
    DuckDBStore(db).close()
    stop = tmp_path / "stop"
    writers, batches, size = 4, 15, 20
    reader = children.spawn(READER, url, str(stop))
    procs = [children.spawn(WRITER, url, str(n), str(batches), str(size)) for n in range(writers)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.count("acked") == batches
    stop.touch()
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    counts = [int(c) for c in out.split()]
    assert len(counts) >= 2, "the reader never got a read in"
    totals = counts[0::2]
    assert totals == sorted(totals), "a reader saw rows disappear"
    assert all(t % size == 0 for t in totals), "a reader saw half a batch"

    store = DuckDBStore(db)
    rows = store.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM entries")
    assert rows.loc[0, "n"] == rows.loc[0, "d"] == writers * batches * size
    expected = sum((Decimal("0.000001") * (k + 1) for k in range(batches * size)), Decimal(0)) * writers
    assert store.total() == expected


def test_kill_9_keeps_what_append_acknowledged(db: str, children: Children) -> None:
    url = f"duckdb://{db}"
    size = 50
    proc = children.spawn(WRITER, url, "7", "-1", str(size))
    acked = []
    assert proc.stdout is not None
    while len(acked) < 5:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "writer died"
        acked.append(int(line.split()[1]))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = DuckDBStore(db)
    ids = {e.id for e in store.entries(resource="writer-7")}
    for b in acked:
        assert {f"w07-{b * size + k:08d}" for k in range(size)} <= ids
    assert len(ids) % size == 0, "a batch was half written"


def test_waits_for_a_lock_held_briefly(db: str, children: Children) -> None:
    store = DuckDBStore(db, retry_timeout=20)
    holder = children.spawn(HOLD_LOCK, db)
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    holder_release_at = started + 0.5

    import threading

    def release() -> None:
        time.sleep(max(0.0, holder_release_at - time.monotonic()))
        holder.stdin.write("\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]

    threading.Thread(target=release).start()
    store.append([make_entry(1)])
    assert time.monotonic() - started >= 0.4
    holder.wait(timeout=30)
    assert store.entries() == [make_entry(1)]
    assert not os.path.exists(db + ".spill") or not os.listdir(db + ".spill")


def test_spill_when_the_lock_stays_held(db: str, children: Children) -> None:
    store = DuckDBStore(db, retry_timeout=0.3)
    store.append([make_entry(0)])
    holder = hold_lock(children, db)
    try:
        batch = [make_entry(i) for i in range(1, 30)]
        store.append(batch)  # acknowledged: spilled to disk
        spilled = sorted(os.listdir(db + ".spill"))
        assert len(spilled) == 1 and spilled[0].endswith(".jsonl")
        with pytest.raises(StoreError, match="retry_timeout"):
            store.total()
        with pytest.raises(StoreError, match="another process holds the store's lock"):
            DuckDBStore(db, retry_timeout=0.2).total()  # opens all the same; its read waits and fails
        backup = Path(db + ".spill") / spilled[0]
        saved = backup.read_bytes()
    finally:
        let_go(holder)

    reopened = DuckDBStore(db)  # replays on open
    assert reopened.entries() == [make_entry(0), *batch]
    assert os.listdir(db + ".spill") == []
    # Replaying the same file again (a crash between the commit and the delete) adds nothing twice.
    backup.write_bytes(saved)
    again = DuckDBStore(db)
    assert again.entries() == [make_entry(0), *batch]
    assert os.listdir(db + ".spill") == []
    # The store that spilled replays on its next append, too.
    backup.write_bytes(saved)
    store.append([make_entry(40)])
    assert store.entries() == [make_entry(0), *batch, make_entry(40)]


def test_appends_while_the_lock_stays_held_read_and_check_each_spill_file_once(
    db: str, children: Children, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another program keeps the file locked, each append spills a file. Appends do not read the pending
    spill files until they have the file (they read them all before each attempt: each append slower than the last,
    checking every file's entries in a new in-memory DuckDB), and a replay does not check again a file this store
    spilled (checked as it was written). A file put there by someone else is still checked before it is replayed."""
    from llmcost._rows import entry_to_json
    from llmcost.stores._durable import Durable
    from llmcost.stores._spill import Spill

    checked: list[int] = []
    reads: list[str] = []
    storable, read = Durable.storable, Spill.read
    monkeypatch.setattr(Durable, "storable", lambda s, got, **kw: checked.append(len(got)) or storable(s, got, **kw))
    monkeypatch.setattr(Spill, "read", lambda self, path: reads.append(path) or read(self, path))
    store = DuckDBStore(db, retry_timeout=0.1)
    store.append([make_entry(0)])
    holder = hold_lock(children, db)
    try:
        for i in range(1, 6):
            store.append([make_entry(i)])  # spilled
        assert len(os.listdir(db + ".spill")) == 5
        assert checked == [1] * 5 and reads == []  # each checked once, as it was spilled; none read back yet
    finally:
        let_go(holder)
    foreign = [make_entry(7), make_entry(8)]
    Path(db + ".spill", "from-elsewhere.jsonl").write_text("".join(entry_to_json(e) + "\n" for e in foreign))
    store.append([make_entry(6)])  # replays the six files with it
    assert checked == [1] * 5 + [2] and len(reads) == 6
    assert store.entries() == [make_entry(i) for i in range(9)]
    assert os.listdir(db + ".spill") == []


def test_a_spill_file_check_that_could_not_run_is_not_taken_as_passed(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spill file is checked once per version, but only a check that ran counts: one that failed for a reason of
    its own (the in-memory DuckDB could not be made) says nothing about the entries, and is made again next time."""
    from llmcost.stores import _sql
    from llmcost.stores._durable import Durable

    durable = DuckDBStore(db)._durable
    entries = [make_entry(1), make_entry(2)]
    path = durable.spill.write(entries)
    checks: list[int] = []
    storable = Durable.storable
    monkeypatch.setattr(Durable, "storable", lambda s, got, **kw: checks.append(len(got)) or storable(s, got, **kw))
    with monkeypatch.context() as broken:
        broken.setattr(_sql, "registered", lambda con, columns: (_ for _ in ()).throw(MemoryError("out of memory")))
        assert durable.replayable(path, entries) is None  # (nothing known against them)
    assert durable.replayable(path, entries) is None  # checked again: the first check never ran
    assert durable.replayable(path, entries) is None  # and now known
    assert checks == [2, 2]
    # Nor is a file this store spilled after a check that could not run: its replay checks it.
    with monkeypatch.context() as broken:
        broken.setattr(_sql, "registered", lambda con, columns: (_ for _ in ()).throw(MemoryError("out of memory")))
        durable.keep_for_later(OSError("locked"), [make_entry(3)])
    (spilled,) = [other for other in durable.spill.pending() if other != path]
    checks.clear()
    assert durable.replayable(spilled, [make_entry(3)]) is None
    assert checks == [1]


def test_opens_while_another_process_holds_the_lock(db: str, children: Children) -> None:
    """An analyst's ``duckdb.connect(file)`` holding the file when the store opens: the store opens anyway (a
    tracker on it, the default one included, is made once), appends spill, and the next read once the lock is free
    migrates the file and replays them."""
    DuckDBStore(db).append([make_entry(0)])
    holder = hold_lock(children, db)
    try:
        store = DuckDBStore(db, retry_timeout=0.3)
        assert not store.read_only
        store.append([make_entry(1)])  # acknowledged: spilled
        assert len(os.listdir(db + ".spill")) == 1
    finally:
        let_go(holder)
    assert store.entries() == [make_entry(0), make_entry(1)]
    assert os.listdir(db + ".spill") == []


def test_an_open_that_met_the_lock_migrates_before_the_first_read(db: str, children: Children) -> None:
    """A file from before a column was added (``canonical_model``, schema version 3), locked when the store
    opened: the first read (with no spill file to replay) still migrates it first, as the open would have, so reads
    of the new column work."""
    DuckDBStore(db).append([make_entry(0)])
    con = duckdb.connect(db)
    con.execute("ALTER TABLE entries DROP COLUMN canonical_model")  # as schema version 2 wrote it
    con.execute("UPDATE llmcost_meta SET value = '2' WHERE key = 'schema_version'")
    con.close()
    holder = hold_lock(children, db)
    try:
        store = DuckDBStore(db, retry_timeout=0.3)
    finally:
        let_go(holder)
    assert store.query("SELECT count(canonical_model) AS n, count(*) AS total FROM entries").to_dict("records") == [
        {"n": 0, "total": 1}
    ]


def test_a_refused_first_write_leaves_a_store_that_reads_as_empty(db: str) -> None:
    """The first append creates the file (its ATTACH does) and DuckDB refuses a value in it (an amount of 10**25,
    forced past ``CostEntry``'s check): the append is rolled back, but the file has its tables, so this store, and
    another process opening it read-only, read an empty store instead of failing."""
    bad = make_entry(1)
    object.__setattr__(bad, "amount", Decimal(10) ** 25)
    store = DuckDBStore(db)
    with pytest.raises(StoreError, match="cannot be stored"):
        store.append([make_entry(0), bad])
    assert os.path.exists(db)
    assert store.entries() == [] and store.total() == 0
    con = duckdb.connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM entries").fetchall() == [(0,)]
    con.close()


def test_spill_file_that_cannot_be_read_is_set_aside(db: str, caplog: pytest.LogCaptureFixture) -> None:
    store = DuckDBStore(db)
    os.makedirs(db + ".spill")
    Path(db + ".spill", "broken.jsonl").write_text("{not json\n")
    store.append([make_entry(1)])
    assert store.entries() == [make_entry(1)]
    # The line is kept as a dead letter (its text and why), not replayed and not left to block later replays.
    assert os.listdir(db + ".spill") == []
    (letter,) = store.dead_letters()
    assert letter["entry"] == "{not json" and "JSONDecodeError" in letter["error"]
    assert "could not be read back as an entry" in caplog.text


def test_an_unreadable_spill_line_is_set_aside_once_however_often_the_replay_is_retried(
    db: str, children: Children
) -> None:
    """The replay waits for another process's lock, retrying (and here, runs out of time and is tried again by the
    next open): the line is set aside once, not once per attempt."""
    DuckDBStore(db).append([make_entry(1)])
    os.makedirs(db + ".spill")
    Path(db + ".spill", "spilled.jsonl").write_text('{"not": "an entry"}\n')
    holder = hold_lock(children, db)
    try:
        locked = DuckDBStore(db, retry_timeout=0.5)  # the open tries to replay, meets the lock and leaves it
        with pytest.raises(StoreError, match="retry_timeout"):
            locked.total()  # a read replays first: every attempt meets the lock
    finally:
        let_go(holder)
    store = DuckDBStore(db)
    (letter,) = store.dead_letters()
    assert letter["entry"] == '{"not": "an entry"}'
    assert store.entries() == [make_entry(1)] and os.listdir(db + ".spill") == []


@pytest.mark.parametrize("locked", ["mid-period", "before-entering"])
def test_a_budget_holds_its_limit_while_another_program_keeps_the_file_locked(
    db: str,
    children: Children,
    locked: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    same_period: Periods,
) -> None:
    """An analyst's ``duckdb.connect(file)`` keeps the store locked: appends spill (acknowledged), and the budget's
    ledger cannot read the recorded spend. It counts from its last reading plus every call acknowledged since,
    whether the ledger settled it or a lease still held it, each once: exactly the calls the limit allows are made
    (a budget that could not read let every call through; one that counted a lease's acknowledged calls again at
    its batch stopped short), and no call waits to write to the locked file before its budget leases. Entering the
    budget while the file is locked raises nothing into the user's block; the account then counts from zero, and
    once the file is free a forced reading has everything."""
    response = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}  # $0.0025
    store = DuckDBStore(db, retry_timeout=0.2)
    tracker = CostTracker(store, flush_interval=3600)  # written when the test flushes, every fifth call
    call = track_cost(tracker=tracker, estimate=Decimal("0.0025"))(lambda: response)
    for _ in range(10):
        call()
    tracker.flush()

    holder = hold_lock(children, db) if locked == "before-entering" else None
    write = tracker.flush  # (the test's own writes, every fifth call)
    budget_writes: list[int] = []  # (the budget's, before it leases: ``Budget._write_unseen``)
    monkeypatch.setattr(tracker, "flush", lambda: budget_writes.append(1) or write())
    made = refused = 0
    try:
        with llmcost.budget(Decimal("0.1"), period="daily", tracker=tracker) as cap:  # 40 calls of $0.0025
            for i in range(50):
                if i == 5 and holder is None:
                    holder = hold_lock(children, db)
                    budget_writes.clear()
                try:
                    call()
                    made += 1
                except llmcost.BudgetExceeded:
                    refused += 1
                if i % 5 == 0:
                    write()  # spilled while the file is locked
            assert os.listdir(db + ".spill")
    finally:
        assert holder is not None
        let_go(holder)
    # Once the ledger could not read the store, the budget wrote nothing before leasing (each write to the locked
    # file held a call for retry_timeout, and added nothing to what the ledger counts); nor did it on entering, with
    # nothing buffered (``holds_unwritten``).
    if same_period():  # (a new day's account opened would write its calls buffered)
        assert budget_writes == []
    write()
    if not same_period():  # (midnight UTC passed: the calls are of two days, and the budget counts today's)
        cap.sync(force=True)
        assert cap.spent == store.total(since=cap.period_start, until=cap.period_end)
    elif locked == "mid-period":
        assert (made, refused) == (30, 20)  # the ten made before the budget count: its account was open
        assert store.total() == Decimal("0.1")
    else:
        assert (made, refused) == (40, 10)  # its account opened while the file was locked: counted from zero
        cap.sync(force=True)
        assert cap.spent == store.total() == Decimal("0.125")  # read once the file is free, spill replayed
    assert os.listdir(db + ".spill") == []
    assert "cannot read the store's recorded spend" in caplog.text


def test_threads_share_a_store(db: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = DuckDBStore(db)
    other = DuckDBStore(db)  # a second object on the same path in the same process

    def work(n: int) -> None:
        target = store if n % 2 else other
        target.append([make_entry(n * 100 + k) for k in range(10)])
        target.total(resource="svc-1")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(16)))
    assert len(store.entries()) == 160


def test_newer_schema_is_refused(db: str) -> None:
    DuckDBStore(db).save_budget("b", "{}")  # the first write creates the file
    con = duckdb.connect(db)
    con.execute("UPDATE llmcost_meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="upgrade llmcost"):
        DuckDBStore(db)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "text.duckdb"
    path.write_text("hello, I am not a database\n" * 100)
    started = time.monotonic()
    with pytest.raises(StoreError, match="not a DuckDB database") as caught:
        DuckDBStore(path)
    assert str(path) in str(caught.value) and isinstance(caught.value.__cause__, duckdb.Error)
    assert time.monotonic() - started < 5, "a permanent error must not be retried until the timeout"


@pytest.mark.parametrize("url", ["duckdb://{}/costs.duckdb", "parquet://{}/costs"])
def test_a_path_through_a_file_is_said_so(tmp_path: Path, url: str) -> None:
    # A name on the path that is a file was reported as "a directory on the path does not exist", which it does.
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="a part of the path is a file, not a directory") as caught:
        CostTracker(open_store(url.format(tmp_path / "notes.txt"))).record(amount="1")
    assert str(tmp_path / "notes.txt") in str(caught.value)


def test_copying_a_store_file(db: str, tmp_path: Path) -> None:
    store = DuckDBStore(db)
    store.append([make_entry(i) for i in range(5)])
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    assert DuckDBStore(copy).entries() == store.entries()


def test_an_id_twice_in_one_batch_is_stored_once(db: str, tmp_path: Path) -> None:
    from llmcost import CostTracker

    store = DuckDBStore(db)
    first, second = make_entry(1), make_entry(2)
    same_id = make_entry(3, id=second.id)  # another entry under an id the batch already has: the first one is kept
    store.append([first, second, first, same_id])
    assert store.entries() == [first, second]
    assert store.total() == first.amount + second.amount
    store.close()
    # The tracker's writer inserts from columns (append_columns): the same check.
    with CostTracker(DuckDBStore(tmp_path / "tracked.duckdb")) as tracker:
        tracker.add(first)
        tracker.add(first)
        tracker.flush()
        assert tracker.entries() == [first]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks here")
def test_two_spellings_of_one_file_take_turns_rather_than_fail(tmp_path: Path) -> None:
    # A symlinked directory reaches the same file by another path. DuckDB tells attachments apart by the real file
    # and refuses a second one in the process ("Unique file handle conflict"); the stores' lock was keyed by the path
    # as given, so a read through the link in the middle of a read through the real path failed at once (here with
    # no retries allowed: retry_timeout=0). Keyed by the real path, the second waits for the first.
    import contextlib
    import threading

    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    attached, entries = threading.Event(), [make_entry(i) for i in range(3)]

    class SlowRead(DuckDBStore):
        @contextlib.contextmanager
        def _attached(self, *, write):  # type: ignore[override]
            with super()._attached(write=write) as con:
                if not write and not attached.is_set():
                    attached.set()
                    time.sleep(0.5)  # (a long query: the file attached all along)
                yield con

    real = SlowRead(str(tmp_path / "real" / "costs.duckdb"))
    real.append(entries)
    reading = threading.Thread(target=real.total)
    reading.start()
    assert attached.wait(10)
    through_link = DuckDBStore(str(tmp_path / "link" / "costs.duckdb"), retry_timeout=0)
    assert through_link.total() == sum((e.amount for e in entries), Decimal(0))
    reading.join(10)


def test_a_tracker_made_while_another_program_holds_the_file_waits_a_moment_then_enforces_its_saved_budgets(
    db: str, children: Children
) -> None:
    """A new tracker reads the budgets saved in its store as it is made. With the file locked by another program it
    waited the store's whole ``retry_timeout`` (30 s) for them in its constructor; it now gives up after
    ``FIRST_BUDGETS_SECONDS`` (the open itself waits up to a second), and its writer reads them again every
    ``STORED_BUDGETS_SECONDS``: once the file is free, the saved budget refuses the calls past its limit."""
    saved = CostTracker(DuckDBStore(db))
    llmcost.BudgetManager(saved).create("team-total", Decimal("0.005"), "total")
    saved.close()
    response = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}  # $0.0025
    holder = hold_lock(children, db)
    try:
        started = time.monotonic()
        tracker = CostTracker(DuckDBStore(db))  # (retry_timeout: the default 30 s)
        made_in = time.monotonic() - started
    finally:
        let_go(holder)
    assert made_in < 10, made_in  # (about 2 s: 1 s for the open, 1 s for the budgets)
    call = track_cost(tracker=tracker, estimate=Decimal("0.0025"))(lambda: response)
    deadline = time.monotonic() + 30
    refused = False
    while not refused and time.monotonic() < deadline:  # (the writer's next look, within STORED_BUDGETS_SECONDS)
        try:
            call()
        except llmcost.BudgetExceeded as exc:
            refused = exc.budget == "team-total"
        time.sleep(0.2)
    assert refused  # (the calls made before the writer's look passed unchecked, as with a store that is down)
    tracker.close()
