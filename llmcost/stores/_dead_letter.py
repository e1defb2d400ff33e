"""``DeadLetters``: entries a durable store could not hold, kept on disk with the reason, never lost.

Each ``set_aside`` call writes one ``<uuid>.jsonl`` file (fsynced, renamed into place) in ``<store path>.dead-letter/``
or, when that cannot take it, a per-user fallback (``_locations``). Each line is one entry::

    {"reason": "...", "error": "..." or null, "entry": {<the row's JSON encoding, see _rows.entry_to_json>}}

and ``entry`` is the entry's ``repr()`` text where even that encoding fails. Nothing replays these files: a human
looks at them (``CostStore.dead_letters()``), fixes or drops the entries, and deletes the files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from .._entry import CostEntry
from .._errors import StoreError
from .._rows import entry_to_json
from ._spill import write_somewhere

__all__ = ["DeadLetters", "dead_letter_record", "error_text", "warn_of"]

logger = logging.getLogger("llmcost")


def error_text(error: BaseException | str | None) -> str | None:
    """``error`` as the text kept with a dead letter."""
    if error is None or isinstance(error, str):
        return error
    return f"{type(error).__name__}: {error}"


def dead_letter_record(entry: Any, reason: str, error: BaseException | str | None) -> dict[str, Any]:
    """What ``dead_letters()`` returns for ``entry``: ``reason``, ``error`` and the entry's JSON record (or its
    ``repr()`` text where the entry cannot be encoded)."""
    try:
        record: Any = json.loads(entry_to_json(entry))
    except Exception:  # noqa: BLE001 - whatever is wrong with it, the entry must be kept
        try:
            record = repr(entry)
        except Exception:  # noqa: BLE001
            record = f"<{type(entry).__name__} that cannot be shown>"
    return {"reason": reason, "error": error_text(error), "entry": record}


def warn_of(found: dict[str, list[dict[str, Any]]]) -> None:
    """Log one warning for the dead letters ``found`` (by file), naming the files, the count and the reasons."""
    if not found:
        return
    count = sum(len(letters) for letters in found.values())
    reasons = sorted({str(letter.get("reason")) for letters in found.values() for letter in letters})
    logger.warning(
        "llmcost: %d entries set aside in %s: %s; see CostStore.dead_letters()",
        count,
        ", ".join(sorted(found)),
        "; ".join(reasons),
    )


class DeadLetters:
    """The dead-letter directory of one store, and its fallbacks.

    Example::

        letters = DeadLetters("/data/costs.duckdb.dead-letter", fallbacks=[], store_path="/data/costs.duckdb")
        letters.write([entry], "amount out of range", error=exc)
        letters.read()            # {path: [{"reason": ..., "error": ..., "entry": {...}}]}
    """

    def __init__(self, directory: str, *, fallbacks: Sequence[str] = (), store_path: str = "") -> None:
        self.directory = directory
        self.fallbacks = list(fallbacks)
        self.store_path = store_path

    def write(self, entries: Sequence[CostEntry], reason: str, error: BaseException | str | None = None) -> str:
        """Keep ``entries`` with ``reason`` in a new fsynced file and return its path; ``OSError`` if no directory
        takes it."""
        lines = [json.dumps(dead_letter_record(e, reason, error), ensure_ascii=False) for e in entries]
        data = "".join(line + "\n" for line in lines).encode("utf-8", "backslashreplace")
        return write_somewhere(self.directory, self.fallbacks, self.store_path, data)

    def set_aside(
        self, entries: Sequence[CostEntry], reason: str, error: BaseException | str | None, *, where: str
    ) -> None:
        """``write`` for ``CostStore.set_aside`` of the store ``where``: logged, and ``StoreError`` (naming the store,
        with a hint) if no place takes them."""
        batch = list(entries)
        if not batch:
            return
        try:
            path = self.write(batch, reason, error)
        except OSError as exc:
            raise StoreError(
                f"could not set aside {len(batch)} entries of {where} anywhere: {exc} "
                "(make the store's directory or $XDG_STATE_HOME writable)"
            ) from exc
        logger.warning(
            "llmcost: %d entries set aside in %s: %s; see CostStore.dead_letters()", len(batch), path, reason
        )

    def set_aside_lines(self, path: str, lines: list[tuple[str, Exception]]) -> None:
        """Keep the lines of spill file ``path`` that cannot be read back as entries (``OSError`` if no place can):
        the ``set_aside_lines`` hook of a ``Spill``."""
        reason = f"a line of spill file {path} could not be read back as an entry"
        kept = self.write_lines(lines, reason)
        logger.warning(
            "llmcost: %d entries set aside in %s: %s; see CostStore.dead_letters()", len(lines), kept, reason
        )

    def letters(self) -> list[dict[str, Any]]:
        """Every dead letter, oldest file first (what ``CostStore.dead_letters()`` returns)."""
        return [letter for letters in self.read().values() for letter in letters]

    def write_lines(self, lines: Sequence[tuple[str, BaseException]], reason: str) -> str:
        """Keep text ``lines`` that could not be read as entries (each with its error) like ``write`` keeps
        entries, the line's text standing for the entry."""
        records = [{"reason": reason, "error": error_text(error), "entry": line} for line, error in lines]
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8", "backslashreplace")
        return write_somewhere(self.directory, self.fallbacks, self.store_path, data)

    def read(self) -> dict[str, list[dict[str, Any]]]:
        """Every dead letter, by file (oldest name first within each directory); unreadable lines are shown as
        ``{"reason": None, "error": <why>, "entry": <the line>}``."""
        found: dict[str, list[dict[str, Any]]] = {}
        for directory in filter(None, [self.directory, *self.fallbacks]):
            try:
                names = sorted(n for n in os.listdir(directory) if n.endswith(".jsonl") and n[0] != ".")
            except OSError:
                continue
            for name in names:
                path = os.path.join(directory, name)
                try:
                    with open(path, encoding="utf-8", errors="replace") as f:
                        # "\n" only, as written: splitlines() also breaks at U+2028, U+2029, U+0085 in the text.
                        lines = f.read().split("\n")
                except OSError:
                    continue
                found[path] = [_parse(line) for line in lines if line.strip()]
        return found


def _parse(line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as exc:
        return {"reason": None, "error": f"unreadable line: {exc}", "entry": line}
    if not isinstance(record, dict):
        return {"reason": None, "error": "unreadable line", "entry": line}
    return {"reason": record.get("reason"), "error": record.get("error"), "entry": record.get("entry")}
