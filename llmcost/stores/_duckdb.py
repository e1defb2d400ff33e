"""``DuckDBStore``: entries in one DuckDB file that several processes write and read at once.

DuckDB locks a database file for the whole process that opens it, so a process that kept the file open would shut
every other writer and reader out. The store therefore holds the file only for the length of one operation. It
keeps private in-memory DuckDB connections (one for reads, one single-threaded for writes: ``_WRITE_SETTINGS``)
and, per operation, ``ATTACH``es the file (read-only for reads), does the work in one transaction and
``DETACH``es it, which releases the lock. Attaching costs about 0.5 ms where
opening a new DuckDB connection costs about 15 ms (DuckDB builds its function catalog per database instance), so
the file is never held between calls and short operations stay cheap. Every write checkpoints at its commit
(``_CONNECTION_SETTINGS``), so the file never carries a WAL that later attaches would replay. Measured on 2 CPUs: a
100-entry append about 10 ms, a filtered ``total()`` about 1 ms.

Lock conflicts (and ``EAGAIN``-like errors) are retried with exponential backoff and jitter for up to
``retry_timeout`` seconds; permanent causes (permission denied, a read-only or full disk, a file that is not a DuckDB
database or is damaged) fail at once, as a ``StoreError`` naming the path with a hint (``_failures``). An append that
cannot get in either way is written to a spill file next to the store (``<path>.spill/<uuid>.jsonl``, fsynced) or,
when that directory refuses it, a per-user fallback (``_locations``), and counts as acknowledged; every open, append
and read replays pending spill files first. A process that cannot write the file opens it read-only. A file that
another process keeps locked when the store opens (an analyst's ``duckdb.connect``) does not stop the open: after
``_OPEN_WAIT`` the store opens without it, and the first write that gets in migrates it and replays.

Appends skip ids the store already has within the batch's time range (an anti-join that DuckDB prunes with the
timestamp zone maps), so replaying a spill file twice, or retrying an append whose commit went through, adds nothing
twice.

Durability: each commit writes the new rows into the database file and fsyncs it before switching the file's
header over (and fsyncing again); ``append`` returns after the commit, so what it acknowledged survives ``kill -9``
of the writer (and a power cut, as far as the disk honours fsync).

One process must not open the store's file with ``duckdb.connect`` while using the store: POSIX file locks are per
process, so DuckDB cannot keep two instances in one process apart. Use ``store.query(sql)`` instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from .._entry import CostEntry
from .._errors import StoreError
from .._rows import (
    COLUMNS,
    INGEST_SELECT,
    INSERT_COLUMNS,
    SQL_TYPES,
    FieldColumns,
    from_micros,
    ingest_columns,
    ingest_field_columns,
)
from .._summary import CostSummary
from .._time import seconds_arg
from ._base import CostStore
from ._disk import check_creatable, make_dirs
from ._durable import Durable
from ._failures import data_error, is_transient_duckdb, store_error, why
from ._filters import Filters
from ._ledger import DEFAULT_LEASE, Ledger
from ._migrate import check_duckdb_version, migrate_duckdb
from ._sql import QueryFrames, read_entries, read_frame, read_summary, read_total, registered, select_sql

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DuckDBStore"]

logger = logging.getLogger("llmcost")

T = TypeVar("T")
_ALIAS = "llmcost_store"
#: How long opening waits for another process's lock, in seconds, before opening without the file (``_open``): long
#: enough for another store's operation (a 10,000-entry append takes ~0.1 s), short where a lock is held for good.
_OPEN_WAIT = 1.0
#: Causes (``_failures.why``) that make a store whose file exists open read-only.
_CANNOT_WRITE = frozenset({"permission denied", "the file system is read-only"})
# Row groups of 10,240 rows instead of DuckDB's 122,880. Every append ends in a checkpoint (at COMMIT). DuckDB 2.0
# puts an append into row groups of its own, and the checkpoint's vacuum merges adjacent small groups (three into two,
# two into one) once they fit in fewer, rewriting (decompressing and compressing again) the rows merged: with
# 16,384-row groups that was ~20 of the checkpoint's ~34 ms CPU for a 10,000-row append (pragma_storage_info
# before/after CHECKPOINT, DuckDB 2.0.1). With 10,240, an append of 6,827 to 10,240 rows is a row group no vacuum
# merges (two do not fit in one, three not in two): it is compressed once and never rewritten, and a 10,000-entry
# append spends ~38 ms CPU instead of ~60 (bench_stores). Appends left unmerged leave the tail of their last block
# unused (256 KiB blocks: files ~35% larger), so files the store creates use 128 KiB blocks (``_NEW_FILE_OPTIONS``),
# which keeps them as small as before (1M entries in 10,000-entry appends: 38.3 MB against 39.0; 64 KiB: 42.3; 32 KiB
# and less: twice the size). The trade: appends of ~1,000 entries cost 6-17% more CPU; 4,096 (the tracker's batch)
# and 100 about the same or less; ~60% more row groups, with no change in bench_stores' reads beyond noise. A store
# drops an option its DuckDB lacks.
_WRITE_OPTIONS = "ROW_GROUP_SIZE 10240"
# Options only for the write that creates the file (DuckDB refuses a block size other than an existing file's).
_NEW_FILE_OPTIONS = ", BLOCK_SIZE 131072"
# Every write transaction checkpoints at its COMMIT: DuckDB then writes the new rows straight into the database file
# (fsynced, then the header switched over and fsynced) and skips logging them to the WAL first. The store
# checkpointed at every DETACH anyway (so no later attach replays a WAL); this way each row is serialized and written
# once instead of twice, and COMMIT still returns only once the rows are durable.
_CONNECTION_SETTINGS = ("SET checkpoint_threshold = '0b'",)
# Writes run on a DuckDB instance of their own with one thread. A 10,000-entry append has little to split between
# threads: with two, the INSERT spent ~40% more CPU (12-22 ms against 8-11) and, on a loaded machine, waited for a
# descheduled worker (appends of 120 ms against 65-90); and the write never takes a second core from the threads
# that record entries while the tracker's writer appends (w1-settings.py, bench_stores). Reads keep every thread.
_WRITE_SETTINGS = ("SET threads = 1",)


def _insert_sql() -> str:
    # Skip ids the table already has in the batch's time range: the same entry always has the same timestamp, and
    # the range lets DuckDB skip row groups by their timestamp zone maps instead of scanning every id.
    return (
        f"INSERT INTO entries ({INSERT_COLUMNS}) SELECT n.* FROM ({INGEST_SELECT}) AS n "
        'ANTI JOIN (SELECT id FROM entries WHERE "timestamp" BETWEEN ? AND ?) AS e ON n.id = e.id'
    )


def _first_of_each_id(columns: Any) -> Any:
    """``ingest_columns`` arrays keeping only the first row of each id: the anti-join in ``_insert_sql`` skips ids
    already in the table, not an id twice in the batch itself (``append([e, e])``, ``tracker.add(e)`` twice before
    a flush), which PostgreSQL's ``ON CONFLICT DO NOTHING`` stores once. The check costs ~50 ns an entry (0.5 ms
    for 10,000, against ~38 ms of CPU for their append); rows are copied only when an id repeats."""
    raw, tag_maps = columns
    ids = raw["id"]
    if len(set(ids)) == len(ids):
        return columns
    import numpy as np

    first = np.sort(np.unique(ids, return_index=True)[1])
    return {name: array[first] for name, array in raw.items()}, tag_maps


def _insert(con: Any, columns: Any) -> None:
    """Insert the entries ``ingest_columns`` made ``columns`` of, skipping ids already stored and an id repeated in
    them (its first row is kept), inside the caller's transaction."""
    columns = _first_of_each_id(columns)
    micros = columns[0]["timestamp_us"]
    lo, hi = from_micros(int(micros.min())), from_micros(int(micros.max()))
    with registered(con, columns):
        con.execute(_insert_sql(), [lo, hi])


class DuckDBStore(CostStore):
    """Entries and budget definitions in a DuckDB file that several processes can write and read at once.

    ``retry_timeout`` bounds, in seconds, how long an operation waits for another process's lock. An append that
    cannot get in by then, or fails for a permanent reason, goes to a spill file in ``spill_dir`` (default
    ``<path>.spill``; a per-user fallback if that refuses it) and is replayed on the next open, append or read.
    Entries it cannot hold are kept by ``set_aside`` under ``<path>.dead-letter``. Where this process cannot write
    the file, the store opens read-only (``read_only``). Query the rows with SQL through ``query``.
    Period budgets reserve through a SQLite ledger at ``<path>.ledger``; ``lease`` is how many seconds a killed
    process's reservations are kept (see ``docs/budgets.md``).

    Example::

        store = llmcost.DuckDBStore("/var/lib/llmcost/costs.duckdb")
        tracker = llmcost.CostTracker(store)
        tracker.record(model="gpt-4o", input_tokens=1200, output_tokens=300)
        tracker.flush()
        store.total(model="gpt-4o")
    """

    buffered = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retry_timeout: float = 30.0,
        spill_dir: str | None = None,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {path!r}")
        raw = os.fspath(path)
        if not raw or raw == ":memory:":
            raise ValueError(f"path must name a file (use MemoryStore for memory), got {raw!r}")
        if "\0" in raw:
            raise ValueError(f"path must not contain a NUL character, got {raw!r}")
        lease = seconds_arg(lease, "lease")  # (here, not first by a budget's first call, nor after files are made)
        if spill_dir is not None and not isinstance(spill_dir, (str, os.PathLike)):
            raise TypeError(f"spill_dir must be a str, os.PathLike or None, got {spill_dir!r}")
        self.path = os.path.abspath(raw)
        self.url = "duckdb://" + self.path if self.path.startswith("/") else "duckdb:///" + self.path
        self._durable = Durable(
            self.path,
            retry_timeout=retry_timeout,
            spill_dir=os.path.abspath(spill_dir) if spill_dir is not None else self.path + ".spill",
            transient=is_transient_duckdb,
            per_path=True,
            settings=_CONNECTION_SETTINGS,
            write_settings=_WRITE_SETTINGS,
        )
        self.retry_timeout = self._durable.retry_timeout
        self.lease = lease
        self._write_options = _WRITE_OPTIONS  # "READ_WRITE" once this DuckDB turned out not to know the option
        self._new_file_options = _NEW_FILE_OPTIONS  # "" once this DuckDB turned out not to know them
        self._migrated = False
        self._deferred = False  # the open met another process's lock: migrate (and replay) before the next read
        self._older = False  # read-only, and the file's entries table lacks columns added since (see _open_read_only)
        self._frames = QueryFrames()  # queries asked again run once, as plain DuckDB runs them (see query)
        # Loaded now rather than by the first write, which for a tracker is its background writer: an import holds
        # the GIL for its whole length (numpy and duckdb: 180-260 ms here), stalling every thread recording calls.
        import duckdb  # noqa: F401
        import numpy  # noqa: F401

        self._open()
        self._durable.warn_of_dead_letters()

    def _open(self) -> None:
        """Migrate the file and replay spill files; open read-only where this process cannot write. A file that
        does not exist is created by the first write, not here (reads of it answer as empty), unless spilled
        entries wait to be replayed into it. A file another process keeps locked (past ``_OPEN_WAIT``) is opened
        without being touched: the next write migrates and replays, and the next read writes first to do so."""
        if os.path.exists(self.path) and not os.path.isfile(self.path):
            kind = "a directory" if os.path.isdir(self.path) else "not a regular file (a device or pipe)"
            raise StoreError(
                f"could not open {self.path}: the path is {kind} "
                "(point the store URL at a DuckDB file, e.g. duckdb:///path/costs.duckdb)"
            )
        folder = os.path.dirname(self.path)
        exists = os.path.isfile(self.path)
        if exists and not (os.access(self.path, os.W_OK) and os.access(folder, os.W_OK)):
            self._open_read_only("this user cannot write the file or its directory")
            return
        if not exists and not self._durable.spill.pending():
            try:
                check_creatable(self.path)  # fail now, not at the first write, where it never could be created
            except OSError as exc:
                raise store_error(exc, self.path, "create") from exc
            return
        try:
            self._write(lambda con: None, what="open", wait=min(self.retry_timeout, _OPEN_WAIT))
        except StoreError as exc:
            cause = exc.__cause__
            if cause is not None and self._durable.transient(cause):
                # Another process holds the file for longer than one operation (an analyst's duckdb.connect): open
                # all the same. The migration and the replay run with the first write that gets in; until then
                # appends spill after retry_timeout as they do whenever the lock is taken. Raising instead would
                # fail every tracker made meanwhile (the default one on every tracked call), its entries lost.
                self._deferred = True
                logger.warning(
                    "llmcost: another process holds the lock of %s; opening the store all the same (writes wait "
                    "retry_timeout for the lock, then spill until it is free): %s",
                    self.path,
                    why(cause)[0],
                )
                return
            if exists and cause is not None and why(cause)[0] in _CANNOT_WRITE:
                self._open_read_only(why(cause)[0])
                return
            raise

    def _open_read_only(self, reason: str) -> None:
        """Read the file as it is, never migrated: if it was written before columns were added, reads go through
        a view that adds them as typed NULLs (``_with_every_column``), as a migration would have."""
        self.read_only = True
        logger.info("llmcost: opening %s read-only: %s", self.path, reason)

        def check(con: Any) -> bool:
            check_duckdb_version(con, self.path)
            return bool(_missing_columns(con))

        self._older = self._read(check, what="open")

    # -- connection -----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _attached(self, *, write: bool) -> Iterator[Any]:
        """The store's file attached (and made the default catalog) for one operation."""
        con = self._durable.connection(write=write)
        if not write and not os.path.exists(self.path):
            yield from _empty_store(con)  # nothing written yet: read an empty store, create no file
            return
        try:
            if write:
                self._attach_for_write(con)
            else:
                con.execute(f"ATTACH ? AS {_ALIAS} (READ_ONLY)", [self.path])
        except BaseException:
            with contextlib.suppress(Exception):
                con.abort()
            raise
        try:
            con.execute(f"USE {_ALIAS}")
            if self._older:
                _with_every_column(con)
            yield con
        finally:
            self._detach(con)

    def _attach_for_write(self, con: Any) -> None:
        """Attach the file read-write with ``_WRITE_OPTIONS`` (and ``_NEW_FILE_OPTIONS`` when this creates it),
        dropping an option this DuckDB does not know, or a block size that another process's file creation beat."""
        while True:
            options = self._write_options
            if self._new_file_options and not os.path.exists(self.path):
                options += self._new_file_options
            try:
                con.execute(f"ATTACH ? AS {_ALIAS} ({options})", [self.path])
                return
            except Exception as exc:
                message = str(exc).lower()
                if self._new_file_options and ("block_size" in message or "block size" in message):
                    self._new_file_options = ""  # an older DuckDB, or the file appeared meanwhile: its own blocks
                elif self._write_options != "READ_WRITE" and "row_group_size" in message:
                    self._write_options = "READ_WRITE"  # an older DuckDB: use its default row groups
                else:
                    raise

    def _detach(self, con: Any) -> None:
        """Release the file; drop the connection if that fails (closing it releases the file for sure)."""
        try:
            with contextlib.suppress(Exception):
                con.abort()
            if self._older:
                con.execute("DROP VIEW IF EXISTS temp.main.entries")
            con.execute("USE memory")
            con.execute(f"DETACH {_ALIAS}")
        except Exception as exc:  # noqa: BLE001 - the data is committed (or rolled back); a fresh connection heals
            logger.debug("llmcost: dropping DuckDB connection for %s after %s", self.path, exc)
            self._durable.drop_connection()

    # -- running operations -----------------------------------------------------------------------------------------
    def _write(self, body: Callable[[Any], T], *, what: str, wait: float | None = None) -> T:
        """Run ``body(con)`` in one write transaction (after migrating and replaying spill files), retrying for
        ``wait`` seconds (default ``retry_timeout``). The first write creates the file's directory and the file."""
        if not self._migrated:
            try:
                make_dirs(os.path.dirname(self.path))
            except OSError as exc:
                raise store_error(exc, self.path, "create") from exc

        # Spill files are read (and what they hold that cannot be stored set aside) once, not at every attempt: an
        # attempt retried while another process holds the file would set the same entries aside again each time.
        # Read by the first attempt that has the file: while another program keeps it locked, appends spill one file
        # each, and reading every pending one before each attempt made each append slower than the last.
        spilled: list[Any] = []
        done: list[str] | None = None

        def replay_and_run(con: Any) -> T:
            for columns in spilled:
                _insert(con, columns)
            return body(con)

        def attempt() -> T:
            nonlocal done
            with self._durable.lock, self._attached(write=True) as con:
                if done is None:
                    batches, done = self._spilled()
                    spilled.extend(batches)
                if not self._migrated:
                    # In a transaction of its own: the ATTACH has created a new file, and a first write that DuckDB
                    # refuses (an amount beyond DECIMAL(38, 18)) is rolled back; the file must still have the tables,
                    # or reads of it (and read-only openers) would fail instead of finding an empty store.
                    _in_transaction(con, lambda con: migrate_duckdb(con, self.path))
                    self._migrated = True
                    self._deferred = False
                result = _in_transaction(con, replay_and_run)
            if done:
                self._durable.spill.remove(done)
                logger.info("llmcost: replayed %d spill file(s) into %s", len(done), self.path)
            return result

        return self._durable.retry(attempt, what, timeout=wait)

    def _read(self, body: Callable[[Any], T], *, what: str) -> T:
        """Run ``body(con)`` against the file attached read-only, with retries; replay spill files first (unless
        the store is read-only: then the next open that can write replays them)."""
        if self._deferred:
            self._write(lambda con: None, what="open")  # what the open could not do: an older file is migrated
        elif not self.read_only and self._durable.spill.pending():
            self._write(lambda con: None, what="replay spilled entries")

        def attempt() -> T:
            with self._durable.lock, self._attached(write=False) as con:
                return body(con)

        return self._durable.retry(attempt, what)

    def _spilled(self) -> tuple[list[Any], list[str]]:
        """The pending spill files' entries as ``ingest_columns`` arrays, and the files' paths (to remove once
        committed). Entries that could never be stored are set aside (kept as dead letters) and their file deleted
        at once, so they are set aside once even if the write then fails."""
        spill = self._durable.spill
        batches, done = [], []
        for path in spill.pending():
            entries = spill.read(path)
            if entries:
                bad = self._durable.replayable(path, entries)
                if bad is not None:
                    self._durable.set_aside(entries, f"spill file {path} could not be replayed", bad)
                    spill.keep_only(path, [])
                    continue
                batches.append(ingest_columns(entries))
            done.append(path)
        return batches, done

    # -- CostStore ------------------------------------------------------------------------------------------------
    def append(self, entries: Sequence[CostEntry]) -> None:
        """Write ``entries`` in one transaction; when this returns they are durable (or durably spilled)."""
        batch = list(entries)
        for entry in batch:
            if not isinstance(entry, CostEntry):
                raise TypeError(f"entries must be CostEntry objects, got {entry!r}")
        if not batch:
            return
        try:
            columns = ingest_columns(batch)  # before taking the file: hold it as briefly as possible
        except (ValueError, TypeError, OverflowError) as exc:
            raise data_error(exc, self.path) from exc
        self._insert_or_keep(columns, lambda: batch)

    def append_columns(self, columns: FieldColumns) -> None:
        """``append`` of the entries ``columns`` holds, inserted from the columns: entries are built only to spill
        them (see ``CostStore.append_columns``)."""
        if not len(columns):
            return
        try:
            raw = ingest_field_columns(columns)
        except (ValueError, TypeError, OverflowError) as exc:
            raise data_error(exc, self.path) from exc
        self._insert_or_keep(raw, columns.entries)

    def _insert_or_keep(self, columns: Any, entries: Callable[[], Sequence[CostEntry]]) -> None:
        """Insert ``ingest_columns`` arrays in one transaction, or spill ``entries()`` when that fails."""
        import duckdb

        try:
            self._write(lambda con: _insert(con, columns), what="append to")
        except (StoreError, duckdb.Error) as exc:  # a value DuckDB refuses is sorted out by keep_for_later
            self._durable.keep_for_later(exc, entries())

    def _entries(self, filters: Filters) -> list[CostEntry]:
        sql, params = select_sql("entries", filters)
        return self._read(lambda con: read_entries(con, sql, params), what="read")

    def _scan(self, filters: Filters) -> pd.DataFrame:
        return self._read(lambda con: read_frame(con, "entries", filters), what="read")

    def _total(self, filters: Filters) -> Decimal:
        return self._read(lambda con: read_total(con, "entries", filters), what="read")

    def _summary(self, filters: Filters) -> CostSummary:
        return self._read(lambda con: read_summary(con, "entries", filters), what="read")

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run DuckDB ``sql`` against this store's ``entries`` table, read-only (see ``CostStore.query``).

        Example::

            store.query("SELECT model, sum(amount) AS cost FROM entries GROUP BY model ORDER BY cost DESC")
        """
        if not isinstance(sql, str):
            raise TypeError(f"sql must be a str, got {sql!r}")
        return self._read(lambda con: self._frames.fetch(con, sql, params), what="query")

    def close(self) -> None:
        """Close the private connection (the file is never held between calls); the store stays usable."""
        self._durable.close()
        self.close_ledger()

    def open_ledger(self) -> Ledger:
        """The budget ledger every process on this host shares: a SQLite file at ``<path>.ledger``."""
        from ._ledger_sqlite import SqliteLedger

        return SqliteLedger(self.path + ".ledger", total=self.total, lease=self.lease)

    # -- entries set aside ------------------------------------------------------------------------------------------
    def set_aside(self, entries: Sequence[CostEntry], reason: str, *, error: BaseException | str | None = None) -> None:
        """Keep ``entries`` in an fsynced JSON-lines file under ``<path>.dead-letter/`` (or a per-user fallback),
        with ``reason`` and ``error``; see ``CostStore.set_aside``.

        Example::

            store.set_aside([entry], "amount out of range", error=exc)
        """
        self._durable.set_aside(entries, reason, error)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every entry set aside for this store, from its dead-letter directory and fallbacks (see
        ``CostStore.dead_letters``)."""
        return self._durable.dead_letters()

    # -- budget definitions -----------------------------------------------------------------------------------------
    def save_budget(self, name: str, definition: str) -> None:
        """Keep (or replace) the budget definition ``definition`` under ``name``."""
        _check_budget(name, definition)
        self._write(
            lambda con: con.execute("INSERT OR REPLACE INTO llmcost_budgets VALUES (?, ?)", [name, definition]),
            what="save a budget in",
        )

    def load_budgets(self) -> dict[str, str]:
        """Every saved budget definition, by name."""
        rows = self._read(
            lambda con: con.execute("SELECT name, definition FROM llmcost_budgets ORDER BY name").fetchall(),
            what="read budgets from",
        )
        return dict(rows)

    def delete_budget(self, name: str) -> bool:
        """Forget the budget ``name``; return whether it existed."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        if not os.path.exists(self.path) and not self._durable.spill.pending():
            return False  # nothing written yet: no budget to forget, and no file to create for it
        rows = self._write(
            lambda con: con.execute("DELETE FROM llmcost_budgets WHERE name = ? RETURNING name", [name]).fetchall(),
            what="delete a budget from",
        )
        return bool(rows)


def _in_transaction(con: Any, work: Callable[[Any], T]) -> T:
    """``work(con)`` in one transaction: committed if it returns, rolled back if it raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        result = work(con)
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            con.execute("ROLLBACK")
        raise
    return result


def _empty_store(con: Any) -> Iterator[Any]:
    """``con`` with an empty, in-memory store's tables attached as the default catalog (for reads of a store whose
    file does not exist yet)."""
    con.execute(f"ATTACH ':memory:' AS {_ALIAS}")
    try:
        con.execute(f"USE {_ALIAS}")
        migrate_duckdb(con, ":memory:")
        yield con
    finally:
        con.execute("USE memory")
        con.execute(f"DETACH {_ALIAS}")


def _missing_columns(con: Any) -> list[str]:
    """The declared columns (``_rows.COLUMNS``) the attached file's entries table lacks: those added to the schema
    since it was written, in a file opened read-only and so never migrated."""
    rows = con.execute(
        "SELECT column_name FROM duckdb_columns() "
        "WHERE database_name = ? AND schema_name = 'main' AND table_name = 'entries'",
        [_ALIAS],
    ).fetchall()
    have = {r[0] for r in rows}
    return [c for c in COLUMNS if c not in have]


def _with_every_column(con: Any) -> None:
    """Make ``entries`` on ``con`` a temporary view of the attached file's table with a typed NULL for each column
    it lacks (the view shadows the table while the file is attached; ``_detach`` drops it). Columns the file has
    by now (another process migrated it) are read as they are."""
    missing = _missing_columns(con)
    if missing:
        added = ", ".join(f'CAST(NULL AS {SQL_TYPES[c]}) AS "{c}"' for c in missing)
        con.execute(f"CREATE OR REPLACE TEMP VIEW entries AS SELECT *, {added} FROM {_ALIAS}.main.entries")


def _check_budget(name: object, definition: object) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"budget name must be a non-empty str, got {name!r}")
    if not isinstance(definition, str):
        raise TypeError(f"budget definition must be a str (JSON text), got {definition!r}")
