"""``Spill``: a directory of batches a durable store could not write yet, kept on disk until they are replayed.

When an append's retries run out (see ``_durable``), the batch goes to a local file (``<uuid>.jsonl``, one entry per
line in the JSON encoding of ``llmcost._rows``, fsynced, renamed into place), and the append counts as acknowledged:
the entries are on disk. The store replays spill files on its next open and append and deletes them once their
entries are in; replay skips ids the store already has, so a replay that is interrupted and run again adds nothing
twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Sequence

from .._entry import CostEntry
from .._rows import entry_from_json, entry_to_json
from ._disk import fsync_dir, make_dirs, write_atomic

__all__ = ["Spill"]

logger = logging.getLogger("llmcost")


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
            spill.remove([path])
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
