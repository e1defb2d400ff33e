"""What a budget check adds to @track_cost, and a period budget's first and later checks over a big DuckDB store.

Run: python -m benchmarks budget      (or: python -m benchmarks.bench_budget [--rows N] [--quick])
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from benchmarks._util import machine, per_call_us, table
from benchmarks.plot import write_results

#: Entries in the store under the period budget for ``--quick`` (a smoke run, not a figure).
QUICK_ROWS = 2_000


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    parser.add_argument("--rows", type=int, default=1_000_000, help="entries in the DuckDB store")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    number = 200 if args.quick else 50_000
    rows = QUICK_ROWS if args.quick else args.rows

    import llmcost
    from llmcost import CostTracker, track_cost

    response = {
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
    }

    def bare() -> dict:
        return response

    def tracked_fn(**options):
        fn = track_cost(tracker=CostTracker(), **options)(bare)
        fn()
        return fn

    base = per_call_us(bare, number)
    plain = tracked_fn()
    t_plain = per_call_us(plain, number)
    in_budget = tracked_fn(estimate=Decimal("0.0001"))
    with llmcost.budget(10**9, tracker=None):
        t_budget = per_call_us(in_budget, number)
    nested = tracked_fn(estimate=Decimal("0.0001"))
    with llmcost.budget(10**9), llmcost.budget(10**9), llmcost.budget(10**9):
        t_nested = per_call_us(nested, number)
    no_estimate = tracked_fn()
    with llmcost.budget(10**9):
        t_recent = per_call_us(no_estimate, number)
    print(f"machine: {machine()}; {number} calls per figure, best of 5 (MemoryStore)")
    added = [
        ("@track_cost in budget (estimate=)", t_budget),
        ("@track_cost in budget (recent-calls estimate)", t_recent),
        ("@track_cost in 3 nested budgets", t_nested),
    ]
    print(
        table(
            ["call", "us/call", "budget adds us", "x @track_cost"],
            [
                ("bare function", base, "-", "-"),
                ("@track_cost", t_plain, "-", 1.0),
                *((name, t, t - t_plain, t / t_plain) for name, t in added),
            ],
        )
    )

    # A daily budget over a DuckDB store that already holds `rows` entries of today.
    import duckdb
    import pandas as pd

    from llmcost._rows import ENTRIES_DDL, cast_select

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "costs.duckdb"
        now = datetime.now(timezone.utc)
        raw = pd.DataFrame(  # noqa: F841 - read by DuckDB below
            {
                "id": [f"{i:026x}" for i in range(rows)],
                "timestamp": pd.Timestamp(now.replace(hour=0, minute=0, second=1)),
                "amount": "0.0025",
                "currency": "USD",
                "category": "llm_inference",
                "resource": [f"r{i % 20}" for i in range(rows)],
                "description": "",
                "model": "gpt-4o",
                "provider": "openai",
                "input_tokens": 1000,
                "output_tokens": 0,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "reasoning_tokens": 0,
                "latency_ms": 10.0,
                "tags": '{"team": "search"}',
                "pricing": "given",
                "units": None,
                "service_tier": None,
                "canonical_model": "gpt-4o",
            }
        )
        con = duckdb.connect(str(path))
        con.execute(ENTRIES_DDL)
        con.execute(f"INSERT INTO entries {cast_select('raw')}")
        con.close()
        tracker = CostTracker(f"duckdb://{path}")
        fn = track_cost(tracker=tracker, estimate=Decimal("0.0025"))(bare)
        b = llmcost.budget(10**9, period="daily", tracker=tracker, tags={"team": "search"})
        started = time.perf_counter()
        first_spent = b.spent
        first = (time.perf_counter() - started) * 1000
        with b:
            later = per_call_us(fn, 50 if args.quick else 2_000, repeat=3)
        tracker.close()
    print()
    print(
        table(
            ["daily budget over a DuckDB store", "figure"],
            [
                ("entries in the store", f"{rows:,}"),
                ("first check (one pushed-down total)", f"{first:.1f} ms"),
                ("spend found", f"${first_spent}"),
                ("later tracked calls, incl. budget (running total)", f"{later:.1f} us/call"),
            ],
        )
    )
    if args.json:
        records = [
            {"figure": "budget adds", "series": name, "value": t - t_plain, "unit": "us/call"} for name, t in added
        ]
        records += [
            {"figure": "period budget", "series": "first check", "size": rows, "value": first, "unit": "ms"},
            {"figure": "period budget", "series": "later tracked call", "size": rows, "value": later, "unit": "us"},
        ]
        write_results(args.json, "budget", records)


if __name__ == "__main__":
    main(sys.argv[1:])
