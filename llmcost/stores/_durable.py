"""What the stores that keep entries in files share: bounded retries, a fork-aware lock around a private DuckDB
connection, the spill fallback, and the cross-process file lock.

A durable store retries an operation that failed for a passing reason (another process holds the DuckDB file lock,
a compaction deleted a file under a reader, a transient I/O error) with exponential backoff and full jitter
(tenacity), for at most ``retry_timeout`` seconds. When an append's retries run out, ``Durable.keep_for_later``
writes the batch to the store's ``Spill`` and the append counts as acknowledged.

Process state: ``_PATH_LOCKS`` holds one lock per database path for the whole process, since POSIX file locks cannot
tell two store objects of one process apart; it starts afresh in a forked child (``reset``), where a lock another
thread held at fork time would never be released.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from .._entry import CostEntry
from .._errors import StoreError
from ._spill import Spill

__all__ = ["Durable", "file_lock", "retry_call"]

logger = logging.getLogger("llmcost")

T = TypeVar("T")

#: First backoff step and the longest single wait between two attempts, in seconds.
_FIRST_WAIT = 0.005
_MAX_WAIT = 0.25


def retry_call(fn: Callable[[], T], *, transient: Callable[[BaseException], bool], timeout: float) -> T:
    """Call ``fn`` until it succeeds, retrying errors ``transient`` accepts for at most ``timeout`` seconds.

    Waits grow exponentially from 5 ms with full jitter (so processes contending for one lock spread out) and are
    capped at 250 ms; the last error is re-raised when the time is up.

    Example::

        retry_call(lambda: con.execute("ATTACH ? AS s", [path]), transient=is_lock_error, timeout=30)
    """
    import tenacity

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient),
        wait=tenacity.wait_random_exponential(multiplier=_FIRST_WAIT, max=_MAX_WAIT),
        stop=tenacity.stop_before_delay(timeout) if timeout > 0 else tenacity.stop_after_attempt(1),
        reraise=True,
    )
    return retrying(fn)


class _PathLocks:
    """One ``RLock`` per path for the whole process, made on first use."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every lock (a forked child: locks held by the parent's other threads would never be released)."""
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}

    def get(self, path: str) -> threading.RLock:
        with self._guard:
            lock = self._locks.get(path)
            if lock is None:
                lock = self._locks[path] = threading.RLock()
            return lock


_PATH_LOCKS = _PathLocks()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_PATH_LOCKS.reset)


def _check_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"retry_timeout must be a non-negative number of seconds, got {value!r}")
    return float(value)


class Durable:
    """The retries, lock, private DuckDB connection and spill of one durable store at ``where``.

    ``transient`` tells errors worth another try from the rest. With ``per_path`` on, every ``Durable`` of the
    same ``where`` in this process shares one lock (a DuckDB file: two attachments of it in one process would
    collide); otherwise the lock is this object's own. Either way a forked child takes a fresh lock and connection.

    Example::

        durable = Durable("/data/costs.duckdb", retry_timeout=30, spill_dir="/data/costs.duckdb.spill",
                          transient=is_lock_error, per_path=True)
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
    ) -> None:
        self.where = where
        self.retry_timeout = _check_timeout(retry_timeout)
        self.spill = Spill(spill_dir)
        self.transient = transient
        self._per_path = per_path
        self._lock_of = (os.getpid(), self._new_lock())
        self._con: Any = None
        self._pid = 0

    def _new_lock(self) -> threading.RLock:
        return _PATH_LOCKS.get(self.where) if self._per_path else threading.RLock()

    @property
    def lock(self) -> threading.RLock:
        """The lock on the connection (and, per path, on the file), in this process."""
        pid, lock = self._lock_of
        if pid != os.getpid():
            self._lock_of = (os.getpid(), lock := self._new_lock())
        return lock

    def connection(self) -> Any:
        """This process's private in-memory DuckDB connection, in UTC (hold ``lock`` while using it)."""
        import duckdb

        if self._con is None or self._pid != os.getpid():
            con = duckdb.connect(":memory:")
            con.execute("SET TimeZone = 'UTC'")
            self._con, self._pid = con, os.getpid()
        return self._con

    def drop_connection(self) -> None:
        """Close the connection (a forked child's inherited one is only forgotten); the next use opens another."""
        con, self._con = self._con, None
        if con is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                con.close()

    def close(self) -> None:
        """Close the connection; the store stays usable."""
        with self.lock:
            self.drop_connection()

    def retry(self, attempt: Callable[[], T], what: str) -> T:
        """``attempt()``, retried while it fails for a passing reason; ``StoreError`` (caused by the last error)
        when ``retry_timeout`` runs out. ``what`` completes the message: "could not {what} {where}"."""
        try:
            return retry_call(attempt, transient=self.transient, timeout=self.retry_timeout)
        except StoreError:
            raise
        except Exception as exc:
            if self.transient(exc):
                raise StoreError(
                    f"could not {what} {self.where} within retry_timeout={self.retry_timeout}s: {exc}"
                ) from exc
            raise

    def passing(self, error: StoreError) -> bool:
        """Whether ``error`` (from ``retry``) was a passing failure that outlasted the retries."""
        return isinstance(error.__cause__, Exception) and self.transient(error.__cause__)

    def keep_for_later(self, error: StoreError, entries: Sequence[CostEntry]) -> None:
        """The fallback of an append that ``error`` stopped: spill ``entries`` (durable, so acknowledged) if the
        error was passing, else re-raise it; raise ``StoreError`` if the spill file cannot be written either."""
        if not self.passing(error):
            raise error
        try:
            path = self.spill.write(entries)
        except OSError as spill_exc:
            raise StoreError(f"{error}; spilling the entries failed too: {spill_exc}") from spill_exc
        logger.warning("llmcost: %s; %d entries spilled to %s for replay", error, len(entries), path)


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
