"""Compaction of a ``ParquetStore``: each day's files merged into one, and files of an older schema rewritten to
the declared one, safely while other processes append and read (see ``_parquet`` for the protocol)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from .._rows import EMPTY_ROWS
from ._disk import fsync_dir, fsync_file, make_dirs, write_atomic
from ._parquet_layout import SOURCE, compactions, day_name

__all__ = ["finish_compactions", "has_declared_schema", "merge_day"]

_MERGED = f'SELECT * FROM {SOURCE} QUALIFY row_number() OVER (PARTITION BY id ORDER BY "timestamp") = 1'

#: Runs ``COPY (select) TO target`` with the select's parameters: ``copy(select, params, target)``.
Copy = Callable[[str, Sequence[Any], str], None]


def has_declared_schema(con: Any, path: str) -> bool:
    """Whether the Parquet file ``path`` has exactly the declared columns and types, in order."""
    sql = "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {})"
    found = con.execute(sql.format("read_parquet(?, hive_partitioning = false)"), [path]).fetchall()
    return bool(found == con.execute(sql.format(EMPTY_ROWS)).fetchall())


def merge_day(copy: Copy, directory: str, day: date, inputs: list[str]) -> None:
    """Replace ``inputs`` (file names in ``day``'s directory) by one file of the declared schema holding their rows,
    each id once: write it under a temporary name, record the compaction, rename it into place, then ``finish``."""
    folder = os.path.join(directory, day_name(day))
    name = f"part-{uuid.uuid4().hex}.parquet"
    tmp = os.path.join(folder, f".{name}.tmp")
    try:
        copy(f'{_MERGED} ORDER BY "timestamp", id', [[os.path.join(folder, f) for f in inputs]], tmp)
        fsync_file(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    records = os.path.join(directory, "_compactions")
    make_dirs(records)
    record = os.path.join(records, f"{uuid.uuid4().hex}.json")
    write_atomic(record, json.dumps({"day": day.isoformat(), "output": name, "inputs": inputs}).encode())
    os.replace(tmp, os.path.join(folder, name))
    fsync_dir(folder)
    _finish(folder, name, inputs, record)


def _finish(folder: str, output: str, inputs: Sequence[str], record: str) -> None:
    """Complete a compaction whose merged file is in place: delete its inputs, then its record."""
    for f in inputs:
        if f != output:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, f))
    fsync_dir(folder)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record)
    fsync_dir(os.path.dirname(record))


def finish_compactions(directory: str) -> None:
    """Finish (merged file in place) or undo (it is not) compactions a crash interrupted; the caller holds the
    dataset lock."""
    for c in compactions(directory):
        folder = os.path.join(directory, day_name(c.day))
        if os.path.exists(os.path.join(folder, c.output)):
            _finish(folder, c.output, sorted(c.inputs), c.record)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, f".{c.output}.tmp"))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(c.record)
