"""Where a ``ParquetStore`` keeps what: day directories, data files, compaction records, and how readers list and
read the files (see ``_parquet`` for the whole layout and why readers list files before records)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import date

import attrs

from .._rows import with_all_columns

__all__ = ["SOURCE", "Compaction", "Listing", "compactions", "day_name", "parse_day", "sweep_temporaries"]

#: Typed rows of the Parquet files passed as the first parameter (a list of paths), whatever columns each file
#: has: files written before a column was added read a typed NULL in it.
SOURCE = with_all_columns("read_parquet(?, union_by_name = true, hive_partitioning = false)")


def day_name(day: date) -> str:
    """The directory of ``day``'s files: ``day=YYYY-MM-DD`` (hive partitioning)."""
    return f"day={day.isoformat()}"


def parse_day(name: str) -> date | None:
    """The day a directory name stands for; ``None`` for anything that is not a day directory."""
    if not name.startswith("day=") or len(name) != 14:
        return None
    try:
        return date.fromisoformat(name[4:])
    except ValueError:
        return None


def _is_data_file(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith((".", "_"))


@attrs.frozen
class Compaction:
    """A compaction in progress (or interrupted): merged file ``output`` of ``day`` replaces ``inputs``."""

    day: date
    output: str
    inputs: frozenset[str]
    record: str  # path of the record file in _compactions/


def compactions(directory: str) -> list[Compaction]:
    """The compaction records in ``directory``; unreadable ones (being written, or gone) are skipped."""
    folder = os.path.join(directory, "_compactions")
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            day = parse_day(f"day={record['day']}")
            output, inputs = record["output"], record["inputs"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            continue
        if day is not None and isinstance(output, str) and isinstance(inputs, list):
            found.append(Compaction(day, output, frozenset(map(str, inputs)), path))
    return found


class Listing:
    """The data files of the days from ``first`` to ``last`` (``None``: open), minus the inputs of compactions whose
    merged file is already listed.

    Example::

        files = Listing("/data/costs", date(2024, 5, 1), None).paths()
    """

    def __init__(self, directory: str, first: date | None, last: date | None) -> None:
        self.directory = directory
        self.by_day: dict[date, list[str]] = {}
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            names = []
        for name in names:
            day = parse_day(name)
            if day is None or (first is not None and day < first) or (last is not None and day > last):
                continue
            try:
                files = sorted(f for f in os.listdir(os.path.join(directory, name)) if _is_data_file(f))
            except (FileNotFoundError, NotADirectoryError):
                continue
            if files:
                self.by_day[day] = files
        # Records are read after the files (see the ``_parquet`` docstring for why this order is safe).
        for c in compactions(directory):
            listed = self.by_day.get(c.day)
            if listed and c.output in listed:
                self.by_day[c.day] = [f for f in listed if f not in c.inputs]

    def paths(self) -> list[str]:
        """Every listed file's path, day by day."""
        return [os.path.join(self.directory, day_name(day), f) for day in sorted(self.by_day) for f in self.by_day[day]]


def sweep_temporaries(directory: str, older_than: float = 3600.0) -> None:
    """Delete temporary files that writers killed mid-write left behind (an hour old: no live writer's)."""
    cutoff = time.time() - older_than
    for name in os.listdir(directory):
        if parse_day(name) is None:
            continue
        folder = os.path.join(directory, name)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for f in os.listdir(folder):
                path = os.path.join(folder, f)
                with contextlib.suppress(FileNotFoundError):
                    if f.startswith(".") and f.endswith(".tmp") and os.stat(path).st_mtime < cutoff:
                        os.unlink(path)
