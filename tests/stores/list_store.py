"""``ListStore``: a backend written from the ``CostStore`` ABC alone, its entries in a list.

It is the proof that a new backend is a module plus a fixture line (``conftest.open_again``): everything else the
contract suite asks (``scan``, ``query``, ``summary``) comes from the ABC's defaults.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from decimal import Decimal, localcontext

from llmcost import CostEntry
from llmcost.stores import CostStore, Filters


class ListStore(CostStore):
    """Entries in a Python list, filtered with ``Filters.matches``."""

    url = "list://"
    buffered = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[CostEntry] = []
        self._budgets: dict[str, str] = {}

    def append(self, entries: Sequence[CostEntry]) -> None:
        for entry in entries:
            if not isinstance(entry, CostEntry):
                raise TypeError(f"entries must be CostEntry objects, got {entry!r}")
        with self._lock:
            self._rows.extend(entries)

    def close(self) -> None:
        pass

    def _entries(self, filters: Filters) -> list[CostEntry]:
        with self._lock:
            rows = sorted(self._rows, key=lambda e: (e.timestamp, e.id))
        found = [e for e in rows if filters.matches(e)]
        return found if filters.limit is None else found[: filters.limit]

    def _total(self, filters: Filters) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = 80  # exact, whatever the magnitudes
            return +sum((e.amount for e in self._entries(filters)), Decimal(0))

    def save_budget(self, name: str, definition: str) -> None:
        with self._lock:
            self._budgets[name] = definition

    def load_budgets(self) -> dict[str, str]:
        with self._lock:
            return dict(self._budgets)

    def delete_budget(self, name: str) -> bool:
        with self._lock:
            return self._budgets.pop(name, None) is not None
