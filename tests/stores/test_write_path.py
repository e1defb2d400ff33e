"""The write path stays light: appends to the durable stores import neither pandas nor pyarrow, so a tracker can
flush at interpreter exit and under a frozen clock. Each test runs a fresh interpreter, where nothing is imported
yet."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

from llmcost.stores import DuckDBStore, ParquetStore

from .conftest import child_env

RECORD = """
import sys
import llmcost
from llmcost.stores import DuckDBStore, ParquetStore

def record(store, flush):
    tracker = llmcost.CostTracker(store)
    tracker.record(amount="0.40", category="compute")  # no resource, model or provider: NULL columns
    tracker.record(amount="0.10", resource="r", tags={"team": "a"})
    if flush:
        tracker.flush()
    return tracker
"""


def _run(code: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RECORD) + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # nothing logged, no "can't register atexit after shutdown"
    return proc.stdout


def _check(tmp_path: Path) -> None:
    for store in (DuckDBStore(tmp_path / "costs.duckdb"), ParquetStore(tmp_path / "costs")):
        assert store.total() == Decimal("0.50")
        assert sorted(e.resource or "" for e in store.entries()) == ["", "r"]
        store.close()


def test_appends_import_neither_pandas_nor_pyarrow(tmp_path: Path) -> None:
    out = _run(
        """
        record(DuckDBStore(sys.argv[1]), flush=True)
        record(ParquetStore(sys.argv[2]), flush=True)
        print(sorted(m for m in ("pandas", "pyarrow") if m in sys.modules))
        """,
        str(tmp_path / "costs.duckdb"),
        str(tmp_path / "costs"),
    )
    assert out.strip() == "[]"
    _check(tmp_path)


def test_trackers_flush_at_interpreter_exit(tmp_path: Path) -> None:
    _run(
        """
        # Alive until exit (the tracker flushes those it can still reach), never flushed by hand.
        kept = [record(DuckDBStore(sys.argv[1]), flush=False), record(ParquetStore(sys.argv[2]), flush=False)]
        """,
        str(tmp_path / "costs.duckdb"),
        str(tmp_path / "costs"),
    )
    _check(tmp_path)


def test_flush_under_a_frozen_clock(tmp_path: Path) -> None:
    out = _run(
        """
        from freezegun import freeze_time

        with freeze_time("2024-05-01 12:00:00"):
            record(DuckDBStore(sys.argv[1]), flush=True)
            record(ParquetStore(sys.argv[2]), flush=True)
        print("pandas" in sys.modules)
        """,
        str(tmp_path / "costs.duckdb"),
        str(tmp_path / "costs"),
    )
    assert out.strip() == "False"
    _check(tmp_path)
    assert [p.name for p in (tmp_path / "costs").glob("day=*")] == ["day=2024-05-01"]
