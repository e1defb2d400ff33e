"""Ingesting with ``tracker.record(amount=..., tags=..., timestamp=...)``: entries per second into a MemoryStore and
into a DuckDBStore (buffered, written by the tracker's background writer), and where the DuckDB run's time goes.

Run: python -m benchmarks record      (or: python -m benchmarks.bench_record [--entries N] [--quick])

Each figure is wall time from the first ``record`` to the end of ``tracker.close()`` (everything written). For the
DuckDB run the table splits it into the time the ``record`` calls took (the caller's side, while the writer works
beside it) and the wait for the last writes at close; a last line appends the same entries in the same batches
straight to a fresh DuckDBStore (the store's side alone).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchmarks._util import machine, table
from benchmarks.plot import write_results

#: Entries per run for ``--quick`` (a smoke run, not a figure).
QUICK_ENTRIES = 3_000
_BATCH = 4096  # the tracker's default batch_size


def _items(n: int) -> list[dict[str, Any]]:
    """``n`` record() keyword sets: a given amount, a few distinct tag maps, timestamps a second apart."""
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    teams = [{"team": f"t{i}", "env": "prod"} for i in range(8)]
    return [
        {"amount": "0.0025", "tags": teams[i % 8], "timestamp": start + timedelta(seconds=i), "resource": "ingest"}
        for i in range(n)
    ]


def _ingest(url: str, items: list[dict[str, Any]]) -> tuple[float, float]:
    """(seconds in the record() calls, seconds in close()) for recording ``items`` into a new tracker on ``url``."""
    from llmcost import CostTracker

    tracker = CostTracker(url)
    record = tracker.record
    started = time.perf_counter()
    for item in items:
        record(**item)
    recorded = time.perf_counter()
    tracker.close()
    return recorded - started, time.perf_counter() - recorded


def _append_only(url: str, items: list[dict[str, Any]]) -> float:
    """Seconds to append the entries of ``items`` straight to a new store at ``url``, ``_BATCH`` at a time."""
    from llmcost import CostTracker, open_store

    builder = CostTracker()
    entries = [builder.build(**item) for item in items]
    store = open_store(url)
    started = time.perf_counter()
    for i in range(0, len(entries), _BATCH):
        store.append(entries[i : i + _BATCH])
    store.close()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries recorded per run")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    n = QUICK_ENTRIES if args.quick else args.entries
    items = _items(n)
    with tempfile.TemporaryDirectory() as tmp:
        mem_record, mem_close = _ingest("memory://", items)
        duck_record, duck_close = _ingest(f"duckdb://{Path(tmp) / 'record.duckdb'}", items)
        direct = _append_only(f"duckdb://{Path(tmp) / 'append.duckdb'}", items)
    mem, duck = mem_record + mem_close, duck_record + duck_close
    print(f"machine: {machine()}; {n:,} record(amount=, tags=, timestamp=) calls per run")
    print(
        table(
            ["store", "record() s", "close() s", "total s", "entries/s", "x MemoryStore rate"],
            [
                ("MemoryStore", mem_record, mem_close, mem, f"{n / mem:,.0f}", 1.0),
                ("DuckDBStore (tracker buffer)", duck_record, duck_close, duck, f"{n / duck:,.0f}", mem / duck),
                ("DuckDBStore.append alone", "-", "-", direct, f"{n / direct:,.0f}", mem / direct),
            ],
        )
    )
    if args.json:
        write_results(
            args.json,
            "record",
            [
                {"figure": "record", "series": "MemoryStore", "size": n, "value": n / mem, "unit": "entries/s"},
                {"figure": "record", "series": "DuckDBStore", "size": n, "value": n / duck, "unit": "entries/s"},
                {"figure": "append", "series": "DuckDBStore", "size": n, "value": n / direct, "unit": "entries/s"},
            ],
        )


if __name__ == "__main__":
    main(sys.argv[1:])
