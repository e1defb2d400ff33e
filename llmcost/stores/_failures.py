"""What went wrong with a store, told to the user: every failure becomes a ``StoreError`` naming the path, saying
what happened in plain words (never a SQL fragment) and what to do; and which failures are worth another try.

Transient (retried with backoff for ``retry_timeout`` seconds): another process holds the DuckDB file lock, another
DuckDB instance of this process has the file attached, a call was interrupted or would block (``EAGAIN``, ``EINTR``,
``EBUSY``), and for Parquet reads a file a compaction deleted under the reader. Everything else is permanent and
fails at once: permission denied, a read-only file system, a full disk, a missing parent directory, a path that is
a directory or a device, a file that is not a DuckDB database or is damaged, and garbage in a Parquet file.

Example::

    try:
        con.execute("ATTACH ? AS s", [path])
    except Exception as exc:
        if not is_transient_duckdb(exc):
            raise store_error(exc, path, "open") from exc
"""

from __future__ import annotations

import errno
import re

from .._errors import StoreError

__all__ = [
    "data_error",
    "is_lock_conflict",
    "is_store_failure",
    "is_transient_duckdb",
    "is_transient_os",
    "store_error",
    "why",
]

#: ``errno`` values worth another try.
_TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.EBUSY, errno.ETXTBSY})

#: (pattern in the lowercased message, plain words, hint), first match wins.
_CAUSES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("could not set lock", "conflicting lock"),
        "another process holds the store's lock",
        "it is released when that process finishes its operation; raise retry_timeout to wait longer",
    ),
    (
        ("unique file handle conflict", "already attached"),
        "another DuckDB connection in this process has the file open",
        "llmcost's own connections take turns on a file; close a connection to it opened outside llmcost (a "
        "process forked while one was open keeps it for good: fork once the stores' operations have ended)",
    ),
    (
        ("permission denied", "operation not permitted", "errno 13]", "errno 1]"),
        "permission denied",
        "give this user write access to the store and its directory, or read it only (reads open it read-only)",
    ),
    (
        ("read-only file system", "errno 30]"),
        "the file system is read-only",
        "write to a store on a writable file system; reads work as they are",
    ),
    (
        ("no space left", "disk quota", "errno 28]", "errno 122]", "file too large", "errno 27]"),
        "the disk is full (or a size limit was reached)",
        "free space on that disk, or point the store somewhere with room",
    ),
    (
        ("is a directory", "errno 21]"),
        "the path is a directory",
        "point the store URL at a file (e.g. duckdb:///path/costs.duckdb), or use parquet:/// for a directory",
    ),
    (
        ("not a valid duckdb database",),
        "the file is not a DuckDB database",
        "point the store URL at a DuckDB file or at a path that does not exist yet",
    ),
    (
        ("could not fsync", "invalid argument", "not a regular file"),
        "the path is not a regular file (a device or pipe)",
        "point the store URL at a regular file",
    ),
    (
        ("corrupt", "checksum", "could not read enough bytes", "no magic bytes", "invalid parquet", "truncated"),
        "the file is damaged or truncated",
        "restore it from a backup, or move it out of the way so the store can go on without it",
    ),
    (
        ("not a directory", "errno 20]"),
        "a part of the path is a file, not a directory",
        "check the path: a name on it before the last is an existing file",
    ),
    (
        ("no such file or directory", "errno 2]"),
        "a directory on the path does not exist",
        "create the parent directory, or check the path",
    ),
)


def why(exc: BaseException) -> tuple[str, str]:
    """``(what happened, what to do)`` for ``exc``, in plain words."""
    text = str(exc).lower()
    if isinstance(exc, OSError) and exc.errno is not None:
        text += f" [errno {exc.errno}]"
    for patterns, what, hint in _CAUSES:
        if any(p in text for p in patterns):
            return what, hint
    return _first_line(exc), "check the store's path and file system; the cause is chained to this error"


def _first_line(exc: BaseException) -> str:
    """The exception's message without DuckDB's SQL excerpt ("LINE 1: ...") or its error-class prefix."""
    text = str(exc).split("\nLINE ", 1)[0].strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return re.sub(r"^[A-Za-z ]*Error: ", "", first) or type(exc).__name__


def store_error(exc: BaseException, where: str, what: str) -> StoreError:
    """A ``StoreError`` for ``exc``, met while trying to ``what`` (a verb phrase) the store at ``where``.

    Example::

        store_error(PermissionError(13, "Permission denied"), "/data/c.duckdb", "append to")
        # StoreError: could not append to /data/c.duckdb: permission denied (give this user write access ...)
    """
    if isinstance(exc, StoreError):
        return exc
    happened, hint = why(exc)
    return StoreError(f"could not {what} {where}: {happened} ({hint})")


def data_error(exc: BaseException, where: str) -> StoreError:
    """A ``StoreError`` for entries the store cannot hold whatever the disk does (a value out of range)."""
    return StoreError(
        f"entries cannot be stored in {where}: {_first_line(exc)} (an entry's value is out of the stored range; "
        "append the others and keep this one with store.set_aside(entries, reason))"
    )


#: Words of a DuckDB error of another class that the store's file failed under it: a ``COMMIT`` whose checkpoint
#: could not write the file raises ``TransactionException`` ("Failed to commit: Checkpoint failed ... The database
#: has been invalidated. Original error: Could not write file ...: No space left on device").
_FILE_FAILED = ("checkpoint failed", "has been invalidated", "could not write file", "no space left on device")


def is_store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the store's files (an ``OSError``, a DuckDB I/O, permission or fatal error,
    a commit that could not write the file, a damaged file), as opposed to an error in what was asked (a user's
    SQL, a value out of range)."""
    import duckdb

    if isinstance(exc, OSError):
        return True
    failures = tuple(
        getattr(duckdb, name)
        for name in (
            "IOException",
            "PermissionException",
            "FatalException",
            "InternalException",
            "ResourceInUseException",  # (the file attached by another DuckDB instance in this process)
        )
        if hasattr(duckdb, name)
    )
    if isinstance(exc, failures) or type(exc) is duckdb.Error:
        return True
    if isinstance(exc, duckdb.Error):
        text = str(exc).lower()
        return any(words in text for words in _FILE_FAILED)
    return False


def is_transient_os(exc: BaseException) -> bool:
    """Whether an ``OSError`` may pass on another try (``EAGAIN``, ``EINTR``, ``EBUSY``); ``False`` for anything
    else, permission denied, a read-only or full file system or a missing path included."""
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


def is_lock_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` says another process holds a DuckDB file's lock."""
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text


def is_transient_duckdb(exc: BaseException) -> bool:
    """Whether a DuckDB or OS error may pass on another try: a lock held by another process, or an OS error that
    ``is_transient_os``. Every other DuckDB error is permanent."""
    import duckdb

    if isinstance(exc, duckdb.IOException):
        text = str(exc).lower()
        return is_lock_conflict(exc) or "resource temporarily unavailable" in text or "interrupted" in text
    in_use = getattr(duckdb, "ResourceInUseException", None)
    if in_use is not None and isinstance(exc, in_use):
        return True  # another instance in this process has the file attached: it lets go once its work is done
    return is_transient_os(exc)
