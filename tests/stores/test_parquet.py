"""ParquetStore: layout, whole files only, many writers, compaction, durability, spill, other readers."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import filelock
import pytest

from llmcost import CostEntry, StoreError
from llmcost.stores import COLUMNS, ParquetStore, _parquet, _parquet_compact

from .conftest import CHILD_PREAMBLE, NASTY, Children, make_entry

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
"""
)

READER = (
    CHILD_PREAMBLE
    + """
import os
store = open_store(sys.argv[1])
counts = []
while not os.path.exists(sys.argv[2]):
    frame = store.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM entries")
    counts.append(int(frame.loc[0, "n"]))
    assert frame.loc[0, "n"] == frame.loc[0, "d"], "a reader saw a row twice"
    time.sleep(0.01)
print(" ".join(map(str, counts)))
"""
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "costs"


def _data_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.parts[-2].startswith("day="))


def test_layout_is_hive_by_utc_day(root: Path) -> None:
    store = ParquetStore(root)
    entries = [make_entry(i, tags={"path": "../../x", "day": "day=1999-01-01"}, resource="../up") for i in range(500)]
    store.append(entries)
    days = sorted({e.timestamp.date().isoformat() for e in entries})
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("day=")) == [f"day={d}" for d in days]
    files = _data_files(root)
    assert len(files) == len(days)
    assert all(f.split("/")[1].startswith("part-") and f.endswith(".parquet") for f in files)
    # Nothing user-controlled reached a path, and no temporary file is left behind.
    assert {p.name for p in root.iterdir()} <= {*(f"day={d}" for d in days), "_llmcost.json", "_lock"}
    assert not list(root.rglob(".*"))
    assert store.entries() == entries


def test_other_engines_read_the_dataset(root: Path) -> None:
    store = ParquetStore(root)
    entries = [make_entry(i) for i in range(300)]
    store.append(entries)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(
        "SELECT day, count(*), CAST(sum(amount) AS VARCHAR) FROM read_parquet(?, hive_partitioning = true) "
        "GROUP BY day ORDER BY day",
        [str(root / "day=*" / "*.parquet")],
    ).fetchall()
    by_day: dict[str, list[CostEntry]] = {}
    for e in entries:
        by_day.setdefault(e.timestamp.date().isoformat(), []).append(e)
    assert [(str(d), n) for d, n, _ in rows] == [(d, len(v)) for d, v in sorted(by_day.items())]
    assert sum(Decimal(s) for _, _, s in rows) == sum((e.amount for e in entries), Decimal(0))
    types = dict(
        con.execute(
            "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = true))",
            [str(root / "day=*" / "*.parquet")],
        ).fetchall()
    )
    assert types["amount"] == "DECIMAL(38,18)"
    assert types["timestamp"] == "TIMESTAMP WITH TIME ZONE"
    assert types["tags"] == "MAP(VARCHAR, VARCHAR)"
    con.close()


def test_pyarrow_reads_the_dataset(root: Path) -> None:
    ds = pytest.importorskip("pyarrow.dataset")
    store = ParquetStore(root)
    entries = [make_entry(i) for i in range(100)]
    store.append(entries)
    table = ds.dataset(str(root), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 100
    assert sorted(table.column("id").to_pylist()) == sorted(e.id for e in entries)


def test_budget_files_are_named_by_hash(root: Path) -> None:
    store = ParquetStore(root)
    store.save_budget("../../../etc/evil", "{}")
    names = os.listdir(root / "_budgets")
    assert len(names) == 1 and len(names[0]) == 64 + len(".json")
    assert not (root.parent.parent / "etc").exists()


def test_a_compaction_record_naming_files_outside_the_store_deletes_nothing(root: Path, tmp_path: Path) -> None:
    # A record in _compactions/ (any writer of a shared dataset can plant one) had its "inputs" joined to the day's
    # folder unchecked: finishing it deleted "../../victim.txt", outside the store.

    victim = tmp_path / "victim.txt"
    victim.write_text("important")
    store = ParquetStore(root)
    store.append([make_entry(1)])
    (day,) = root.glob("day=*")
    (output,) = [f.name for f in day.iterdir()]
    (root / "_compactions").mkdir(exist_ok=True)
    for n, inputs in enumerate([["../../victim.txt"], [str(victim)], ["part-x/../../../victim.txt"]]):
        record = {"day": day.name.removeprefix("day="), "output": output, "inputs": inputs}
        (root / "_compactions" / f"x{n}.json").write_text(json.dumps(record))
    ParquetStore(root).compact()
    assert victim.read_text() == "important"
    assert len(ParquetStore(root).entries()) == 1


def test_bad_arguments(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="compression"):
        ParquetStore(root, compression="lz5")
    with pytest.raises(ValueError, match="retry_timeout"):
        ParquetStore(root, retry_timeout="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_timeout"):
        ParquetStore(root, retry_timeout=float("nan"))
    with pytest.raises(ValueError, match=r"directory must not contain a NUL character"):
        ParquetStore(str(tmp_path) + "/a\0b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        ParquetStore(tmp_path / "file")


def test_concurrent_writers_and_a_reader(root: Path, tmp_path: Path, children: Children) -> None:
    url = f"parquet://{root}"
    ParquetStore(root)
    stop = tmp_path / "stop"
    writers, batches, size = 4, 15, 20
    reader = children.spawn(READER, url, str(stop))
    procs = [children.spawn(WRITER, url, str(n), str(batches), str(size)) for n in range(writers)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    stop.touch()
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    counts = [int(c) for c in out.split()]
    assert counts and counts == sorted(counts)
    assert all(c % size == 0 for c in counts), "a reader saw part of a file"
    store = ParquetStore(root)
    frame = store.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM entries")
    assert frame.loc[0, "n"] == frame.loc[0, "d"] == writers * batches * size


def test_kill_9_keeps_what_append_acknowledged(root: Path, children: Children) -> None:
    size = 40
    proc = children.spawn(WRITER, f"parquet://{root}", "3", "-1", str(size))
    acked = []
    assert proc.stdout is not None
    while len(acked) < 5:
        line = proc.stdout.readline()
        assert line, "writer died"
        acked.append(int(line.split()[1]))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ids = {e.id for e in ParquetStore(root).entries()}
    for b in acked:
        assert {f"w03-{b * size + k:08d}" for k in range(size)} <= ids
    assert len(ids) % size == 0


#: A tracker flushes a batch over three days, and a real signal reaches the process while the batch's files are
#: being put in place: after the first day's rename (argv[2] "rename") or while the directories are fsynced, every
#: day in place ("fsync"). argv[3]: SIGINT (KeyboardInterrupt) or SIGTERM with the user's handler (SystemExit).
INTERRUPTED = """
import os, signal, sys
from datetime import datetime, timedelta, timezone
signal.signal(signal.SIGINT, signal.default_int_handler)  # as an interactive program starts (see test_durability)
import llmcost
from llmcost.stores import _parquet

path, where, how = sys.argv[1:4]
tracker = llmcost.CostTracker(llmcost.ParquetStore(path), flush_interval=3600)
start = datetime(2024, 5, 1, 8, tzinfo=timezone.utc)
for i in range(10):
    tracker.add(llmcost.CostEntry(id=f"e{i}", timestamp=start + timedelta(hours=5 * i), amount="1.00"))
if how == "SIGTERM":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(3))
fired = []

def fire(now):
    if now and not fired:
        fired.append(True)
        os.kill(os.getpid(), getattr(signal, how))  # handled at once, in the middle of the store's write

real_replace, real_fsync_dir = os.replace, _parquet.fsync_dir

def replace(source, target):
    real_replace(source, target)
    fire(where == "rename" and target.endswith(".parquet"))

def fsync_dir(folder):
    real_fsync_dir(folder)
    fire(where == "fsync")

os.replace, _parquet.fsync_dir = replace, fsync_dir
try:
    tracker.flush()
except (KeyboardInterrupt, SystemExit) as exc:
    print("interrupted", type(exc).__name__, tracker.pending(), flush=True)
tracker.flush()  # what the exit flush does next
"""


@pytest.mark.parametrize("where", ["rename", "fsync"])
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_an_interrupt_while_a_batch_is_put_in_place_stores_it_once(
    root: Path, children: Children, where: str, how: str
) -> None:
    """The interrupt reaches the caller (a tracker, which puts the batch back and flushes it again), and the batch
    is stored once: the days already in place are not written again, the others are."""
    proc = children.spawn(INTERRUPTED, str(root), where, how)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.split() == ["interrupted", "KeyboardInterrupt" if how == "SIGINT" else "SystemExit", "10"], err
    frame = ParquetStore(root).query("SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(amount) AS s FROM entries")
    assert (frame.loc[0, "n"], frame.loc[0, "ids"], frame.loc[0, "s"]) == (10, 10, Decimal(10))
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]  # nothing left behind


def test_compact_merges_each_day_exactly(root: Path) -> None:
    store = ParquetStore(root)
    entries = [make_entry(i) for i in range(400)]
    for k in range(0, 400, 40):
        store.append(entries[k : k + 40])
    days = len({e.timestamp.date() for e in entries})
    before = len(_data_files(root))
    assert before > days
    assert store.compact() == before - days
    assert len(_data_files(root)) == days
    assert store.entries() == entries
    assert store.compact() == 0
    # A duplicated file (say, a copy restored by hand) is merged away too.
    one = root / _data_files(root)[0]
    shutil.copy(one, one.with_name("part-copy.parquet"))
    store.compact()
    assert store.entries() == entries


def test_compact_while_a_writer_writes(root: Path, tmp_path: Path, children: Children) -> None:
    url = f"parquet://{root}"
    store = ParquetStore(root)
    size = 10
    writer = children.spawn(WRITER, url, "1", "60", str(size))
    stop = tmp_path / "stop"
    reader = children.spawn(READER, url, str(stop))
    compactions = 0
    while writer.poll() is None:
        store.compact()
        compactions += 1
        frame = store.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM entries")
        assert frame.loc[0, "n"] == frame.loc[0, "d"]
        assert frame.loc[0, "n"] % size == 0
    _, err = writer.communicate()
    assert writer.returncode == 0, err
    stop.touch()
    rout, rerr = reader.communicate(timeout=60)
    assert reader.returncode == 0, rerr
    assert all(int(c) % size == 0 for c in rout.split())
    store.compact()
    assert compactions > 1
    got = store.entries()
    assert len(got) == len({e.id for e in got}) == 60 * size
    files = _data_files(root)
    assert len(files) == len({f.split("/")[0] for f in files})  # one file per day


def test_an_interrupted_compaction_never_double_counts(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ParquetStore(root)
    entries = [make_entry(i) for i in range(60)]
    for k in range(0, 60, 10):
        store.append(entries[k : k + 10])
    total = sum((e.amount for e in entries), Decimal(0))

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("killed between the rename and the deletes")

    monkeypatch.setattr(_parquet_compact, "_finish", crash)
    with pytest.raises(KeyboardInterrupt):
        store.compact()
    monkeypatch.undo()
    # The merged file and its inputs are both there; the record keeps readers right.
    assert len(os.listdir(root / "_compactions")) == 1
    assert store.total() == total
    assert store.entries() == entries
    assert len(store.query("SELECT id FROM entries")) == 60
    # The next open finishes the compaction.
    again = ParquetStore(root)
    assert os.listdir(root / "_compactions") == []
    assert again.entries() == entries


def test_a_compaction_interrupted_before_the_rename_is_undone(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ParquetStore(root)
    entries = [make_entry(i) for i in range(30)]
    for k in range(0, 30, 10):
        store.append(entries[k : k + 10])
    files = _data_files(root)
    real_replace = os.replace

    def crash(src: str, dst: str) -> None:
        if str(src).endswith(".parquet.tmp"):
            raise KeyboardInterrupt("killed before the rename")
        real_replace(src, dst)

    monkeypatch.setattr(_parquet.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.compact()
    monkeypatch.undo()
    assert store.entries() == entries
    ParquetStore(root)
    assert _data_files(root) == files
    assert os.listdir(root / "_compactions") == []
    assert not list(root.rglob(".*.tmp"))


def test_spill_and_replay(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ParquetStore(root, retry_timeout=0.05)
    first = [make_entry(i) for i in range(10)]
    store.append(first)

    def broken(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ParquetStore, "_write_day", broken)
    batch = [make_entry(i) for i in range(10, 200)]
    store.append(batch)  # acknowledged: spilled
    spilled = list((root / "_spill").iterdir())
    assert len(spilled) == 1
    saved = spilled[0].read_bytes()
    monkeypatch.undo()

    again = ParquetStore(root)  # replays on open
    assert again.entries() == first + batch
    assert list((root / "_spill").iterdir()) == []
    # Replaying the same file again (crash between the write and the delete) adds nothing twice.
    spilled[0].write_bytes(saved)
    store.append([])
    assert store.entries() == first + batch
    assert list((root / "_spill").iterdir()) == []


def test_spill_fails_loudly_when_it_cannot_be_written(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root.mkdir()
    (root / "file-not-dir").write_text("x")
    # The fallback locations cannot take it either: the state directory and the temp directory are files.
    monkeypatch.setenv("XDG_STATE_HOME", str(root / "file-not-dir"))
    monkeypatch.setattr(tempfile, "tempdir", str(root / "file-not-dir"))
    store = ParquetStore(root, retry_timeout=0, spill_dir=str(root / "file-not-dir"))

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ParquetStore, "_write_day", broken)
    with pytest.raises(StoreError, match="spilling the entries failed too"):
        store.append([make_entry(1)])


def test_a_batch_with_a_day_that_cannot_be_written_is_spilled_whole(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ParquetStore(root, retry_timeout=0.05)
    entries = [make_entry(i) for i in range(400)]  # three days
    real = ParquetStore._write_day
    calls = []

    def second_day_fails(self: ParquetStore, day: int, *args: object) -> object:
        calls.append(day)
        if len(set(calls)) == 2:
            raise OSError(5, "Input/output error")
        return real(self, day, *args)

    monkeypatch.setattr(ParquetStore, "_write_day", second_day_fails)
    store.append(entries)
    monkeypatch.undo()
    assert _data_files(root) == [] and not list(root.glob("day=*/.*.tmp"))  # all or nothing: nothing in place
    spilled = (root / "_spill").iterdir()
    lines = next(spilled).read_text().splitlines()
    assert len(lines) == 400
    assert ParquetStore(root).entries() == entries


def test_a_day_written_is_not_written_again(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk goes away between renaming one day's file into place and the next: the days in place stay, only
    the others are spilled, and the replay adds each entry once."""
    store = ParquetStore(root, retry_timeout=0.05)
    entries = [make_entry(i) for i in range(400)]  # three days
    real_replace = os.replace
    renames = []

    def second_rename_fails(src: str, dst: str) -> None:
        if str(dst).endswith(".parquet"):
            renames.append(dst)
            if len(renames) == 2:
                raise OSError(errno.EROFS, "Read-only file system")
        real_replace(src, dst)

    monkeypatch.setattr(_parquet.os, "replace", second_rename_fails)
    store.append(entries)
    monkeypatch.undo()
    spilled = (root / "_spill").iterdir()
    lines = next(spilled).read_text().splitlines()
    assert 0 < len(lines) < 400  # only the days not written
    assert len(_data_files(root)) == 1
    assert ParquetStore(root).entries() == entries


def test_nasty_tags_in_files(root: Path) -> None:
    store = ParquetStore(root)
    entries = [make_entry(i, tags={k or "empty": k for k in NASTY}) for i in range(5)]
    store.append(entries)
    assert store.entries() == entries
    assert json.loads((root / "_llmcost.json").read_text())["schema_version"] >= 1


def _unstorable(entry: CostEntry) -> CostEntry:
    """``entry`` with an amount beyond DECIMAL(38, 18). ``CostEntry`` refuses such amounts, so this forces one in,
    standing for any entry a store cannot take."""
    object.__setattr__(entry, "amount", Decimal("1E+25"))
    return entry


def test_a_batch_duckdb_cannot_take_writes_nothing(root: Path) -> None:
    store = ParquetStore(root)
    good = [make_entry(i) for i in range(300)]  # three days
    bad = _unstorable(make_entry(301))
    with pytest.raises(StoreError, match="cannot be stored") as caught:
        store.append([*good, bad])
    assert isinstance(caught.value.__cause__, duckdb.Error)
    assert store.entries() == []
    assert _data_files(root) == []
    store.append(good)
    assert store.entries() == good


@pytest.mark.parametrize("distinct_tags", [3, _parquet.PARAM_TAG_MAPS + 50])
def test_a_batch_out_of_time_order_goes_to_its_days(root: Path, distinct_tags: int) -> None:
    # Few distinct tag maps travel as a query parameter, many as a registered table: both must land exactly.
    entries = [make_entry(i, tags={"n": str(i % distinct_tags), "nasty": NASTY[i % len(NASTY)]}) for i in range(400)]
    shuffled = entries[1::2] + entries[::2]  # every day's rows in two runs
    ParquetStore(root).append(shuffled)
    con = duckdb.connect()
    for folder in sorted(root.glob("day=*")):
        (path,) = folder.glob("*.parquet")  # one file per day
        days = con.execute(
            "SELECT DISTINCT CAST(timezone('UTC', \"timestamp\") AS DATE) FROM read_parquet(?)", [str(path)]
        ).fetchall()
        assert [(d.isoformat(),) for (d,) in days] == [(folder.name[4:],)]
    con.close()
    assert ParquetStore(root).entries() == entries


def test_an_out_of_order_batch_duckdb_cannot_take_writes_nothing(root: Path) -> None:
    store = ParquetStore(root)
    good = [make_entry(i) for i in range(300)]  # three days
    bad = _unstorable(make_entry(299, id="bad"))  # the last day, first in the batch
    with pytest.raises(StoreError, match="cannot be stored"):
        store.append([bad, *good[::-1]])
    assert _data_files(root) == []


def test_files_appear_by_rename_only(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ParquetStore(root)
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        renames.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(_parquet.os, "replace", spy)
    store.append([make_entry(i) for i in range(300)])
    store.compact()
    data = [(s, d) for s, d in renames if d.endswith(".parquet")]
    assert len(data) >= 3
    for src, dst in data:
        assert os.path.dirname(src) == os.path.dirname(dst)  # same directory: an atomic rename
        assert os.path.basename(src).startswith(".") and src.endswith(".tmp")  # never matches *.parquet


def test_compact_sweeps_old_temporary_files(root: Path) -> None:
    store = ParquetStore(root)
    store.append([make_entry(0)])
    day = next(root.glob("day=*"))
    old, fresh = day / ".part-dead.parquet.tmp", day / ".part-live.parquet.tmp"
    old.write_bytes(b"half a file")
    fresh.write_bytes(b"being written")
    os.utime(old, (0, 0))
    store.compact()
    assert not old.exists() and fresh.exists()
    assert store.entries() == [make_entry(0)]


def test_threads_share_a_store(root: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = ParquetStore(root)
    batches = [[make_entry(n * 1000 + i * 37) for i in range(12)] for n in range(12)]  # each spans several days

    def work(batch: list[CostEntry]) -> None:
        store.append(batch)
        store.total(tags={"team": "ads"})

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(work, batches))
    assert store.entries() == sorted((e for b in batches for e in b), key=lambda e: (e.timestamp, e.id))


def test_open_append_read_do_not_wait_for_a_compaction(root: Path) -> None:
    ParquetStore(root).save_budget("b", "{}")  # the first write creates the dataset
    held = filelock.FileLock(str(root / "_lock"))  # as a long compaction in another process would hold it
    held.acquire()
    try:
        started = time.monotonic()
        store = ParquetStore(root, retry_timeout=5)
        store.append([make_entry(1)])
        assert store.entries() == [make_entry(1)]
        assert time.monotonic() - started < 2
        with pytest.raises(StoreError, match="could not lock"):
            ParquetStore(root, retry_timeout=0.2).compact()
    finally:
        held.release()
    assert ParquetStore(root, retry_timeout=0.2).compact() == 0  # released: compaction gets in


def test_polars_reads_the_dataset_as_documented(root: Path) -> None:
    pl = pytest.importorskip("polars")
    store = ParquetStore(root)
    entries = [make_entry(i) for i in range(300)]
    store.append(entries)
    lf = pl.scan_parquet(str(root / "day=*" / "*.parquet"), hive_partitioning=True)
    if not hasattr(pl.col("tags"), "map"):
        pytest.skip("Polars before 2.0 has no map type")
    got = (
        lf.with_columns(team=pl.col("tags").map.get("team"))
        .group_by("team")
        .agg(cost=pl.col("amount").sum(), calls=pl.len())
        .collect()
    )
    ads = [e for e in entries if e.tags.get("team") == "ads"]
    row = got.filter(pl.col("team") == "ads").row(0, named=True)
    assert row["calls"] == len(ads)
    assert row["cost"] == sum((e.amount for e in ads), Decimal(0))


def _plain_calls(day: int, n: int) -> list[CostEntry]:
    """What ``tracker.record(amount="0.40", category="compute")`` records: no resource, model, provider or tags."""
    ts = make_entry(0).timestamp + timedelta(days=day)
    return [
        CostEntry(id=f"plain-{day}-{i:04d}", timestamp=ts + timedelta(seconds=i), amount="0.40", category="compute")
        for i in range(n)
    ]


def _schemas(root: Path) -> dict[str, object]:
    pq = pytest.importorskip("pyarrow.parquet")
    return {str(p.relative_to(root)): pq.read_schema(p) for p in sorted(root.glob("day=*/*.parquet"))}


def test_every_file_has_the_declared_schema(root: Path) -> None:
    """A day of plain calls (every resource, model, provider None; no tags) gets the same schema as any other day,
    so engines that require one schema per dataset (Spark, polars) read it."""
    pa = pytest.importorskip("pyarrow")
    store = ParquetStore(root)
    store.append(_plain_calls(0, 5))
    store.append([make_entry(i) for i in range(300)])  # three days, every optional field set on some entries
    store.append(_plain_calls(5, 3) + _plain_calls(6, 2))  # a batch of two days, both without values
    schemas = _schemas(root)
    assert len(schemas) == 6
    first = next(iter(schemas.values()))
    for name, schema in schemas.items():
        assert schema.equals(first, check_metadata=False), (name, schema)
    assert first.field("resource").type == pa.string()
    assert first.field("model").type == pa.string()
    assert first.field("amount").type == pa.decimal128(38, 18)
    assert first.field("input_tokens").type == pa.int64()
    assert first.names == list(COLUMNS)
    store.append(_plain_calls(0, 2))
    assert store.compact() == 2  # the first day: three files; merged from Parquet inputs, same schema too
    assert all(schema.equals(first, check_metadata=False) for schema in _schemas(root).values())


def test_polars_reads_the_whole_dataset(root: Path) -> None:
    pl = pytest.importorskip("polars")
    store = ParquetStore(root)
    entries = _plain_calls(0, 5) + [make_entry(i) for i in range(300)] + _plain_calls(5, 3)
    store.append(entries)
    frame = pl.scan_parquet(str(root / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert frame.height == len(entries)
    assert frame["amount"].sum() == sum((e.amount for e in entries), Decimal(0))
    assert frame["resource"].null_count() == sum(e.resource is None for e in entries)


def test_files_of_an_older_schema_read_total_and_compact(root: Path) -> None:
    """Files written before ``pricing`` existed (and with the old NULL-only resource column, INT32) read with
    ``pricing`` at its default, total, summarise and compact, even when no file in the read has the column."""
    store = ParquetStore(root)
    entries = [e for d in (0, 1) for e in _plain_calls(d, 4)]
    store.append(entries[:2])
    store.append(entries[2:4])
    store.append(entries[4:])  # the second day: one file
    con = duckdb.connect()
    for path in sorted(root.glob("day=*/*.parquet")):
        old = path.with_name("part-old" + path.name[len("part-") :])
        con.execute(
            "COPY (SELECT * EXCLUDE (pricing, resource), CAST(NULL AS INTEGER) AS resource FROM read_parquet(?)) "
            "TO ? (FORMAT parquet)",
            [str(path), str(old)],
        )
        path.unlink()
    con.close()
    pq = pytest.importorskip("pyarrow.parquet")
    assert all("pricing" not in pq.read_schema(p).names for p in root.glob("day=*/*.parquet"))
    total = sum((e.amount for e in entries), Decimal(0))

    assert store.total() == total
    assert store.total(since=entries[4].timestamp) == total / 2
    assert store.entries() == entries  # pricing reads as its default, "given"
    assert store.scan()["pricing"].tolist() == ["given"] * len(entries)
    assert store.summary().by_category == {"compute": total}
    assert store.query("SELECT count(*) AS n, count(pricing) AS p FROM entries").loc[0].tolist() == [8, 0]

    assert store.compact() == 1  # the first day's two files merged; the second day's one file rewritten
    schemas = _schemas(root)
    assert len(schemas) == 2
    fresh = ParquetStore(root.parent / "fresh")
    fresh.append(_plain_calls(0, 1))
    (want,) = _schemas(root.parent / "fresh").values()
    assert all(s.equals(want, check_metadata=False) for s in schemas.values())  # type: ignore[attr-defined]
    assert store.entries() == entries
    assert store.total() == total


def test_a_file_with_an_extra_day_column_reads_with_the_others(tmp_path: Path) -> None:
    """Files with exactly the declared columns are read without ``union_by_name``; a file of the store's that other
    engines wrote back with the hive ``day`` column still reads with them, wherever it sorts among the files."""
    store = ParquetStore(tmp_path / "costs")
    entries = [make_entry(i) for i in range(3)]
    store.append(entries)
    day = next((tmp_path / "costs").glob("day=*"))
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT *, 'x' AS day FROM read_parquet(?, hive_partitioning = false)) TO ? (FORMAT parquet)",
        [str(next(day.glob("part-*.parquet"))), str(day / "part-(day).parquet")],  # sorts before the store's file
    )
    con.close()
    fresh = ParquetStore(tmp_path / "costs")
    assert fresh.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM entries").iloc[0].tolist() == [6, 3]
    assert fresh.total() == 2 * sum(e.amount for e in entries)
    assert fresh.foreign_files() == []


def _one_scan_facts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, str | None], frozenset[str]]]:
    """The ``constants`` and ``never_null`` each one-scan frame read is given, recorded as the frames are read."""
    from llmcost.stores import _sql

    seen: list[tuple[dict[str, str | None], frozenset[str]]] = []
    read = _sql._one_scan_frame

    def recording(*args: object, constants: dict[str, str | None], never_null: frozenset[str], **kw: object) -> object:
        seen.append((dict(constants), never_null))
        return read(*args, constants=constants, never_null=never_null, **kw)

    monkeypatch.setattr(_sql, "_one_scan_frame", recording)
    return seen


def _frames_agree(store: ParquetStore, **filters: object) -> None:
    """``store``'s Arrow frame read in one scan is the frame of plain rows: values, dtypes, each amount's digits and
    each object's type."""
    import pandas as pd

    from llmcost.stores import _sql

    with pd.option_context("mode.string_storage", "pyarrow"):
        got = store.scan(**filters)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_sql, "_one_scan_frame", lambda *args, **kw: None)  # the frame from plain rows instead
            want = store.scan(**filters)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for name in got.columns:
        if got[name].dtype == object:
            assert [(type(v), repr(v)) for v in got[name]] == [(type(v), repr(v)) for v in want[name]], name


def test_a_frame_leaves_out_columns_the_statistics_show_to_hold_one_value(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column every file's statistics show to hold one value (or only NULL) is not read: the frame repeats it,
    and is the frame of plain rows. One file that differs, in a day the read covers, makes the column read again;
    a read of days without that file leaves it out still."""
    pytest.importorskip("pyarrow")
    from llmcost import Usage

    seen = _one_scan_facts(monkeypatch)
    entries = [
        make_entry(
            i,
            description="batch job",
            latency_ms=None,
            service_tier=None,
            canonical_model=None,
            pricing="catalog@1",
            usage=Usage(100 + i, 20, 0, 0, 0),
        )
        for i in range(60)
    ]
    store = ParquetStore(root)
    for start in range(0, 60, 15):  # files in every day of the three
        store.append(entries[start : start + 15])
    _frames_agree(store)
    assert seen[-1][1] == {
        "currency",
        "category",
        "description",
        "pricing",
        *("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"),
    }  # resource, model and provider are NULL in some rows
    assert seen[-1][0] == {
        "currency": "USD",
        "description": "batch job",
        "pricing": "catalog@1",
        "output_tokens": "20",
        "cache_read_tokens": "0",
        "cache_write_tokens": "0",
        "reasoning_tokens": "0",
        "latency_ms": None,
        "service_tier": None,
        "canonical_model": None,
        "units": None,
    }
    assert store.scan()["description"].tolist() == ["batch job"] * 60
    assert store.scan()["units"].tolist() == [{}] * 60

    last = entries[-1]  # one more file, in a day of its own, with another description and NULL-only columns set
    other = make_entry(
        99,
        timestamp=last.timestamp + timedelta(days=2),
        description="",
        latency_ms=0.0,
        service_tier="flex",
        pricing="catalog@1",
        usage=Usage(1, 2, 0, 0, 0, units={"web_searches": 2}),
    )
    store.append([other])
    _frames_agree(store)
    assert seen[-1][0] == {
        "currency": "USD",
        "pricing": "catalog@1",
        "cache_read_tokens": "0",
        "cache_write_tokens": "0",
        "reasoning_tokens": "0",
        "canonical_model": None,
    }
    assert store.scan()["description"].tolist() == ["batch job"] * 60 + [""]
    assert store.scan()["service_tier"].tolist()[-2:] == [None, "flex"]
    _frames_agree(store, until=last.timestamp + timedelta(seconds=1))  # the days without that file
    assert "description" in seen[-1][0]
    assert "units" in seen[-1][0]
    _frames_agree(store, limit=7)
    _frames_agree(store, model=["gpt-4o"])  # a filter on a column read; and one on a constant column
    _frames_agree(store, category="llm_inference")
    assert len(store.scan(provider=["openai"], since=entries[0].timestamp)) == sum(
        e.provider == "openai" for e in [*entries, other]
    )


def test_a_frame_over_files_of_an_older_schema_reads_every_column(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written before a column was added read NULL in it whatever the statistics of the others say: a frame
    that reads any such file leaves no column out."""
    pytest.importorskip("pyarrow")
    seen = _one_scan_facts(monkeypatch)
    store = ParquetStore(root)
    store.append([make_entry(i, service_tier="flex", canonical_model="gpt-4o") for i in range(6)])
    path = sorted(root.glob("day=*/*.parquet"))[0]
    old = path.with_name("part-old" + path.name[len("part-") :])
    with duckdb.connect() as con:
        copy = "COPY (SELECT * EXCLUDE (canonical_model) FROM read_parquet(?)) TO ? (FORMAT parquet)"
        con.execute(copy, [str(path), str(old)])
    path.unlink()
    _frames_agree(ParquetStore(root))
    assert seen[-1] == ({}, frozenset())


_GROUP = 2048  # rows per row group: DuckDB's smallest


@pytest.mark.parametrize(
    ("values", "name", "found"),
    [
        (["'a'", "'a'", "'a'"], "model", "a"),
        (["'a'", "'a'", "'b'"], "model", "absent"),  # each row group holds one value, not the same one
        (["'a'", "NULL", "'a'"], "model", "absent"),
        (["NULL", "NULL", "NULL"], "model", None),
        (["''", "''", "''"], "description", ""),
        (["'it''s, é'"] * 3, "pricing", "it's, é"),
        (["'" + "x" * 300 + "'"] * 3, "model", "absent"),  # statistics cut short (and marked inexact)
        (["7", "7", "7"], "input_tokens", "7"),
        (["0", "0", "-1"], "input_tokens", "absent"),
    ],
)
def test_constant_columns_are_only_what_the_statistics_prove(
    tmp_path: Path, values: list[str], name: str, found: str | None
) -> None:
    """A column is taken as holding one value only where every row group's statistics show that value, exactly, and
    no NULL; or only NULL."""
    from llmcost._rows import SQL_TYPES
    from llmcost.stores._parquet_layout import COLUMN_STATISTICS, column_facts

    path = str(tmp_path / "f.parquet")
    groups = " ".join(f"WHEN i // {_GROUP} = {g} THEN CAST({v} AS {SQL_TYPES[name]})" for g, v in enumerate(values))
    with duckdb.connect() as con:
        con.execute("SET threads = 1")
        con.execute(
            f'COPY (SELECT i, CASE {groups} END AS "{name}" FROM range({len(values) * _GROUP}) AS t(i)) '
            f"TO ? (FORMAT parquet, ROW_GROUP_SIZE {_GROUP})",
            [path],
        )
        meta = "SELECT count(*) FROM parquet_metadata(?) WHERE path_in_schema = ?"
        assert con.execute(meta, [path, name]).fetchone() == (len(values),)  # a row group per value
        facts = column_facts(con.execute(COLUMN_STATISTICS, [[path]]).fetchall())[path]
    assert facts.constants.get(name, "absent") == found
    assert (name in facts.never_null) == ("NULL" not in values)
    assert "i" not in facts.constants  # not a column of the store's
    assert "i" not in facts.never_null


@pytest.mark.parametrize(
    ("name", "values", "found"),
    [
        ("latency_ms", ["0.0", "-0.0"], "absent"),  # equal as numbers, not as values
        ("latency_ms", ["1.0", "'NaN'"], "absent"),  # NaN is left out of the statistics
        ("latency_ms", ["1.0", "1.0"], "absent"),  # doubles: only NULL is taken
        ("latency_ms", ["NULL", "NULL"], None),
        ("units", ["NULL", "NULL"], None),
        ("units", ["NULL", "MAP {}"], None),  # read alike: no units
        ("units", ["NULL", "MAP {'web_searches': 1}"], "absent"),
        ("tags", ["MAP {}", "MAP {}"], "absent"),  # never taken
        ("id", ["'a'", "'a'"], "absent"),
        ("amount", ["1", "1"], "absent"),
    ],
)
def test_constant_columns_of_other_types(tmp_path: Path, name: str, values: list[str], found: str | None) -> None:
    """Doubles and maps are only taken when every value is NULL (a NULL map and an empty one read alike), and the
    columns a frame reads anyway never are."""
    from llmcost._rows import SQL_TYPES
    from llmcost.stores._parquet_layout import COLUMN_STATISTICS, ColumnFacts, column_facts

    path = str(tmp_path / "f.parquet")
    rows = " UNION ALL ".join(f'SELECT CAST({v} AS {SQL_TYPES[name]}) AS "{name}"' for v in values)
    with duckdb.connect() as con:
        con.execute(f"COPY ({rows}) TO ? (FORMAT parquet)", [path])
        facts = column_facts(con.execute(COLUMN_STATISTICS, [[path]]).fetchall()).get(path, ColumnFacts())
    assert facts.constants.get(name, "absent") == found
    assert name not in facts.never_null  # only text and integer columns are taken


def test_a_file_with_null_in_a_defaulted_column_reads_its_default(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A column the statistics show never NULL is read as stored; one file (another engine's, say) with NULL in it
    makes every read of it give the default there again, as the plain read does."""
    pytest.importorskip("pyarrow")
    seen = _one_scan_facts(monkeypatch)
    store = ParquetStore(root)
    entries = [make_entry(i) for i in range(12)]
    store.append(entries)
    _frames_agree(store)
    assert {"category", "input_tokens"} <= seen[-1][1]
    day = sorted(root.glob("day=*"))[-1]
    with duckdb.connect() as con:
        con.execute(
            "COPY (SELECT * REPLACE (CAST(NULL AS VARCHAR) AS category, CAST(NULL AS BIGINT) AS input_tokens, "
            "'x' || id AS id) FROM read_parquet(?)) TO ? (FORMAT parquet)",
            [str(next(day.glob("part-*.parquet"))), str(day / "part-other.parquet")],
        )
    fresh = ParquetStore(root)
    _frames_agree(fresh)
    assert not {"category", "input_tokens"} & seen[-1][1]
    frame = fresh.scan()
    other = frame[frame["id"].str.startswith("x")]
    assert len(other) and set(other["category"]) == {"llm_inference"} and set(other["input_tokens"]) == {0}


def test_a_read_finds_its_own_files_while_a_read_of_another_thread_cuts_the_cache_down(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store object remembers what it found in each file. A whole store's read is paused just after adding its files
    # to that cache, while another thread reads one day and the cache is cut down (a store with thousands of files
    # a day passes the slack between compactions; here the slack is 0) that finds a new day's file: looked up in the
    # cut cache again, the paused read took its files for foreign ones and its total() read 0.
    import sys
    import threading

    monkeypatch.setattr(_parquet, "CACHE_SLACK", 0)
    entries = [make_entry(i, timestamp=make_entry(0).timestamp + timedelta(days=d)) for d, i in enumerate(range(6))]
    entries = [make_entry(i, id=f"{i:026x}", timestamp=e.timestamp) for i, e in enumerate(entries)]
    for entry in entries:
        ParquetStore(root).append([entry])  # (a file a day, six days)
    store = ParquetStore(root)
    last_day = entries[-1].timestamp.replace(hour=0, minute=0, second=0, microsecond=0)  # (the sixth day)
    paused, resume = threading.Event(), threading.Event()
    totals: list[Decimal] = []

    def pause_once_the_cache_has_them(frame, event, arg) -> None:
        in_own = event == "c_return" and frame.f_code.co_name == "_own" and getattr(arg, "__name__", "") == "update"
        if in_own and not paused.is_set() and len(store._own_files) == len(entries):
            paused.set()
            resume.wait(10)

    def whole() -> None:
        sys.setprofile(pause_once_the_cache_has_them)
        try:
            totals.append(store.total())
        finally:
            sys.setprofile(None)

    reading = threading.Thread(target=whole)
    reading.start()
    assert paused.wait(10), "the whole store's read never filled the cache"
    later = make_entry(6, id=f"{6:026x}", timestamp=entries[-1].timestamp + timedelta(days=1))
    store.append([later])  # (a new day's file, which the cache has not seen)
    one_day = store.total(since=last_day + timedelta(days=1))  # (checks that one file)
    resume.set()
    reading.join(10)
    assert one_day == later.amount
    assert totals == [sum((e.amount for e in entries), Decimal(0))]
    assert store.foreign_files() == []
