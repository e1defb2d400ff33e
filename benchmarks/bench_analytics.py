"""Analytics speed: by_category + by_resource + by_tag over a DuckDB store against the same groupings in pandas on
the ``frame()`` of those entries (same run), and over a Parquet store; each store also against raw DuckDB SQL.

The raw SQL baseline runs the very statements the analytics sent to ``store.query`` (recorded during the warm-up
run) on a plain DuckDB connection opened beforehand: the DuckDB file opened read-only, or a view ``entries`` over
``read_parquet`` of the Parquet files (goal: DuckDBStore within 1.1x of it, ParquetStore within 1.5x). The DuckDB
file is also read with a connection opened and closed per query, read-only: what plain DuckDB has to do to let other
processes write the file in between, as the store does (it attaches the file per query).

Rows are generated inside DuckDB (hash-based pseudo-random columns of the canonical schema, timestamps spread over
a year) and written straight into the store's file or dataset, which is much faster than building ``CostEntry``
objects. The pandas side starts from the store's ``scan()`` frame (what ``CostTracker.frame()`` returns: exact
``Decimal`` amounts, dict tags) and does the same three groupings with the same semantics, once with exact Decimal
sums and once converting amounts to float first; building the frame is not timed. Each figure is the best of
``--repeat`` runs.

Run: python -m benchmarks analytics      (or: python -m benchmarks.bench_analytics [--quick] [--rows N]
     [--parquet-rows N] [--sizes N ...] [--pandas-max N] [--repeat N] [--json PATH])
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from benchmarks._util import machine, table
from benchmarks.plot import write_results
from llmcost._rows import COLUMNS, SQL_TYPES

_MODELS = (
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("gpt-4.1", "openai"),
    ("o3-mini", "openai"),
    ("claude-3-5-sonnet", "anthropic"),
    ("claude-3-5-haiku", "anthropic"),
    ("gemini-1.5-pro", "google"),
    ("gemini-1.5-flash", "google"),
)
_CATEGORIES = ("llm_inference", "llm_inference", "llm_inference", "llm_embedding", "compute", "storage", "other")


def _pick(seed: int, n: int) -> str:
    """SQL: a pseudo-random int in [0, n) for row ``i`` (deterministic)."""
    return f"CAST(hash(i * {seed}) % {n} AS BIGINT)"


def _rows_sql(count: int) -> str:
    """A SELECT of ``count`` canonical rows (deterministic), in time order, spread over 2024."""
    models = "[" + ", ".join(f"'{m}'" for m, _ in _MODELS) + "]"
    providers = "[" + ", ".join(f"'{p}'" for _, p in _MODELS) + "]"
    categories = "[" + ", ".join(f"'{c}'" for c in _CATEGORIES) + "]"
    teams = "['search', 'support', 'docs', 'legal', 'ads', 'growth']"
    span_us = 366 * 86_400 * 1_000_000
    team = f"{teams}[1 + {_pick(29, 6)}]"
    typed = ", ".join(f'CAST("{c}" AS {SQL_TYPES[c]}) AS "{c}"' for c in COLUMNS)
    when = f"1704067200000000 + CAST(CAST(i AS HUGEINT) * {span_us} // {count} AS BIGINT)"
    return f"""
      SELECT {typed} FROM (
        SELECT printf('%026x', i) AS id,
               make_timestamptz({when}) AS "timestamp",
               CAST({_pick(1, 100000)} AS DECIMAL(18, 0)) * 0.0000001 AS amount,
               'USD' AS currency,
               {categories}[1 + {_pick(3, len(_CATEGORIES))}] AS category,
               'resource-' || {_pick(5, 50)} AS resource,
               '' AS description,
               {models}[1 + {_pick(7, len(_MODELS))}] AS model,
               {providers}[1 + {_pick(7, len(_MODELS))}] AS provider,
               100 + {_pick(11, 8000)} AS input_tokens,
               10 + {_pick(13, 900)} AS output_tokens,
               {_pick(17, 100)} AS cache_read_tokens,
               CAST(0 AS BIGINT) AS cache_write_tokens,
               CAST(0 AS BIGINT) AS reasoning_tokens,
               CAST({_pick(19, 3000)} AS DOUBLE) AS latency_ms,
               CASE {_pick(23, 5)}
                    WHEN 0 THEN CAST(MAP {{}} AS MAP(VARCHAR, VARCHAR))
                    WHEN 1 THEN map(['team'], [{team}])
                    ELSE map(['team', 'env'], [{team}, CASE WHEN {_pick(31, 4)} = 0 THEN 'dev' ELSE 'prod' END])
               END AS tags,
               'catalog@bench' AS pricing,
               CAST(NULL AS MAP(VARCHAR, BIGINT)) AS units,
               CAST(NULL AS VARCHAR) AS service_tier,
               CAST(NULL AS VARCHAR) AS canonical_model
        FROM range({count}) AS t(i)
      )
    """


def make_duckdb_store(path: str, rows: int) -> Any:
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


def make_parquet_store(directory: str, rows: int) -> Any:
    """A ParquetStore in ``directory`` holding ``rows`` generated entries (one file per day, as compacted)."""
    import duckdb

    from llmcost.stores import ParquetStore

    store = ParquetStore(directory)  # stores are created on first write: a saved budget writes the schema marker
    store.save_budget("bench", "{}")
    store.delete_budget("bench")
    store.close()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = false")
        literal = "'" + directory.replace("'", "''") + "'"
        con.execute(
            f"COPY (SELECT *, strftime(timezone('UTC', \"timestamp\"), '%Y-%m-%d') AS day FROM ({_rows_sql(rows)})) "
            f"TO {literal} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (day), OVERWRITE_OR_IGNORE true, "
            "FILENAME_PATTERN 'part-{uuid}')"
        )
    finally:
        con.close()
    return ParquetStore(directory)


def analytics_three(store: Any) -> None:
    from llmcost import analytics

    analytics.by_category(store)
    analytics.by_resource(store)
    analytics.by_tag(store)


_MEASURES = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def pandas_three(frame: Any, *, exact: bool) -> None:
    """The same three groupings on the frame in pandas: Decimal sums (``exact``) or float sums."""
    import pandas as pd

    amount = frame["amount"] if exact else frame["amount"].astype("float64")
    data = frame[["category", "resource", *_MEASURES]].assign(amount=amount, calls=1)
    for key in ("category", "resource"):
        data.groupby(key, dropna=False).agg(
            cost=("amount", "sum"), calls=("calls", "sum"), **{m: (m, "sum") for m in _MEASURES}
        ).sort_values("cost", ascending=False)
    # by_tag long form: one row per (entry, key) present, plus per key the entries without it under None.
    index, keys, values = [], [], []
    for i, tags in enumerate(frame["tags"]):
        for k, v in tags.items():
            index.append(i)
            keys.append(k)
            values.append(v)
    pairs = data.iloc[index].assign(tag_key=keys, tag_value=values)
    present = pairs.groupby(["tag_key", "tag_value"]).agg(
        cost=("amount", "sum"), calls=("calls", "sum"), **{m: (m, "sum") for m in _MEASURES}
    )
    totals = data[["amount", "calls", *_MEASURES]].sum()
    per_key = present.groupby(level="tag_key").sum()
    missing = (totals.rename({"amount": "cost"}) - per_key).assign(tag_value=None)
    pd.concat([present.reset_index(), missing.reset_index()]).sort_values(["tag_key", "cost"])


def record_queries(store: Any) -> list[tuple[str, list[Any]]]:
    """Run ``analytics_three`` once on ``store`` (the warm-up) and return the ``(sql, params)`` it sent to
    ``store.query``."""
    sent: list[tuple[str, list[Any]]] = []
    query = store.query

    def recording(sql: str, params: Any = None) -> Any:
        sent.append((sql, list(params or [])))
        return query(sql, params)

    store.query = recording
    try:
        analytics_three(store)
    finally:
        del store.query  # the instance attribute goes; the method shows again
    return sent


def raw_sql_time(con: Any, queries: Sequence[tuple[str, list[Any]]], repeat: int) -> float:
    """Best time of running ``queries`` on the plain DuckDB connection ``con`` into pandas frames."""

    def run() -> None:
        for sql, params in queries:
            con.execute(sql, params).df()

    run()  # warm-up, as the store had
    return best(run, repeat)


def raw_sql_time_connecting(path: str, queries: Sequence[tuple[str, list[Any]]], repeat: int) -> float:
    """Best time of running ``queries`` against the DuckDB file ``path``, connecting read-only for each one."""
    import duckdb

    def run() -> None:
        for sql, params in queries:
            con = duckdb.connect(path, read_only=True)
            try:
                con.execute(sql, params).df()
            finally:
                con.close()

    run()
    return best(run, repeat)


def raw_parquet_connection(directory: str) -> Any:
    """A plain DuckDB connection with a view ``entries`` over the Parquet files of a store's ``directory``."""
    import duckdb

    con = duckdb.connect()
    pattern = os.path.join(directory, "day=*", "*.parquet").replace("'", "''")
    con.execute(f"CREATE VIEW entries AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = false)")
    return con


def _pandas_times(store: Any, repeat: int) -> tuple[float, float]:
    """Best times of the pandas groupings on the store's frame (built once, not timed): Decimal, then float."""
    frame = store.scan()
    return (
        best(lambda: pandas_three(frame, exact=True), repeat),
        best(lambda: pandas_three(frame, exact=False), repeat),
    )


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 entries in each store, one run each")
    parser.add_argument("--rows", type=int, default=1_000_000, help="entries in the DuckDB store (default 1M)")
    parser.add_argument("--parquet-rows", type=int, default=10_000_000, help="entries in the Parquet store (10M)")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="instead of --rows/--parquet-rows: both stores at each of these sizes (the growth series)",
    )
    parser.add_argument(
        "--pandas-max", type=int, default=1_000_000, help="largest size also timed in pandas (its frame is big)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is kept")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    if args.sizes:
        plan = [(n, n) for n in args.sizes]
    elif args.quick:
        plan = [(2_000, 2_000)]
    else:
        plan = [(args.rows, args.parquet_rows)]

    rows_out: list[list[object]] = []
    records: list[dict[str, object]] = []
    for rows, parquet_rows in plan:
        with_pandas = rows <= args.pandas_max
        m = _measure(rows, parquet_rows, repeat, with_pandas)
        t_sql, t_exact, t_float, t_pq = m.duckdb, m.pandas_exact, m.pandas_float, m.parquet
        rows_out.append(["llmcost, DuckDBStore", f"{rows:,}", t_sql, "1.0x", f"{t_sql / m.duckdb_raw:.2f}x"])
        rows_out.append(["raw DuckDB SQL, same file", f"{rows:,}", m.duckdb_raw, "-", "1.00x"])
        rows_out.append(
            [
                "raw DuckDB SQL, same file, connect per query",
                f"{rows:,}",
                m.duckdb_raw_connecting,
                "-",
                f"{m.duckdb_raw_connecting / m.duckdb_raw:.2f}x",
            ]
        )
        figures = [
            ("DuckDBStore", rows, t_sql),
            ("raw SQL on the DuckDB file", rows, m.duckdb_raw),
            ("raw SQL on the DuckDB file, connect per query", rows, m.duckdb_raw_connecting),
        ]
        if t_exact is not None and t_float is not None:
            rows_out.append(
                ["pandas on frame(), Decimal sums", f"{rows:,}", t_exact, f"{t_exact / t_sql:.1f}x slower", "-"]
            )
            rows_out.append(
                ["pandas on frame(), float sums", f"{rows:,}", t_float, f"{t_float / t_sql:.1f}x slower", "-"]
            )
            figures += [("pandas Decimal", rows, t_exact), ("pandas float", rows, t_float)]
        rows_out.append(["llmcost, ParquetStore", f"{parquet_rows:,}", t_pq, "-", f"{t_pq / m.parquet_raw:.2f}x"])
        rows_out.append(["raw DuckDB SQL, same Parquet files", f"{parquet_rows:,}", m.parquet_raw, "-", "1.00x"])
        figures += [("ParquetStore", parquet_rows, t_pq), ("raw SQL on the Parquet files", parquet_rows, m.parquet_raw)]
        records += [
            {"figure": "analytics", "series": name, "size": n, "value": t, "unit": "s"} for name, n, t in figures
        ]
        print(
            f"(setup, not timed: {rows:,} DuckDB rows in {m.made:.1f} s, "
            f"{parquet_rows:,} Parquet rows in {m.made_parquet:.1f} s)"
        )

    print(f"by_category + by_resource + by_tag, best of {repeat}; {machine()}")
    print(table(["run", "entries", "seconds", "vs llmcost", "vs raw SQL"], rows_out))
    if args.json:
        write_results(args.json, "analytics", records)


@attrs.frozen
class Timings:
    """Seconds for the three groupings (pandas: ``None`` when not run), then the untimed setup of both stores."""

    duckdb: float
    duckdb_raw: float
    duckdb_raw_connecting: float
    pandas_exact: float | None
    pandas_float: float | None
    parquet: float
    parquet_raw: float
    made: float
    made_parquet: float


def _measure(rows: int, parquet_rows: int, repeat: int, with_pandas: bool) -> Timings:
    """The three groupings over both stores, in raw SQL and (``with_pandas``) in pandas."""
    work = tempfile.mkdtemp(prefix="llmcost-bench-analytics-")
    try:
        started = time.perf_counter()
        store = make_duckdb_store(os.path.join(work, "costs.duckdb"), rows)
        made = time.perf_counter() - started
        queries = record_queries(store)  # warm-up: imports, catalogs
        t_sql = best(lambda: analytics_three(store), repeat)
        t_exact, t_float = _pandas_times(store, repeat) if with_pandas else (None, None)
        store.close()
        import duckdb

        con = duckdb.connect(store.path, read_only=True)  # the store let go of the file: open it plainly
        try:
            t_raw = raw_sql_time(con, queries, repeat)
        finally:
            con.close()
        t_raw_connecting = raw_sql_time_connecting(store.path, queries, repeat)

        started = time.perf_counter()
        pq = make_parquet_store(os.path.join(work, "dataset"), parquet_rows)
        made_pq = time.perf_counter() - started
        pq_queries = record_queries(pq)
        t_pq = best(lambda: analytics_three(pq), repeat)
        pq.close()
        con = raw_parquet_connection(pq.directory)
        try:
            t_pq_raw = raw_sql_time(con, pq_queries, repeat)
        finally:
            con.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Timings(t_sql, t_raw, t_raw_connecting, t_exact, t_float, t_pq, t_pq_raw, made, made_pq)


if __name__ == "__main__":
    main()
