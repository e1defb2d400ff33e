"""``MemoryStore``: entries in a list, for tests, scripts and the default tracker."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from decimal import Decimal

from .._entry import CostEntry
from .._money import ZERO
from ._base import CostStore, Filters

__all__ = ["MemoryStore"]


class MemoryStore(CostStore):
    """A thread-safe store that keeps everything in this process's memory and forgets it at exit.

    Example::

        store = llmcost.MemoryStore()
        tracker = llmcost.CostTracker(store)
        tracker.record(model="gpt-4o", input_tokens=100, output_tokens=20)
        assert len(store.entries()) == 1
    """

    url = "memory://"
    buffered = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[CostEntry] = []
        self._sorted = True
        self._budgets: dict[str, str] = {}

    def append(self, entries: Sequence[CostEntry]) -> None:
        """Add ``entries``; they are acknowledged when this returns."""
        with self._lock:
            rows = self._rows
            for entry in entries:
                if not isinstance(entry, CostEntry):
                    raise TypeError(f"entries must be CostEntry objects, got {entry!r}")
                if self._sorted and rows and (entry.timestamp, entry.id) < (rows[-1].timestamp, rows[-1].id):
                    self._sorted = False
                rows.append(entry)

    def _snapshot(self) -> list[CostEntry]:
        with self._lock:
            if not self._sorted:
                self._rows.sort(key=lambda e: (e.timestamp, e.id))
                self._sorted = True
            return list(self._rows)

    def _entries(self, filters: Filters) -> list[CostEntry]:
        rows = self._snapshot()
        if filters.is_empty:
            return rows
        out = [e for e in rows if filters.matches(e)]
        return out if filters.limit is None else out[: filters.limit]

    def _total(self, filters: Filters) -> Decimal:
        total = ZERO
        for entry in self._entries(filters):
            total += entry.amount
        return total

    def close(self) -> None:
        """Nothing to release: the entries stay until the object is dropped."""

    def save_budget(self, name: str, definition: str) -> None:
        """Keep the budget definition ``definition`` under ``name``."""
        with self._lock:
            self._budgets[name] = definition

    def load_budgets(self) -> dict[str, str]:
        """Every saved budget definition, by name."""
        with self._lock:
            return dict(self._budgets)

    def delete_budget(self, name: str) -> bool:
        """Forget the budget ``name``; return whether it existed."""
        with self._lock:
            return self._budgets.pop(name, None) is not None
