"""Process state: everything lives in ``_state``, and ``reset()`` gives back a fresh process."""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
from datetime import datetime, timezone

import pydantic
import pytest

import llmcost
from llmcost import _state
from llmcost._background import expect
from llmcost._catalog import provider_for_url
from llmcost._entry import intern_tags, new_entry_id
from llmcost._estimate import request_estimate
from llmcost._extract import extract_usage, is_sdk_stream, may_be_stream
from llmcost._tracker import log_once


class _Reply(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    model: str


def _set_every_piece_of_state(tmp_path, caplog) -> tuple[llmcost.CostTracker, llmcost.CostTracker]:
    llmcost.register_price(llmcost.ModelPrice("acme-1", "acme", input_per_mtok="1", output_per_mtok="2"))
    assert llmcost.cost_of("gpt-4o", input_tokens=10) > 0  # resolves and caches a catalog price
    assert "acme-1" in llmcost.MODEL_PRICING  # builds the MODEL_PRICING table (and the catalog's id index)
    with contextlib.suppress(llmcost.UnknownModelError):
        llmcost.get_price("no-such-model-anywhere")  # the miss is remembered
    llmcost.cost_of("claude-sonnet-4-0", input_tokens=10, cache_write_tokens=5, units={"cache_write_1h_tokens": 5})
    assert provider_for_url("https://api.groq.com/openai/v1") == "groq"
    default = llmcost.configure("memory://")
    llmcost.set_active(False)
    with caplog.at_level(logging.WARNING, logger="llmcost"):
        log_once("state-test", "llmcost: logged once")
    intern_tags({"team": "search"})
    extract_usage({"model": "gpt-4o", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    extract_usage(_Reply(model="m", usage={"input_tokens": 3, "output_tokens": 1}))  # per-type facts of a model
    extract_usage(  # how reported units are cut to their wholes
        {"type": "message", "model": "m", "usage": {"input_tokens": 3, "server_tool_use": {"web_search_requests": 1}}}
    )
    extract_usage(  # cached tokens overlapping audio input: the overlap's unit found by its dimensions
        {"model": "gpt-realtime", "usage": {"prompt_tokens": 10, "completion_tokens": 1,
                                            "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 9}}}
    )  # fmt: skip
    from anthropic.types import Message

    message = {"id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-0", "content": []}
    tools = {"web_search_requests": 1, "web_fetch_requests": 0}
    usage = {"input_tokens": 3, "output_tokens": 1, "server_tool_use": tools}
    extract_usage(Message.model_validate({**message, "usage": usage}))  # one Units per distinct counts
    is_sdk_stream(object())
    may_be_stream(object())
    expect("resp_1", lambda found: None)  # a background response waiting to be retrieved finished
    _state.encodings["o200k_base"] = None  # tiktoken is optional: stand in for a loaded (or failed) encoding
    llmcost.count_tokens("Héllo", model="claude-3-5-haiku-latest")  # how the model counts, and this text's count
    request_estimate({"model": "gpt-4o", "messages": "Hello"}, None)  # a budget's estimate from a request, priced
    new_entry_id(datetime(2024, 1, 1, tzinfo=timezone.utc))
    from llmcost.analytics import _advice

    assert _advice._provider_models("openai")  # the recommender's per-provider catalog lines
    live = llmcost.CostTracker(f"duckdb:///{tmp_path / 'costs.duckdb'}")  # a buffered tracker: flushed at exit
    live.record(amount=1)
    return default, live


def test_reset_forgets_every_piece_of_process_state(tmp_path, caplog):
    default, live = _set_every_piece_of_state(tmp_path, caplog)
    for cache in _state._CACHES:
        assert cache, f"the test should fill every cache in _state; this one stayed empty: {cache!r}"
    assert _state.default_tracker is default and _state.active is False
    assert _state.pricing_table is not None and _state.catalog_version is not None
    assert len(_state.live_trackers) == 1 and _state._exit_hook_registered
    assert signal.getsignal(signal.SIGTERM) is _state._on_sigterm  # flushes on SIGTERM, then chains
    hooks = list(_state.default_tracker_hooks)

    _state.reset()

    for cache in _state._CACHES:
        assert not cache, f"reset() left {cache!r}"
    assert not _state.model_encodings and not _state.encodings  # (each named too: one left out of _CACHES shows)
    assert _state.default_tracker is None and llmcost.get_tracker() is not default
    assert _state.active is True and llmcost.is_active()
    assert _state.pricing_table is None and _state.catalog_version is None
    assert len(_state.live_trackers) == 0 and not _state._exit_hook_registered
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler found before is back
    assert next(_state.entry_seq) == 0
    assert _state.default_tracker_hooks == hooks  # wiring made at import stays: env budgets still apply
    assert "acme-1" not in llmcost.MODEL_PRICING
    with caplog.at_level(logging.WARNING, logger="llmcost"):
        log_once("state-test", "llmcost: logged again")
    assert "logged again" in caplog.text
    live.close()


def test_the_exit_hook_waits_for_the_first_buffered_tracker(tmp_path, monkeypatch):
    hooks = []
    monkeypatch.setattr(atexit, "register", hooks.append)

    def registered():  # llmcost's own: libraries first imported here (DuckDB) register exit hooks of their own
        return [hook for hook in hooks if (getattr(hook, "__module__", None) or "").startswith("llmcost")]

    with llmcost.CostTracker():  # a MemoryStore: nothing to flush at exit
        pass
    assert registered() == [] and not _state._exit_hook_registered
    with (
        llmcost.CostTracker(f"duckdb:///{tmp_path / 'a.duckdb'}"),
        llmcost.CostTracker(f"duckdb:///{tmp_path / 'b.duckdb'}"),
    ):
        assert len(registered()) == 1 and _state._exit_hook_registered
        assert len(_state.live_trackers) == 2
    assert len(_state.live_trackers) == 0  # closed trackers are not flushed again


def test_env_budgets_apply_after_reset(monkeypatch):
    monkeypatch.setenv("LLMCOST_DAILY_LIMIT", "5")
    _state.reset()
    names = [guard.name for guard in llmcost.get_tracker().guards()]
    assert names == ["env-daily"]


def test_the_live_trackers_are_read_again_if_they_change_as_they_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # A dropped tracker's leftovers join the live trackers from the garbage collector, which may run on the very thread
    # reading them for the exit or SIGTERM flush: "Set changed size during iteration" must not end that flush.
    held = [object(), object()]

    class Changing(list):  # type: ignore[type-arg]
        reads = 0

        def __iter__(self):  # type: ignore[no-untyped-def]
            Changing.reads += 1
            if Changing.reads == 1:
                raise RuntimeError("Set changed size during iteration")
            return super().__iter__()

    monkeypatch.setattr(_state, "live_trackers", Changing(held))
    assert _state.live_snapshot() == held and Changing.reads == 2
