"""Memory: peak RSS of a MemoryStore holding N entries (goal: under 300 MB for 1M), and where the bytes go; then
``CostTracker.frame()`` over a DuckDB and a Parquet store of ``--frame-rows`` entries (goal at 1M: at most 1.0 s and
500 MB of peak RSS growth), with Polars reading the same Parquet files as a yardstick where it is installed.

Run: python -m benchmarks memory        (or: python -m benchmarks.bench_memory [--quick] [--sizes N ...]
     [--frame-rows N] [--json PATH])

Each size is measured in a fresh interpreter: the peak resident set (``VmHWM`` in /proc/self/status, else
``ru_maxrss``) after importing llmcost and pricing one call is the baseline; the entries are then recorded through
``CostTracker.record`` (realistic ones: 3 models, 50 resources, 5 teams as tags, cache tokens, a month of
timestamps) and the peak's growth is the figure. The breakdown walks the store's own attributes with
``sys.getsizeof`` (shared objects counted once), so it follows whatever layout the store uses.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._util import machine, table
from benchmarks.plot import write_results

GOAL_MB = 300  # MB = 10**6 bytes, as everywhere in this benchmark
FRAME_GOAL_S, FRAME_GOAL_MB = 1.0, 500  # tracker.frame() at 1M rows
_CODE = (type, types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.ModuleType)
_ROOT = Path(__file__).resolve().parents[1]


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_kb() -> int:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere


def deep_size(obj: Any, seen: set[int]) -> int:
    """Bytes reachable from ``obj`` that are not in ``seen`` (ids), by ``sys.getsizeof``; adds what it counts."""
    if id(obj) in seen or isinstance(obj, _CODE):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, (str, bytes, bytearray, int, float, memoryview)) or type(obj).__name__ == "array":
        return size  # no references out (an array's getsizeof includes its buffer)
    if isinstance(obj, dict):
        return size + sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return size + sum(deep_size(x, seen) for x in obj)
    if hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                size += deep_size(getattr(obj, slot), seen)
    return size


def _child(n: int) -> dict[str, Any]:
    """Runs in the fresh interpreter: record ``n`` entries, report peak RSS growth, timing and the breakdown."""
    import gc
    import time
    from datetime import datetime, timedelta, timezone

    from llmcost import CostTracker, MemoryStore

    models = ("gpt-4o", "claude-3-5-sonnet-20241022", "gemini-2.0-flash")
    teams = [{"team": t} for t in ("search", "support", "ads", "infra", "research")]
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    step = timedelta(days=30) / max(n, 1)
    sample = CostTracker().record(model=models[0], input_tokens=1, output_tokens=1, timestamp=start)
    for model in models:  # resolve the prices once, as a long-running process would have
        CostTracker().record(model=model, input_tokens=1, output_tokens=1)
    store = MemoryStore()
    tracker = CostTracker(store)
    gc.collect()
    base_peak, base_rss = _peak_kb(), _status_kb("VmRSS")
    record = tracker.record
    began = time.perf_counter()
    for i in range(n):
        inp = 800 + i % 1700
        record(
            model=models[i % 3],
            input_tokens=inp,
            output_tokens=100 + i % 400,
            cache_read_tokens=inp // 2 if i % 4 == 0 else 0,
            resource=f"job-{i % 50}",
            tags=teams[i % 5],
            timestamp=start + step * i,
        )
    tracker.flush()
    seconds = time.perf_counter() - began
    gc.collect()
    peak, rss = _peak_kb(), _status_kb("VmRSS")
    seen: set[int] = set()
    breakdown = {name: deep_size(value, seen) for name, value in vars(store).items()}
    reads = _reads_out_of_order(store, record, start)
    return {
        "reads": reads,
        "entries": n,
        "peak_mb": (peak - base_peak) * 1024 / 1e6,
        "rss_mb": None if rss is None or base_rss is None else (rss - base_rss) * 1024 / 1e6,
        "seconds": seconds,
        "breakdown": breakdown,
        "entry_object_bytes": deep_size(sample, set()),
    }


def _reads_out_of_order(store: Any, record: Any, start: Any) -> dict[str, float]:
    """Seconds of reads of ``store`` (its entries recorded in time order), then of the same reads once an entry came
    out of order, as threads recording at once make them: a read in time order sorts the rows, and the reads after
    one more entry (in order) extend that order. ``total()`` needs no order."""
    import time

    def timed(read: Any) -> float:
        began = time.perf_counter()
        read()
        return time.perf_counter() - began

    first_ten = lambda: store.entries(limit=10)  # noqa: E731 - (a read in time order)
    found = {"total, in order": timed(store.total), "entries(limit=10), in order": timed(first_ten)}
    record(model="gpt-4o", input_tokens=1, output_tokens=1, timestamp=start)  # (before every entry but the first)
    found["entries(limit=10), first read out of order"] = timed(first_ten)
    record(model="gpt-4o", input_tokens=1, output_tokens=1)  # (now: after every entry)
    found["entries(limit=10), out of order, one entry later"] = timed(first_ten)
    found["total, out of order"] = timed(store.total)
    return found


def _frame_child(kind: str, where: str) -> dict[str, Any]:
    """Runs in the fresh interpreter: time ``CostTracker.frame()`` over the ``kind`` store at ``where`` (or Polars
    reading its Parquet files), and the peak RSS growth over the interpreter with the libraries imported."""
    import gc
    import time

    import duckdb  # noqa: F401 - imported before the baseline: the figure is the frame's, not the imports'
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    from llmcost import CostTracker
    from llmcost.stores import DuckDBStore, ParquetStore

    with contextlib.suppress(ImportError):
        import pyarrow  # noqa: F401 - pandas keeps str columns in Arrow where it is installed

    if kind == "polars":
        import polars as pl

        def run() -> int:
            return len(pl.read_parquet(os.path.join(where, "day=*", "*.parquet"), hive_partitioning=False))

    else:
        store = DuckDBStore(where) if kind == "duckdb" else ParquetStore(where)
        tracker = CostTracker(store)
        store.total()  # the store's connection and file checks made, as in a process that has been reading

        def run() -> int:
            return len(tracker.frame())

    gc.collect()
    base = _peak_kb()
    began, cpu = time.perf_counter(), time.process_time()
    rows = run()
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
    return {"rows": rows, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": (_peak_kb() - base) * 1024 / 1e6}


def _in_child(call: str) -> dict[str, Any]:
    """Run ``benchmarks.bench_memory.<call>`` in a fresh interpreter and return the JSON it printed."""
    code = f"import json, benchmarks.bench_memory as m; print(json.dumps(m.{call}))"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(_ROOT)) if p)  # finds benchmarks
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {call} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(n: int) -> dict[str, Any]:
    """Run ``_child(n)`` in a fresh interpreter and return what it reported."""
    return _in_child(f"_child({n})")


def measure_frames(n: int) -> list[dict[str, Any]]:
    """``tracker.frame()`` over a DuckDB and a Parquet store of ``n`` generated entries, each in a fresh interpreter,
    and Polars reading the Parquet files where it is installed."""
    from benchmarks.bench_analytics import make_duckdb_store, make_parquet_store

    work = tempfile.mkdtemp(prefix="llmcost-bench-frame-")
    try:
        duck, folder = os.path.join(work, "costs.duckdb"), os.path.join(work, "dataset")
        make_duckdb_store(duck, n).close()
        make_parquet_store(folder, n).close()
        runs = [("tracker.frame(), DuckDBStore", "duckdb", duck), ("tracker.frame(), ParquetStore", "parquet", folder)]
        if importlib.util.find_spec("polars") is not None:
            runs.append(("polars.read_parquet, same files (yardstick)", "polars", folder))
        return [{"how": how, **_in_child(f"_frame_child({kind!r}, {where!r})")} for how, kind, where in runs]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 entries only")
    parser.add_argument("--sizes", type=int, nargs="+", help="entry counts (default: 100k and 1M)")
    parser.add_argument(
        "--frame-rows",
        type=int,
        help="entries in the stores tracker.frame() reads (default: the largest size, at most 1M; 0: skip)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([2_000] if args.quick else [100_000, 1_000_000])
    frame_rows = args.frame_rows if args.frame_rows is not None else min(max(sizes), 1_000_000)

    print(f"machine: {machine()}; each size in a fresh interpreter")
    results = [measure(n) for n in sizes]
    rows = []
    records = []
    for r in results:
        n = r["entries"]
        per_million = r["peak_mb"] * 1_000_000 / n
        verdict = "under" if per_million <= GOAL_MB else f"OVER by {per_million - GOAL_MB:.0f}"
        rows.append(
            (
                n,
                r["peak_mb"],
                "-" if r["rss_mb"] is None else r["rss_mb"],
                r["peak_mb"] * 1e6 / n,
                f"{per_million:.0f}: {verdict}",
                r["seconds"],
                r["seconds"] / n * 1e6,
            )
        )
        records.append(
            {"figure": "memory", "series": "MemoryStore peak RSS", "size": n, "value": r["peak_mb"], "unit": "MB"}
        )
        records.append(
            {"figure": "record, priced one call at a time", "series": "CostTracker.record into a MemoryStore",
             "size": n, "value": r["seconds"], "unit": "s"}
        )  # fmt: skip
    headers = ["entries", "peak RSS MB", "RSS after MB", "peak bytes/entry", f"per 1M MB (goal {GOAL_MB})"]
    print(table([*headers, "record s", "us/entry"], rows))

    shown = min(results, key=lambda r: abs(r["entries"] - 1_000_000))  # the goal's size, or the nearest
    n = shown["entries"]
    total = sum(shown["breakdown"].values())
    rows = [
        (name, size / 1e6, size / n, f"{size / total:.0%}")
        for name, size in sorted(shown["breakdown"].items(), key=lambda kv: -kv[1])
        if size >= 1024
    ]
    rows.append(("total (getsizeof)", total / 1e6, total / n, "100%"))
    print(
        f"\nWhere the bytes go at {n:,} entries (MemoryStore attributes, sys.getsizeof, shared objects once); "
        f"one CostEntry object graph alone is {shown['entry_object_bytes']} bytes"
    )
    print(table(["attribute", "MB", "bytes/entry", "share"], rows))
    reads = shown["reads"]
    print(
        f"\nReads of the {n:,} entries, then once one came out of order (as threads recording at once make them); "
        "against total(), one pass over every row"
    )
    yardstick = reads["total, in order"]
    print(table(["read", "seconds", "x total() in order"], [(k, v, v / yardstick) for k, v in reads.items()]))
    records += [
        {"figure": "MemoryStore read", "series": k, "size": n, "value": v, "unit": "s"} for k, v in reads.items()
    ]

    if frame_rows:
        frames = measure_frames(frame_rows)
        print(
            f"\ntracker.frame() of {frame_rows:,} entries, each in a fresh interpreter (peak RSS growth over the "
            f"interpreter with pandas, DuckDB and llmcost imported; goal at 1M: {FRAME_GOAL_S} s, {FRAME_GOAL_MB} MB; "
            "CPU seconds of every thread, a steadier figure than the wall clock on a loaded machine)"
        )
        print(
            table(
                ["how", "rows", "seconds", "CPU s", "peak MB"],
                [(f["how"], f["rows"], f["seconds"], f["cpu_seconds"], f["peak_mb"]) for f in frames],
            )
        )
        for f in frames:
            records.append(
                {"figure": "frame", "series": f["how"], "size": frame_rows, "value": f["seconds"], "unit": "s"}
            )
            records.append(
                {"figure": "frame CPU", "series": f["how"], "size": frame_rows, "value": f["cpu_seconds"], "unit": "s"}
            )
            records.append(
                {"figure": "frame memory", "series": f["how"], "size": frame_rows, "value": f["peak_mb"], "unit": "MB"}
            )

    if args.json:
        write_results(args.json, "memory", records)


if __name__ == "__main__":
    main(sys.argv[1:])
