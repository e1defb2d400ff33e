"""Writing that loses nothing: bounded retries, fsynced files, and the spill of entries a store could not write.

A durable store retries a write that failed for a passing reason (another process holds the DuckDB file lock, a
transient I/O error) with exponential backoff and full jitter, for at most ``retry_timeout`` seconds. When that runs
out, ``Spill.write`` puts the batch in a local file (``<uuid>.jsonl``, one entry per line, fsynced, renamed into
place), and the append counts as acknowledged: the entries are on disk. The store replays spill files on its next
open and append and deletes them once their entries are in; replay skips ids the store already has, so a replay that
is interrupted and run again adds nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from .._entry import CostEntry
from .._usage import Usage

__all__ = ["Spill", "fsync_dir", "make_dirs", "retry_call", "write_atomic"]

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


def fsync_dir(path: str) -> None:
    """Make a rename or unlink in directory ``path`` durable (a no-op where directories cannot be opened)."""
    if os.name == "nt":  # pragma: no cover - NTFS journals metadata; directories cannot be fsynced
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    """Flush the contents of the file at ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY if os.name != "nt" else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str) -> None:
    """Create directory ``path`` (and parents) durably; nothing happens if it exists."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        make_dirs(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path)
        fsync_dir(parent or ".")


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The bytes go to a hidden temporary name in the same directory, are fsynced, then renamed over ``path``, and the
    directory is fsynced so the rename survives a crash.
    """
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def entry_to_json(entry: CostEntry) -> str:
    """One entry as a line of JSON that ``entry_from_json`` turns back into an equal entry."""
    u = entry.usage
    return json.dumps(
        {
            "id": entry.id,
            "timestamp": entry.timestamp.isoformat(),
            "amount": str(entry.amount),
            "currency": entry.currency,
            "category": entry.category.value,
            "resource": entry.resource,
            "description": entry.description,
            "model": entry.model,
            "provider": entry.provider,
            "usage": [u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens],
            "latency_ms": entry.latency_ms,
            "tags": dict(entry.tags),
            "pricing": entry.pricing,
        },
        ensure_ascii=False,
    )


def entry_from_json(line: str) -> CostEntry:
    """The entry ``entry_to_json`` wrote (validated again on the way in)."""
    d: dict[str, Any] = json.loads(line)
    return CostEntry(
        id=d["id"],
        timestamp=datetime.fromisoformat(d["timestamp"]),
        amount=d["amount"],
        currency=d["currency"],
        category=d["category"],
        resource=d["resource"],
        description=d["description"],
        model=d["model"],
        provider=d["provider"],
        usage=Usage(*d["usage"]),
        latency_ms=d["latency_ms"],
        tags=d["tags"],
        pricing=d["pricing"],
    )


class Spill:
    """A directory of batches that could not be written to their store yet.

    Each batch is one ``<uuid>.jsonl`` file, complete once it has that name (it is written under a hidden temporary
    name, fsynced and renamed). The store reads ``pending()`` files, writes their entries (skipping ids it already
    has) and then calls ``remove``.

    Example::

        spill = Spill("/var/lib/costs.duckdb.spill")
        spill.write(entries)                 # durable when this returns
        for path in spill.pending():
            store_insert(spill.read(path))
            spill.remove(path)
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def write(self, entries: Sequence[CostEntry]) -> str:
        """Keep ``entries`` durably in a new spill file and return its path."""
        make_dirs(self.directory)
        path = os.path.join(self.directory, f"{uuid.uuid4().hex}.jsonl")
        text = "".join(entry_to_json(e) + "\n" for e in entries)
        write_atomic(path, text.encode("utf-8"))
        return path

    def pending(self) -> list[str]:
        """Paths of the complete spill files waiting to be replayed, oldest name first."""
        try:
            names = os.listdir(self.directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(os.path.join(self.directory, n) for n in names if n.endswith(".jsonl") and not n.startswith("."))

    def read(self, path: str) -> list[CostEntry] | None:
        """The entries in spill file ``path``; ``None`` if it is gone (another process replayed it).

        A file that cannot be parsed is renamed to ``<name>.bad`` (kept for a human, never replayed again) and
        logged; ``None`` is returned for it.
        """
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return None
        try:
            return [entry_from_json(line) for line in lines if line]
        except (ValueError, TypeError, KeyError) as exc:
            logger.error("llmcost: spill file %s cannot be read (%s); kept as %s.bad", path, exc, path)
            with contextlib.suppress(OSError):
                os.replace(path, path + ".bad")
            return None

    def remove(self, paths: Sequence[str]) -> None:
        """Delete replayed spill files (those already gone are fine)."""
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if paths:
            with contextlib.suppress(OSError):
                fsync_dir(self.directory)
