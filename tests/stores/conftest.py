"""Fixtures for the store tests: a ``store`` over every backend, entries that exercise every column."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from llmcost import CostEntry, Usage
from llmcost.stores import CostStore, DuckDBStore, MemoryStore, ParquetStore, PostgresStore

from . import postgres_server
from .list_store import ListStore

T0 = datetime(2024, 5, 1, 22, 0, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Tag values a store must keep exactly and filter on without being confused by them.
NASTY = [
    "it's",
    'say "hi"',
    "../../etc/passwd",
    "line\nbreak",
    "tab\there",
    "ünïcödé ✓ 日本",
    "",
    "'; DROP TABLE entries; --",
    "x' OR '1'='1",
    "back\\slash",
    "%_*?",
    "day=2024-01-01",
]

StoreFactory = Callable[[], CostStore]


def make_entry(i: int, **overrides: object) -> CostEntry:
    """Entry number ``i``: spread over three UTC days, with every optional field set on some entries."""
    ts = T0 + timedelta(minutes=7 * i, microseconds=i)
    # The same id every time (tests build an entry twice to compare), sorting by time like real ids.
    micros = (ts - EPOCH) // timedelta(microseconds=1)
    fields: dict[str, object] = {
        "id": f"{micros:014x}{i:012x}",
        "timestamp": ts,
        "amount": Decimal("0.000000012345678901") * (i + 1),
        "category": ["llm_inference", "llm_embedding", "compute"][i % 3],
        "resource": None if i % 4 == 0 else f"svc-{i % 3}",
        "description": "" if i % 2 else f"call {i}",
        "model": None if i % 5 == 0 else ["gpt-4o", "claude-3-5-sonnet"][i % 2],
        "provider": None if i % 5 == 0 else ["openai", "anthropic"][i % 2],
        "usage": (
            Usage(100 + i, 20 + i, i % 50, 10, i % 7, units={"cache_write_1h_tokens": 6, "web_searches": i % 3 + 1})
            if i % 4 == 1
            else Usage(100 + i, 20 + i, i % 50, 0, i % 7)
        ),
        "latency_ms": None if i % 3 == 0 else 12.5 + i,
        "tags": {"team": ["search", "ads"][i % 2], "nasty": NASTY[(i // 6) % len(NASTY)]} if i % 6 else {},
        "pricing": "given" if i % 2 else "catalog@0.0.40",
        "service_tier": [None, "batch", "flex", "priority", None][i % 5],
        # Priced gpt-4o entries name the catalog's id (the others: given, unpriced or another model).
        "canonical_model": "gpt-4o" if i % 5 and i % 2 == 0 and i % 3 else None,
    }
    fields.update(overrides)
    return CostEntry(**fields)  # type: ignore[arg-type]


@pytest.fixture
def entries() -> list[CostEntry]:
    return [make_entry(i) for i in range(500)]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of its own on the tests' PostgreSQL server for this session (skips when there is none)."""
    yield from postgres_server.session_database()


@pytest.fixture(params=["memory", "duckdb", "parquet", "list", "postgres"])
def open_again(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[StoreFactory]:
    """Opens the same store each time it is called (memory and list: the same object; they cannot be reopened).

    ``list`` is ``ListStore``, a backend from the ``CostStore`` ABC alone: a new backend is a module plus a line here.
    """
    opened: list[CostStore] = []
    kind = request.param
    memory = MemoryStore()
    listed = ListStore()
    if kind == "postgres":  # a schema of its own in the session's database
        postgres_dsn = postgres_server.fresh_schema(request.getfixturevalue("postgres_database"))

    def factory() -> CostStore:
        if kind == "memory":
            store: CostStore = memory
        elif kind == "list":
            store = listed
        elif kind == "duckdb":
            store = DuckDBStore(os.path.join(tmp_path, "costs.duckdb"))
        elif kind == "postgres":
            store = PostgresStore(postgres_dsn, spill_dir=os.path.join(tmp_path, "spill"))
        else:
            store = ParquetStore(os.path.join(tmp_path, "costs"))
        opened.append(store)
        return store

    factory.kind = kind  # type: ignore[attr-defined]
    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_again: StoreFactory) -> CostStore:
    """A fresh store of each kind."""
    return open_again()


def child_env() -> dict[str, str]:
    """Environment for child Python processes: this checkout first on the path, as in the parent."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


class Children:
    """Child Python processes for a test; whatever is still running at teardown is killed and reaped."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, code: str, *args: str) -> subprocess.Popen[str]:
        """Start ``python -c code args...`` with pipes; ``code`` is dedented."""
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    yield kids
    kids.close()


#: Child-process preamble: ``entry(n, k)`` builds the k-th entry of writer n, unique across writers.
CHILD_PREAMBLE = """
import sys, time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from llmcost import CostEntry, Usage
from llmcost.stores import open_store

T0 = datetime(2024, 5, 1, 23, 59, tzinfo=timezone.utc)

def entry(n, k):
    ts = T0 + timedelta(seconds=k, microseconds=n)
    return CostEntry(id=f"w{n:02d}-{k:08d}", timestamp=ts, amount=Decimal("0.000001") * (k + 1),
                     resource=f"writer-{n}", usage=Usage(k, 1), tags={"writer": str(n)})
"""
