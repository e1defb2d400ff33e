"""Ingesting with ``tracker.record(amount=..., tags=..., timestamp=...)``: entries per second into a MemoryStore and
into a DuckDBStore (buffered, written by the tracker's background writer), and where the DuckDB run's time goes.

Run: python -m benchmarks record      (or: python -m benchmarks.bench_record [--entries N] [--quick])

Each figure is wall time from the first ``record`` to the end of ``tracker.close()`` (everything written). For the
DuckDB run the table splits it into the time the ``record`` calls took (the caller's side, while the writer works
beside it) and the wait for the last writes at close. The two trackers run ``--repeat`` times, alternated, and the
fastest run of each is shown; a last line appends the same entries in the same batches straight to a fresh
DuckDBStore (the store's side alone). "GC s" is the time spent in garbage collections during a run: entries that
waited in the tracker's buffer as objects until the next write survived into the oldest generation, which full
collections walk again; the buffer now keeps them as columns after at most 256 appends, so they die young.
"""

from __future__ import annotations

import argparse
import gc
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


def _ingest(url: str, items: list[dict[str, Any]]) -> tuple[float, float, float, float, float]:
    """Recording ``items`` into a new tracker on ``url``: (wall seconds in the record() calls, wall seconds in
    close(), CPU seconds of the recording thread, CPU seconds of every other thread: the background writer, wall
    seconds of garbage collections in any thread)."""
    from llmcost import CostTracker

    tracker = CostTracker(url)
    record = tracker.record
    collecting = _Collections()
    gc.callbacks.append(collecting)
    try:
        cpu, own = time.process_time(), time.thread_time()
        started = time.perf_counter()
        for item in items:
            record(**item)
        recorded = time.perf_counter()
        tracker.close()
        closed = time.perf_counter()
        own = time.thread_time() - own
    finally:
        gc.callbacks.remove(collecting)
    return recorded - started, closed - recorded, own, time.process_time() - cpu - own, collecting.seconds


class _Collections:
    """A ``gc.callbacks`` hook adding up the wall time of garbage collections. Entries kept as objects in a
    tracker's buffer until the next write lived long enough to be promoted to the oldest generation, which full
    collections then walk again (the MemoryStore run's entries die at once); this shows what is left of it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


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
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs of each tracker, MemoryStore and DuckDBStore alternated; the fastest of each is shown (default 2:"
        " the machine is shared, and a run can be slowed by others)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    n = QUICK_ENTRIES if args.quick else args.entries
    items = _items(n)
    with tempfile.TemporaryDirectory() as tmp:
        mems, ducks = [], []
        for k in range(1 if args.quick else max(args.repeat, 1)):
            mems.append(_ingest("memory://", items))
            ducks.append(_ingest(f"duckdb://{Path(tmp) / f'record-{k}.duckdb'}", items))
        mem = min(mems, key=lambda r: r[0] + r[1])
        duck = min(ducks, key=lambda r: r[0] + r[1])
        if len(mems) > 1:
            print(
                "runs (total s): MemoryStore "
                + ", ".join(f"{r[0] + r[1]:.2f}" for r in mems)
                + "; DuckDBStore "
                + ", ".join(f"{r[0] + r[1]:.2f}" for r in ducks)
            )
        direct = _append_only(f"duckdb://{Path(tmp) / 'append.duckdb'}", items)
    mem_s, duck_s = mem[0] + mem[1], duck[0] + duck[1]
    print(f"machine: {machine()}; {n:,} record(amount=, tags=, timestamp=) calls per run")
    print(
        table(
            ["store", "record() s", "close() s", "total s", "entries/s", "x MemoryStore rate", "us CPU/entry: caller",
             "writer", "GC s"],
            [
                ("MemoryStore", mem[0], mem[1], mem_s, f"{n / mem_s:,.0f}", 1.0, mem[2] / n * 1e6, mem[3] / n * 1e6,
                 mem[4]),
                ("DuckDBStore (tracker buffer)", duck[0], duck[1], duck_s, f"{n / duck_s:,.0f}", mem_s / duck_s,
                 duck[2] / n * 1e6, duck[3] / n * 1e6, duck[4]),
                ("DuckDBStore.append alone", "-", "-", direct, f"{n / direct:,.0f}", mem_s / direct, "-", "-", "-"),
            ],
        )
    )  # fmt: skip
    print(
        "(CPU per entry: of the recording thread, and of every other thread - the tracker's background writer; GC s:"
        " wall seconds in garbage collections, any thread)"
    )
    if args.json:
        write_results(
            args.json,
            "record",
            [
                {"figure": "record", "series": "MemoryStore", "size": n, "value": n / mem_s, "unit": "entries/s"},
                {"figure": "record", "series": "DuckDBStore", "size": n, "value": n / duck_s, "unit": "entries/s"},
                {"figure": "append", "series": "DuckDBStore", "size": n, "value": n / direct, "unit": "entries/s"},
            ],
        )


if __name__ == "__main__":
    main(sys.argv[1:])
