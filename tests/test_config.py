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
