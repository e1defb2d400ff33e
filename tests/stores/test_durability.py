"""Nothing recorded is lost (issue 12, the store side): a store that cannot be written spills to its own directory or,
when that cannot take it, a per-user fallback, and the next open replays every spill exactly once; entries a store
cannot hold are set aside, never dropped; foreign files are left alone; read-only stores read; every failure is a
``StoreError`` naming the path, at once when the cause is permanent.

Tests run as root here and in CI, and root ignores file permissions. A child that must meet them drops the
capabilities that let root override them (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``, ``CAP_FOWNER``): it stays
uid 0, so it can still run the interpreter (which may live under ``/root``) and read the checkout, but a directory
made ``0o555`` refuses it as it refuses any user. As a non-root user the child runs as that user. A read-only mount
and a full disk are real: a tmpfs mounted in a private mount namespace (``unshare -m``); those tests skip, saying
why, where the OS refuses that.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

import llmcost
from llmcost import CostEntry, StoreError, Usage
from llmcost.stores import CostStore, DuckDBStore, MemoryStore, ParquetStore, open_store
from llmcost.stores._locations import fallback_dirs

from .conftest import StoreFactory, child_env, make_entry

_PR_CAPBSET_DROP = 24
_CAPS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _bound_by_permissions() -> None:  # pragma: no cover - runs in the child between fork and exec
    """``preexec_fn``: as root, give up the capabilities that override file permissions, for good (the bounding
    set too, so the exec does not give them back); where the OS refuses that, become ``nobody`` instead (which
    works where ``nobody`` can run the interpreter and read the checkout)."""
    if os.geteuid() != 0:
        return
    try:
        _drop_capabilities()
    except OSError:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)


def _drop_capabilities() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    for cap in _CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    mask = ~sum(1 << cap for cap in _CAPS) & 0xFFFFFFFF
    data[0].effective &= mask
    data[0].permitted &= mask
    data[0].inheritable &= mask
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _spawn(code: str, *args: str, bound: bool = True, prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        preexec_fn=_bound_by_permissions if bound else None,
    )


def _run(code: str, *args: str, bound: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = _spawn(code, *args, bound=bound)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _chmod_tree(root: Path, *, writable: bool) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644 if writable else 0o444)
        os.chmod(folder, 0o755 if writable else 0o555)


@pytest.fixture
def store_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "store"
    folder.mkdir()
    yield folder
    _chmod_tree(folder, writable=True)


def _url(kind: str, folder: Path) -> str:
    return f"duckdb://{folder / 'costs.duckdb'}" if kind == "duckdb" else f"parquet://{folder / 'costs'}"


def _path(kind: str, folder: Path) -> str:
    return str(folder / "costs.duckdb") if kind == "duckdb" else str(folder / "costs")


def _counts(store: CostStore) -> tuple[int, int, Decimal]:
    frame = store.query("SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(amount) AS total FROM entries")
    return int(frame.loc[0, "n"]), int(frame.loc[0, "ids"]), Decimal(frame.loc[0, "total"] or 0)


def _fallback_spills(kind: str, folder: Path) -> list[str]:
    found = []
    for directory in fallback_dirs(_path(kind, folder), "spill"):
        if os.path.isdir(directory):
            found += [n for n in os.listdir(directory) if n.endswith(".jsonl")]
    return found


# A run that records through a tracker: half, flushed; then (after the parent's "go") the rest, flushed every ten,
# the last few only by the tracker's exit flush.
WRITER = """
import sys
from decimal import Decimal
import llmcost

url, total, half = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tracker = llmcost.CostTracker(url)
for k in range(half):
    tracker.record(amount=Decimal("0.001"), category="compute", resource="writer", tags={"k": str(k)})
tracker.flush()
print("half", flush=True)
sys.stdin.readline()
for k in range(half, total):
    tracker.record(amount=Decimal("0.001"), category="compute", resource="writer", tags={"k": str(k)})
    if k % 10 == 9 and k < total - 5:
        tracker.flush()
"""


def _writer_until_half(url: str, total: int, half: int, **kwargs: object) -> subprocess.Popen[str]:
    proc = _spawn(WRITER, url, str(total), str(half), **kwargs)  # type: ignore[arg-type]
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "half":
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"writer did not get half way: {line!r} {err}")
    return proc


def _finish(proc: subprocess.Popen[str]) -> str:
    _, err = proc.communicate("go\n", timeout=120)
    assert proc.returncode == 0, err
    return err


# -- the core: unwritable mid-run, nothing lost, replayed exactly once ------------------------------------------------
@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_a_store_made_unwritable_mid_run_loses_nothing(kind: str, store_dir: Path) -> None:
    """chmod: the store (its directory and files) becomes unwritable half way through a run, until the process
    exits. Every entry is in a spill in the fallback location (the store's own directory refuses it), and the next
    open, once the store is writable again, replays each exactly once."""
    url = _url(kind, store_dir)
    proc = _writer_until_half(url, 200, 100)
    _chmod_tree(store_dir, writable=False)
    err = _finish(proc)
    assert "spilled to" in err
    assert _fallback_spills(kind, store_dir), "the store's own directory refused them: they are in the fallback"

    _chmod_tree(store_dir, writable=True)
    store = open_store(url)
    assert _counts(store) == (200, 200, Decimal("0.2")), err
    assert _fallback_spills(kind, store_dir) == []  # replayed and deleted
    store.close()
    again = open_store(url)
    assert _counts(again) == (200, 200, Decimal("0.2"))  # exactly once
    again.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_two_processes_opening_at_once_replay_each_spill_once(kind: str, store_dir: Path) -> None:
    path = _path(kind, store_dir)
    store = DuckDBStore(path) if kind == "duckdb" else ParquetStore(path)
    entries = [make_entry(i) for i in range(300)]
    store.append(entries[:100])
    store.close()
    own = path + ".spill" if kind == "duckdb" else os.path.join(path, "_spill")
    from llmcost.stores._spill import Spill

    Spill(own).write(entries[50:200])  # overlaps what is stored
    Spill(fallback_dirs(path, "spill")[0], store_path=path).write(entries[150:300])  # and the other spill
    Spill(fallback_dirs(path, "spill")[0], store_path=path).write(entries[150:300])  # twice
    code = "import sys\nfrom llmcost.stores import open_store\nopen_store(sys.argv[1]).close()\nprint('ok')"
    procs = [_spawn(code, _url(kind, store_dir), bound=False) for _ in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err
    reopened = open_store(_url(kind, store_dir))
    assert reopened.entries() == entries
    assert Spill(own, fallbacks=fallback_dirs(path, "spill")).pending() == []


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_a_replay_cut_short_before_its_delete_adds_nothing_twice(
    kind: str, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmcost.stores import _spill

    path = _path(kind, store_dir)
    entries = [make_entry(i) for i in range(200)]
    _spill.Spill(fallback_dirs(path, "spill")[0], store_path=path).write(entries)
    monkeypatch.setattr(_spill.Spill, "remove", lambda self, paths: None)  # a crash right after the commit
    first = open_store(_url(kind, store_dir))
    assert first.entries() == entries
    first.close()
    monkeypatch.undo()
    second = open_store(_url(kind, store_dir))
    assert second.entries() == entries
    assert _fallback_spills(kind, store_dir) == []


# -- read-only mounts and full disks: a tmpfs in a private mount namespace ----------------------------------------
NAMESPACE = """
import json, os, subprocess, sys, time
mount = sys.argv[1]
def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)
"""


def _unshare_or_skip() -> tuple[str, ...]:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        pytest.skip("needs Linux with unshare(1) for a private mount namespace")
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && umount /mnt"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"this OS refuses a private mount namespace with a tmpfs: {probe.stderr.strip()}")
    return ("unshare", "-m")


ORCHESTRATE = """
import os, subprocess, sys, json, time
from decimal import Decimal

mode, kind, mount, url, writer = sys.argv[1:6]
env = dict(os.environ)
import logging
logging.basicConfig(level=logging.INFO)

def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, text=True)

sh("mount", "--make-rprivate", "/")
os.makedirs(mount, exist_ok=True)
sh("mount", "-t", "tmpfs", "-o", "size=" + ("3m" if mode == "full" else "64m"), "tmpfs", mount)
proc = subprocess.Popen([sys.executable, "-c", writer, url, "200", "100"], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
assert proc.stdout.readline().strip() == "half"
filler = os.path.join(mount, "filler")
if mode == "readonly":
    sh("mount", "-o", "remount,ro", mount)
else:
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\\0" * 65536)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            pass
out, err = proc.communicate("go\\n", timeout=120)
result = {"writer": proc.returncode, "writer_err": err[-2000:]}
if mode == "readonly":
    cli = {}
    export = os.path.join(os.path.dirname(mount), "export.csv")
    for args in (["report"], ["export", export], ["budgets", "list"], ["prices", "--format", "csv"]):
        done = subprocess.run([sys.executable, "-m", "llmcost", *args[:1], "--store", url, *args[1:]],
                              capture_output=True, text=True, env=env)
        cli[" ".join(args)] = [done.returncode, done.stderr[-500:]]
    result["cli"] = cli
    from llmcost import StoreError
    from llmcost.stores import open_store
    store = open_store(url)
    result["read_only"] = store.read_only
    started = time.monotonic()
    try:
        store.save_budget("b", "{}")
        result["budget"] = "saved"
    except StoreError as exc:
        result["budget"] = str(exc)
    result["budget_seconds"] = time.monotonic() - started
    store.close()
    sh("mount", "-o", "remount,rw", mount)
else:
    os.unlink(filler)
from llmcost.stores import open_store
store = open_store(url)
frame = store.query("SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(amount) AS total FROM entries")
result["counts"] = [int(frame.loc[0, "n"]), int(frame.loc[0, "ids"]), str(frame.loc[0, "total"])]
store.close()
again = open_store(url)
frame = again.query("SELECT count(*) AS n FROM entries")
result["again"] = int(frame.loc[0, "n"])
again.close()
print(json.dumps(result))
"""


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
@pytest.mark.parametrize("mode", ["readonly", "full"])
def test_a_read_only_or_full_disk_mid_run_loses_nothing(kind: str, mode: str, tmp_path: Path) -> None:
    """A real tmpfs remounted read-only (or filled up, with the store's own spill directory on the same disk) half
    way through a run until the process exits: every entry is spilled to the fallback (on another disk), the
    read commands of the CLI work on the read-only store, a budget write fails at once with a clear StoreError,
    and the next open once the disk is writable again replays each entry exactly once."""
    prefix = _unshare_or_skip()
    mount = tmp_path / "mnt"
    url = _url(kind, mount)
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", ORCHESTRATE, mode, kind, str(mount), url, textwrap.dedent(WRITER)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["writer"] == 0, result["writer_err"]
    assert "spilled to" in result["writer_err"]
    n, ids, total = result["counts"]
    assert (n, ids, Decimal(total)) == (200, 200, Decimal("0.2")), (result["writer_err"], proc.stderr[-3000:])
    assert result["again"] == 200
    if mode == "readonly":
        assert result["read_only"] is True
        assert all(code == 0 for code, _ in result["cli"].values()), result["cli"]
        assert "read-only" in result["budget"] and str(mount) in result["budget"]
        # At once, not retried: a retried write would wait out the store's retry_timeout (30 s). The bound is wide
        # on purpose; at load ~12 on 2 cores the refusal itself took up to 3.1 s.
        assert result["budget_seconds"] < 15


# -- read-only for a user who may only read -----------------------------------------------------------------------
READER = """
import sys, subprocess, json
from llmcost.stores import open_store
url, export = sys.argv[1:3]
store = open_store(url)
out = {"read_only": store.read_only, "total": str(store.total()), "n": len(store.entries())}
store.close()
for args in (["report"], ["export", export], ["budgets", "list"], ["prices", "--format", "csv"]):
    done = subprocess.run([sys.executable, "-m", "llmcost", args[0], "--store", url, *args[1:]],
                          capture_output=True, text=True)
    out[args[0]] = [done.returncode, done.stderr[-400:]]
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_a_user_with_read_permission_only_reads_and_runs_the_cli(kind: str, store_dir: Path) -> None:
    url = _url(kind, store_dir)
    store = open_store(url)
    store.append([make_entry(i) for i in range(20)])
    with llmcost.CostTracker(store) as tracker:
        llmcost.BudgetManager(tracker).create("monthly", "10", "monthly")
    store.close()
    _chmod_tree(store_dir, writable=False)
    done = _run(READER, url, str(store_dir.parent / "export.csv"))
    assert done.returncode == 0, done.stderr
    assert len((store_dir.parent / "export.csv").read_text().splitlines()) == 21
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["read_only"] is True and out["n"] == 20
    for command in ("report", "export", "budgets", "prices"):
        assert out[command][0] == 0, (command, out[command][1])


OLD_SCHEMA_READER = """
import sys
from decimal import Decimal
from llmcost.stores import DuckDBStore
from tests.stores.test_migrate import _v1_entry, _v2_entry
store = DuckDBStore(sys.argv[1])
expected = {"1": _v1_entry(), "2": _v2_entry()}[sys.argv[2]]
assert store.read_only
assert store.entries() == [expected], store.entries()
assert store.entries(model=expected.model) == [expected] and store.entries(model="no such model") == []
frame = store.scan()
assert frame["id"].tolist() == [expected.id] and frame["canonical_model"].tolist() == [None], frame
summary = store.summary()
assert summary.total == expected.amount and summary.by_model == {expected.model: expected.amount}, summary
assert store.total(model=expected.model) == expected.amount
query = store.query("SELECT count(*) AS n, count(canonical_model) AS c FROM entries")
assert (int(query.loc[0, "n"]), int(query.loc[0, "c"])) == (1, 0)
print("read", store.read_only)
"""


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_store_of_an_older_schema_reads_while_read_only(version: str, store_dir: Path) -> None:
    """Opened read-only, a DuckDB file is never migrated: the columns added since it was written read as NULL."""
    from llmcost.stores import _migrate

    from .test_migrate import V1_DDL, V1_ROW, V2_DDL, V2_ROW

    path = store_dir / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(V1_DDL if version == "1" else V2_DDL)
    con.execute(_migrate.META_DDL)
    con.execute(_migrate.BUDGETS_DDL)
    con.execute("INSERT INTO llmcost_meta VALUES ('schema_version', ?)", [version])
    con.execute(V1_ROW if version == "1" else V2_ROW)
    con.close()
    _chmod_tree(store_dir, writable=False)
    done = _run(OLD_SCHEMA_READER, str(path), version)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["read", "True"]
    with duckdb.connect(str(path), read_only=True) as con:  # untouched: still the old schema
        assert con.execute("SELECT value FROM llmcost_meta").fetchall() == [(version,)]


# -- errors: StoreError with the path and a hint, at once when permanent -------------------------------------------
def _fails_fast(make: object, match: str, where: str) -> StoreError:
    started = time.monotonic()
    with pytest.raises(StoreError, match=match) as caught:
        make()  # type: ignore[operator]
    took = time.monotonic() - started
    assert took < 2, f"a permanent error took {took:.1f}s: it must not be retried"
    assert where in str(caught.value)
    assert "LINE 1" not in str(caught.value)
    return caught.value


def test_a_directory_is_not_a_duckdb_store(tmp_path: Path) -> None:
    (tmp_path / "dir.duckdb").mkdir()
    _fails_fast(lambda: DuckDBStore(tmp_path / "dir.duckdb"), "directory", str(tmp_path / "dir.duckdb"))


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null on this OS")
def test_dev_null_is_not_a_duckdb_store() -> None:
    _fails_fast(lambda: DuckDBStore("/dev/null"), "not a regular file", "/dev/null")


def _good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.duckdb"
    store = DuckDBStore(path)
    store.append([make_entry(i) for i in range(3000)])
    store.close()
    return path


def test_a_truncated_duckdb_file(tmp_path: Path) -> None:
    good = _good_file(tmp_path)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.duckdb"
    truncated.write_bytes(data[: len(data) // 2])
    error = _fails_fast(lambda: DuckDBStore(truncated).total(), "damaged or truncated", str(truncated))
    assert "backup" in str(error)


def test_a_corrupt_duckdb_file(tmp_path: Path) -> None:
    good = _good_file(tmp_path)
    data = bytearray(good.read_bytes())
    # Scramble the middle half of the file: blocks in use, whose checksums then fail (DuckDB checksums only the part
    # of a block in use, so a few KB at one offset may land in a block's unused tail and damage nothing).
    for i in range(len(data) // 4, 3 * len(data) // 4):
        data[i] ^= 0xFF
    corrupt = tmp_path / "corrupt.duckdb"
    corrupt.write_bytes(bytes(data))

    def use() -> None:
        store = DuckDBStore(corrupt)
        store.entries()

    _fails_fast(use, "could not", str(corrupt))


def test_garbage_named_as_a_store_file_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "costs"
    store = ParquetStore(root)
    store.append([make_entry(0)])
    day = next(root.glob("day=*"))
    garbage = day / "part-0123456789abcdef0123456789abcdef.parquet"
    garbage.write_bytes(b"this is not parquet at all" * 10)
    error = _fails_fast(store.total, "damaged", str(garbage))
    assert "move it out of the way" in str(error)


def test_a_commit_that_could_not_write_the_file_is_a_full_disk_in_plain_words(tmp_path: Path) -> None:
    """DuckDB reports a disk that filled up under a commit's checkpoint as a ``TransactionException`` (its text
    as DuckDB 1.x/2.0 word it); it is a failure of the store's file (not retried, spilled), and reaches the caller
    as a ``StoreError`` naming the path, in plain words, not as DuckDB's message."""
    from llmcost.stores._durable import Durable
    from llmcost.stores._failures import is_store_failure, is_transient_duckdb

    path = str(tmp_path / "costs.duckdb")
    full = duckdb.TransactionException(
        'TransactionContext Error: Failed to commit: Checkpoint failed for database "llmcost_store". The database '
        f'has been invalidated. Original error: Could not write file "{path}": No space left on device'
    )
    assert is_store_failure(full) and not is_transient_duckdb(full)
    assert not is_store_failure(duckdb.TransactionException("TransactionContext Error: cannot rollback"))
    durable = Durable(path, retry_timeout=5, spill_dir=path + ".spill", transient=is_transient_duckdb, per_path=True)
    attempts = []

    def commit() -> None:
        attempts.append(1)
        raise full

    with pytest.raises(StoreError) as caught:
        durable.retry(commit, "append to")
    message = str(caught.value)
    assert message.startswith(f"could not append to {path}: the disk is full")
    assert "free space on that disk" in message and "TransactionContext" not in message
    assert caught.value.__cause__ is full and attempts == [1]


MISSING_PARENT = """
import sys, time
from llmcost import StoreError
from llmcost.stores import open_store
started = time.monotonic()
try:
    open_store(sys.argv[1])
except StoreError as exc:
    print("StoreError", round(time.monotonic() - started, 3), exc)
except BaseException as exc:
    print("raw", type(exc).__name__, exc)
"""


@pytest.mark.parametrize("scheme", ["duckdb", "parquet"])
def test_a_missing_parent_that_cannot_be_made(scheme: str, store_dir: Path) -> None:
    """As a user that may not create the parent directory (root bound by permissions, see the module docs)."""
    _chmod_tree(store_dir, writable=False)
    target = store_dir / "missing" / ("costs.duckdb" if scheme == "duckdb" else "costs")
    done = _run(MISSING_PARENT, f"{scheme}://{target}")
    assert done.returncode == 0, done.stderr
    kind, seconds, message = done.stdout.strip().split(" ", 2)
    assert kind == "StoreError", done.stdout
    # At once, not after the 30 s of retries a transient error gets (a bound far from both: on a loaded machine the
    # child's imports and first open alone took over 2 s).
    assert float(seconds) < 10 and str(target) in message and "permission denied" in message


def test_a_lock_held_by_another_process_is_retried(tmp_path: Path) -> None:
    """The transient case: waits for ``retry_timeout`` (and then spills; see test_duckdb for the replay)."""
    path = tmp_path / "costs.duckdb"
    DuckDBStore(path).append([make_entry(0)])
    store = DuckDBStore(path, retry_timeout=0.5)
    holder = _spawn(
        "import duckdb, sys\ncon = duckdb.connect(sys.argv[1])\nprint('locked', flush=True)\nsys.stdin.readline()",
        str(path),
        bound=False,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(StoreError, match="another process holds the store's lock") as caught:
            store.total()
        assert time.monotonic() - started >= 0.2  # retried (tenacity stops before the next wait would pass 0.5 s)
        assert "retry_timeout=0.5" in str(caught.value) and str(path) in str(caught.value)
    finally:
        holder.communicate("\n", timeout=30)


# -- entries set aside ------------------------------------------------------------------------------------------
def _poison(entry: CostEntry) -> CostEntry:
    """``entry`` with ``input_tokens=2**70``, forced past ``Usage``'s check, as an entry from an older llmcost or a
    bug could carry."""
    usage = Usage(entry.usage.input_tokens, entry.usage.output_tokens)
    object.__setattr__(usage, "input_tokens", 2**70)
    object.__setattr__(entry, "usage", usage)
    return entry


def _poison_amount(entry: CostEntry) -> CostEntry:
    """``entry`` with ``amount=10**25``, forced past ``CostEntry``'s check (DECIMAL(38, 18) holds below 10**20)."""
    object.__setattr__(entry, "amount", Decimal(10) ** 25)
    return entry


@pytest.mark.parametrize("poison", [_poison, _poison_amount], ids=["tokens", "amount"])
def test_one_poison_among_a_thousand(open_again: StoreFactory, poison: Callable[[CostEntry], CostEntry]) -> None:
    """A batch with a poison entry is refused whole (nothing added, the columns stay aligned); the good ones go in
    and the poison is set aside: 1,000 stored, 1 set aside. Every store refuses the same entries (MemoryStore kept
    an amount of 10**25 that the others refuse)."""
    if open_again.kind == "list":  # type: ignore[attr-defined]
        pytest.skip("ListStore (a backend from the ABC alone, a list of objects) can hold any entry")
    store = open_again()
    good = [make_entry(i) for i in range(1000)]
    bad = poison(make_entry(1000, id="poison"))
    batch = [*good[:500], bad, *good[500:]]
    with pytest.raises(StoreError, match=r"poison|cannot be stored|64-bit") as caught:
        store.append(batch)
    assert store.entries() == []
    store.append(good)
    store.set_aside([bad], "append refused it", error=caught.value)
    assert store.entries() == good  # every field of every entry back as it went in
    assert store.total() == sum((e.amount for e in good), Decimal(0))
    (letter,) = store.dead_letters()
    assert letter["reason"] == "append refused it"
    assert "StoreError" in letter["error"]
    entry = letter["entry"]
    assert entry["id"] == "poison"
    if poison is _poison:
        assert entry["input_tokens"] == 2**70
    else:
        assert Decimal(entry["amount"]) == Decimal(10) ** 25


def test_set_aside_keeps_what_cannot_even_be_encoded(store: CostStore) -> None:
    broken = make_entry(1)
    object.__setattr__(broken, "timestamp", "not a time")
    store.set_aside([broken, make_entry(2)], "broken", error=None)
    first, second = store.dead_letters()
    assert isinstance(first["entry"], str) and "not a time" in first["entry"]
    assert first["error"] is None and second["entry"]["id"] == make_entry(2).id
    assert store.entries() == []


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_dead_letters_are_files_and_opening_warns_of_them(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _path(kind, tmp_path)
    store = DuckDBStore(path) if kind == "duckdb" else ParquetStore(path)
    store.set_aside([make_entry(1), make_entry(2)], "amount out of range", error=ValueError("too big"))
    (name,) = os.listdir(path + ".dead-letter")
    file = os.path.join(path + ".dead-letter", name)
    lines = [json.loads(line) for line in Path(file).read_text().splitlines()]
    assert [sorted(line) for line in lines] == [["entry", "error", "reason"]] * 2
    assert lines[0]["error"] == "ValueError: too big" and lines[1]["entry"]["id"] == make_entry(2).id
    store.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llmcost"):
        reopened = open_store(_url(kind, tmp_path))
    warnings = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert warnings == [f"llmcost: 2 entries set aside in {file}: amount out of range; see CostStore.dead_letters()"]
    assert [letter["entry"]["id"] for letter in reopened.dead_letters()] == [make_entry(1).id, make_entry(2).id]
    assert reopened.entries() == []


def test_dead_letters_go_to_the_fallback_when_the_store_directory_refuses(store_dir: Path) -> None:
    path = store_dir / "costs.duckdb"
    DuckDBStore(path).save_budget("b", "{}")  # the first write creates the file
    _chmod_tree(store_dir, writable=False)
    code = """
    import sys
    from llmcost.stores import DuckDBStore
    from tests.stores.conftest import make_entry
    store = DuckDBStore(sys.argv[1])
    store.set_aside([make_entry(3)], "refused")
    print(store.read_only, len(store.dead_letters()))
    """
    done = _run(code, str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "1"]
    (fallback,) = [d for d in fallback_dirs(str(path), "dead-letter") if os.path.isdir(d)]
    assert Path(fallback, "_store").read_text().strip() == str(path)
    _chmod_tree(store_dir, writable=True)
    assert [d["reason"] for d in DuckDBStore(path).dead_letters()] == ["refused"]


def test_a_spill_that_cannot_be_replayed_is_set_aside(tmp_path: Path) -> None:
    from llmcost.stores._spill import Spill

    path = tmp_path / "costs.duckdb"
    good = [make_entry(i) for i in range(5)]
    bad = make_entry(9, id="bad")
    object.__setattr__(bad, "amount", Decimal("1E+25"))  # beyond DECIMAL(38, 18)
    Spill(str(path) + ".spill").write([*good, bad])
    store = DuckDBStore(path)
    assert store.entries() == good
    (letter,) = store.dead_letters()
    assert '"id": "bad"' in letter["entry"] and "10**20" in letter["error"]  # the line as it was, and why
    assert Spill(str(path) + ".spill").pending() == []


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_a_spill_line_that_is_not_utf8_or_nested_too_deep_costs_only_that_line(kind: str, tmp_path: Path) -> None:
    # A stray byte sent the whole file to ``.bad`` (its 3 good entries counted nowhere); a line of 100,000 "[" made
    # every open raise RecursionError until the file was deleted by hand.
    from llmcost._rows import entry_to_json
    from llmcost.stores._spill import Spill

    path = _path(kind, tmp_path)
    spill_dir = path + ".spill" if kind == "duckdb" else os.path.join(path, "_spill")
    Spill(spill_dir).write([make_entry(0)])
    lines = [
        entry_to_json(make_entry(1)).encode(),
        b'{"id": "\xff"}',
        b"[" * 100_000,
        entry_to_json(make_entry(2)).encode(),
    ]
    Path(spill_dir, "damaged.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    store = DuckDBStore(path) if kind == "duckdb" else ParquetStore(path)
    assert sorted(e.id for e in store.entries()) == sorted(make_entry(i).id for i in range(3))
    letters = store.dead_letters()
    assert len(letters) == 2 and any("\\xff" in str(letter["entry"]) for letter in letters)
    assert Spill(spill_dir).pending() == []


#: Characters ``str.splitlines()`` breaks lines at that JSON (``ensure_ascii=False``) writes raw inside a string.
LINE_BREAKERS = "\u2028\u2029\u0085"


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_spilled_and_set_aside_entries_keep_unicode_line_separators(kind: str, tmp_path: Path) -> None:
    """A spill file and a dead-letter file are split at ``\\n`` only: an entry whose text holds U+2028, U+2029 or
    U+0085 is replayed (not cut into unreadable pieces and set aside), and a dead letter reads back as one."""
    from llmcost._rows import entry_to_json
    from llmcost.stores._spill import Spill

    path = _path(kind, tmp_path)
    spill_dir = path + ".spill" if kind == "duckdb" else os.path.join(path, "_spill")
    odd = make_entry(1, description=f"first{LINE_BREAKERS}second", tags={"note": f"a{LINE_BREAKERS}b"})
    Spill(spill_dir).write([make_entry(0), odd, make_entry(2)])
    # A file as llmcost wrote them before (the same encoding, one entry per "\n"-ended line), too.
    Path(spill_dir, "older.jsonl").write_text(entry_to_json(make_entry(3, description=LINE_BREAKERS)) + "\n", "utf-8")
    store = DuckDBStore(path) if kind == "duckdb" else ParquetStore(path)
    assert store.entries() == [make_entry(0), odd, make_entry(2), make_entry(3, description=LINE_BREAKERS)]
    assert store.dead_letters() == []
    store.set_aside([odd], f"kept{LINE_BREAKERS}aside")
    (letter,) = store.dead_letters()
    assert letter["reason"] == f"kept{LINE_BREAKERS}aside"
    assert letter["entry"]["description"] == odd.description and letter["entry"]["tags"] == odd.tags


def test_memory_store_dead_letters_stay_in_memory() -> None:
    store = MemoryStore()
    store.set_aside([make_entry(0)], "test")
    assert [d["reason"] for d in store.dead_letters()] == ["test"]
    assert MemoryStore().dead_letters() == []


# -- foreign files in a Parquet store -----------------------------------------------------------------------------
def test_foreign_files_are_left_out_reported_and_never_compacted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "costs"
    store = ParquetStore(root)
    entries = [make_entry(i) for i in range(10)]
    store.append(entries[:5])
    store.append(entries[5:])
    day = next(root.glob("day=*"))
    con = duckdb.connect()
    foreign = {
        # Someone's (id, amount) table, named as the store names its files: the schema gives it away.
        day / "part-ffffffffffffffffffffffffffffffff.parquet": "SELECT 'x' AS id, 3000.0::DECIMAL(18, 2) AS amount",
        # An unrelated schema under another name.
        day / "other.parquet": "SELECT 42 AS answer, 'hello' AS greeting",
    }
    for path, select in foreign.items():
        con.execute(f"COPY ({select}) TO ? (FORMAT parquet)", [str(path)])
    (day / "notes.txt").write_text("not data")
    con.close()
    total = sum((e.amount for e in entries), Decimal(0))

    with caplog.at_level(logging.WARNING, logger="llmcost"):
        assert store.total() == total
        assert store.entries() == entries
        assert store.summary().total == total
        store.total()
    warned = [r.getMessage() for r in caplog.records if "not written by this store" in r.getMessage()]
    assert len(warned) == 3  # once per file
    assert store.foreign_files() == sorted(str(p) for p in [*foreign, day / "notes.txt"])

    before = {p: p.read_bytes() for p in foreign}
    assert store.compact() == 1
    assert {p: p.read_bytes() for p in foreign} == before  # never merged, never deleted
    assert store.total() == total and store.entries() == entries


def test_memory_store_columns_stay_aligned_when_a_row_fails_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a row that slips past ``append``'s check never misaligns the columns or vanishes: the batch is converted
    whole before any column grows, and a row that fails alone is set aside."""
    from llmcost.stores import _memory

    monkeypatch.setattr(_memory, "_unfit", lambda entry: None)  # let the poison in, as a bug might
    store = MemoryStore()
    good = [make_entry(i) for i in range(3000)]  # more than one columnizing batch
    bad = _poison(make_entry(3000, id="poison"))
    store.append(good[:1000])
    store.append([bad])
    store.append(good[1000:])
    assert store.entries() == good  # every field of every row where it belongs
    assert [d["entry"]["id"] for d in store.dead_letters()] == ["poison"]
