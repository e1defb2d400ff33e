"""What ``instrument(client)`` and the OpenTelemetry export add per call.

Run: python -m benchmarks instrument     (or: python -m benchmarks.bench_instrument [--quick] [--json PATH])

1. A real ``openai.OpenAI`` client over canned HTTP (httpx2 ``MockTransport``, no network), in the same run: bare,
   inside a ``@track_cost`` function, instrumented, and instrumented inside a budget (estimate from the request's
   messages and ``max_tokens``). The goal is that instrumenting adds no more than ``@track_cost`` does.
   Two tables: the SDK's request stubbed (a prebuilt ``ChatCompletion`` returned at once), which is what tracking
   itself adds; and end to end over canned HTTP, the cases taking turns call by call, medians compared.
2. The OpenTelemetry subscriber (``llmcost.otel.instrument_tracker``) on ``CostTracker.record``: without it, with it
   when an entry gets a span of its own, and with it when the entry lands on the current span; the real
   opentelemetry-sdk with a ``SimpleSpanProcessor`` into an in-memory exporter, and an in-memory metric reader.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Sequence
from typing import Any

from benchmarks._util import machine, per_call_us, table
from benchmarks.plot import write_results

CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
}
MESSAGES = [{"role": "user", "content": "What does this cost?"}]
REQUEST: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 300}


def _client() -> Any:
    import httpx2
    import openai

    body = httpx2.Response(200, json=CHAT).content

    def handler(request: Any) -> Any:
        return httpx2.Response(200, content=body, headers={"content-type": "application/json"})

    return openai.OpenAI(api_key="k", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def _figures(cases: Sequence[tuple[str, Any]], number: int, tracker: Any) -> dict[str, float]:
    """Best-of-5 microseconds per call of each case, then of each but the first inside a budget; the cases are
    interleaved twice, best of both, so each sees the same machine state."""
    import llmcost

    figures: dict[str, float] = {}
    for in_budget in (False, True):
        for _ in range(2):
            for n, (name, fn) in enumerate(cases):
                if in_budget and n == 0:
                    continue
                label = f"{name}, in a budget" if in_budget else name
                fn()
                if in_budget:
                    with llmcost.budget(10**9, tracker=tracker):
                        t = per_call_us(fn, number)
                else:
                    t = per_call_us(fn, number)
                figures[label] = min(figures.get(label, float("inf")), t)
    return figures


def _print(title: str, figures: dict[str, float], series: str, records: list[dict[str, Any]]) -> None:
    base = next(iter(figures.values()))
    print(title)
    rows = [(name, t, "-" if n == 0 else t - base) for n, (name, t) in enumerate(figures.items())]
    print(table(["call", "us/call", "adds us"], rows))
    for name, t in figures.items():
        records.append({"figure": series, "series": name, "value": t, "unit": "us"})


def client_calls(number: int, records: list[dict[str, Any]]) -> None:
    try:
        import httpx2  # noqa: F401
        import openai
    except ImportError:
        print(table(["call", "us/call"], [("openai / httpx2 not installed", "-")]))
        return
    import llmcost
    from llmcost import CostTracker, track_cost

    tracker = CostTracker()

    def cases(bare_client: Any, plain_client: Any, instrumented: Any) -> list[tuple[str, Any]]:
        @track_cost(tracker=tracker)
        def create(**request: Any) -> Any:  # the request's arguments pass through: a budget estimates from them
            return plain_client.chat.completions.create(**request)

        def bare() -> str:
            return bare_client.chat.completions.create(**REQUEST).choices[0].message.content

        def decorated() -> str:
            return create(**REQUEST).choices[0].message.content

        def via_instrument() -> str:
            return instrumented.chat.completions.create(**REQUEST).choices[0].message.content

        return [("bare", bare), ("@track_cost", decorated), ("instrument", via_instrument)]

    # 1. The SDK's request stubbed (a prebuilt ChatCompletion returned at once): what tracking itself adds.
    completion = openai.types.chat.ChatCompletion.model_validate(CHAT)
    stubbed = [_client(), _client(), _client()]
    for client in stubbed:
        client.chat.completions.create = lambda **request: completion
    llmcost.instrument(stubbed[2], tracker=tracker)
    engine = _figures(cases(*stubbed), number * 20, tracker)
    _print(
        f"machine: {machine()}\nTracking only (the SDK request stubbed), {number * 20} calls per figure, best of 5",
        engine,
        "instrument, request stubbed",
        records,
    )
    # 2. End to end, a real client over canned HTTP. An SDK call takes hundreds of microseconds and jitters by as
    # much, so the cases take turns call by call and the median of each is compared.
    http = [_client(), _client(), llmcost.instrument(_client(), tracker=tracker)]
    end_to_end = _interleaved(cases(*http), number, tracker)
    _print(
        f"\nEnd to end: openai.OpenAI over canned HTTP, {number} calls of each, taking turns; median",
        end_to_end,
        "instrument, canned HTTP",
        records,
    )


def _interleaved(cases: Sequence[tuple[str, Any]], number: int, tracker: Any) -> dict[str, float]:
    """Median microseconds per call of each case, the cases taking turns call by call; then each but the first
    again inside a budget."""
    import llmcost

    samples: dict[str, list[float]] = {}
    for in_budget in (False, True):
        chosen = [(f"{name}, in a budget" if in_budget else name, fn) for n, (name, fn) in enumerate(cases)]
        if in_budget:
            chosen = chosen[1:]
        for _, fn in chosen:
            fn()
        with llmcost.budget(10**9, tracker=tracker) if in_budget else contextlib.nullcontext():
            for _ in range(number):
                for label, fn in chosen:
                    started = time.perf_counter()
                    fn()
                    samples.setdefault(label, []).append(time.perf_counter() - started)
    return {label: statistics.median(times) * 1e6 for label, times in samples.items()}


def otel_subscriber(number: int, records: list[dict[str, Any]]) -> None:
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        print(table(["record", "us/entry"], [("opentelemetry-sdk not installed (pip install 'llmcost[otel]')", "-")]))
        return
    from llmcost import CostTracker, Usage
    from llmcost.otel import instrument_tracker

    usage = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1024)
    plain = CostTracker()
    exported = CostTracker()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrument_tracker(exported, tracer_provider=tracer_provider, meter_provider=meter_provider)

    def record(tracker: CostTracker) -> Any:
        return lambda: tracker.record(model="gpt-4o", usage=usage, resource="bench")

    without = per_call_us(record(plain), number)
    spans.clear()
    own_span = per_call_us(record(exported), number)
    spans.clear()
    tracer = tracer_provider.get_tracer("bench")
    exported_record = record(exported)

    def in_span() -> None:
        with tracer.start_as_current_span("request"):
            exported_record()

    def span_only() -> None:
        with tracer.start_as_current_span("request"):
            pass

    in_current = per_call_us(in_span, number) - per_call_us(span_only, number)
    spans.clear()
    print(f"\nOpenTelemetry subscriber, {number} entries per figure, best of 5 (opentelemetry-sdk, in memory)")
    rows = [
        ("CostTracker.record", without, "-"),
        ("  + instrument_tracker, span of its own", own_span, own_span - without),
        ("  + instrument_tracker, on the current span", in_current, in_current - without),
    ]
    print(table(["record", "us/entry", "OTel adds us"], rows))
    for name, t, _ in rows:
        records.append({"figure": "otel", "series": name.strip(" +"), "value": t, "unit": "us"})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few calls, to check the benchmark runs")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    records: list[dict[str, Any]] = []
    client_calls(20 if args.quick else 2_000, records)
    otel_subscriber(100 if args.quick else 20_000, records)
    if args.json:
        write_results(args.json, "instrument", records)


if __name__ == "__main__":
    main()
