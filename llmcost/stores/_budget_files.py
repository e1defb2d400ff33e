"""``BudgetFiles``: budget definitions kept one file per budget, named by a hash so no name reaches a path."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from ._disk import fsync_dir, make_dirs, write_atomic

__all__ = ["BudgetFiles"]


class BudgetFiles:
    """Budget definitions in ``directory``, each in ``<sha256 of name>.json`` written atomically.

    ``retry(attempt, what)`` runs a write with the store's retries.

    Example::

        budgets = BudgetFiles("/data/costs/_budgets", retry=lambda attempt, what: attempt())
        budgets.save("monthly", '{"limit": "100"}')
    """

    def __init__(self, directory: str, *, retry: Callable[[Callable[[], Any], str], Any]) -> None:
        self.directory = directory
        self._retry = retry

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, hashlib.sha256(name.encode("utf-8")).hexdigest() + ".json")

    def save(self, name: str, definition: str) -> None:
        """Keep (or replace) the budget definition ``definition`` under ``name``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"budget name must be a non-empty str, got {name!r}")
        if not isinstance(definition, str):
            raise TypeError(f"budget definition must be a str (JSON text), got {definition!r}")
        data = json.dumps({"name": name, "definition": definition}, ensure_ascii=False).encode("utf-8")

        def attempt() -> None:
            make_dirs(self.directory)
            write_atomic(self._path(name), data)

        self._retry(attempt, "save a budget in")

    def load(self) -> dict[str, str]:
        """Every saved budget definition, by name."""
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return {}
        out = {}
        for n in names:
            try:
                with open(os.path.join(self.directory, n), encoding="utf-8") as f:
                    record = json.load(f)
            except FileNotFoundError:  # deleted meanwhile
                continue
            out[record["name"]] = record["definition"]
        return out

    def delete(self, name: str) -> bool:
        """Forget the budget ``name``; return whether it existed."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")

        def attempt() -> bool:
            try:
                os.unlink(self._path(name))
            except FileNotFoundError:
                return False
            fsync_dir(self.directory)
            return True

        return bool(self._retry(attempt, "delete a budget from"))
