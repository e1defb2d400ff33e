"""Writing a batch so that one entry a store cannot take does not hold back the entries around it.

A buffered tracker hands its store batches of thousands of entries. If one of them is one the store cannot take
(a value past a column's range that got in through ``tracker.add``, a backend's own limit), the whole append fails,
and retrying the same batch fails forever: every later entry would wait behind it. ``append_or_set_aside`` splits a
failing batch in halves until the failure is pinned to single entries, and sets those aside with their reason
(``CostStore.set_aside``), but only on evidence that the store itself works: some other part of the batch went in,
and the entry failed on its own three more times running, while parts beside it went in. A store that is down fails
every part: if it took none of the batch, the whole batch stays with the caller, as before. If it went down after
taking some parts (a whole level of the split fails), or an entry can be neither stored nor set aside,
``PartlyWritten`` tells the caller which entries to keep (only those: the others are stored, and kept again they
would be stored twice). So a store that is down never gets a valid entry set aside.

Example::

    append_or_set_aside(store, batch)   # raises when the store took none of it, PartlyWritten when some
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from .._entry import CostEntry
from .._errors import StoreError
from .._rows import FieldColumns
from ._base import CostStore

__all__ = ["PartlyWritten", "append_columns_or_set_aside", "append_or_set_aside"]

logger = logging.getLogger("llmcost")


def append_or_set_aside(store: CostStore, batch: Sequence[CostEntry]) -> list[CostEntry]:
    """Append ``batch`` to ``store``; return the entries set aside (usually none).

    If the store takes no part of the batch, the first error is raised and nothing was written, so the caller
    keeps the whole batch. If it takes some parts and then fails every part (down), or cannot set an entry aside,
    ``PartlyWritten`` is raised: the caller keeps its ``unwritten`` entries, the rest are stored or set aside.
    Otherwise every entry is either stored or set aside with its reason.
    """
    try:
        store.append(batch)
        return []
    except Exception as error:
        if len(batch) == 1:
            raise
        first = error
    return _set_aside_after(store, batch, first)


def append_columns_or_set_aside(store: CostStore, columns: FieldColumns) -> list[CostEntry]:
    """``append_or_set_aside`` of the entries ``columns`` holds, appended as columns (``append_columns``); the
    entries are built only when that fails, to split the batch."""
    try:
        store.append_columns(columns)
        return []
    except Exception as error:
        if len(columns) == 1:
            raise
        first = error
    return _set_aside_after(store, columns.entries(), first)


def _set_aside_after(store: CostStore, batch: Sequence[CostEntry], first: Exception) -> list[CostEntry]:
    """The rest of ``append_or_set_aside`` once ``batch`` failed whole with ``first``."""
    split = _split(store, batch)
    if not split.stored_any:
        raise first
    rejected: list[CostEntry] = []
    unwritten = split.unwritten
    last = split.error or first
    for entry in split.lone:
        refused = _refused_alone(store, entry)
        if refused is None:
            continue
        reason = f"the store refused this entry: {type(refused).__name__}: {refused}"
        try:
            store.set_aside((entry,), reason)
        except Exception as error:  # noqa: BLE001 - kept by the caller instead: others of the batch are stored
            unwritten.append(entry)
            last = error
            continue
        rejected.append(entry)
    if rejected:
        store.set_aside_counted(rejected)  # (their calls' money was spent: budgets keep counting it)
        logger.warning(
            "llmcost: %d of %d entries could not be written to %r and were set aside (see store.dead_letters())",
            len(rejected),
            len(batch),
            store,
        )
    if unwritten:
        # (Raised rather than returned: the caller's failure path keeps entries. Only these: the rest are stored or
        # set aside, and kept again they would be stored twice.)
        position = {id(entry): n for n, entry in enumerate(batch)}
        unwritten.sort(key=lambda entry: position[id(entry)])
        kept = {id(entry) for entry in unwritten}
        raise PartlyWritten(
            f"{len(unwritten)} of {len(batch)} entries could not be written to {store!r}: {last}",
            written=[entry for entry in batch if id(entry) not in kept],
            unwritten=unwritten,
        ) from last
    return rejected


#: How many more times a single entry that failed beside parts that went in is tried alone before it is set aside:
#: a store failing now and then (a flaky network) rarely fails the same entry every time; a bad one always fails.
_TRIES_ALONE = 3


def _refused_alone(store: CostStore, entry: CostEntry) -> Exception | None:
    """Try ``entry`` alone again (``_TRIES_ALONE`` times at most); ``None`` once it goes in, else the last error."""
    refused: Exception | None = None
    for _ in range(_TRIES_ALONE):
        try:
            store.append((entry,))
            return None
        except Exception as again:  # noqa: BLE001 - any backend, any error: it is judged by failing alone, again
            refused = again
    return refused


class PartlyWritten(StoreError):
    """A batch ``append_or_set_aside`` wrote in part: ``written`` (stored or set aside) are done, ``unwritten``
    (in batch order) the caller keeps, as it keeps a whole batch that failed."""

    def __init__(self, message: str, written: list[CostEntry], unwritten: list[CostEntry]) -> None:
        super().__init__(message)
        self.written = written
        self.unwritten = unwritten


#: A level of the split whose parts all fail, with at least this many parts, means the store is down, not that
#: every part holds a bad entry: splitting stops there (at most 2 + 4 + 8 failed appends for a store that is down).
_DOWN_AT_PARTS = 8


@dataclasses.dataclass
class _Split:
    """What ``_split`` made of a batch: the single entries that failed beside parts that went in (``lone``), the
    entries it left unwritten on evidence that the store is down (``unwritten``), and whether any part went in."""

    lone: list[CostEntry] = dataclasses.field(default_factory=list)
    unwritten: list[CostEntry] = dataclasses.field(default_factory=list)
    stored_any: bool = False
    #: The last append error (of the level that stopped the split, if one did).
    error: Exception | None = None


def _split(store: CostStore, batch: Sequence[CostEntry]) -> _Split:
    """Append the halves of ``batch`` (which failed whole), then the halves of the halves that failed, level by
    level down to single entries.

    A single entry that fails on a level where some part went in is ``lone``: the store works, so the entry may be
    one it cannot take. A level on which every part fails is the store going down (even after parts went in
    before), unless there are few parts left to split, as when two bad entries fall one in each half: splitting
    stops at one of ``_DOWN_AT_PARTS`` parts or more, or of single entries only, and what failed there is left
    unwritten. So is a single entry that failed on a level where nothing went in: nothing says the store works."""
    split = _Split()
    level = [batch]
    while level:
        parts = [half for part in level for half in (part[: len(part) // 2], part[len(part) // 2 :])]
        failed = []
        stored_here = False
        for part in parts:
            try:
                store.append(part)
                stored_here = True
            except Exception as error:  # noqa: BLE001 - any backend, any error: the split decides what it means
                failed.append(part)
                split.error = error
        split.stored_any = split.stored_any or stored_here
        if not stored_here and (len(parts) >= _DOWN_AT_PARTS or all(len(part) == 1 for part in parts)):
            split.unwritten.extend(entry for part in failed for entry in part)
            break
        level = []
        for part in failed:
            if len(part) > 1:
                level.append(part)
            elif stored_here:
                split.lone.append(part[0])
            else:
                split.unwritten.append(part[0])
    return split
