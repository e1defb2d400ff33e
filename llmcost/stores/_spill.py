"""``Spill``: a directory of batches a durable store could not write yet, kept on disk until they are replayed.

When an append fails (see ``_durable``), the batch goes to a local file (``<uuid>.jsonl``, one entry per line in the
JSON encoding of ``llmcost._rows``, fsynced, renamed into place) in the store's spill directory or, when that cannot
take it, a per-user fallback (``_locations``), and the append counts as acknowledged: the entries are on disk. The
store replays spill files (from every directory) on its next open and append and deletes them once their entries are
in; replay skips ids the store already has, so a replay that is interrupted and run again adds nothing twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Sequence

from .._entry import CostEntry
from .._rows import entry_from_json, entry_to_json
from ._disk import fsync_dir, make_dirs, write_atomic
from ._locations import prepare_fallback

__all__ = ["Spill", "write_somewhere"]

logger = logging.getLogger("llmcost")


class Spill:
    """The directories of batches that could not be written to their store yet: the store's own, then its fallbacks.

    Each batch is one ``<uuid>.jsonl`` file, complete once it has that name (it is written under a hidden temporary
    name, fsynced and renamed). ``write`` uses the first directory that takes the file (``fallbacks``: see
    ``_locations``). The store reads ``pending()`` files of every directory, writes their entries (skipping ids it
    already has) and then calls ``remove``.

    Example::

        spill = Spill("/var/lib/costs.duckdb.spill", fallbacks=fallback_dirs("/var/lib/costs.duckdb", "spill"),
                      store_path="/var/lib/costs.duckdb")
        spill.write(entries)                 # durable when this returns
        for path in spill.pending():
            store_insert(spill.read(path))
            spill.remove([path])
    """

    def __init__(
        self,
        directory: str,
        *,
        fallbacks: Sequence[str] = (),
        store_path: str = "",
        set_aside_lines: Callable[[str, list[tuple[str, Exception]]], None] | None = None,
    ) -> None:
        self.directory = directory
        self.fallbacks = list(fallbacks)
        self.store_path = store_path
        self.set_aside_lines = set_aside_lines

    @property
    def directories(self) -> list[str]:
        """Where spill files may be, the store's own directory first (``directory`` is ``""`` for a store without
        one, a database: then the fallbacks only)."""
        return [d for d in (self.directory, *self.fallbacks) if d]

    def write(self, entries: Sequence[CostEntry]) -> str:
        """Keep ``entries`` durably in a new spill file and return its path; ``OSError`` if no directory takes it."""
        text = "".join(entry_to_json(e) + "\n" for e in entries).encode("utf-8")
        return write_somewhere(self.directory, self.fallbacks, self.store_path, text)

    def pending(self) -> list[str]:
        """Paths of the complete spill files waiting to be replayed, oldest name first in each directory."""
        found: list[str] = []
        for directory in self.directories:
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            found += sorted(os.path.join(directory, n) for n in names if n.endswith(".jsonl") and n[0] != ".")
        return found

    def read(self, path: str) -> list[CostEntry] | None:
        """The entries in spill file ``path``; ``None`` if it is gone (another process replayed it).

        Lines that cannot be read back as entries go to ``set_aside_lines(path, [(line, error), ...])`` (the
        store's dead letters), the file is rewritten without them (so a later read, after a replay that failed,
        does not set them aside again), and the rest are returned. Without that hook, or if it fails, or if the
        file is not text at all, the file is renamed to ``<name>.bad`` (kept for a human, never replayed again),
        logged, and ``None`` returned.
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._keep_bad(path, exc)
            return None
        entries: list[CostEntry] = []
        good: list[str] = []
        bad: list[tuple[str, Exception]] = []
        undecodable: UnicodeDecodeError | None = None
        # Each line decoded on its own: a stray byte in one (a disk error, a hand edit) costs that line, not the file.
        # (Split at "\n" alone: a text's U+2028, U+2029 and U+0085 are no line ends here.)
        for raw in filter(None, data.split(b"\n")):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                undecodable = exc
                bad.append((raw.decode("utf-8", "backslashreplace"), exc))
                continue
            try:
                entries.append(entry_from_json(line))
                good.append(line)
            except (ValueError, TypeError, KeyError, RecursionError) as exc:  # (a line nested too deep to parse)
                bad.append((line, exc))
        if undecodable is not None and not good:  # not text at all: kept whole for a human
            self._keep_bad(path, undecodable)
            return None
        if bad:
            if self.set_aside_lines is None:
                self._keep_bad(path, bad[0][1])
                return None
            try:
                self.set_aside_lines(path, bad)
            except Exception as exc:  # noqa: BLE001 - whatever failed, the file is kept
                self._keep_bad(path, exc)
                return None
            self._rewrite(path, "".join(line + "\n" for line in good).encode("utf-8"))
        return entries

    def keep_only(self, path: str, entries: Sequence[CostEntry]) -> None:
        """Leave only ``entries`` in spill file ``path`` (delete it if none): for a store that set the file's other
        entries aside, so that a replay failing after that does not set them aside again."""
        self._rewrite(path, "".join(entry_to_json(e) + "\n" for e in entries).encode("utf-8"))

    def _rewrite(self, path: str, data: bytes) -> None:
        """Replace spill file ``path`` with ``data`` atomically (delete it if empty). If that fails, the file stays
        as it was: what was set aside from it may be set aside again, but nothing is lost."""
        try:
            if data:
                write_atomic(path, data)
            else:
                self.remove([path])
        except OSError as exc:
            logger.warning("llmcost: could not rewrite spill file %s without the entries set aside: %s", path, exc)

    def _keep_bad(self, path: str, exc: BaseException) -> None:
        logger.error("llmcost: spill file %s cannot be read (%s); kept as %s.bad", path, exc, path)
        with contextlib.suppress(OSError):
            os.replace(path, path + ".bad")
        return

    def remove(self, paths: Sequence[str]) -> None:
        """Delete replayed spill files (those already gone are fine)."""
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for directory in {os.path.dirname(p) for p in paths}:
            with contextlib.suppress(OSError):
                fsync_dir(directory)


def write_somewhere(directory: str, fallbacks: Sequence[str], store_path: str, data: bytes) -> str:
    """Write ``data`` durably as a new ``<uuid>.jsonl`` in the first of ``directory`` (skipped when ``""``) and
    ``fallbacks`` that takes it; return its path. ``OSError`` naming every place tried if none does."""
    failures = []
    for n, where in enumerate([directory, *fallbacks]):
        if not where:
            continue
        path = os.path.join(where, f"{uuid.uuid4().hex}.jsonl")
        try:
            if n == 0:
                make_dirs(where)
            else:
                prepare_fallback(where, store_path)
            write_atomic(path, data)
        except OSError as exc:
            failures.append(f"{where}: {exc.strerror or exc}")
            continue
        return path
    raise OSError("no place could take the entries (" + "; ".join(failures) + ")")
