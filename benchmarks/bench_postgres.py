"""PostgresStore against DuckDBStore in the same run: bulk ingest, the three standard groupings (by category, by
model, by day) through ``llmcost.analytics``, and the per-call costs (a tracker's flush, a filtered total, a summary).

Run: python -m benchmarks postgres     (or: python -m benchmarks.bench_postgres [--rows N] [--batch N] [--quick]
                                        [--json PATH])

Needs a PostgreSQL server: ``LLMCOST_BENCH_POSTGRES_DSN`` or ``LLMCOST_TEST_POSTGRES_DSN`` (``eval "$(bash
.ci/postgres.sh start)"`` starts a throwaway one). The benchmark creates a database of its own there and drops it
after. Without a server (or without psycopg) it prints why and skips.

On a PostgresStore, ``llmcost.analytics`` sums the groups inside PostgreSQL (``PostgresStore.spend_groups``, "pushed
down"); the "copy path" column is the same analytics call made the general way, through ``CostStore.query``, which
copies the columns it reads out of PostgreSQL into an in-memory DuckDB: what analytics did before the pushdown, and
still does for other queries.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from benchmarks._util import machine, table
from benchmarks.bench_stores import build_entries, ingest
from benchmarks.plot import write_results

DSN_VARIABLES = ("LLMCOST_BENCH_POSTGRES_DSN", "LLMCOST_TEST_POSTGRES_DSN")


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def server() -> tuple[str | None, str]:
    """The server's DSN, or None and why not."""
    dsn = next((os.environ[v] for v in DSN_VARIABLES if os.environ.get(v)), None)
    if dsn is None:
        return None, f'no PostgreSQL server: set {DSN_VARIABLES[0]} (or run: eval "$(bash .ci/postgres.sh start)")'
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed: pip install 'llmcost[postgres]'"
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as exc:
        return None, f"the PostgreSQL server does not answer: {str(exc).splitlines()[0]}"
    return dsn, ""


@contextlib.contextmanager
def fresh_database(server_dsn: str, prefix: str = "llmcost_bench") -> Iterator[str]:
    """The DSN of a database of its own (named ``prefix`` and a random suffix) on the server at ``server_dsn`` (see
    ``server``), dropped afterwards with any connection left to it."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(server_dsn, dbname=name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="entries to ingest (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=10_000, help="entries per append (default 10,000)")
    parser.add_argument("--quick", action="store_true", help="2,000 rows, to check the benchmark runs")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    rows_n = 2_000 if args.quick else args.rows
    print(f"machine: {machine()}, {os.cpu_count()} CPUs")
    dsn, why = server()
    if dsn is None:
        print(table(["store", "result"], [("PostgresStore", f"skipped: {why}")]))
        return
    records = _run(dsn, rows_n, min(args.batch, rows_n) or 1)
    if args.json:
        write_results(args.json, "postgres", records)


def _run(server_dsn: str, rows_n: int, batch: int) -> list[dict[str, Any]]:
    import psycopg

    from llmcost import analytics
    from llmcost.analytics._source import Source
    from llmcost.stores import DuckDBStore, PostgresStore

    t = time.perf_counter()
    entries = build_entries(rows_n)
    print(f"\nbuilt {rows_n:,} entries in {time.perf_counter() - t:.1f} s (not timed below)")
    work = tempfile.mkdtemp(prefix="llmcost-bench-")
    records: list[dict[str, Any]] = []
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        dsn = cleanup.enter_context(fresh_database(server_dsn))
        duck = DuckDBStore(os.path.join(work, "store.duckdb"))
        pg = PostgresStore(dsn, spill_dir=os.path.join(work, "spill"))
        stores = (("DuckDBStore", duck), ("PostgresStore", pg))

        rows = []
        for label, store in stores:
            seconds = ingest(store, entries, batch)
            rows.append((label, seconds, rows_n / seconds))
            records.append({"figure": "ingest", "series": label, "size": rows_n, "value": seconds, "unit": "s"})
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute("VACUUM ANALYZE llmcost_entries")  # as autovacuum would soon after a bulk load
        print(f"\nBulk ingest of {rows_n:,} entries, batches of {batch:,} (fresh store each)")
        print(table(["store", "seconds", "rows/s"], rows))

        groupings: list[tuple[str, Callable[[Any], object]]] = [
            ("by category", analytics.by_category),
            ("by model", analytics.by_model),
            ("by day", lambda s: analytics.over_time(s, freq="D")),
        ]
        # The copy path: a Source that knows only pg.query, not the store (so no spend_groups).
        copied = Source(pg.query, lambda: datetime.now(timezone.utc))
        rows = []
        for what, fn in groupings:
            duck_s = min(_timed(lambda fn=fn: fn(duck)) for _ in range(3))
            pg_s = min(_timed(lambda fn=fn: fn(pg)) for _ in range(3))
            copy_s = min(_timed(lambda fn=fn: fn(copied)) for _ in range(2))
            rows.append((what, duck_s, pg_s, copy_s, f"{copy_s / pg_s:.1f}x", f"{pg_s / duck_s:.1f}x"))
            for series, value in (
                ("DuckDBStore analytics", duck_s),
                ("PostgresStore analytics (pushed down)", pg_s),
                ("PostgresStore analytics (copy path)", copy_s),
            ):
                records.append(
                    {"figure": f"group {what}", "series": series, "size": rows_n, "value": value, "unit": "s"}
                )
        print(f"\nGroupings over all {rows_n:,} entries through llmcost.analytics, seconds (best of 2-3)")
        print(
            table(
                [
                    "grouping",
                    "DuckDBStore",
                    "PostgresStore (pushed down)",
                    "PostgresStore (copy path)",
                    "copy / pushed down",
                    "pushed down / DuckDB",
                ],
                rows,
            )
        )

        last_day = entries[-1].timestamp.replace(hour=0, minute=0, second=0, microsecond=0)
        small = build_entries(100, days=0.001)
        per_call = []
        for label, store in stores:
            ops: list[tuple[str, Callable[[], object]]] = [
                ("append 100 entries", lambda s=store: s.append(small)),
                ("total() of everything", lambda s=store: s.total()),
                ("total(since=last day, model=...)", lambda s=store: s.total(since=last_day, model="gpt-4o")),
                ("total(tags={'team': ...})", lambda s=store: s.total(tags={"team": "team-3"})),
                ("summary() of everything", lambda s=store: s.summary()),
            ]
            for op, fn in ops:
                best = min(_timed(fn) for _ in range(5))
                per_call.append((label, op, best * 1e3))
                records.append(
                    {"figure": "per call", "series": f"{label} {op}", "size": rows_n, "value": best * 1e3, "unit": "ms"}
                )
        print(f"\nPer call on the {rows_n:,}-row stores (best of 5)")
        print(table(["store", "operation", "ms"], per_call))
        duck.close()
        pg.close()
    return records


if __name__ == "__main__":
    main()
