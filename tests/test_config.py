from datetime import datetime, timezone
from decimal import Decimal

import pytest

import llmcost
from llmcost import MemoryStore, StoreError
from llmcost.testing import capture_costs


def test_default_tracker_is_memory_and_stable():
    t = llmcost.get_tracker()
    assert isinstance(t.store, MemoryStore)
    assert llmcost.get_tracker() is t


def test_configure_replaces_the_default():
    store = MemoryStore()
    t = llmcost.configure(store)
    assert llmcost.get_tracker() is t and t.store is store


def test_llmcost_store_env_is_read_on_first_use(monkeypatch):
    monkeypatch.setenv("LLMCOST_STORE", "memory://")
    assert isinstance(llmcost.get_tracker().store, MemoryStore)
    llmcost._state.reset()
    monkeypatch.setenv("LLMCOST_STORE", "gopher://x")
    with pytest.raises(StoreError, match="gopher"):
        llmcost.get_tracker()


def test_capture_costs_isolates_and_restores():
    outer = llmcost.get_tracker()
    with capture_costs() as t:
        assert llmcost.get_tracker() is t
        llmcost.get_tracker().record(amount=1)
    assert llmcost.get_tracker() is outer
    assert t.summary().total == 1 and outer.entries() == []


# -- a plain path is a store, the same way everywhere (issue 17) ---------------------------------------------------


def test_configure_and_open_store_accept_plain_paths(tmp_path, monkeypatch):
    from pathlib import Path

    from llmcost import DuckDBStore, ParquetStore, open_store
    from llmcost.cli._store import store_url

    monkeypatch.chdir(tmp_path)
    t = llmcost.configure("costs.duckdb")
    assert isinstance(t.store, DuckDBStore)
    t.record(amount="1.5")
    t.flush()
    (tmp_path / "dataset").mkdir()
    for location in ("dataset", tmp_path / "dataset", str(tmp_path / "dataset")):
        store = open_store(location)
        assert isinstance(store, ParquetStore), location
        store.close()
    store = open_store(Path("costs.duckdb"))
    assert isinstance(store, DuckDBStore) and store.total() == 1.5
    store.close()
    assert store_url("costs.duckdb") == "duckdb://costs.duckdb" and store_url("dataset") == "parquet://dataset"
    with pytest.raises(StoreError, match=r"'nowhere'.*\.duckdb.*directory"):
        llmcost.configure("nowhere")


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db port=5432 dbname=costs user=app password=s3cret",
        "dbname = costs password = 's3 cret\\'s'",
    ],
)
def test_a_postgresql_connection_string_given_as_a_store_is_named_so_without_its_password(dsn):
    # libpq's keyword form is no store URL: it is refused (as a path it names nothing), its password left out of the
    # message, which ends up in logs; the message says how to give it.
    from llmcost import open_store

    for give in (open_store, llmcost.CostTracker):
        with pytest.raises(StoreError, match=r"PostgreSQL connection string.*postgresql://.*PostgresStore") as refused:
            give(dsn)
        assert "s3" not in str(refused.value) and "password=***" in str(refused.value).replace(" ", ""), refused.value
    with pytest.raises(StoreError, match="has no scheme"):  # (not every "=" is a connection string)
        open_store("a=b")


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("host=db password=s3cret dbname=costs.db", "PostgreSQL connection string"),  # (not a DuckDB file of that name)
        ("host=db password=s3cret://x", "PostgreSQL connection string"),  # (not a URL)
        ("host=db password=a's3cret", "PostgreSQL connection string"),
        ("password=a\\ s3cret host=db", "PostgreSQL connection string"),
        ("host=db password='s3cret", "PostgreSQL connection string"),
        ("postgresql:app:s3cret@db/costs", "lacks the //"),
        ("mysql://app:s3cret@db/costs", "unknown scheme"),
        ("duckdb://costs.duckdb?password=s3cret", "query or fragment"),
        ("host=db password=" + "ab=" * 30 + "'", "PostgreSQL connection string"),  # (once minutes of backtracking)
    ],
)
def test_no_store_error_shows_a_password(given, said):
    from llmcost import open_store

    with pytest.raises(StoreError, match=said) as refused:
        open_store(given)
    assert "s3cret" not in str(refused.value) and "ab=ab" not in str(refused.value), refused.value
    assert "***" in str(refused.value), refused.value


def test_a_duckdb_file_named_with_a_keyword_is_a_path_still(tmp_path, monkeypatch):
    from llmcost import DuckDBStore, open_store

    monkeypatch.chdir(tmp_path)
    store = open_store("user=bob.duckdb")
    assert isinstance(store, DuckDBStore)
    store.close()


# -- stores create their files on the first write, not on open (issue 17) ------------------------------------------


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_opening_and_reading_a_new_store_creates_nothing_until_the_first_write(tmp_path, kind):
    from llmcost import open_store

    where = tmp_path / "var" / "lib" / ("costs.duckdb" if kind == "duckdb" else "llmcost")
    store = open_store(f"{kind}://{where}")
    assert store.entries() == [] and store.total() == 0 and store.summary().calls == 0
    assert store.scan().empty and store.load_budgets() == {} and store.delete_budget("x") is False
    assert store.query("SELECT count(*) AS n FROM entries")["n"].tolist() == [0]
    store.close()
    assert list(tmp_path.iterdir()) == []  # not the file, not its directory
    store.append([llmcost.CostEntry(id="e1", timestamp=datetime(2024, 5, 1, tzinfo=timezone.utc), amount="0.5")])
    assert where.exists() and store.total() == Decimal("0.5")
    store.close()
    assert open_store(f"{kind}://{where}").entries()[0].id == "e1"


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_saving_a_budget_is_a_first_write_too(tmp_path, kind):
    from llmcost import open_store

    where = tmp_path / "new" / ("costs.duckdb" if kind == "duckdb" else "costs")
    store = open_store(f"{kind}://{where}")
    store.save_budget("b", "{}")
    assert where.exists() and open_store(f"{kind}://{where}").load_budgets() == {"b": "{}"}


def test_configure_alone_creates_nothing(tmp_path):
    t = llmcost.configure(f"duckdb://{tmp_path / 'var' / 'costs.duckdb'}")
    assert t.summary().total == 0
    t.flush()
    assert list(tmp_path.iterdir()) == []
    t.record(amount="1")
    t.flush()
    assert (tmp_path / "var" / "costs.duckdb").is_file()


def test_a_new_store_where_it_could_never_be_written_fails_at_open(tmp_path):
    from llmcost import open_store

    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="could not"):
        open_store(f"duckdb://{tmp_path / 'file' / 'sub' / 'costs.duckdb'}")
    assert (tmp_path / "file").is_file()


# -- a store file another process holds locked ----------------------------------------------------------------------


def test_the_default_tracker_is_made_once_on_a_file_another_process_holds(tmp_path, monkeypatch):
    """An analyst's ``duckdb.connect(file)`` holds the file when the first tracked call makes the default tracker on
    ``LLMCOST_STORE``: the tracker is made (once, not again on every call), and what it records is spilled and
    stored once the lock is free, not dropped."""
    import subprocess
    import sys

    from llmcost import DuckDBStore

    path = tmp_path / "costs.duckdb"
    DuckDBStore(path).append(
        [llmcost.CostEntry(id="e0", timestamp=datetime(2024, 5, 1, tzinfo=timezone.utc), amount="1")]
    )
    monkeypatch.setenv("LLMCOST_STORE", f"duckdb://{path}")
    monkeypatch.setitem(DuckDBStore.__init__.__kwdefaults__, "retry_timeout", 0.3)  # not 30 s per wait
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys\ncon = duckdb.connect(sys.argv[1])\nprint('locked', flush=True)\nsys.stdin.readline()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        tracker = llmcost.get_tracker()
        assert isinstance(tracker.store, DuckDBStore)
        tracker.record(amount="1.5", resource="svc")
        assert llmcost.get_tracker() is tracker
        tracker.record(amount="2", resource="svc")
        tracker.flush()  # acknowledged: spilled
        assert len(list((tmp_path / "costs.duckdb.spill").iterdir())) == 1
    finally:
        holder.communicate("\n", timeout=30)
    assert DuckDBStore(path).total(resource="svc") == Decimal("3.5")
