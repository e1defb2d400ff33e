"""The catalog's prices as a compact table on disk, built ahead for one genai-prices version, so that a process's
first priced call need not import genai-prices (its data module and snapshot take most of a second to load).

``_price_table.json`` beside this module holds, for the genai-prices version (and ``data.py`` size) it was built
from: every ``(model, provider)`` that llmcost's catalog lookup resolves to a fixed price (no dated prices, no
correction), with that price, and genai-prices' unit registry. It is built from the catalog by
``_catalog.build_price_table``; a test checks that it is exactly what the catalog gives. Regenerate it after
upgrading genai-prices or changing how the catalog is read::

    python -c "from llmcost._catalog import write_price_table; write_price_table()"

The table is used only while genai-prices is not imported: once anything imports it (a user's own calls, a custom
or auto-updated snapshot, a model the table lacks), llmcost reads the catalog itself, as it would without a table.
A table for another genai-prices version, or none, is ignored. Prices users register still win over both.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from . import _state

__all__ = ["TABLE_FORMAT", "TABLE_PATH", "genai_prices_files", "table_price", "table_units", "table_version"]

#: Where the table ships (package data) and the version of its layout.
TABLE_PATH = os.path.join(os.path.dirname(__file__), "_price_table.json")
TABLE_FORMAT = 1
#: What ``_state.price_table`` holds once the table was looked for and is not usable.
_UNUSABLE: dict[str, Any] = {"usable": False}


def genai_prices_files() -> tuple[str, int] | None:
    """The installed genai-prices version, as its ``.dist-info`` directory names it, and the size of its
    ``data.py``, found without importing it; ``None`` when that cannot be told (then no table is used)."""
    from importlib.util import find_spec

    try:
        spec = find_spec("genai_prices")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    package = os.path.dirname(spec.origin)
    site = os.path.dirname(package)
    try:
        found = [n for n in os.listdir(site) if n.startswith("genai_prices-") and n.endswith(".dist-info")]
        size = os.stat(os.path.join(package, "data.py")).st_size
    except OSError:
        return None
    if len(found) != 1:  # none beside it (an editable install), or stale copies: cannot tell which
        return None
    return found[0][len("genai_prices-") : -len(".dist-info")], size


def _table() -> dict[str, Any]:
    """The table, read once per process, or ``_UNUSABLE``."""
    table = _state.price_table
    if not table:
        with _state.prices_lock:
            if not table:
                table.update(_read())
    return table


def _read() -> dict[str, Any]:
    installed = genai_prices_files()
    if installed is None:
        return _UNUSABLE
    try:
        with open(TABLE_PATH, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError):
        return _UNUSABLE
    if (
        not isinstance(data, dict)
        or data.get("format") != TABLE_FORMAT
        or [data.get("genai_prices"), data.get("data_size")] != list(installed)
    ):
        return _UNUSABLE
    return {"usable": True, **data}


def _usable() -> dict[str, Any] | None:
    table = _table()
    if not table["usable"] or "genai_prices" in sys.modules:  # the catalog may be loaded, updated or replaced
        return None
    return table


def table_price(model: str, provider: str | None) -> list[Any] | None:
    """The table's row for ``(model, provider)``: ``[provider index, model index, price fields...]`` (see
    ``_catalog.build_price_table``), or ``None`` when the table lacks it or is not in use."""
    table = _usable()
    if table is None:
        return None
    index = table["models"].get(f"{model}\t{provider or ''}")
    return None if index is None else table["prices"][index]  # type: ignore[no-any-return]


def table_units() -> dict[str, list[Any]] | None:
    """genai-prices' unit registry as the table keeps it (usage name -> ``[price key, per, dimensions]``), or
    ``None`` when the table is not in use."""
    table = _usable()
    return None if table is None else table["units"]  # type: ignore[no-any-return]


def table_version() -> str | None:
    """The genai-prices version of the table in use (the installed one), or ``None``."""
    table = _usable()
    return None if table is None else table["genai_prices"]  # type: ignore[no-any-return]
