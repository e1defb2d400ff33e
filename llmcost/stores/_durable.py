"""What the stores that keep entries in files share: bounded retries, a fork-aware lock around a private DuckDB
connection, the spill and dead-letter files, and the cross-process file lock.

A durable store retries an operation that failed for a passing reason (another process holds the DuckDB file lock,
a compaction deleted a file under a reader, ``EAGAIN``) with exponential backoff and full jitter (tenacity), for at
most ``retry_timeout`` seconds; a permanent cause (``_failures``) fails at once. Every failure reaches the caller as
a ``StoreError`` naming the path, with a hint. When an append fails either way, ``Durable.keep_for_later`` writes
the batch to the store's ``Spill`` (its own directory, else a per-user fallback) and the append counts as
acknowledged, unless an entry of the batch could never be stored (then the caller gets the ``StoreError`` and can
``set_aside`` that entry).

Process state: the per-path locks live in ``llmcost._state`` (``path_lock``), since POSIX file locks cannot tell two
store objects of one process apart; a forked child starts them afresh.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

from .. import _state
from .._entry import CostEntry
from .._errors import StoreError
from .._time import seconds_arg
from ._dead_letter import DeadLetters, warn_of
from ._failures import data_error, is_store_failure, store_error
from ._locations import fallback_dirs
from ._spill import Spill

__all__ = ["Durable", "file_lock", "retry_call"]

logger = logging.getLogger("llmcost")

T = TypeVar("T")

#: At most this many checked spill files are remembered (``Durable.replayable``).
_CHECKED_KEPT = 4096
#: First backoff step and the longest single wait between two attempts, in seconds.
_FIRST_WAIT = 0.005
_MAX_WAIT = 0.25


def retry_call(fn: Callable[[], T], *, transient: Callable[[BaseException], bool], timeout: float) -> T:
    """Call ``fn`` until it succeeds, retrying errors ``transient`` accepts for at most ``timeout`` seconds.

    Waits grow exponentially from 5 ms with full jitter (so processes contending for one lock spread out) and are
    capped at 250 ms; the last error is re-raised when the time is up (shorter within ``_state.short_retries``), or
    once a process ending has used the time its flush has for retries (``_state.past_exit_deadline``).

    Example::

        retry_call(lambda: con.execute("ATTACH ? AS s", [path]), transient=is_lock_error, timeout=30)
    """
    import tenacity

    timeout = _state.retry_seconds(timeout)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient),
        wait=tenacity.wait_random_exponential(multiplier=_FIRST_WAIT, max=_MAX_WAIT),
        # (Also once the process is ending and its flush's time is up: spilled then, not waited on until killed.)
        stop=tenacity.stop_any(
            tenacity.stop_before_delay(timeout) if timeout > 0 else tenacity.stop_after_attempt(1),
            cast(Any, _state.past_exit_deadline),  # (any callable of the retry state is a stop condition)
        ),
        reraise=True,
    )
    return retrying(fn)


_UNKNOWN = object()  # ``Durable.storable``'s answer when its check could not run (``replayable``)


def _version(path: str) -> tuple[int, int, int] | None:
    """What tells one content of the file ``path`` from another (inode, size, modification time); ``None`` if it
    cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class Durable:
    """The retries, lock, private DuckDB connection and spill of one durable store at ``where``.

    ``transient`` tells errors worth another try from the rest; ``settings`` are statements run on each new
    private connection (after ``SET TimeZone = 'UTC'``); ``write_settings``, if given, gives writes a connection
    of their own that runs them too. With ``per_path`` on, every ``Durable`` of the
    same ``where`` in this process shares one lock (a DuckDB file: two attachments of it in one process would
    collide); otherwise the lock is this object's own. Either way a forked child takes a fresh lock and connection.
    Spill files go to ``spill_dir``, dead letters to ``<where>.dead-letter``, each with per-user fallbacks
    (``_locations``).

    Example::

        durable = Durable("/data/costs.duckdb", retry_timeout=30, spill_dir="/data/costs.duckdb.spill",
                          transient=is_transient_duckdb, per_path=True)
        with durable.lock:
            durable.connection().execute("SELECT 1")
    """

    def __init__(
        self,
        where: str,
        *,
        retry_timeout: float,
        spill_dir: str,
        transient: Callable[[BaseException], bool],
        per_path: bool,
        settings: Sequence[str] = (),
        write_settings: Sequence[str] | None = None,
    ) -> None:
        self.where = where
        self._settings = tuple(settings)
        self._write_settings = None if write_settings is None else tuple(write_settings)
        self.retry_timeout = seconds_arg(retry_timeout, "retry_timeout", zero=True)
        self.dead = DeadLetters(where + ".dead-letter", fallbacks=fallback_dirs(where, "dead-letter"), store_path=where)
        self.spill = Spill(
            spill_dir,
            fallbacks=fallback_dirs(where, "spill"),
            store_path=where,
            set_aside_lines=self.dead.set_aside_lines,
        )
        self.transient = transient
        self._per_path = per_path
        # The file's real path keys its lock: two spellings of one file (a symlinked directory) are one attachment
        # to DuckDB, which refused the second while the first was open ("Unique file handle conflict").
        self._lock_path = os.path.realpath(where) if per_path else where
        # (A ``FlushLock``: SIGTERM's flush appends under it, so a signal arriving while the main thread holds it
        # waits for its release, as for the per-path locks of ``_state.path_lock``.)
        self._lock_of = (os.getpid(), _state.FlushLock(reentrant=True))
        self._cons: dict[bool, Any] = {}  # by "is the write connection"; both are this process's (``_pid``)
        #: Spill files whose entries are known storable, by path: the version (``_version``) checked
        #: (``replayable``).
        self._checked: dict[str, tuple[int, int, int]] = {}
        self._pid = 0
        _state.register_fork_aware(self)

    @property
    def lock(self) -> _state.FlushLock:
        """The (reentrant) lock on the connection (and, per path, on the file), in this process."""
        if self._per_path:
            return _state.path_lock(self._lock_path)
        pid, lock = self._lock_of
        if pid != os.getpid():
            self._lock_of = (os.getpid(), lock := _state.FlushLock(reentrant=True))
        return lock

    def connection(self, *, write: bool = False) -> Any:
        """This process's private in-memory DuckDB connection, in UTC (hold ``lock`` while using it). With
        ``write_settings`` given, ``write=True`` answers a second one that also ran those: a DuckDB instance of its
        own, so settings that suit writes (one thread) never reach reads."""
        import duckdb

        if self._pid != os.getpid():
            self.forked()
        own = write and self._write_settings is not None
        con = self._cons.get(own)
        if con is None:
            con = duckdb.connect(":memory:")
            con.execute("SET TimeZone = 'UTC'")
            for statement in (*self._settings, *(self._write_settings or ())) if own else self._settings:
                con.execute(statement)
            self._cons[own] = con
        return con

    def forked(self) -> None:
        """In a forked child (``_state`` calls this after ``fork``): set the parent's connections aside, never used,
        closed or freed (any of which crashes the child); the next use opens this process's own."""
        if self._pid != os.getpid():
            _state.keep_until_exit(self._cons.values())
            self._cons, self._pid = {}, os.getpid()

    def drop_connection(self) -> None:
        """Close the connections (a forked child's inherited ones are only set aside); the next use opens others."""
        self.forked()
        cons, self._cons = self._cons, {}
        for con in cons.values():
            with contextlib.suppress(Exception):
                con.close()

    def close(self) -> None:
        """Close the connection; the store stays usable."""
        with self.lock:
            self.drop_connection()

    def retry(self, attempt: Callable[[], T], what: str, *, timeout: float | None = None) -> T:
        """``attempt()``, retried while it fails for a passing reason. A failure of the store's files (see
        ``_failures.is_store_failure``) is raised as ``StoreError`` naming the path with a hint, caused by the last
        error; a permanent one at once, a passing one when ``timeout`` (default ``retry_timeout``) runs out. Other
        errors pass as they are. ``what`` completes the message: "could not {what} {where}"."""
        timeout = _state.retry_seconds(self.retry_timeout if timeout is None else timeout)
        try:
            return retry_call(attempt, transient=self.transient, timeout=timeout)
        except StoreError:
            raise
        except Exception as exc:
            if not is_store_failure(exc):
                raise  # an error in what was asked (a user's SQL, a value out of range): the caller's to handle
            error = store_error(exc, self.where, what)
            if self.transient(exc):
                error = StoreError(f"{error} [still failing after retry_timeout={timeout}s]")
            raise error from exc

    def storable(self, entries: Sequence[CostEntry], *, unknown: object = None) -> Any:
        """Why ``entries`` could never be stored (a value beyond the stored types), or ``None`` if they can be.

        Converts them exactly as a write does in a fresh in-memory DuckDB (the store's own connection may be the
        thing that failed), touching no file. Only the conversion's own errors count: anything else says nothing
        about the entries, so ``unknown`` (``None`` unless given) is returned for it."""
        import duckdb

        from .._rows import INGEST_SELECT, ingest_columns
        from ._sql import registered

        try:
            columns = ingest_columns(entries)
        except (ValueError, TypeError, OverflowError) as exc:
            return exc
        con = duckdb.connect(":memory:")
        try:
            with registered(con, columns):
                con.execute(f"CREATE TEMP TABLE llmcost_check AS {INGEST_SELECT}")
        except (duckdb.ConversionException, duckdb.OutOfRangeException) as exc:
            return exc
        except duckdb.InvalidInputException as exc:
            # A value DuckDB cannot take (a lone surrogate: "Python Conversion Failure"), but not "cannot run Python
            # code: the Python interpreter is shutting down", which says nothing about the entries.
            if "shutting down" not in str(exc):
                return exc
        except Exception:
            logger.debug("llmcost: could not check entries for %s", self.where, exc_info=True)
            return unknown
        finally:
            con.close()
        return None

    def replayable(self, path: str, entries: Sequence[CostEntry]) -> BaseException | None:
        """``storable`` of the ``entries`` read from the spill file ``path``, checked once per version of the file
        (its inode, size and modification time): a file this store spilled was checked before it was written
        (``keep_for_later``), and one checked already is not checked again at each replay tried while the store
        stays locked (each check opens an in-memory DuckDB: ~30 ms). A check that could not run is not kept."""
        version = _version(path)
        if version is not None and self._checked.get(path) == version:
            return None
        bad = self.storable(entries, unknown=_UNKNOWN)
        if bad is _UNKNOWN:
            return None  # (as ``storable`` answers: nothing is known against them; checked again next time)
        if bad is None and version is not None:
            self._checked_now(path, version)
        return bad

    def _checked_now(self, path: str, version: tuple[int, int, int]) -> None:
        """Remember that ``path`` at ``version`` holds storable entries (at most ``_CHECKED_KEPT`` files: those
        replayed long ago are forgotten in one go)."""
        if len(self._checked) >= _CHECKED_KEPT:
            self._checked.clear()
        self._checked[path] = version

    def keep_for_later(self, error: Exception, entries: Sequence[CostEntry]) -> None:
        """The fallback of an append that ``error`` stopped: spill ``entries`` durably (so they are acknowledged)
        to the store's spill directory or a fallback. Raises ``StoreError`` if an entry could never be stored (it
        must not wait in a spill file that cannot be replayed) or if no place takes the spill file."""
        bad = self.storable(entries, unknown=_UNKNOWN)
        if bad is not None and bad is not _UNKNOWN:
            raise data_error(bad, self.where) from bad
        try:
            path = self.spill.write(entries)
        except OSError as spill_exc:
            raise StoreError(f"{error}; spilling the entries failed too: {spill_exc}") from error
        version = _version(path) if bad is None else None  # (a check that could not run: made again at the replay)
        if version is not None:
            self._checked_now(path, version)  # (checked above: its replay need not check it)
        logger.warning("llmcost: %s; %d entries spilled to %s for replay", error, len(entries), path)

    def set_aside(self, entries: Sequence[CostEntry], reason: str, error: BaseException | str | None = None) -> None:
        """Keep ``entries`` as dead letters (``_dead_letter``); ``StoreError`` if no place takes them."""
        self.dead.set_aside(entries, reason, error, where=self.where)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter of this store, oldest file first."""
        return self.dead.letters()

    def warn_of_dead_letters(self) -> None:
        """Log one warning if the store has dead letters (called when the store opens)."""
        warn_of(self.dead.read())


@contextlib.contextmanager
def file_lock(path: str, *, wait: float | None) -> Iterator[bool]:
    """Hold the cross-process lock file ``path`` (``filelock``: flock on POSIX, msvcrt on Windows).

    Yields whether it was taken: with ``wait=None`` one try is made and ``False`` yielded if another process holds
    it; otherwise it waits up to ``wait`` seconds and raises ``StoreError`` if that runs out.

    Example::

        with file_lock("/data/costs/_lock", wait=30):
            ...  # compact
    """
    import filelock

    lock = filelock.FileLock(path)
    got = True
    try:
        if wait is None:
            lock.acquire(blocking=False)
        else:
            lock.acquire(timeout=wait, poll_interval=0.01)
    except filelock.Timeout as exc:
        if wait is not None:
            raise StoreError(
                f"could not lock {os.path.dirname(path)} within retry_timeout={wait}s "
                "(a compaction or migration in another process holds it)"
            ) from exc
        got = False
    if not got:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
