"""What reserving across processes costs: a period budget over a DuckDB store (the SQLite ledger) against an
in-process budget, per call; and 4 processes calling as fast as they can under one budget against 4 without.

Run: python -m benchmarks budget_processes   (or: python -m benchmarks.bench_budget_processes [--quick])
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from benchmarks._util import machine, per_call_us, table
from benchmarks.plot import write_results

RESPONSE = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}

# One interpreter imports llmcost once, then forks the workers for each configuration: each worker calls for
# `seconds` and reports how many calls it made.
LAUNCHER = """
import json, os, sys, time
from decimal import Decimal
import llmcost
from llmcost import CostTracker, budget, track_cost
from llmcost.stores import DuckDBStore

path, workers, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
llmcost.cost_of("gpt-4o", input_tokens=1)
response = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}


def work(budgeted, out):
    tracker = CostTracker(DuckDBStore(path))
    call = track_cost(tracker=tracker, estimate=Decimal("0.0025"))(lambda: response)
    block = budget(10**9, period="daily", tracker=tracker, name="bench") if budgeted else None
    if block is not None:
        block.__enter__()
    call()
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        call()
        n += 1
    tracker.close()
    os.write(out, (json.dumps(n) + "\\n").encode())


results = {}
for budgeted in (False, True):
    read, write = os.pipe()
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            os.close(read)
            work(budgeted, write)
            os._exit(0)
        pids.append(pid)
    os.close(write)
    for pid in pids:
        os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        results["budget" if budgeted else "none"] = sum(int(line) for line in f)
print(json.dumps(results))
"""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each process calls")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    number = 200 if args.quick else 5_000
    seconds = 0.3 if args.quick else args.seconds

    import llmcost
    from llmcost import CostTracker, DuckDBStore, track_cost

    def bare() -> dict:
        return RESPONSE

    figures: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tracker = CostTracker(DuckDBStore(Path(tmp) / "costs.duckdb"))
        fn = track_cost(tracker=tracker, estimate=Decimal("0.0025"))(bare)
        fn()
        figures.append(("@track_cost, no budget", per_call_us(fn, number)))
        with llmcost.budget(10**9, tracker=tracker):
            figures.append(("in-process budget (block)", per_call_us(fn, number)))
        memory = CostTracker()
        in_memory = track_cost(tracker=memory, estimate=Decimal("0.0025"))(bare)
        with llmcost.budget(10**9, period="daily", tracker=memory):
            in_memory()
            figures.append(("period budget, MemoryStore (ledger in process)", per_call_us(in_memory, number)))
        with llmcost.budget(10**9, period="daily", tracker=tracker):
            fn()
            figures.append(("period budget, DuckDBStore (SQLite ledger)", per_call_us(fn, number, repeat=3)))
        tracker.close()

        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(LAUNCHER), str(Path(tmp) / "shared.duckdb"), "4", str(seconds)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=True,
        )
        calls = json.loads(done.stdout.strip().splitlines()[-1])

    base = figures[0][1]
    in_process = figures[1][1]
    print(f"machine: {machine()}; {number} calls per figure, best of 5 (3 for the ledger)")
    print(
        table(
            ["tracked call", "us/call", "adds us", "vs in-process"],
            [(name, t, t - base if i else "-", f"{t / in_process:.1f}x") for i, (name, t) in enumerate(figures)],
        )
    )
    print()
    rate = {k: v / seconds for k, v in calls.items()}
    print(
        table(
            [f"4 processes, one DuckDB store, {seconds:g} s", "calls/s", "us/call per process"],
            [
                ("no budget", rate["none"], 4e6 / rate["none"] if rate["none"] else "-"),
                (
                    "one daily budget (leased, settled in batches)",
                    rate["budget"],
                    4e6 / rate["budget"] if rate["budget"] else "-",
                ),
            ],
        )
    )
    if args.json:
        records = [{"figure": "reserved call", "series": name, "value": t, "unit": "us/call"} for name, t in figures]
        records += [
            {"figure": "4-process throughput", "series": k, "value": v, "unit": "calls/s"} for k, v in rate.items()
        ]
        write_results(args.json, "budget_processes", records)


if __name__ == "__main__":
    main(sys.argv[1:])
