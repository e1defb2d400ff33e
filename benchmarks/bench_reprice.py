"""Repricing speed: ``analytics.reprice`` over a DuckDB store against the same repricing in pandas on the
``frame()`` of those entries (same run).

Rows are generated inside DuckDB (hash-based pseudo-random columns of the canonical schema, timestamps spread over
2025) and written straight into the store's file. The models include one whose catalog price changed on a date
(o3, on 2025-06-10), one priced by time of day (deepseek-chat) and one with a long-context tier (claude-sonnet-4-5,
about 1% of its calls above 200k input tokens), so that every path of the grouped pricing runs.

The pandas side starts from the store's ``scan()`` frame (what ``CostTracker.frame()`` returns; building it is not
timed) and reprices at a fixed date, by model, twice: exactly (each row's usage priced with ``ModelPrice.cost``, as
a careful user would, Decimal sums) and vectorised in float64 (per-model rates, the tier by ``numpy.where``). The
exact pandas total is checked against llmcost's. Each figure is the best of ``--repeat`` runs.

Run: python -m benchmarks reprice      (or: python -m benchmarks.bench_reprice [--quick] [--rows N]
     [--pandas-max N] [--repeat N] [--json PATH])
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from benchmarks._util import machine, table
from benchmarks.plot import write_results
from llmcost._rows import COLUMNS, SQL_TYPES

_MODELS = (
    ("gpt-4o-2024-08-06", "openai"),
    ("gpt-4o-mini-2024-07-18", "openai"),
    ("o3", "openai"),
    ("claude-3-5-sonnet-20241022", "anthropic"),
    ("claude-sonnet-4-5", "anthropic"),
    ("deepseek-chat", "deepseek"),
)
AT = datetime(2025, 7, 1, tzinfo=timezone.utc)


def _pick(seed: int, n: int) -> str:
    """SQL: a pseudo-random int in [0, n) for row ``i`` (deterministic)."""
    return f"CAST(hash(i * {seed}) % {n} AS BIGINT)"


def _rows_sql(count: int) -> str:
    """A SELECT of ``count`` canonical rows (deterministic), in time order, spread over 2025."""
    models = "[" + ", ".join(f"'{m}'" for m, _ in _MODELS) + "]"
    providers = "[" + ", ".join(f"'{p}'" for _, p in _MODELS) + "]"
    teams = "['search', 'support', 'docs', 'legal']"
    span_us = 365 * 86_400 * 1_000_000
    typed = ", ".join(f'CAST("{c}" AS {SQL_TYPES[c]}) AS "{c}"' for c in COLUMNS)
    when = f"1735689600000000 + CAST(CAST(i AS HUGEINT) * {span_us} // {count} AS BIGINT)"
    pick = _pick(7, len(_MODELS))
    # 1 in 100 calls of claude-sonnet-4-5 (index 5) is a long-context call, above the 200k-token tier.
    long = f"({pick} = 4 AND {_pick(41, 100)} = 0)"
    return f"""
      SELECT {typed} FROM (
        SELECT printf('%026x', i) AS id,
               make_timestamptz({when}) AS "timestamp",
               CAST({_pick(1, 100000)} AS DECIMAL(18, 0)) * 0.0000001 AS amount,
               'USD' AS currency, 'llm_inference' AS category,
               'resource-' || {_pick(5, 20)} AS resource, '' AS description,
               {models}[1 + {pick}] AS model, {providers}[1 + {pick}] AS provider,
               CASE WHEN {long} THEN 210000 + {_pick(43, 100000)} ELSE 100 + {_pick(11, 8000)} END AS input_tokens,
               10 + {_pick(13, 900)} AS output_tokens,
               {_pick(17, 100)} AS cache_read_tokens,
               CAST(0 AS BIGINT) AS cache_write_tokens, CAST(0 AS BIGINT) AS reasoning_tokens,
               CAST({_pick(19, 3000)} AS DOUBLE) AS latency_ms,
               map(['team'], [{teams}[1 + {_pick(29, 4)}]]) AS tags,
               'catalog@bench' AS pricing,
               NULL AS units, NULL AS service_tier, NULL AS canonical_model
        FROM range({count}) AS t(i)
      )
    """


def make_store(path: str, rows: int) -> Any:
    """A DuckDBStore at ``path`` holding ``rows`` generated entries."""
    import duckdb

    from llmcost.stores import DuckDBStore

    store = DuckDBStore(path)  # stores are created on first write: a budget saved and deleted makes the file
    store.save_budget("bench", "{}")
    store.delete_budget("bench")
    store.close()
    con = duckdb.connect(path)
    try:
        con.execute(f"INSERT INTO entries {_rows_sql(rows)}")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return DuckDBStore(path)


def pandas_exact(frame: Any) -> Any:
    """Reprice at ``AT`` row by row with ``ModelPrice.cost`` (exact Decimal), then sum by model."""
    from llmcost import Usage, get_price

    prices = {
        (m, p): get_price(m, p, at=AT)
        for m, p in frame[["model", "provider"]].drop_duplicates().itertuples(index=False, name=None)
    }
    columns = ["model", "provider", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]
    repriced = [
        prices[(m, p)].cost(Usage(i, o, cr, cw))
        for m, p, i, o, cr, cw in frame[columns].itertuples(index=False, name=None)
    ]
    return (
        frame[["model", "amount"]]
        .assign(repriced=repriced)
        .groupby("model")
        .agg(calls=("amount", "size"), recorded=("amount", "sum"), repriced=("repriced", "sum"))
    )


def pandas_float(frame: Any) -> Any:
    """Reprice at ``AT`` vectorised in float64: per-model rates, the long-context tier by ``numpy.where``."""
    import numpy as np

    from llmcost import get_price

    rates = {}
    for model, provider in frame[["model", "provider"]].drop_duplicates().itertuples(index=False, name=None):
        price = get_price(model, provider, at=AT)
        tier = price.tiers[0] if price.tiers else None
        rates[model] = (
            float(price.input_per_mtok),
            float(price.output_per_mtok),
            float(price.cache_read_per_mtok if price.cache_read_per_mtok is not None else price.input_per_mtok),
            tier.start if tier else 2**62,
            float(tier.input_per_mtok or price.input_per_mtok) if tier else 0.0,
            float(tier.output_per_mtok or price.output_per_mtok) if tier else 0.0,
            float(tier.cache_read_per_mtok or price.cache_read_per_mtok or 0) if tier else 0.0,
        )
    model = frame["model"]
    inp, out, cached = (
        frame[c].to_numpy(dtype="float64") for c in ("input_tokens", "output_tokens", "cache_read_tokens")
    )
    rate = {
        k: model.map({m: r[n] for m, r in rates.items()}).to_numpy(dtype="float64")
        for n, k in enumerate(("in", "out", "cr", "start", "tin", "tout", "tcr"))
    }
    over = inp > rate["start"]
    r_in = np.where(over, rate["tin"], rate["in"])
    r_out = np.where(over, rate["tout"], rate["out"])
    r_cr = np.where(over, rate["tcr"], rate["cr"])
    cost = ((inp - cached) * r_in + cached * r_cr + out * r_out) / 1e6
    return frame[["model"]].assign(recorded=frame["amount"].astype("float64"), repriced=cost).groupby("model").sum()


def best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 entries, one run each")
    parser.add_argument("--rows", type=int, default=1_000_000, help="entries in the DuckDB store (default 1M)")
    parser.add_argument(
        "--pandas-max", type=int, default=1_000_000, help="largest size also timed in pandas (its frame is big)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is kept")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    rows = 2_000 if args.quick else args.rows
    repeat = 1 if args.quick else args.repeat

    from llmcost import analytics

    work = tempfile.mkdtemp(prefix="llmcost-bench-reprice-")
    try:
        started = time.perf_counter()
        store = make_store(os.path.join(work, "costs.duckdb"), rows)
        made = time.perf_counter() - started
        analytics.reprice(store, at=AT)  # warm-up: imports, catalog
        t_at, ours = best(lambda: analytics.reprice(store, at=AT), repeat)
        t_own, _ = best(lambda: analytics.reprice(store), repeat)
        t_swap, _ = best(lambda: analytics.reprice(store, {"gpt-4o": "gpt-4o-mini"}, by=("model", "tag:team")), repeat)
        t_entry = None
        if rows <= 100_000:
            t_entry, _ = best(lambda: analytics.reprice(store, at=AT, by=None), repeat)
        figures = [
            ("llmcost reprice(at=date), by model", t_at),
            ("llmcost reprice(), each call's own prices", t_own),
            ("llmcost reprice(swap), by model and tag", t_swap),
        ]
        if t_entry is not None:
            figures.append(("llmcost reprice(by=None), per entry", t_entry))
        same = "-"
        if rows <= args.pandas_max:
            frame = store.scan()
            t_exact, exact = best(lambda: pandas_exact(frame), repeat)
            t_float, _ = best(lambda: pandas_float(frame), repeat)
            figures += [("pandas, ModelPrice.cost per row (exact)", t_exact), ("pandas, float64 vectorised", t_float)]
            ours_total = sum(ours["repriced"], Decimal(0))  # type: ignore[index]
            same = "yes" if ours_total == sum(exact["repriced"], Decimal(0)) else "NO"  # type: ignore[index]
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"(setup, not timed: {rows:,} DuckDB rows in {made:.1f} s; exact totals agree with pandas: {same})")
    print(f"reprice {rows:,} entries, best of {repeat}; {machine()}")
    print(
        table(
            ["run", "entries", "seconds", "vs reprice(at)"],
            [[name, f"{rows:,}", t, f"{t / t_at:.1f}x"] for name, t in figures],
        )
    )
    if args.json:
        write_results(
            args.json,
            "reprice",
            [{"figure": "reprice", "series": name, "size": rows, "value": t, "unit": "s"} for name, t in figures],
        )


if __name__ == "__main__":
    main()
