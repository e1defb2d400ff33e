"""What tracking costs per call: @track_cost against a bare call with each store, in 1 and 8 threads; and against
LangChain's own usage callbacks doing the same job on the same response.

Run: python -m benchmarks overhead     (or: python -m benchmarks.bench_overhead [--quick] [--json PATH])

Store figures include writing the entries: each timed run ends with ``tracker.flush()``, so a buffered store's
batch inserts are inside the per-call figure. With 8 threads the figure is wall time over all calls (the inverse of
throughput), on however many cores the machine has. A store that is not importable yet prints "not available".

The LangChain comparison, two ways:
- per response: the work each does once a chat model has answered. ``@track_cost`` reads ``AIMessage.usage_metadata``,
  prices it exactly and records a ``CostEntry`` (id, timestamp, tags, latency); LangChain's
  ``UsageMetadataCallbackHandler.on_llm_end`` sums the token counts per model (no price);
  ``OpenAICallbackHandler.on_llm_end`` (what ``get_openai_callback()`` installs) sums tokens and a float cost from its
  OpenAI-only price table. Each is given the same ``AIMessage``.
- end to end: a LangChain chat model (``GenericFakeChatModel``, answering at once with that ``AIMessage``) invoked
  bare, with each callback attached the way LangChain documents, and inside a ``@track_cost`` function; the figure is
  the time added to ``invoke``.

The goal, per SDK response (``sdk_ratios``): what ``@track_cost`` and ``instrument(client)`` add to a call returning a
real SDK object (OpenAI ``ChatCompletion``, OpenAI Responses ``Response``, Anthropic ``Message``, each made by the SDK's
own client from a canned HTTP body) is at most 2.5x LangChain's ``UsageMetadataCallbackHandler.on_llm_end`` given the
``AIMessage`` that carries the same usage. Each ratio's figures are measured in turns, in the same run.

``--profile N`` prints a cProfile of N ``@track_cost`` calls returning the OpenAI ``ChatCompletion`` (MemoryStore);
``--profile-instrument N`` the same of N requests of an ``instrument``-ed client.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import threading
import time
import timeit
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._util import machine, per_call_us, table
from benchmarks.plot import write_results

THREADS = 8
#: Threads for the scaling figure: 4 threads on one MemoryStore should keep >= 0.9x one thread's calls per second.
SCALING_THREADS = 4
RESPONSE = {
    "object": "chat.completion",
    "model": "gpt-4o-2024-08-06",
    "choices": [],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024},
    },
}


def _bare() -> dict[str, Any]:
    return RESPONSE


def _run_us(fn: Callable[[], object], calls: int, threads: int, after: Callable[[], object] | None) -> float:
    """Wall microseconds per call of ``calls`` calls of ``fn`` spread over ``threads`` threads, then ``after()``;
    best of 3.

    The span runs from the first worker's first call to the last worker's last call (each reads the clock itself),
    then ``after()``: read by the main thread instead, it also held the main thread's wait for the GIL after the
    barrier (up to a switch interval, 5 ms, when a worker left the barrier first), which falls on either side."""
    per = calls // threads
    best = float("inf")
    for _ in range(3):
        barrier = threading.Barrier(threads + 1)
        starts: list[float] = []
        ends: list[float] = []

        def work(barrier: threading.Barrier = barrier, starts: list[float] = starts, ends: list[float] = ends) -> None:
            barrier.wait()
            starts.append(time.perf_counter())
            for _ in range(per):
                fn()
            ends.append(time.perf_counter())

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        barrier.wait()
        for w in workers:
            w.join()
        if after is not None:
            after()
            ends.append(time.perf_counter())
        best = min(best, max(ends) - min(starts))
    return best / (per * threads) * 1e6


def _stores(directory: Path) -> list[tuple[str, Callable[[], Any] | None, str]]:
    """(name, factory or None, why not) for each store, opened through ``open_store`` URLs."""
    import llmcost

    found = []
    for name, url in [
        ("MemoryStore", "memory://"),
        ("DuckDBStore", f"duckdb://{directory / 'bench.duckdb'}"),
        ("ParquetStore", f"parquet://{directory / 'parquet'}"),
    ]:
        try:
            llmcost.open_store(url).close()
        except Exception as exc:
            found.append((name, None, f"not available ({type(exc).__name__})"))
            continue
        found.append((name, lambda url=url: llmcost.open_store(url), ""))
    return found


def track_by_store(calls: int, records: list[dict[str, Any]]) -> None:
    """@track_cost per call with each store, in 1 and ``THREADS`` threads, against the bare call."""
    from llmcost import CostTracker, track_cost

    rows: list[Sequence[object]] = []
    bare = {n: _run_us(_bare, calls, n, None) for n in (1, THREADS)}
    for n in (1, THREADS):
        rows.append(("bare call", n, bare[n], 0.0, 1.0, f"{1e6 / bare[n]:,.0f}"))
    with tempfile.TemporaryDirectory() as tmp:
        for name, factory, why in _stores(Path(tmp)):
            if factory is None:
                rows.append((name, "-", why, "-", "-", "-"))
                continue
            tracker = CostTracker(factory())
            tracked = track_cost(tracker=tracker)(_bare)
            tracked()
            tracker.flush()
            for n in (1, THREADS):
                us = _run_us(tracked, calls, n, tracker.flush)
                rows.append((f"@track_cost, {name}", n, us, us - bare[n], us / bare[n], f"{1e6 / us:,.0f}"))
                records.append({"figure": "track_cost", "series": name, "threads": n, "value": us, "unit": "us/call"})
            tracker.close()
    print(f"\n@track_cost per call by store ({calls:,} calls per run, flush included, best of 3)")
    print(table(["call", "threads", "us/call", "overhead us", "x bare", "calls/s"], rows))


def thread_scaling(calls: int, records: list[dict[str, Any]]) -> None:
    """Calls per second of ``SCALING_THREADS`` threads recording into one MemoryStore, against one thread: what the
    store's and tracker's locks cost when threads share them (the GIL lets one thread run at a time either way, so
    1.0x is the ceiling)."""
    from datetime import datetime, timezone

    from llmcost import CostTracker, track_cost

    when = datetime(2024, 1, 1, tzinfo=timezone.utc)
    rows: list[Sequence[object]] = []
    for name, make in [
        ("@track_cost", lambda t: track_cost(tracker=t)(_bare)),
        ("tracker.record(amount=, tags=, timestamp=)",
         lambda t: lambda: t.record(amount="0.0025", tags={"team": "search"}, timestamp=when)),
    ]:  # fmt: skip
        tracker = CostTracker()
        fn = make(tracker)
        fn()
        one = many = float("inf")
        cpu = {1: 0.0, SCALING_THREADS: 0.0}
        for _ in range(3):  # in turns, so a burst of load on the machine does not fall on one side only
            for n in cpu:
                started = time.process_time()
                us = _run_us(fn, calls, n, None)
                cpu[n] += time.process_time() - started
                one, many = (min(one, us), many) if n == 1 else (one, min(many, us))
        per_call = {n: seconds / (9 * calls) * 1e6 for n, seconds in cpu.items()}  # _run_us runs 3 times
        rows.append(
            (name, f"{1e6 / one:,.0f}", f"{1e6 / many:,.0f}", one / many, per_call[1], per_call[SCALING_THREADS])
        )
        records.append(
            {"figure": "thread scaling", "series": name, "threads": SCALING_THREADS, "value": one / many, "unit": "x"}
        )
        tracker.close()
    print(f"\nOne MemoryStore, 1 thread against {SCALING_THREADS} ({calls:,} calls per run, best of 9 in turns)")
    print(
        table(
            ["call", "calls/s, 1 thread", f"calls/s, {SCALING_THREADS} threads", "x 1 thread", "CPU us/call, 1",
             f"{SCALING_THREADS}"],
            rows,
        )
    )  # fmt: skip
    print("(calls/s: wall time, which on a loaded machine favours more threads; CPU: every thread, mean per call)")


def _langchain() -> tuple[Any, ...] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # langchain-community announces its own sunset on import
            from langchain_community.callbacks import get_openai_callback
            from langchain_community.callbacks.openai_info import OpenAICallbackHandler
            from langchain_core.callbacks import UsageMetadataCallbackHandler, get_usage_metadata_callback
            from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
            from langchain_core.messages import AIMessage
            from langchain_core.outputs import ChatGeneration, LLMResult
    except ImportError:
        return None
    return (
        get_openai_callback,
        OpenAICallbackHandler,
        UsageMetadataCallbackHandler,
        get_usage_metadata_callback,
        GenericFakeChatModel,
        AIMessage,
        ChatGeneration,
        LLMResult,
    )


def against_langchain(number: int, records: list[dict[str, Any]]) -> None:
    """@track_cost against LangChain's usage callbacks, per response and end to end through ``invoke``."""
    lc = _langchain()
    if lc is None:
        print("\nLangChain comparison: langchain-core / langchain-community not installed")
        return
    (get_openai_callback, OpenAICallbackHandler, UsageMetadataCallbackHandler, get_usage_metadata_callback,
     GenericFakeChatModel, AIMessage, ChatGeneration, LLMResult) = lc  # fmt: skip
    from llmcost import CostTracker, track_cost

    message = AIMessage(
        content="ok",
        usage_metadata={
            "input_tokens": 1200,
            "output_tokens": 300,
            "total_tokens": 1500,
            "input_token_details": {"cache_read": 1024},
        },
        response_metadata={"model_name": "gpt-4o-2024-08-06"},
    )
    result = LLMResult(generations=[[ChatGeneration(message=message)]])
    tracker = CostTracker()

    def returns_message() -> Any:
        return message

    tracked_message = track_cost(tracker=tracker)(returns_message)
    usage_handler, openai_handler = UsageMetadataCallbackHandler(), OpenAICallbackHandler()

    bare = per_call_us(returns_message, number)
    ours = per_call_us(tracked_message, number) - bare
    rows: list[Sequence[object]] = [
        ("llmcost @track_cost (overhead over the bare function)", ours, "exact Decimal", "yes", 1.0),
    ]
    for name, fn, prices in [
        ("UsageMetadataCallbackHandler.on_llm_end", lambda: usage_handler.on_llm_end(result), "no"),
        ("OpenAICallbackHandler.on_llm_end (get_openai_callback)", lambda: openai_handler.on_llm_end(result),
         "float, OpenAI models only"),
    ]:  # fmt: skip
        us = per_call_us(fn, number)
        rows.append((name, us, prices, "no (running sums)", us / ours))
    print(f"\nPer response, the same AIMessage (gpt-4o, 1200 in / 1024 cached / 300 out); best of 5 x {number} calls")
    print(table(["what", "us/response", "prices", "per-call record", "x llmcost"], rows))
    records.extend({"figure": "langchain per response", "series": str(r[0]), "value": r[1], "unit": "us"} for r in rows)

    tracker.store.close()
    tracker = CostTracker()
    model = GenericFakeChatModel(messages=itertools.repeat(message))

    def invoke() -> Any:
        return model.invoke("hi")

    tracked_invoke = track_cost(tracker=tracker)(invoke)
    handler = UsageMetadataCallbackHandler()
    config = {"callbacks": [handler]}
    bare = per_call_us(invoke, number)
    runs: list[tuple[str, float]] = [
        ("@track_cost around invoke", per_call_us(tracked_invoke, number)),
        ("invoke(config={'callbacks': [UsageMetadataCallbackHandler()]})",
         per_call_us(lambda: model.invoke("hi", config=config), number)),
    ]  # fmt: skip
    with get_usage_metadata_callback():
        runs.append(("inside get_usage_metadata_callback()", per_call_us(invoke, number)))
    with get_openai_callback() as cb:
        runs.append(("inside get_openai_callback()", per_call_us(invoke, number)))
        one = cb.total_cost / cb.successful_requests
    ours_amount = tracker.entries(limit=1)[0].amount
    rows = [("bare model.invoke('hi')", bare, 0.0, "-")]
    llm_added = runs[0][1] - bare
    for name, us in runs:
        rows.append((name, us, us - bare, f"{(us - bare) / llm_added:.1f}x" if llm_added > 0 else "-"))
        records.append({"figure": "langchain invoke", "series": name, "value": us, "unit": "us"})
    print(f"\nEnd to end through a LangChain chat model (GenericFakeChatModel); best of 5 x {number} calls")
    print(table(["how", "us/invoke", "added us", "added x llmcost"], rows))
    print(f"price of one response: llmcost {ours_amount} USD, get_openai_callback {one!r} USD")
    tracker.store.close()


GOAL = 2.5  # at most this many times LangChain's usage callback, per response
_USAGE = (1200, 1024, 300)  # input (cached included), cached, output: every response below reports these
_CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}
_RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 0,
    "model": "gpt-4o-2024-08-06",
    "output": [],
    "status": "completed",
    "parallel_tool_calls": False,
    "tool_choice": "auto",
    "tools": [],
    "usage": {
        "input_tokens": 1200,
        "output_tokens": 300,
        "total_tokens": 1500,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens_details": {"reasoning_tokens": 0},
    },
}
_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-sonnet-20241022",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 176, "output_tokens": 300, "cache_read_input_tokens": 1024},
}

#: A current Anthropic message as the API returns it for Claude Sonnet 4: a 1-hour cache write and a web search (its
#: prices are corrected for long context, and the parts beyond the five token counts are priced as units).
_MESSAGE_SONNET_4 = {
    **_MESSAGE,
    "model": "claude-sonnet-4-20250514",
    "usage": {
        "input_tokens": 176,
        "output_tokens": 300,
        "cache_read_input_tokens": 1024,
        "cache_creation_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 500},
        "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0},
    },
}


def _canned(body: dict[str, Any]) -> Any:
    import httpx2

    text = json.dumps(body)
    return httpx2.Client(
        transport=httpx2.MockTransport(
            lambda request: httpx2.Response(200, text=text, headers={"content-type": "application/json"})
        )
    )


def _sdk_cases() -> list[tuple[str, Any, str, str, dict[str, Any]]] | None:
    """(name, a client answering with the canned body, resource path, method, request) for each SDK response;
    ``None`` when openai, anthropic or httpx2 is not installed."""
    try:
        import anthropic
        import httpx2  # noqa: F401
        import openai
    except ImportError:
        return None
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    message = {"model": "claude-3-5-sonnet-20241022", "max_tokens": 300, "messages": chat["messages"]}

    def oa(body: dict[str, Any]) -> Any:
        return openai.OpenAI(api_key="k", max_retries=0, http_client=_canned(body))

    def an(body: dict[str, Any]) -> Any:
        return anthropic.Anthropic(api_key="k", max_retries=0, http_client=_canned(body))

    return [
        ("OpenAI ChatCompletion", lambda: oa(_CHAT), "chat.completions", "create", chat),
        ("OpenAI Responses Response", lambda: oa(_RESPONSE), "responses", "create", {"model": "gpt-4o", "input": "hi"}),
        ("Anthropic Message", lambda: an(_MESSAGE), "messages", "create", message),
        (
            "Anthropic Message, Sonnet 4 with a 1-hour cache write and a web search",
            lambda: an(_MESSAGE_SONNET_4),
            "messages",
            "create",
            {**message, "model": "claude-sonnet-4-20250514"},
        ),
    ]


def _gemini_response(inp: int, cached: int, out: int) -> Any:
    """A google-genai ``GenerateContentResponse`` of gemini-2.5-flash with these counts; ``None`` without the SDK."""
    try:
        from google.genai import types
    except ImportError:
        return None
    usage = {"promptTokenCount": inp, "cachedContentTokenCount": cached, "candidatesTokenCount": out}
    return types.GenerateContentResponse.model_validate({"modelVersion": "gemini-2.5-flash", "usageMetadata": usage})


def _sdk_of(case: str) -> str:
    return case.split(" ", 1)[0].lower()  # "OpenAI ChatCompletion": "openai"


def _resource(client: Any, path: str) -> Any:
    for part in path.split("."):
        client = getattr(client, part)
    return client


def _in_turns(cases: dict[str, Callable[[], object]], number: int, rounds: int) -> dict[str, float]:
    """Best CPU microseconds per call of each case over ``rounds`` rounds in which the cases take turns (best of 3
    each), so a noisy moment of the machine hits every case alike."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, fn in cases.items():
            # CPU time of this process: a run the machine's other work preempts is not charged for the wait.
            took = min(timeit.repeat(fn, number=number, repeat=3, timer=time.process_time))
            best[name] = min(best[name], took / number * 1e6)
    return best


def sdk_ratios(number: int, records: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """What ``@track_cost`` and ``instrument(client)`` add per call returning each real SDK response, against
    LangChain's ``UsageMetadataCallbackHandler.on_llm_end`` on the same usage; returns (what, ratio) pairs."""
    cases = _sdk_cases()
    try:
        from langchain_core.callbacks import UsageMetadataCallbackHandler
        from langchain_core.messages import AIMessage
        from langchain_core.outputs import ChatGeneration, LLMResult
    except ImportError:
        cases = None
    if cases is None:
        print("\nPer SDK response against LangChain: langchain-core, openai, anthropic or httpx2 not installed")
        return []
    import llmcost
    from llmcost import CostTracker, track_cost

    inp, cached, out = _USAGE
    rows: list[Sequence[object]] = []
    ratios: list[tuple[str, float]] = []

    def add(what: str, overhead: float, yardstick: float) -> None:
        ratio = overhead / yardstick
        ratios.append((what, ratio))
        rows.append((what, overhead, yardstick, f"{ratio:.2f}x", "yes" if ratio <= GOAL else "NO"))
        records.append({"figure": "x LangChain usage callback", "series": what, "value": ratio, "unit": "x"})

    def langchain_result(model: str) -> Any:
        message = AIMessage(
            content="ok",
            usage_metadata={
                "input_tokens": inp,
                "output_tokens": out,
                "total_tokens": inp + out,
                "input_token_details": {"cache_read": cached},
            },
            response_metadata={"model_name": model},
        )
        return LLMResult(generations=[[ChatGeneration(message=message)]])

    for name, make_client, path, method, request in cases:
        response = getattr(_resource(make_client(), path), method)(**request)  # the SDK's own object
        result = langchain_result(response.model)
        handler = UsageMetadataCallbackHandler()
        tracker = CostTracker()
        tracked = track_cost(tracker=tracker)(lambda response=response: response)
        # instrument(client): the SDK's request stubbed (returning the object at once), so the figure is what
        # tracking adds, on a client bare and on one instrumented.
        bare_client, instrumented = make_client(), make_client()
        for client in (bare_client, instrumented):
            setattr(_resource(client, path), method, lambda response=response, **kw: response)
        llmcost.instrument(instrumented, tracker=tracker)
        bare_create = getattr(_resource(bare_client, path), method)
        tracked_create = getattr(_resource(instrumented, path), method)
        tracked(), tracked_create(**request)  # warm the price cache
        figures = _in_turns(
            {
                "bare function": lambda response=response: response,
                "@track_cost": tracked,
                "LangChain": lambda handler=handler, result=result: handler.on_llm_end(result),
                "bare create": lambda f=bare_create, r=request: f(**r),
                "instrument": lambda f=tracked_create, r=request: f(**r),
            },
            number,
            rounds=7,
        )
        # LangChain's figure less one bare call: it is timed through a lambda calling ``on_llm_end``, ours through
        # the wrapper itself (whose call of the wrapped function is the bare call subtracted from it).
        yardstick = figures["LangChain"] - figures["bare function"]
        for what, overhead in (
            ("@track_cost", figures["@track_cost"] - figures["bare function"]),
            ("instrument(client)", figures["instrument"] - figures["bare create"]),
        ):
            add(f"{what}, {name}", overhead, yardstick)
        for label in (tracked.__qualname__, f"{_sdk_of(name)}.{path}.{method}"):  # both recorded every call, priced
            recorded = tracker.entries(resource=label)
            assert len(recorded) > number, label
            assert all(entry.amount > 0 for entry in recorded[:5]), label
        tracker.store.close()
    gemini = _gemini_response(inp, cached, out)
    if gemini is not None:  # google-genai's object, as its client returns it (``instrument`` has no Google client)
        tracker = CostTracker()
        tracked = track_cost(tracker=tracker)(lambda: gemini)
        handler, result = UsageMetadataCallbackHandler(), langchain_result(gemini.model_version)
        tracked()
        figures = _in_turns(
            {
                "bare function": lambda: gemini,
                "@track_cost": tracked,
                "LangChain": lambda: handler.on_llm_end(result),
            },
            number,
            rounds=7,
        )
        yardstick = figures["LangChain"] - figures["bare function"]
        add("@track_cost, Google GenerateContentResponse", figures["@track_cost"] - figures["bare function"], yardstick)
        assert tracker.entries()[0].amount > 0
        tracker.store.close()
    print(
        f"\nPer SDK response: what tracking adds against UsageMetadataCallbackHandler.on_llm_end on the same usage "
        f"(MemoryStore; CPU time, best of 7 rounds x 3 x {number} calls, in turns, each less its bare call); "
        f"goal <= {GOAL}x"
    )
    print(table(["tracking, response", "adds us", "LangChain us", "ratio", "goal met"], rows))
    return ratios


def profile(calls: int, instrumented: bool = False) -> None:
    """cProfile of ``calls`` ``@track_cost`` calls returning a real OpenAI ``ChatCompletion`` (MemoryStore), or with
    ``instrumented`` of ``calls`` requests of an ``instrument``-ed client returning it (its request stubbed, as in
    ``sdk_ratios``)."""
    import cProfile
    import pstats

    import llmcost
    from llmcost import CostTracker, track_cost

    cases = _sdk_cases()
    if cases is None:
        print("openai / httpx2 not installed")
        return
    _, make_client, path, method, request = cases[0]
    response = getattr(_resource(make_client(), path), method)(**request)
    tracker = CostTracker()
    if instrumented:
        client = make_client()
        setattr(_resource(client, path), method, lambda response=response, **kw: response)
        create = getattr(_resource(llmcost.instrument(client, tracker=tracker), path), method)

        def tracked() -> Any:
            return create(**request)
    else:
        tracked = track_cost(tracker=tracker)(lambda: response)
    tracked()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        tracked()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few calls, to check the benchmark runs")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    parser.add_argument("--profile", metavar="N", type=int, help="only print a cProfile of N tracked calls")
    parser.add_argument(
        "--profile-instrument", metavar="N", type=int, help="only print a cProfile of N calls of an instrumented client"
    )
    parser.add_argument("--ratios", action="store_true", help="only the per-SDK-response ratios against LangChain")
    args = parser.parse_args(argv)
    records: list[dict[str, Any]] = []
    print(f"machine: {machine()}")
    if args.profile or args.profile_instrument:
        profile(args.profile or args.profile_instrument, instrumented=bool(args.profile_instrument))
        return
    if args.ratios:
        sdk_ratios(200 if args.quick else 3_000, records)
        return
    track_by_store(300 if args.quick else 40_000, records)
    thread_scaling(400 if args.quick else 80_000, records)
    against_langchain(100 if args.quick else 5_000, records)
    sdk_ratios(200 if args.quick else 3_000, records)
    if args.json:
        write_results(args.json, "overhead", records)


if __name__ == "__main__":
    main(sys.argv[1:])
