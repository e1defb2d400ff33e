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
