"""``ParquetStore``: entries as a hive-partitioned Parquet dataset that Spark, Trino, Polars and DuckDB read as is.

Layout of the store directory::

    day=2024-05-01/part-<uuid>.parquet    entries whose UTC timestamp falls on that day
    _llmcost.json                         schema version
    _budgets/<sha256 of name>.json        one budget definition per file
    _compactions/<uuid>.json              compactions in progress (see below)
    _spill/<uuid>.jsonl                   batches that could not be written yet
    _lock                                 taken by compaction, migration and spill replay

Names starting with ``_`` or ``.`` are hidden from Spark, Trino and Hive by convention; the only thing user data
decides in a path is the day, so tags and resources never reach the file system.

Writing: each append writes one file per UTC day in the batch, with DuckDB ``COPY`` to a hidden temporary name in
the day's directory, fsyncs it, renames it to ``part-<uuid>.parquet`` (atomic) and fsyncs the directory. Readers
only ever look at ``*.parquet`` names, so they see a whole file or none. Every writer picks fresh uuids, so any
number of processes can append at once without coordination.

Compaction merges each day's files into one. It writes the merged file under a temporary name, then records the
compaction (merged name and inputs) in ``_compactions/``, renames the merged file into place, deletes the inputs
and finally the record. Our readers list the files first and the records second, and skip the inputs of any record
whose merged file they listed; so they never count a row twice, and a file deleted under them makes the read retry
with a fresh listing. A crash mid-compaction leaves the record, which keeps readers right until the next
``compact()`` or open finishes or undoes it. (Other engines reading the dataset directly can see a day's rows twice
during the instant between the rename and the deletes, or after such a crash until the next compaction.) Why not
deduplicate by id on every read: that costs a hash aggregate over every row of every query, where the record costs
one directory listing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from .._entry import CostEntry
from .._errors import StoreError
from ._base import CostStore, Filters
from ._migrate import current_version, migrate_parquet, read_parquet_version
from ._schema import COLUMNS, SQL_TYPES
from ._spill import Spill, fsync_dir, fsync_file, make_dirs, retry_call, write_atomic
from ._sql import (
    INGEST_SELECT,
    INGEST_SELECT_TAGS_PARAM,
    MICROS_PER_DAY,
    PARAM_TAG_MAPS,
    RAW,
    fetch_frame,
    ingest_columns,
    read_entries,
    read_frame,
    read_total,
    registered,
    select_sql,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ParquetStore"]

logger = logging.getLogger("llmcost")

T = TypeVar("T")
_EPOCH_DAY = date(1970, 1, 1)
_CANONICAL = ", ".join(f'"{c}"' for c in COLUMNS)
_EMPTY = "(SELECT " + ", ".join(f'CAST(NULL AS {SQL_TYPES[c]}) AS "{c}"' for c in COLUMNS) + " WHERE FALSE)"
_SOURCE = f"(SELECT {_CANONICAL} FROM read_parquet(?, union_by_name = true))"
_DEDUPED = (
    f"SELECT {_CANONICAL} FROM read_parquet(?, union_by_name = true) "
    'QUALIFY row_number() OVER (PARTITION BY id ORDER BY "timestamp") = 1 ORDER BY "timestamp", id'
)


def _transient(exc: BaseException) -> bool:
    """I/O errors worth another try: a file deleted by a compaction under a reader, a passing disk problem."""
    import duckdb

    if isinstance(exc, duckdb.IOException):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, PermissionError)


def _day_name(day: date) -> str:
    return f"day={day.isoformat()}"


def _parse_day(name: str) -> date | None:
    if not name.startswith("day=") or len(name) != 14:
        return None
    try:
        return date.fromisoformat(name[4:])
    except ValueError:
        return None


def _is_data_file(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith((".", "_"))


@attrs.frozen
class _Compaction:
    """A compaction in progress (or interrupted): merged file ``output`` of ``day`` replaces ``inputs``."""

    day: date
    output: str
    inputs: frozenset[str]
    record: str  # path of the record file in _compactions/


def _compactions(directory: str) -> list[_Compaction]:
    """The compaction records in ``directory``; unreadable ones (being written, or gone) are skipped."""
    folder = os.path.join(directory, "_compactions")
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            day = _parse_day(f"day={record['day']}")
            output, inputs = record["output"], record["inputs"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            continue
        if day is not None and isinstance(output, str) and isinstance(inputs, list):
            found.append(_Compaction(day, output, frozenset(map(str, inputs)), path))
    return found


class _Listing:
    """The data files of some days, minus the inputs of compactions whose merged file is already listed."""

    def __init__(self, directory: str, first: date | None, last: date | None) -> None:
        self.directory = directory
        self.by_day: dict[date, list[str]] = {}
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            names = []
        for name in names:
            day = _parse_day(name)
            if day is None or (first is not None and day < first) or (last is not None and day > last):
                continue
            try:
                files = sorted(f for f in os.listdir(os.path.join(directory, name)) if _is_data_file(f))
            except (FileNotFoundError, NotADirectoryError):
                continue
            if files:
                self.by_day[day] = files
        # Records are read after the files (see the module docstring for why this order is safe).
        for c in _compactions(directory):
            listed = self.by_day.get(c.day)
            if listed and c.output in listed:
                self.by_day[c.day] = [f for f in listed if f not in c.inputs]

    def paths(self) -> list[str]:
        return [
            os.path.join(self.directory, _day_name(day), f) for day in sorted(self.by_day) for f in self.by_day[day]
        ]


class ParquetStore(CostStore):
    """Entries as a hive-partitioned Parquet dataset (``day=YYYY-MM-DD/part-<uuid>.parquet``) in ``directory``.

    Any number of processes may append at once and read meanwhile; ``compact()`` merges small files safely while
    they do. Reads and ``query`` run in DuckDB over the files, pruned to the days the filters cover. Other engines
    read the directory as it is (see docs/stores.md).

    Example::

        store = llmcost.ParquetStore("/data/llmcost")
        tracker = llmcost.CostTracker(store)
        ...
        store.compact()                       # e.g. nightly
        store.query("SELECT model, sum(amount) FROM entries GROUP BY model")
    """

    buffered = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        retry_timeout: float = 30.0,
        spill_dir: str | None = None,
        compression: str = "zstd",
    ) -> None:
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a str or os.PathLike, got {directory!r}")
        raw = os.fspath(directory)
        if not raw:
            raise ValueError(f"directory must name a directory, got {raw!r}")
        if isinstance(retry_timeout, bool) or not isinstance(retry_timeout, (int, float)) or retry_timeout < 0:
            raise ValueError(f"retry_timeout must be a non-negative number of seconds, got {retry_timeout!r}")
        if compression not in ("zstd", "snappy", "gzip", "uncompressed"):
            raise ValueError(f"compression must be zstd, snappy, gzip or uncompressed, got {compression!r}")
        self.directory = os.path.abspath(raw)
        self.url = "parquet://" + self.directory if self.directory.startswith("/") else "parquet:///" + self.directory
        self.retry_timeout = float(retry_timeout)
        self.compression = compression
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise StoreError(f"{self.directory} exists and is not a directory; a ParquetStore needs a directory")
        make_dirs(self.directory)
        self._spill = Spill(
            os.path.abspath(spill_dir) if spill_dir is not None else os.path.join(self.directory, "_spill")
        )
        self._budget_dir = os.path.join(self.directory, "_budgets")
        self._con: Any = None
        self._pid = 0
        self._lock_of = (os.getpid(), threading.RLock())  # guards this object's DuckDB connection
        if read_parquet_version(self.directory) != current_version():
            with self._dataset_lock(wait=True):
                migrate_parquet(self.directory)
        # Finishing interrupted compactions and replaying spill files can wait if another process holds the lock
        # (a long compaction, say): opening must not.
        self._replay(finish_compactions=True)

    # -- plumbing ---------------------------------------------------------------------------------------------------
    @property
    def _lock(self) -> threading.RLock:
        """The lock on this object's connection, in this process (a forked child takes a fresh one)."""
        pid, lock = self._lock_of
        if pid != os.getpid():
            self._lock_of = (os.getpid(), lock := threading.RLock())
        return lock

    def _connection(self) -> Any:
        import duckdb

        if self._con is None or self._pid != os.getpid():
            con = duckdb.connect(":memory:")
            con.execute("SET TimeZone = 'UTC'")
            self._con, self._pid = con, os.getpid()
        return self._con

    def _retry(self, attempt: Callable[[], T], what: str) -> T:
        try:
            return retry_call(attempt, transient=_transient, timeout=self.retry_timeout)
        except StoreError:
            raise
        except Exception as exc:
            if _transient(exc):
                raise StoreError(
                    f"could not {what} {self.directory} within retry_timeout={self.retry_timeout}s: {exc}"
                ) from exc
            raise

    @contextlib.contextmanager
    def _dataset_lock(self, *, wait: bool) -> Iterator[bool]:
        """Hold the dataset's lock file (``flock``; yields False when ``wait`` is off and it is taken)."""
        fd = os.open(os.path.join(self.directory, "_lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            got = _try_lock(fd)
            if not got and wait:

                def again() -> None:
                    if not _try_lock(fd):
                        raise BlockingIOError("dataset lock is held by another process")

                try:
                    retry_call(again, transient=lambda e: isinstance(e, BlockingIOError), timeout=self.retry_timeout)
                except BlockingIOError as exc:
                    raise StoreError(
                        f"could not lock {self.directory} within retry_timeout={self.retry_timeout}s "
                        "(a compaction or migration in another process holds it)"
                    ) from exc
                got = True
            try:
                yield got
            finally:
                if got:
                    _unlock(fd)
        finally:
            os.close(fd)

    def _read(self, body: Callable[[Any, str, list[Any]], T], filters: Filters, what: str) -> T:
        """Run ``body(con, source, source_params)`` over the files ``filters`` can touch, retrying I/O errors."""
        if self._spill.pending():
            self._replay()
        first = filters.since.date() if filters.since is not None else None
        last = (filters.until - timedelta(microseconds=1)).date() if filters.until is not None else None

        def attempt() -> T:
            files = _Listing(self.directory, first, last).paths()
            with self._lock:
                con = self._connection()
                if not files:
                    return body(con, _EMPTY, [])
                return body(con, _SOURCE, [files])

        return self._retry(attempt, what)

    # -- writing ----------------------------------------------------------------------------------------------------
    def append(self, entries: Sequence[CostEntry]) -> None:
        """Write ``entries`` as one new file per UTC day; when this returns they are durable (or durably spilled)."""
        batch = list(entries)
        if not all(map(isinstance, batch, itertools.repeat(CostEntry))):  # a C loop: ~1 ms less per 10,000
            bad = next(e for e in batch if not isinstance(e, CostEntry))
            raise TypeError(f"entries must be CostEntry objects, got {bad!r}")
        if self._spill.pending():
            self._replay()
        if not batch:
            return
        try:
            self._write(batch)
        except _PartlyWritten as partly:
            exc = partly.error
            try:
                path = self._spill.write(partly.remaining)
            except OSError as spill_exc:
                raise StoreError(f"{exc}; spilling the entries failed too: {spill_exc}") from spill_exc
            logger.warning("llmcost: %s; %d entries spilled to %s for replay", exc, len(partly.remaining), path)

    def _write(self, batch: Sequence[CostEntry]) -> None:
        """Write ``batch`` day by day; raise ``_PartlyWritten`` with what is left when a day cannot be written.

        The batch is converted to columns once; each day's rows are a slice of them (a batch in time order, as the
        tracker's are, needs no copy), written with one ``COPY`` straight from those arrays. Before the first of
        several days is written, the amounts are cast as the files will hold them, so an entry DuckDB cannot take
        (an amount beyond DECIMAL(38, 18)) fails the whole append and no day is written twice on a retry.
        """
        import numpy as np

        raw, tag_maps = ingest_columns(batch)
        days = raw["timestamp_us"] // MICROS_PER_DAY
        by_day, in_order = raw, days
        if len(days) > 1 and not bool((days[1:] >= days[:-1]).all()):
            order = np.argsort(days, kind="stable")
            by_day = {name: array[order] for name, array in raw.items()}
            in_order = days[order]
        cuts = (np.flatnonzero(in_order[1:] != in_order[:-1]) + 1).tolist()
        starts, ends = [0, *cuts], [*cuts, len(days)]
        unique = in_order[starts].tolist()
        if len(unique) > 1:
            self._check(by_day)
        for n, (day, start, end) in enumerate(zip(unique, starts, ends, strict=True)):
            part = ({name: array[start:end] for name, array in by_day.items()}, tag_maps)
            try:
                self._retry(functools.partial(self._write_day, day, part), "append to")
            except StoreError as exc:
                if not isinstance(exc.__cause__, Exception) or not _transient(exc.__cause__):
                    raise
                left = set(unique[n:])
                remaining = [e for e, d in zip(batch, days.tolist(), strict=True) if d in left]
                raise _PartlyWritten(exc, remaining) from exc

    def _check(self, raw: dict[str, Any]) -> None:
        """Raise DuckDB's error now if an amount of ``raw`` does not fit the files' DECIMAL(38, 18)."""
        with self._lock:
            con = self._connection()
            with registered(con, (raw, {}), tag_maps=False):
                con.execute(f"SELECT max(CAST(amount AS DECIMAL(38, 18))) FROM {RAW}").fetchall()

    def _write_day(self, day: int, columns: Any) -> None:
        """Write one file for ``day`` (days since the epoch) from ``ingest_columns`` arrays holding that day's rows.

        The file is written to a hidden temporary name in the day's directory, fsynced, renamed into place and the
        directory fsynced. A batch's few distinct tag maps travel as a parameter (``INGEST_SELECT_TAGS_PARAM``), which
        spares a second registered table and a subquery (~2-3 ms of the ~11 ms fixed cost of a small append).
        """
        folder = os.path.join(self.directory, _day_name(_EPOCH_DAY + timedelta(days=day)))
        make_dirs(folder)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = os.path.join(folder, f".{name}.tmp")
        copy = f"TO ? (FORMAT parquet, COMPRESSION {self.compression})"
        texts = columns[1]["tags"]
        few = len(texts) <= PARAM_TAG_MAPS
        try:
            with self._lock:
                con = self._connection()
                with registered(con, columns, tag_maps=not few):
                    if few:
                        con.execute(f"COPY ({INGEST_SELECT_TAGS_PARAM}) {copy}", [texts.tolist(), tmp])
                    else:
                        con.execute(f"COPY ({INGEST_SELECT}) {copy}", [tmp])
            fsync_file(tmp)
            os.replace(tmp, os.path.join(folder, name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        # The file is in place: a failure from here on must not make the caller write it again.
        try:
            fsync_dir(folder)
        except OSError as exc:
            logger.warning("llmcost: could not fsync %s after writing %s: %s", folder, name, exc)

    def _replay(self, *, finish_compactions: bool = False) -> None:
        """Replay spill files if no other process is busy with the dataset (else leave them for later)."""
        try:
            with self._dataset_lock(wait=False) as got:
                if got:
                    if finish_compactions:
                        self._finish_compactions()
                    self._replay_locked()
        except (OSError, StoreError) as exc:
            logger.warning("llmcost: could not replay spilled entries into %s yet: %s", self.directory, exc)

    def _replay_locked(self) -> None:
        for path in self._spill.pending():
            entries = self._spill.read(path)
            if entries:
                have = self._ids_present(entries)
                missing = [e for e in entries if e.id not in have]
                if missing:
                    try:
                        self._write(missing)
                    except _PartlyWritten as partly:
                        raise partly.error from None
            self._spill.remove([path])
            logger.info("llmcost: replayed spill file %s into %s", path, self.directory)

    def _ids_present(self, entries: Sequence[CostEntry]) -> set[str]:
        """Which of ``entries``' ids the dataset already holds (a replay interrupted after its write)."""
        first = min(e.timestamp for e in entries).date()
        last = max(e.timestamp for e in entries).date()
        ids = sorted({e.id for e in entries})

        def body(con: Any, source: str, params: list[Any]) -> set[str]:
            rows = con.execute(f"SELECT id FROM {source} WHERE id IN (SELECT unnest(?))", [*params, ids]).fetchall()
            return {r[0] for r in rows}

        return self._read_range(body, first, last)

    def _read_range(self, body: Callable[[Any, str, list[Any]], T], first: date, last: date) -> T:
        def attempt() -> T:
            files = _Listing(self.directory, first, last).paths()
            with self._lock:
                con = self._connection()
                return body(con, _SOURCE, [files]) if files else body(con, _EMPTY, [])

        return self._retry(attempt, "read")

    # -- compaction -------------------------------------------------------------------------------------------------
    def compact(self) -> int:
        """Merge each day's Parquet files into one; return how many files were merged away.

        Safe while other processes append and read: appends during a compaction go to new files it does not
        touch, and readers never see a merged file together with its inputs (see the module docs). Rows are kept
        exactly once (a merge also drops any duplicate ids).

        Example::

            removed = store.compact()
        """
        removed = 0
        with self._dataset_lock(wait=True):
            self._finish_compactions()
            self._sweep_temporaries()
            listing = _Listing(self.directory, None, None)
            for day, files in sorted(listing.by_day.items()):
                if len(files) > 1:
                    self._retry(lambda: self._compact_day(day, files), "compact")  # noqa: B023
                    removed += len(files) - 1
        return removed

    def _sweep_temporaries(self, older_than: float = 3600.0) -> None:
        """Delete temporary files that writers killed mid-write left behind (an hour old: no live writer's)."""
        cutoff = time.time() - older_than
        for name in os.listdir(self.directory):
            if _parse_day(name) is None:
                continue
            folder = os.path.join(self.directory, name)
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for f in os.listdir(folder):
                    path = os.path.join(folder, f)
                    with contextlib.suppress(FileNotFoundError):
                        if f.startswith(".") and f.endswith(".tmp") and os.stat(path).st_mtime < cutoff:
                            os.unlink(path)

    def _compact_day(self, day: date, inputs: list[str]) -> None:
        folder = os.path.join(self.directory, _day_name(day))
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = os.path.join(folder, f".{name}.tmp")
        try:
            with self._lock:
                con = self._connection()
                con.execute(
                    f"COPY ({_DEDUPED}) TO ? (FORMAT parquet, COMPRESSION {self.compression})",
                    [[os.path.join(folder, f) for f in inputs], tmp],
                )
            fsync_file(tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        records = os.path.join(self.directory, "_compactions")
        make_dirs(records)
        record = os.path.join(records, f"{uuid.uuid4().hex}.json")
        write_atomic(record, json.dumps({"day": day.isoformat(), "output": name, "inputs": inputs}).encode())
        os.replace(tmp, os.path.join(folder, name))
        fsync_dir(folder)
        self._finish(folder, name, inputs, record)

    def _finish(self, folder: str, output: str, inputs: Sequence[str], record: str) -> None:
        """Complete a compaction whose merged file is in place: delete its inputs, then its record."""
        for f in inputs:
            if f != output:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, f))
        fsync_dir(folder)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record)
        fsync_dir(os.path.dirname(record))

    def _finish_compactions(self) -> None:
        """Finish (merged file in place) or undo (it is not) compactions a crash interrupted; caller holds the lock."""
        for c in _compactions(self.directory):
            folder = os.path.join(self.directory, _day_name(c.day))
            if os.path.exists(os.path.join(folder, c.output)):
                self._finish(folder, c.output, sorted(c.inputs), c.record)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, f".{c.output}.tmp"))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(c.record)

    # -- reading ----------------------------------------------------------------------------------------------------
    def _entries(self, filters: Filters) -> list[CostEntry]:
        def body(con: Any, source: str, params: list[Any]) -> list[CostEntry]:
            sql, where = select_sql(source, filters)
            return read_entries(con, sql, [*params, *where])

        return self._read(body, filters, "read")

    def _scan(self, filters: Filters) -> pd.DataFrame:
        def body(con: Any, source: str, params: list[Any]) -> pd.DataFrame:
            sql, where = select_sql(source, filters)
            return read_frame(con, sql, [*params, *where])

        return self._read(body, filters, "read")

    def _total(self, filters: Filters) -> Decimal:
        def body(con: Any, source: str, params: list[Any]) -> Decimal:
            return read_total(con, source, filters, params)

        return self._read(body, filters, "read")

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run DuckDB ``sql`` against a view ``entries`` over the dataset (see ``CostStore.query``).

        Example::

            store.query("SELECT tags['team'] AS team, sum(amount) AS cost FROM entries GROUP BY team")
        """
        if not isinstance(sql, str):
            raise TypeError(f"sql must be a str, got {sql!r}")

        def body(con: Any, source: str, source_params: list[Any]) -> pd.DataFrame:
            if source_params:
                rel = con.read_parquet(source_params[0], union_by_name=True).project(_CANONICAL)
            else:
                rel = con.sql(_EMPTY[1:-1])
            rel.create_view("entries", replace=True)
            try:
                return fetch_frame(con, sql, params)
            finally:
                with contextlib.suppress(Exception):
                    con.abort()
                con.execute("DROP VIEW IF EXISTS entries")

        return self._read(body, Filters(), "query")

    def close(self) -> None:
        """Close the private DuckDB connection; the store stays usable (it reconnects on demand)."""
        with self._lock:
            con, self._con = self._con, None
            if con is not None and self._pid == os.getpid():
                with contextlib.suppress(Exception):
                    con.close()

    # -- budget definitions -----------------------------------------------------------------------------------------
    def _budget_path(self, name: str) -> str:
        return os.path.join(self._budget_dir, hashlib.sha256(name.encode("utf-8")).hexdigest() + ".json")

    def save_budget(self, name: str, definition: str) -> None:
        """Keep (or replace) the budget definition ``definition`` under ``name`` (one file, written atomically)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"budget name must be a non-empty str, got {name!r}")
        if not isinstance(definition, str):
            raise TypeError(f"budget definition must be a str (JSON text), got {definition!r}")
        make_dirs(self._budget_dir)
        data = json.dumps({"name": name, "definition": definition}, ensure_ascii=False).encode("utf-8")
        self._retry(lambda: write_atomic(self._budget_path(name), data), "save a budget in")

    def load_budgets(self) -> dict[str, str]:
        """Every saved budget definition, by name."""
        try:
            names = sorted(n for n in os.listdir(self._budget_dir) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return {}
        out = {}
        for n in names:
            try:
                with open(os.path.join(self._budget_dir, n), encoding="utf-8") as f:
                    record = json.load(f)
            except FileNotFoundError:  # deleted meanwhile
                continue
            out[record["name"]] = record["definition"]
        return out

    def delete_budget(self, name: str) -> bool:
        """Forget the budget ``name``; return whether it existed."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        try:
            os.unlink(self._budget_path(name))
        except FileNotFoundError:
            return False
        fsync_dir(self._budget_dir)
        return True


class _PartlyWritten(Exception):
    """Some days of a batch could not be written; ``remaining`` are the entries of those days."""

    def __init__(self, error: StoreError, remaining: list[CostEntry]) -> None:
        super().__init__(str(error))
        self.error = error
        self.remaining = remaining


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, fcntl.LOCK_UN)
