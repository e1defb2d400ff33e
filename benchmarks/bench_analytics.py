"""Analytics speed: by_category + by_resource + by_tag over a DuckDB store against the same groupings in pandas on
the ``frame()`` of those entries (same run), and over a Parquet store; each store also against raw DuckDB SQL.

The raw SQL baseline runs the very statements the analytics sent to ``store.query`` (recorded during the warm-up
run), into pandas frames with ``.df()`` as the store does. Over the Parquet files: a plain connection with a view
``entries`` over ``read_parquet`` of the files (goal: ParquetStore within 1.5x of it). Over the DuckDB file (goal:
DuckDBStore within 1.1x) the baseline is what a careful user of plain DuckDB does where other processes write the
file: DuckDB locks a file for the whole process that holds it open, so such a user opens it per query, read-only,
either by a connection of its own (``duckdb.connect``) or attached to an in-memory connection kept open (the cheaper
of the two is the baseline; the store does the latter). A connection holding the file open for the whole run is
also timed, as what no process sharing the file with writers can do: it keeps DuckDB's cache of the file warm and
locks every writer out. Each store and its baselines run in turn, round after round (the held connection apart:
one process cannot hold the file and let the store attach it), so that a change of load on the machine falls on
all of them alike. The connection per query has rounds of its own: each of its queries opens and closes a DuckDB
database, which hands its memory back to the system, and whatever runs next takes it back (at 1M rows about twice
the page faults and 5-8 ms more system time, the same for the store or the attaching baseline, whichever follows
it), so in turn with the store it charged the store for it.

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
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
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


def raw_queries(con: Any, queries: Sequence[tuple[str, list[Any]]]) -> None:
    """Run ``queries`` on the plain DuckDB connection ``con`` into pandas frames."""
    for sql, params in queries:
        con.execute(sql, params).df()


def raw_sql_time(con: Any, queries: Sequence[tuple[str, list[Any]]], repeat: int) -> float:
    """Best time of running ``queries`` on the plain DuckDB connection ``con`` into pandas frames."""
    raw_queries(con, queries)  # warm-up, as the store had
    return best(lambda: raw_queries(con, queries), repeat)


def connecting(path: str, queries: Sequence[tuple[str, list[Any]]]) -> Callable[[], None]:
    """Running ``queries`` against the DuckDB file ``path`` with a read-only connection opened for each one."""
    import duckdb

    def run() -> None:
        for sql, params in queries:
            con = duckdb.connect(path, read_only=True)
            try:
                con.execute(sql, params).df()
            finally:
                con.close()

    return run


def attaching(con: Any, path: str, queries: Sequence[tuple[str, list[Any]]]) -> Callable[[], None]:
    """Running ``queries`` against the DuckDB file ``path`` attached read-only, for each one, to the in-memory
    connection ``con`` (and detached after: the file is not held between queries)."""

    def run() -> None:
        for sql, params in queries:
            con.execute("ATTACH ? AS shared (READ_ONLY)", [path])
            try:
                con.execute("USE shared")
                con.execute(sql, params).df()
            finally:
                con.execute("USE memory")
                con.execute("DETACH shared")

    return run


def best_in_turn(
    runs: Mapping[str, Callable[[], object]], repeat: int, cpu: dict[str, float] | None = None
) -> dict[str, float]:
    """Best time of each of ``runs``, run once each to warm up and then in turn ``repeat`` times; ``cpu`` (where
    given) gets each run's median process CPU time (DuckDB's threads included), steadier than wall time on a loaded
    machine."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu_times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(repeat):
        for name, run in runs.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            run()
            times[name].append(time.perf_counter() - started)
            cpu_times[name].append(time.process_time() - cpu_started)
    if cpu is not None:
        cpu.update({name: statistics.median(found) for name, found in cpu_times.items()})
    return {name: min(found) for name, found in times.items()}


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
    cpu_lines: list[str] = []
    records: list[dict[str, object]] = []
    for rows, parquet_rows in plan:
        with_pandas = rows <= args.pandas_max
        m = _measure(rows, parquet_rows, repeat, with_pandas)
        t_sql, t_exact, t_float, t_pq = m.duckdb, m.pandas_exact, m.pandas_float, m.parquet
        raw = m.duckdb_raw
        rows_out.append(["llmcost, DuckDBStore", f"{rows:,}", t_sql, "1.0x", f"{t_sql / raw:.2f}x"])
        for name, t in (
            ("raw DuckDB SQL, same file, attached per query", m.duckdb_raw_attaching),
            ("raw DuckDB SQL, same file, connect per query", m.duckdb_raw_connecting),
            ("raw DuckDB SQL, same file held open (locks writers out)", m.duckdb_raw_held),
        ):
            rows_out.append([name, f"{rows:,}", t, "-", f"{t / raw:.2f}x"])
        figures = [
            ("DuckDBStore", rows, t_sql),
            ("raw SQL on the DuckDB file, attached per query", rows, m.duckdb_raw_attaching),
            ("raw SQL on the DuckDB file, connect per query", rows, m.duckdb_raw_connecting),
            ("raw SQL on the DuckDB file held open", rows, m.duckdb_raw_held),
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
        c = m.cpu
        cpu_lines.append(
            f"{rows:,} rows, median CPU s: DuckDBStore {c['duckdb store']:.3f} against raw attached per query "
            f"{c['duckdb attach']:.3f} / connect per query {c['duckdb connect']:.3f}: "
            f"{c['duckdb store'] / min(c['duckdb attach'], c['duckdb connect']):.2f}x; ParquetStore "
            f"{c['parquet store']:.3f} against raw {c['parquet raw']:.3f}: {c['parquet store'] / c['parquet raw']:.2f}x"
        )
        print(
            f"(setup, not timed: {rows:,} DuckDB rows in {m.made:.1f} s, "
            f"{parquet_rows:,} Parquet rows in {m.made_parquet:.1f} s)"
        )

    print(f"by_category + by_resource + by_tag, best of {repeat}; {machine()}")
    print(
        "vs raw SQL: DuckDB rows against the cheaper of the two ways to read the file per query (goal: DuckDBStore "
        "<= 1.1x), Parquet rows against a plain connection over the same files (goal: ParquetStore <= 1.5x)"
    )
    print(table(["run", "entries", "seconds", "vs llmcost", "vs raw SQL"], rows_out))
    print("The same runs in CPU time (process, DuckDB's threads included; steadier than wall time under load):")
    for line in cpu_lines:
        print("  " + line)
    if args.json:
        write_results(args.json, "analytics", records)


@attrs.frozen
class Timings:
    """Seconds for the three groupings (pandas: ``None`` when not run), then the untimed setup of both stores.

    ``duckdb_raw`` is the DuckDB file's baseline: the cheaper way for plain DuckDB to read it per query."""

    @property
    def duckdb_raw(self) -> float:
        return min(self.duckdb_raw_attaching, self.duckdb_raw_connecting)

    duckdb: float
    duckdb_raw_attaching: float
    duckdb_raw_connecting: float
    duckdb_raw_held: float
    pandas_exact: float | None
    pandas_float: float | None
    parquet: float
    parquet_raw: float
    made: float
    made_parquet: float
    cpu: Mapping[str, float]  # median CPU seconds of the runs timed in turn, by "<store kind> <run>"


def _measure(rows: int, parquet_rows: int, repeat: int, with_pandas: bool) -> Timings:
    """The three groupings over both stores, in raw SQL and (``with_pandas``) in pandas."""
    work = tempfile.mkdtemp(prefix="llmcost-bench-analytics-")
    try:
        started = time.perf_counter()
        store = make_duckdb_store(os.path.join(work, "costs.duckdb"), rows)
        made = time.perf_counter() - started
        queries = record_queries(store)  # warm-up: imports, catalogs
        import duckdb

        memory = duckdb.connect()
        cpu: dict[str, float] = {}
        try:
            found = best_in_turn(
                {"store": lambda: analytics_three(store), "attach": attaching(memory, store.path, queries)}, repeat, cpu
            )
            # Rounds of its own: the run after it pays for its closed databases (see the module docstring).
            found |= best_in_turn({"connect": connecting(store.path, queries)}, repeat, cpu)
        finally:
            memory.close()
        t_exact, t_float = _pandas_times(store, repeat) if with_pandas else (None, None)
        store.close()
        con = duckdb.connect(store.path, read_only=True)  # the store let go of the file: open it plainly
        try:
            t_held = raw_sql_time(con, queries, repeat)
        finally:
            con.close()

        started = time.perf_counter()
        pq = make_parquet_store(os.path.join(work, "dataset"), parquet_rows)
        made_pq = time.perf_counter() - started
        pq_queries = record_queries(pq)
        con = raw_parquet_connection(pq.directory)  # Parquet readers lock nothing: both run side by side, in turn
        try:
            cpu_pq: dict[str, float] = {}
            found_pq = best_in_turn(
                {"store": lambda: analytics_three(pq), "raw": lambda: raw_queries(con, pq_queries)}, repeat, cpu_pq
            )
        finally:
            con.close()
            pq.close()
        t_pq, t_pq_raw = found_pq["store"], found_pq["raw"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Timings(
        found["store"],
        found["attach"],
        found["connect"],
        t_held,
        t_exact,
        t_float,
        t_pq,
        t_pq_raw,
        made,
        made_pq,
        {**{f"duckdb {k}": v for k, v in cpu.items()}, **{f"parquet {k}": v for k, v in cpu_pq.items()}},
    )


if __name__ == "__main__":
    main()
