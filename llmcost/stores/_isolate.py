"""Writing a batch so that one entry a store cannot take does not hold back the entries around it.

A buffered tracker hands its store batches of thousands of entries. If one of them is one the store cannot take
(a value past a column's range that got in through ``tracker.add``, a backend's own limit), the whole append fails,
and retrying the same batch fails forever: every later entry would wait behind it. ``append_or_set_aside`` splits a
failing batch in halves until the failure is pinned to single entries, and sets those aside with their reason
(``CostStore.set_aside``), but only on evidence that the store itself works: some other part of the batch went in,
and the entry failed again on its own. A store that is down fails every part, and then the whole batch stays with
the caller, as before.

Example::

    append_or_set_aside(store, batch)   # raises only when the store took none of it
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .._entry import CostEntry
from .._rows import FieldColumns
from ._base import CostStore

__all__ = ["append_columns_or_set_aside", "append_or_set_aside"]

logger = logging.getLogger("llmcost")


def append_or_set_aside(store: CostStore, batch: Sequence[CostEntry]) -> list[CostEntry]:
    """Append ``batch`` to ``store``; return the entries set aside (usually none).

    If the store takes no part of the batch, the first error is raised and nothing was written, so the caller
    keeps the whole batch. Otherwise every entry is either stored or set aside with its reason.
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
    lone, stored_any = _split(store, batch)
    if not stored_any:
        raise first
    rejected: list[CostEntry] = []
    for entry, _ in lone:
        try:
            store.append((entry,))  # a second try on its own: a passing fault does not get an entry set aside
        except Exception as again:  # noqa: BLE001 - any backend, any error: it is judged by failing alone, twice
            store.set_aside((entry,), f"the store refused this entry: {type(again).__name__}: {again}")
            rejected.append(entry)
    if rejected:
        logger.warning(
            "llmcost: %d of %d entries could not be written to %r and were set aside (see store.dead_letters())",
            len(rejected),
            len(batch),
            store,
        )
    return rejected


#: A level of the split whose parts all fail, with at least this many parts, means the store is down, not that
#: every part holds a bad entry: splitting stops there (at most 2 + 4 + 8 failed appends for a store that is down).
_DOWN_AT_PARTS = 8


def _split(store: CostStore, batch: Sequence[CostEntry]) -> tuple[list[tuple[CostEntry, Exception]], bool]:
    """Append the halves of ``batch`` (which failed whole), then the halves of the halves that failed, level by
    level down to single entries; return the single entries that failed, with their errors, and whether any part
    was stored."""
    lone: list[tuple[CostEntry, Exception]] = []
    stored_any = False
    level = [batch]
    while level:
        failed = []
        parts = [half for part in level for half in (part[: len(part) // 2], part[len(part) // 2 :])]
        for part in parts:
            try:
                store.append(part)
                stored_any = True
            except Exception as error:  # noqa: BLE001 - any backend, any error: the split decides what it means
                if len(part) == 1:
                    lone.append((part[0], error))
                else:
                    failed.append(part)
        if not stored_any and len(parts) >= _DOWN_AT_PARTS:
            break
        level = failed
    return lone, stored_any
