"""``ParquetStore``: entries as a hive-partitioned Parquet dataset that Spark, Trino, Polars and DuckDB read as is.

Layout of the store directory::

    day=2024-05-01/part-<uuid>.parquet    entries whose UTC timestamp falls on that day
    _llmcost.json                         schema version
    _budgets/<sha256 of name>.json        one budget definition per file
    _compactions/<uuid>.json              compactions in progress (see below)
    _spill/<uuid>.jsonl                   batches that could not be written yet (or a per-user fallback)
    _lock                                 taken by compaction, migration and spill replay
    _ledger.sqlite                        the budget ledger (reservations across processes, see ``_ledger``)
    ../<name>.dead-letter/                entries set aside (``set_aside``), next to the directory

Names starting with ``_`` or ``.`` are hidden from Spark, Trino and Hive by convention; the only thing user data
decides in a path is the day, so tags and resources never reach the file system.

Writing: each append writes one file per UTC day in the batch, with DuckDB ``COPY`` to a hidden temporary name in
the day's directory, fsyncs it, and once every day's file is written renames each to ``part-<uuid>.parquet``
(atomic) and fsyncs the directories: a batch is in the store whole or not at all. Readers
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

Only the store's own files are read: ``part-*.parquet`` whose columns are the store's (checked once per file and
store object). Anything else in a day directory is foreign: left out, never compacted or deleted, logged once
(``foreign_files()``). A directory this process cannot write opens read-only (no directory, lock or migration
written).

Every file holds exactly the declared schema (``_rows.SQL_TYPES``): writes cast every column, so a day whose
``resource`` is always missing still gets a string column. Files written before a column was added read a typed
NULL in it, and ``compact()`` rewrites them to the declared schema. The layout lives in ``_parquet_layout``, the
compaction steps in ``_parquet_compact``, budget files in ``_budget_files``, retries, locks and spill in
``_durable``; what stays here (some 700 lines, half of it docs) is the store's write, read and compaction paths,
which share its connection and listing.

A frame (``scan``) reads each file's Parquet statistics once per store object, and over files that all prove a
column to hold one value (``currency``, say, or a column no entry sets) it does not read that column but repeats
the value (``_parquet_layout.ColumnFacts``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _state
from .._entry import CostEntry
from .._errors import StoreError
from .._rows import (
    INGEST_SELECT,
    INGEST_SELECT_TAGS_PARAM,
    PARAM_TAG_MAPS,
    ingest_columns,
)
from .._summary import CostSummary
from .._time import seconds_arg
from . import _parquet_compact as compaction
from ._base import CostStore
from ._budget_files import BudgetFiles
from ._disk import check_creatable, fsync_dir, fsync_file, make_dirs
from ._durable import Durable, file_lock
from ._failures import data_error, is_transient_duckdb, store_error
from ._filters import Filters
from ._ledger import DEFAULT_LEASE, Ledger
from ._migrate import PARQUET_META, check_version, current_version, migrate_parquet, read_parquet_version
from ._parquet_layout import (
    COLUMN_STATISTICS,
    SCHEMA_CHECK,
    ColumnFacts,
    Listing,
    column_facts,
    day_name,
    has_every_column,
    is_own_schema,
    reading,
    sweep_temporaries,
)
from ._sql import fetch_frame, read_entries, read_frame, read_summary, read_total, registered, select_sql

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ParquetStore"]

logger = logging.getLogger("llmcost")

T = TypeVar("T")
_EPOCH_DAY = date(1970, 1, 1)
_MICROS_PER_DAY = 86_400_000_000
# What a data file is to the store (checked once per file): its rows with every declared column, its rows written
# before a column was added (read with ``union_by_name``), or not its own.
_CURRENT, _OLDER, _FOREIGN = "current", "older", "foreign"
#: Files a store object's caches of what it found in each file (``_own``, ``_facts``) keep beyond four times a read's
#: before they are cut down to that read's: files compacted away are forgotten, and a cut costs a few wide reads.
CACHE_SLACK = 10_000
# Session variables holding the file lists behind ``query``'s view (views take no parameters).
_VIEW_FILES = ("getvariable('llmcost_current_files')", "getvariable('llmcost_older_files')")


def _connection_settings() -> tuple[str, ...]:
    """Statements run on each new connection of the store: DuckDB keeps each file's Parquet metadata between
    queries (files are never changed once written, and DuckDB checks a cached file's modification time anyway),
    which spares every query opening each file's footer again: ~50 ms a query over a year of daily files. Only from
    DuckDB 2 on, whose cache is an LRU bounded in memory (duckdb/duckdb#20157); before it the cache never forgot a
    file, and a store appended to every few seconds names thousands of files a day."""
    import duckdb

    try:
        major = int(duckdb.__version__.split(".")[0])
    except ValueError:
        return ()
    return ("SET parquet_metadata_cache = true",) if major >= 2 else ()


def _transient(exc: BaseException) -> bool:
    """Errors worth another try: a file a compaction deleted under a reader (listed, then gone), a lock held by
    another process, ``EAGAIN``. Permission denied, a read-only or full disk and damaged files are permanent."""
    import duckdb

    if isinstance(exc, FileNotFoundError):
        return True
    text = str(exc).lower()
    if isinstance(exc, duckdb.IOException) and ("no such file" in text or "no files found" in text):
        return True
    return is_transient_duckdb(exc)


def is_parquet_store(directory: str) -> bool:
    """Whether ``directory`` holds an llmcost Parquet store: its schema record (``_llmcost.json``) or a day's
    partition (``day=...``, as a dataset written elsewhere has), so that a reader can refuse any other directory
    before ``ParquetStore`` would make it a store by opening it.
    """
    if os.path.exists(os.path.join(directory, PARQUET_META)):
        return True
    try:
        with os.scandir(directory) as found:
            return any(e.name.startswith("day=") and e.is_dir() for e in found)
    except OSError:
        return False


class ParquetStore(CostStore):
    """Entries as a hive-partitioned Parquet dataset (``day=YYYY-MM-DD/part-<uuid>.parquet``) in ``directory``.

    Any number of processes may append at once and read meanwhile; ``compact()`` merges small files safely while
    they do. Reads and ``query`` run in DuckDB over the files, pruned to the days the filters cover. Other engines
    read the directory as it is (see docs/stores.md). Period budgets reserve through a SQLite ledger in
    ``_ledger.sqlite``; ``lease`` is how many seconds a killed process's reservations are kept.

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
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a str or os.PathLike, got {directory!r}")
        raw = os.fspath(directory)
        if not raw:
            raise ValueError(f"directory must name a directory, got {raw!r}")
        if "\0" in raw:
            raise ValueError(f"directory must not contain a NUL character, got {raw!r}")
        if compression not in ("zstd", "snappy", "gzip", "uncompressed"):
            raise ValueError(f"compression must be zstd, snappy, gzip or uncompressed, got {compression!r}")
        lease = seconds_arg(lease, "lease")  # (here, not first by a budget's first call, nor after files are made)
        if spill_dir is not None and not isinstance(spill_dir, (str, os.PathLike)):
            raise TypeError(f"spill_dir must be a str, os.PathLike or None, got {spill_dir!r}")
        self.directory = os.path.abspath(raw)
        self.url = "parquet://" + self.directory if self.directory.startswith("/") else "parquet:///" + self.directory
        self._durable = Durable(
            self.directory,
            retry_timeout=retry_timeout,
            spill_dir=os.path.abspath(spill_dir) if spill_dir is not None else os.path.join(self.directory, "_spill"),
            transient=_transient,
            per_path=False,  # each store object has its own connection; files are never written in place
            settings=_connection_settings(),
        )
        self.retry_timeout = self._durable.retry_timeout
        self.compression = compression
        self.lease = lease
        self._budgets = BudgetFiles(os.path.join(self.directory, "_budgets"), retry=self._durable.retry)
        self._lock_file = os.path.join(self.directory, "_lock")  # taken by compaction, migration and spill replay
        self._own_files: dict[str, str] = {}  # data file path -> _CURRENT, _OLDER or _FOREIGN (checked once)
        self._column_facts: dict[str, ColumnFacts] = {}  # file path -> what its statistics prove (read once)
        # Ids of a batch whose write a KeyboardInterrupt or SystemExit cut short while its files were renamed into
        # place: maybe stored, and about to be appended again (see ``_write``), so the next append checks them.
        self._maybe_stored: set[str] = set()
        self._open()
        self._durable.warn_of_dead_letters()

    def _open(self) -> None:
        """Migrate the dataset, finish compactions and replay spill files; where this process cannot write the
        directory, open it read-only (no directory, lock file or migration written). A directory that does not exist
        is created by the first write (``_create``), not here: reads of it answer as empty."""
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise StoreError(
                f"could not open {self.directory}: it exists and is not a directory (a ParquetStore needs a "
                "directory; use duckdb:/// for a file)"
            )
        if not os.path.isdir(self.directory) and not self._durable.spill.pending():
            try:
                check_creatable(self.directory)  # fail now, not at the first write, where it never could be created
            except OSError as exc:
                raise store_error(exc, self.directory, "open") from exc
            return
        self._create()
        if self.read_only:
            return
        # Finishing interrupted compactions and replaying spill files can wait if another process holds the lock
        # (a long compaction, say): opening must not.
        self._replay(finish_compactions=True)

    def _create(self) -> None:
        """Create the dataset directory if needed and record (or migrate to) the current schema version."""
        try:
            if os.path.isdir(self.directory) and not os.access(self.directory, os.W_OK):
                self.read_only = True
                logger.info("llmcost: opening %s read-only: this user cannot write the directory", self.directory)
                check_version(read_parquet_version(self.directory), self.directory)
                return
            make_dirs(self.directory)
            if read_parquet_version(self.directory) != current_version():
                with file_lock(self._lock_file, wait=self.retry_timeout):
                    migrate_parquet(self.directory)
        except OSError as exc:
            raise store_error(exc, self.directory, "open") from exc

    # -- plumbing ---------------------------------------------------------------------------------------------------
    def _run(self, body: Callable[[Any], T]) -> T:
        """``body(con)`` on this object's DuckDB connection, holding its lock."""
        with self._durable.lock:
            return body(self._durable.connection())

    def _read(self, body: Callable[[Any, str, list[Any]], T], filters: Filters, what: str) -> T:
        """Run ``body(con, source, source_params)`` over the files ``filters`` can touch, retrying I/O errors."""
        return self._read_filtered(functools.partial(_on_source, body), filters, what)

    def _read_filtered(self, body: Callable[[Any, list[str], list[str]], T], filters: Filters, what: str) -> T:
        """Run ``body(con, current, older)`` (see ``_read_files``) on the files ``filters`` can touch."""
        if not self.read_only and self._durable.spill.pending():
            self._replay()
        first = filters.since.date() if filters.since is not None else None
        last = (filters.until - timedelta(microseconds=1)).date() if filters.until is not None else None
        return self._read_files(body, first, last, what)

    def _read_range(
        self, body: Callable[[Any, str, list[Any]], T], first: date | None, last: date | None, what: str = "read"
    ) -> T:
        return self._read_files(functools.partial(_on_source, body), first, last, what)

    def _read_files(
        self, body: Callable[[Any, list[str], list[str]], T], first: date | None, last: date | None, what: str
    ) -> T:
        """Run ``body(con, current, older)`` on the store's files of the days from ``first`` to ``last`` (``None``:
        open), split as ``_by_schema`` splits them, retrying I/O errors with a fresh listing."""

        def attempt() -> T:
            current, older = self._by_schema(self._own(Listing(self.directory, first, last)))
            return self._run(lambda con: body(con, current, older))

        return self._durable.retry(attempt, what)

    def _facts(self, con: Any, files: list[str]) -> ColumnFacts:
        """What the statistics of every one of ``files`` prove alike of their columns (see
        ``_parquet_layout.column_facts``), each file's read once per store object (files never change once
        written)."""
        import duckdb

        # The cache read through one reference and the answer from this read's own facts: a read in another thread
        # may put a smaller cache in its place meanwhile (see ``_own``).
        known = self._column_facts
        facts = {p: known.get(p) for p in files}
        unseen = [p for p, found in facts.items() if found is None]
        if unseen:
            try:
                found = column_facts(con.execute(COLUMN_STATISTICS, [unseen]).fetchall())
            except duckdb.BinderException:  # a DuckDB without the statistics' exactness: prove nothing
                found = {}
            checked = {p: found.get(p, ColumnFacts()) for p in unseen}
            facts.update(checked)
            if len(known) > 4 * len(files) + CACHE_SLACK:  # files compacted away: forget them
                self._column_facts = known = {p: f for p, f in known.items() if p in facts}
            known.update(checked)
        return ColumnFacts.shared(facts.values())  # type: ignore[arg-type]  # (every None replaced)

    def _by_schema(self, files: dict[str, str]) -> tuple[list[str], list[str]]:
        """``files`` (the store's own and their kinds, as ``_own`` finds them) split into those holding every
        declared column and those written before a column was added."""
        current = [p for p, kind in files.items() if kind == _CURRENT]
        return current, [p for p, kind in files.items() if kind != _CURRENT]

    # -- files the store did not write --------------------------------------------------------------------------
    def _own(self, listing: Listing) -> dict[str, str]:
        """The listed files that hold this store's rows, in the listing's order, each with its kind (``_CURRENT``
        or ``_OLDER``); the others are reported once (``foreign_files``).

        A file is the store's when its name is the store's (``part-*.parquet``, see ``_parquet_layout``) and its
        schema has the store's columns; each file is checked once per store object (files never change once
        written). A file named as the store's that is not Parquet at all raises ``StoreError`` naming it: it is
        damaged, not foreign.

        The answer comes from this read's own kinds, not the cache read again: a read of every day in another thread
        may put a smaller cache in its place meanwhile, and a read that looked its files up in the new one found
        none of them (a whole store's ``total()`` read 0 while another thread read one day). Only such a read cuts
        the cache down: a read of a few days would forget every other day's files, for the next wide read to check
        again."""
        paths = listing.paths()
        known = self._own_files
        kinds = {p: known.get(p) for p in paths}
        unseen = [p for p, kind in kinds.items() if kind is None]
        if unseen:
            checked = self._check_schemas(unseen)
            kinds.update(checked)
            if listing.whole and len(known) > 4 * len(paths) + CACHE_SLACK:  # files compacted away: forget them
                self._own_files = known = {p: v for p, v in known.items() if p in kinds}
            known.update(checked)
        foreign = [p for p, kind in kinds.items() if kind == _FOREIGN]
        for path in [*listing.foreign, *foreign]:
            _warn_foreign(path)
        return {p: kind for p, kind in kinds.items() if kind != _FOREIGN}  # type: ignore[misc]  # (none is None)

    def _check_schemas(self, paths: list[str]) -> dict[str, str]:
        import duckdb

        def schemas(files: list[str]) -> dict[str, dict[str, tuple[str | None, str | None]]]:
            found: dict[str, dict[str, tuple[str | None, str | None]]] = {p: {} for p in files}
            rows = self._run(lambda con: con.execute(SCHEMA_CHECK, [files]).fetchall())
            for file_name, name, physical, converted in rows:
                found.setdefault(file_name, {}).setdefault(name, (physical, converted))
            return found

        try:
            found = schemas(paths)
        except duckdb.IOException:
            raise  # a file deleted under the listing: the read retries with a fresh one
        except duckdb.Error:
            found = {}
            for path in paths:  # find the file that is not Parquet
                try:
                    found.update(schemas([path]))
                except duckdb.IOException:
                    raise
                except duckdb.Error as exc:
                    raise store_error(exc, path, "read") from exc
        return {p: _kind(found.get(p, {})) for p in paths}

    def foreign_files(self) -> list[str]:
        """Files in the dataset's day directories that this store did not write (by name or schema), which every
        read, ``total`` and ``compact`` leave out and untouched; each is also logged once as a warning.

        Example::

            for path in store.foreign_files():
                print("not part of the store:", path)
        """
        listing = Listing(self.directory, None, None)
        own = set(self._durable.retry(lambda: self._own(listing), "read"))
        return sorted([*listing.foreign, *(p for p in listing.paths() if p not in own)])

    # -- writing ----------------------------------------------------------------------------------------------------
    def append(self, entries: Sequence[CostEntry]) -> None:
        """Write ``entries`` as one new file per UTC day; when this returns they are durable (or durably spilled).

        All or nothing: every day's file is written under a temporary name first and renamed into place only once
        all are written, so an entry that cannot be stored fails the whole append (``StoreError``) with nothing
        written. A batch the disk refuses is spilled (see ``CostStore.append``)."""
        import duckdb

        batch = list(entries)
        if not all(map(isinstance, batch, itertools.repeat(CostEntry))):  # a C loop: ~1 ms less per 10,000
            bad = next(e for e in batch if not isinstance(e, CostEntry))
            raise TypeError(f"entries must be CostEntry objects, got {bad!r}")
        if not self.read_only and self._durable.spill.pending():
            self._replay()
        if self._maybe_stored:
            batch = self._not_stored(batch)
        if not batch:
            return
        try:
            if not os.path.isdir(self.directory):
                self._create()  # the first write creates the dataset
            self._write(batch)
        except _PartlyWritten as partly:
            self._durable.keep_for_later(partly.error, partly.remaining)
        except (StoreError, duckdb.Error) as exc:  # a value DuckDB refuses is sorted out by keep_for_later
            self._durable.keep_for_later(exc, batch)

    def _write(self, batch: Sequence[CostEntry]) -> None:
        """Write ``batch``: one temporary file per day, then all renamed into place.

        The batch is converted to columns once; each day's rows are a slice of them (a batch in time order, as the
        tracker's are, needs no copy), written with one ``COPY`` straight from those arrays. If any day cannot be
        written, the temporary files are deleted and the error raised: nothing of the batch is in the store. Only
        if a rename fails after others went through (the disk went away in between) is ``_PartlyWritten`` raised
        with the entries of the days not in place.

        A KeyboardInterrupt (Ctrl-C), or SystemExit from a signal handler, that arrives once the renames began is
        raised as it is, but the batch's ids are kept (``_maybe_stored``): the caller, a tracker, puts the batch
        back and appends it again, and that append writes only the entries that did not reach the store.
        """
        import numpy as np

        try:
            raw, tag_maps = ingest_columns(batch)
        except (ValueError, TypeError, OverflowError) as exc:
            raise data_error(exc, self.directory) from exc
        days = raw["timestamp_us"] // _MICROS_PER_DAY
        by_day, in_order = raw, days
        if len(days) > 1 and not bool((days[1:] >= days[:-1]).all()):
            order = np.argsort(days, kind="stable")
            by_day = {name: array[order] for name, array in raw.items()}
            in_order = days[order]
        cuts = (np.flatnonzero(in_order[1:] != in_order[:-1]) + 1).tolist()
        starts, ends = [0, *cuts], [*cuts, len(days)]
        unique = in_order[starts].tolist()
        written: list[tuple[int, str, str]] = []  # (day, temporary path, final path)
        try:
            for day, start, end in zip(unique, starts, ends, strict=True):
                part = ({name: array[start:end] for name, array in by_day.items()}, tag_maps)
                written.append(self._durable.retry(functools.partial(self._write_day, day, part), "append to"))
        except BaseException:
            for _, tmp, _ in written:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise
        try:
            self._put_in_place(batch, days, written)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # an interrupt: some or all days may be in place
                with self._durable.lock:
                    self._maybe_stored.update(e.id for e in batch)
                for _, tmp, _ in written:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)  # the days not renamed yet: the next append writes them
            raise

    def _put_in_place(self, batch: Sequence[CostEntry], days: Any, written: list[tuple[int, str, str]]) -> None:
        """Rename the ``written`` temporary files (``(day, temporary, final)``) into place and fsync their
        directories; ``_PartlyWritten`` if a rename fails after others went through."""
        for n, (_, tmp, final) in enumerate(written):
            try:
                os.replace(tmp, final)
            except OSError as exc:
                left = {d for d, _, _ in written[n:]}
                for _, later, _ in written[n:]:
                    with contextlib.suppress(OSError):
                        os.unlink(later)
                remaining = [e for e, d in zip(batch, days.tolist(), strict=True) if d in left]
                raise _PartlyWritten(store_error(exc, self.directory, "append to"), remaining) from exc
        for folder in sorted({os.path.dirname(final) for _, _, final in written}):
            try:  # the files are in place: a failure from here on must not make the caller write them again
                fsync_dir(folder)
            except OSError as exc:
                logger.warning("llmcost: could not fsync %s after writing to it: %s", folder, exc)

    def _not_stored(self, batch: list[CostEntry]) -> list[CostEntry]:
        """``batch`` without the entries of a write cut short by an interrupt (``_maybe_stored``) that the store
        holds after all; those ids are checked once (the rare path: one read of the batch's days)."""
        with self._durable.lock:
            maybe = [e for e in batch if e.id in self._maybe_stored]
            if not maybe:
                return batch
            stored = self._ids_present(maybe)
            self._maybe_stored.difference_update(e.id for e in maybe)
        return [e for e in batch if e.id not in stored]

    def _write_day(self, day: int, columns: Any) -> tuple[int, str, str]:
        """Write one file for ``day`` (days since the epoch) from ``ingest_columns`` arrays holding that day's rows,
        under a hidden temporary name in the day's directory, fsynced; return ``(day, temporary, final path)``.

        A batch's few distinct tag maps travel as a parameter (``INGEST_SELECT_TAGS_PARAM``), which spares a second
        registered table and a subquery (~2-3 ms of the ~11 ms fixed cost of a small append).
        """
        folder = os.path.join(self.directory, day_name(_EPOCH_DAY + timedelta(days=day)))
        make_dirs(folder)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = os.path.join(folder, f".{name}.tmp")
        copy = f"TO ? (FORMAT parquet, COMPRESSION {self.compression})"
        texts = columns[1]["tags"]
        few = len(texts) <= PARAM_TAG_MAPS
        try:
            with self._durable.lock:
                con = self._durable.connection()
                with registered(con, columns, tag_maps=not few):
                    if few:
                        con.execute(f"COPY ({INGEST_SELECT_TAGS_PARAM}) {copy}", [texts.tolist(), tmp])
                    else:
                        con.execute(f"COPY ({INGEST_SELECT}) {copy}", [tmp])
            fsync_file(tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return day, tmp, os.path.join(folder, name)

    def _replay(self, *, finish_compactions: bool = False) -> None:
        """Replay spill files if no other process is busy with the dataset (else leave them for later)."""
        try:
            with file_lock(self._lock_file, wait=None) as got:
                if got:
                    if finish_compactions:
                        compaction.finish_compactions(self.directory)
                    self._replay_locked()
        except (OSError, StoreError) as exc:
            logger.warning("llmcost: could not replay spilled entries into %s yet: %s", self.directory, exc)

    def _replay_locked(self) -> None:
        spill = self._durable.spill
        for path in spill.pending():
            entries = spill.read(path)
            if entries:
                bad = self._durable.replayable(path, entries)
                if bad is not None:
                    self._durable.set_aside(entries, f"spill file {path} could not be replayed", bad)
                    spill.remove([path])
                    continue
                have = self._ids_present(entries)
                missing = [e for e in entries if e.id not in have]
                if missing:
                    try:
                        self._write(missing)
                    except _PartlyWritten as partly:
                        raise partly.error from None
            spill.remove([path])
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

    # -- compaction -------------------------------------------------------------------------------------------------
    def compact(self) -> int:
        """Merge each day's Parquet files into one, and rewrite files of an older schema to the current one; return
        how many files were merged away.

        Safe while other processes append and read: appends during a compaction go to new files it does not
        touch, and readers never see a merged file together with its inputs (see the module docs). Rows are kept
        exactly once (a merge also drops any duplicate ids).

        Example::

            removed = store.compact()
        """
        removed = 0
        if not os.path.isdir(self.directory):
            return removed  # nothing written yet: nothing to compact (and nothing to create)
        if self.read_only:
            raise StoreError(
                f"could not compact {self.directory}: the store is open read-only (this user cannot write it)"
            )
        try:
            with file_lock(self._lock_file, wait=self.retry_timeout):
                compaction.finish_compactions(self.directory)
                sweep_temporaries(self.directory)
                removed = self._compact_locked()
        except OSError as exc:
            raise store_error(exc, self.directory, "compact") from exc
        return removed

    def _compact_locked(self) -> int:
        removed = 0
        listing = Listing(self.directory, None, None)
        own = set(self._durable.retry(lambda: self._own(listing), "compact"))
        for day, names in sorted(listing.by_day.items()):
            folder = os.path.join(self.directory, day_name(day))
            # Foreign files are never merged or deleted.
            files = [f for f in names if os.path.join(folder, f) in own]
            if files and (len(files) > 1 or not self._current(os.path.join(folder, files[0]))):
                self._durable.retry(
                    functools.partial(compaction.merge_day, self._copy, self.directory, day, files), "compact"
                )
                removed += len(files) - 1
        return removed

    def _current(self, path: str) -> bool:
        return self._durable.retry(lambda: self._run(lambda con: compaction.has_declared_schema(con, path)), "compact")

    def _copy(self, select: str, params: Sequence[Any], target: str) -> None:
        """Write the rows of ``select`` to the Parquet file ``target``, every column nullable.

        DuckDB marks a column REQUIRED in the file when its statistics prove it has no NULL (as the statistics of
        Parquet inputs do), while appends, written from NumPy arrays without statistics, mark every column
        OPTIONAL. Without the statistics optimizer the merged file has the same schema as every other file.
        """
        copy = f"COPY ({select}) TO ? (FORMAT parquet, COMPRESSION {self.compression})"

        def body(con: Any) -> None:
            con.execute("SET disabled_optimizers = 'statistics_propagation'")
            try:
                con.execute(copy, [*params, target])
            finally:
                con.execute("RESET disabled_optimizers")

        self._run(body)

    # -- reading ----------------------------------------------------------------------------------------------------
    def _entries(self, filters: Filters) -> list[CostEntry]:
        def body(con: Any, source: str, params: list[Any]) -> list[CostEntry]:
            sql, where = select_sql(source, filters)
            return read_entries(con, sql, [*params, *where])

        return self._read(body, filters, "read")

    def _scan(self, filters: Filters) -> pd.DataFrame:
        """The frame of the matching rows, read in one scan (each scan decodes the files again), leaving out the
        columns the files' statistics show to hold one value throughout (each ~0.01-0.02 s of a 1M-row frame's
        time) and reading the columns they show never NULL as stored, not with their default (see ``read_frame``):
        where files of an older schema are read too, neither (they read NULL in a column they lack)."""

        def body(con: Any, current: list[str], older: list[str]) -> pd.DataFrame:
            facts = self._facts(con, current) if current and not older else ColumnFacts()
            source, params = _source(current, older)
            return read_frame(
                con, source, filters, params, one_scan=True, constants=facts.constants, never_null=facts.never_null
            )

        return self._read_filtered(body, filters, "read")

    def _total(self, filters: Filters) -> Decimal:
        def body(con: Any, source: str, params: list[Any]) -> Decimal:
            return read_total(con, source, filters, params)

        return self._read(body, filters, "read")

    def _summary(self, filters: Filters) -> CostSummary:
        def body(con: Any, source: str, params: list[Any]) -> CostSummary:
            return read_summary(con, source, filters, params)

        return self._read(body, filters, "read")

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run DuckDB ``sql`` against a view ``entries`` over the dataset (see ``CostStore.query``).

        Example::

            store.query("SELECT tags['team'] AS team, sum(amount) AS cost FROM entries GROUP BY team")
        """
        if not isinstance(sql, str):
            raise TypeError(f"sql must be a str, got {sql!r}")

        if not self.read_only and self._durable.spill.pending():
            self._replay()

        def attempt() -> pd.DataFrame:
            current, older = self._by_schema(self._own(Listing(self.directory, None, None)))
            return self._run(lambda con: _query_view(con, current, older, sql, params))

        return self._durable.retry(attempt, "query")

    def close(self) -> None:
        """Close the private DuckDB connection; the store stays usable (it reconnects on demand)."""
        self._durable.close()
        self.close_ledger()

    def open_ledger(self) -> Ledger:
        """The budget ledger every process on this host shares: ``_ledger.sqlite`` in the directory
        (``lease``: seconds a killed process's reservations are kept)."""
        from ._ledger_sqlite import SqliteLedger

        if not self.read_only and not os.path.isdir(self.directory):
            self._create()  # budgets reserve through it: the dataset is about to be written
        return SqliteLedger(os.path.join(self.directory, "_ledger.sqlite"), total=self.total, lease=self.lease)

    # -- entries set aside ------------------------------------------------------------------------------------------
    def set_aside(self, entries: Sequence[CostEntry], reason: str, *, error: BaseException | str | None = None) -> None:
        """Keep ``entries`` in an fsynced JSON-lines file under ``<directory>.dead-letter/`` (or a per-user
        fallback), with ``reason`` and ``error``; see ``CostStore.set_aside``.

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
        """Keep (or replace) the budget definition ``definition`` under ``name`` (one file, written atomically)."""
        if not os.path.isdir(self.directory):
            self._create()
        self._budgets.save(name, definition)

    def load_budgets(self) -> dict[str, str]:
        """Every saved budget definition, by name."""
        return self._budgets.load()

    def delete_budget(self, name: str) -> bool:
        """Forget the budget ``name``; return whether it existed."""
        return self._budgets.delete(name)


def _kind(columns: dict[str, tuple[str | None, str | None]]) -> str:
    """What a file with ``columns`` (from ``SCHEMA_CHECK``) is to the store: ``_CURRENT``, ``_OLDER`` or
    ``_FOREIGN``."""
    if not is_own_schema(columns):
        return _FOREIGN
    return _CURRENT if has_every_column(columns) else _OLDER


def _source(current: list[str], older: list[str]) -> tuple[str, list[Any]]:
    """The relation a read of ``current`` and ``older`` files (see ``ParquetStore._read_files``) selects from
    (``reading``), and the lists of paths its placeholders take."""
    return reading(bool(current), bool(older)), [files for files in (current, older) if files]


def _on_source(body: Callable[[Any, str, list[Any]], T], con: Any, current: list[str], older: list[str]) -> T:
    """``body(con, source, source_params)`` over ``current`` and ``older`` files (see ``_source``)."""
    return body(con, *_source(current, older))


def _query_view(
    con: Any, current: list[str], older: list[str], sql: str, params: Sequence[Any] | Mapping[str, Any] | None
) -> pd.DataFrame:
    """Run the user's ``sql`` on ``con`` against a view ``entries`` over ``current`` and ``older`` files.

    The file lists travel as session variables, since a view takes no parameters; the view's own relation is cheap
    to bind (``reading``), and ``fetch_frame`` binds the user's query once where it can.
    """
    for name, files in zip(("llmcost_current_files", "llmcost_older_files"), (current, older), strict=True):
        if files:
            con.execute(f"SET VARIABLE {name} = ?", [files])
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW entries AS SELECT * FROM {reading(bool(current), bool(older), *_VIEW_FILES)}"
    )
    try:
        return fetch_frame(con, sql, params)
    finally:
        with contextlib.suppress(Exception):
            con.abort()
        con.execute("DROP VIEW IF EXISTS entries")


def _warn_foreign(path: str) -> None:
    """Log, once per process and file, that ``path`` is not the store's."""
    key = ("llmcost foreign file", path)
    with _state.logged_lock:
        if key in _state.logged:
            return
        _state.logged.add(key)
    logger.warning(
        "llmcost: %s was not written by this store (its name or columns are not the store's); it is left out of "
        "every read and never compacted or deleted (see ParquetStore.foreign_files())",
        path,
    )


class _PartlyWritten(Exception):
    """Some days of a batch could not be written; ``remaining`` are the entries of those days."""

    def __init__(self, error: StoreError, remaining: list[CostEntry]) -> None:
        super().__init__(str(error))
        self.error = error
        self.remaining = remaining
