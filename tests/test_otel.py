"""``llmcost.otel.instrument_tracker``: the real opentelemetry-sdk with its in-memory span exporter and metric
reader; every attribute name and value asserted, on an existing span and on a span of its own."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import httpx2
import openai
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmcost
from llmcost import Usage
from llmcost.otel import instrument_tracker

CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 2000,
        "completion_tokens": 300,
        "total_tokens": 2300,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 100},
    },
}
COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 0,
    "model": "gpt-3.5-turbo-instruct",
    "choices": [{"text": "hi", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
}
# 976 input at $2.50 + 1024 cached at $1.25 + 300 output at $10 per MTok
CHAT_COST = Decimal("0.00672")


class OTel:
    """A tracer provider and a meter provider that keep what they get in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("test")

    def finished(self):
        return self.spans.get_finished_spans()

    def points(self, name: str):
        data = self.reader.get_metrics_data()
        return [
            point
            for resource_metrics in data.resource_metrics
            for scope in resource_metrics.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def otel(tracker):
    o = OTel()
    undo = instrument_tracker(tracker, tracer_provider=o.tracer_provider, meter_provider=o.meter_provider)
    yield o
    undo()


@pytest.fixture
def client(tracker):
    def handler(request):
        legacy = request.url.path.endswith("/completions") and not request.url.path.endswith("/chat/completions")
        return httpx2.Response(200, json=COMPLETION if legacy else CHAT)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return llmcost.instrument(openai.OpenAI(api_key="k", http_client=http), tracker=tracker)


CHAT_ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.usage.input_tokens": 2000,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 1024,
    "gen_ai.usage.reasoning.output_tokens": 100,
    "gen_ai.usage.cost": 0.00672,
    "llmcost.cost": "0.00672",
    "llmcost.currency": "USD",
    "llmcost.category": "llm_inference",
    "llmcost.resource": "openai.chat.completions.create",
}


def chat_attributes(entry):
    return {**CHAT_ATTRIBUTES, "llmcost.pricing": entry.pricing}


def test_an_existing_span_gains_the_cost(otel, client, tracker):
    with otel.tracer.start_as_current_span("handle request"):
        r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == "Hello"
    (span,) = otel.finished()
    (entry,) = tracker.entries()
    assert entry.amount == CHAT_COST
    assert span.name == "handle request"
    assert dict(span.attributes) == chat_attributes(entry)
    assert isinstance(span.attributes["gen_ai.usage.cost"], float)


def test_without_a_span_the_entry_gets_a_client_span_of_its_own(otel, client, tracker):
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    (span,) = otel.finished()
    (entry,) = tracker.entries()
    # The conventions' "{operation} {request model}": the request's model, not the response's.
    assert span.name == "chat gpt-4o"
    assert span.kind is trace.SpanKind.CLIENT
    assert dict(span.attributes) == chat_attributes(entry)
    assert span.end_time == int(entry.timestamp.timestamp() * 1e9)
    assert span.end_time - span.start_time == int(entry.latency_ms * 1e6)
    assert span.parent is None


def test_a_second_entry_in_one_span_gets_a_child_span(otel, tracker):
    with otel.tracer.start_as_current_span("batch") as parent:
        tracker.record(model="gpt-4o", input_tokens=10, output_tokens=1)
        tracker.record(model="gpt-4o-mini", input_tokens=10, output_tokens=1)
    child, outer = otel.finished()
    assert outer.name == "batch" and outer.attributes["gen_ai.response.model"] == "gpt-4o"
    assert child.name == "chat gpt-4o-mini" and child.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert child.parent.span_id == parent.get_span_context().span_id


def test_anthropic_cache_tokens_and_tags(otel, tracker):
    with llmcost.tags(team="search"):
        entry = tracker.record(
            model="claude-3-5-sonnet-20241022",
            provider="anthropic",
            usage=Usage(input_tokens=1300, output_tokens=50, cache_read_tokens=1000, cache_write_tokens=200),
            resource="bot",
        )
    (span,) = otel.finished()
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-3-5-sonnet-20241022",  # (a plain record: the entry's model)
        "gen_ai.response.model": "claude-3-5-sonnet-20241022",
        "gen_ai.usage.input_tokens": 1300,
        "gen_ai.usage.output_tokens": 50,
        "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.cache_creation.input_tokens": 200,
        "gen_ai.usage.cost": float(entry.amount),
        "llmcost.cost": format(entry.amount, "f"),
        "llmcost.currency": "USD",
        "llmcost.category": "llm_inference",
        "llmcost.resource": "bot",
        "llmcost.pricing": entry.pricing,
        "llmcost.tag.team": "search",
    }
    assert entry.amount == Decimal("0.0021")  # 100 at $3 + 1000 read at $0.30 + 200 written at $3.75 + 50 at $15


def test_embeddings_and_provider_names(otel, tracker):
    tracker.record(model="text-embedding-3-small", input_tokens=1000, category="llm_embedding")
    tracker.record(model="gemini-1.5-flash", provider="google", input_tokens=10, output_tokens=1)
    embedding, gemini = otel.finished()
    assert embedding.name == "embeddings text-embedding-3-small"
    assert embedding.attributes["gen_ai.operation.name"] == "embeddings"
    assert gemini.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert gemini.attributes["gen_ai.operation.name"] == "generate_content"


def test_the_request_model_is_the_model_asked_for_and_the_response_model_the_one_answered(otel, client, tracker):
    """The client asked for gpt-4o and OpenAI answered gpt-4o-2024-08-06: each in its own attribute, on spans and
    metrics; the span is named for the request's model."""
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    (span,) = otel.finished()
    assert (span.attributes["gen_ai.request.model"], span.attributes["gen_ai.response.model"]) == (
        "gpt-4o",
        "gpt-4o-2024-08-06",
    )
    assert span.name == "chat gpt-4o"
    for name in ("gen_ai.client.token.usage", "llmcost.cost"):
        for point in otel.points(name):
            assert point.attributes["gen_ai.request.model"] == "gpt-4o"
            assert point.attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"


def test_the_request_model_of_track_cost_and_of_a_plain_record(otel, tracker):
    @llmcost.track_cost(tracker=tracker)
    def ask(*, model):  # the call's own model argument
        return dict(CHAT, model="gpt-4o-2024-08-06")

    @llmcost.track_cost(tracker=tracker, model="gpt-4o-mini")  # model= given: asked for, and it prices the call
    def ask_mini():
        return dict(CHAT, model="gpt-4o-mini-2024-07-18")

    ask(model="gpt-4o")
    ask_mini()
    tracker.record(model="gpt-4o-2024-08-06", input_tokens=10, output_tokens=1)  # asked for? only the entry's known
    assert [(s.name, s.attributes["gen_ai.request.model"]) for s in otel.finished()] == [
        ("chat gpt-4o", "gpt-4o"),
        ("chat gpt-4o-mini", "gpt-4o-mini"),
        ("chat gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
    ]


def test_the_request_model_passed_positionally_is_the_model_asked_for(otel, tracker):
    # Only a keyword ``model`` was read: ``ask("gpt-4o", ...)`` exported the dated model that answered instead.
    class Bot:
        @llmcost.track_cost(tracker=tracker)
        def ask(self, model, prompt):
            return dict(CHAT, model="gpt-4o-2024-08-06")

    @llmcost.track_cost(tracker=tracker)
    def ask(model, prompt):
        return dict(CHAT, model="gpt-4o-2024-08-06")

    ask("gpt-4o", "hi")
    ask(model="gpt-4o", prompt="hi")
    Bot().ask("gpt-4o", "hi")
    assert [(s.name, s.attributes["gen_ai.request.model"]) for s in otel.finished()] == [("chat gpt-4o", "gpt-4o")] * 3


def test_only_the_exported_trackers_calls_carry_the_model_asked_for(otel, tracker):
    # The model asked for is carried to the subscribers of an exported tracker's calls only: the calls of every other
    # tracker in the process (here one given to the decorator, and the default) pay nothing for another's export.
    from llmcost._decorator import requested_model

    seen: list[tuple[str, str | None]] = []
    other = llmcost.CostTracker()
    default = llmcost.get_tracker()
    for name, each in (("exported", tracker), ("other", other), ("default", default)):
        each.subscribe("cost.recorded", lambda entry, name=name: seen.append((name, requested_model.get())))

    def ask(*, model):
        return dict(CHAT, model="gpt-4o-2024-08-06")

    llmcost.track_cost(tracker=tracker)(ask)(model="gpt-4o")
    llmcost.track_cost(tracker=other)(ask)(model="gpt-4o")
    llmcost.track_cost(ask)(model="gpt-4o")
    assert seen == [("exported", "gpt-4o"), ("other", None), ("default", None)]
    # The default tracker exported too: its calls carry it, the other's still not.
    instrument_tracker(default, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    llmcost.track_cost(ask)(model="gpt-4o-mini")
    llmcost.track_cost(tracker=other)(ask)(model="gpt-4o-mini")
    assert seen[3:] == [("default", "gpt-4o-mini"), ("other", None)]


def test_the_legacy_completions_api_is_a_text_completion(otel, client, tracker):
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi")
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    legacy, chat = otel.finished()
    assert legacy.attributes["gen_ai.operation.name"] == "text_completion"
    assert legacy.attributes["llmcost.resource"] == "openai.completions.create"
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    sums = {
        (p.attributes["gen_ai.operation.name"], p.attributes["gen_ai.token.type"]): p.sum
        for p in otel.points("gen_ai.client.token.usage")
    }
    assert sums == {("text_completion", "input"): 10, ("text_completion", "output"): 5, ("chat", "input"): 2000,
                    ("chat", "output"): 300}  # fmt: skip


def test_gemini_responses_are_generate_content(otel, tracker):
    from google.genai import types

    response = types.GenerateContentResponse(
        model_version="gemini-2.5-flash",
        candidates=[types.Candidate(content=types.Content(role="model", parts=[types.Part(text="hi")]))],
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=10, candidates_token_count=5, total_token_count=15
        ),
    )

    @llmcost.track_cost(tracker=tracker)
    def generate():
        return response

    generate()
    (span,) = otel.finished()
    assert span.attributes["gen_ai.operation.name"] == "generate_content"
    assert span.attributes["gen_ai.provider.name"] == "gcp.gemini"


@pytest.mark.parametrize(
    ("provider", "resource", "operation"),
    [
        ("google", None, "generate_content"),
        ("google-vertex", "my-summarizer", "generate_content"),
        # Gemini through its OpenAI-compatible endpoint is a chat completion: the SDK method says so.
        ("google", "openai.chat.completions.create", "chat"),
        ("google-vertex", "anthropic.messages.create", "chat"),
        ("openai", "openai.completions.create", "text_completion"),
        ("openai", "openai.responses.create", "chat"),
        ("openai", "my-summarizer", "chat"),  # the entry cannot tell: chat
        (None, None, "chat"),
    ],
)
def test_the_operation_follows_what_the_entry_carries(otel, tracker, provider, resource, operation):
    tracker.record(amount="0.01", model="some-model", provider=provider, resource=resource)
    (span,) = otel.finished()
    assert span.attributes["gen_ai.operation.name"] == operation


def test_costs_that_are_not_llm_calls_carry_only_llmcost_names(otel, tracker):
    entry = tracker.record(amount="0.25", category="compute", resource="gpu-box")
    (span,) = otel.finished()
    assert span.name == "llmcost compute"
    assert dict(span.attributes) == {
        "llmcost.cost": "0.25",
        "llmcost.currency": "USD",
        "llmcost.category": "compute",
        "llmcost.resource": "gpu-box",
        "llmcost.pricing": entry.pricing,
    }
    (point,) = otel.points("llmcost.cost")
    assert point.value == 0.25
    assert dict(point.attributes) == {"llmcost.category": "compute", "llmcost.resource": "gpu-box"}
    assert otel.points("gen_ai.client.token.usage") == []


def test_metrics(otel, client, tracker):
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    common = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "llmcost.category": "llm_inference",
        "llmcost.resource": "openai.chat.completions.create",
    }
    tokens = {p.attributes["gen_ai.token.type"]: p for p in otel.points("gen_ai.client.token.usage")}
    assert set(tokens) == {"input", "output"}
    assert dict(tokens["input"].attributes) == {**common, "gen_ai.token.type": "input"}
    assert (tokens["input"].count, tokens["input"].sum) == (3, 6000)
    assert (tokens["output"].count, tokens["output"].sum) == (3, 900)
    (cost,) = otel.points("llmcost.cost")
    assert dict(cost.attributes) == {k: v for k, v in common.items() if k != "gen_ai.operation.name"}
    assert cost.value == pytest.approx(float(CHAT_COST * 3))
    data = otel.reader.get_metrics_data()
    units = {m.name: m.unit for rm in data.resource_metrics for s in rm.scope_metrics for m in s.metrics}
    assert units == {"gen_ai.client.token.usage": "{token}", "llmcost.cost": "USD"}


def test_an_entry_without_tokens_exports_no_token_counts(otel, tracker):
    entry = tracker.record(amount="0.50", model="gpt-4o", description="invoice line, tokens unknown")
    (span,) = otel.finished()
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.usage.cost": 0.5,
        "llmcost.cost": "0.50",
        "llmcost.currency": "USD",
        "llmcost.category": "llm_inference",
        "llmcost.pricing": entry.pricing,
    }
    assert otel.points("gen_ai.client.token.usage") == []
    (cost,) = otel.points("llmcost.cost")
    assert cost.value == 0.5


def test_an_embedding_counts_its_input_tokens(otel, tracker):
    tracker.record(model="text-embedding-3-small", input_tokens=1000, category="llm_embedding")
    (span,) = otel.finished()
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]) == (1000, 0)
    sums = {p.attributes["gen_ai.token.type"]: p.sum for p in otel.points("gen_ai.client.token.usage")}
    assert sums == {"input": 1000, "output": 0}


@pytest.mark.parametrize(
    ("amount", "text"),
    [("0.0000002", "0.0000002"), (Decimal("1E+2"), "100"), ("-0.00000001", "-0.00000001"), ("0.50", "0.50")],
)
def test_the_exact_cost_is_written_in_fixed_point(otel, tracker, amount, text):
    tracker.record(amount=amount, category="compute")
    (span,) = otel.finished()
    assert span.attributes["llmcost.cost"] == text


def test_a_tiny_catalog_cost_is_written_in_fixed_point(otel, tracker):
    entry = tracker.record(model="gpt-4o-mini", input_tokens=1)  # $0.15 per MTok
    (span,) = otel.finished()
    assert entry.amount == Decimal("0.00000015")
    assert span.attributes["llmcost.cost"] == "0.00000015"


def test_a_credit_lowers_the_cost_sum_to_the_tracker_total(otel, tracker):
    tracker.record(amount="5", category="compute")
    tracker.record(amount="-2", category="compute", description="credit")
    (point,) = otel.points("llmcost.cost")
    assert point.value == float(tracker.total()) == 3.0
    (metric,) = [
        m
        for rm in otel.reader.get_metrics_data().resource_metrics
        for scope in rm.scope_metrics
        for m in scope.metrics
        if m.name == "llmcost.cost"
    ]
    assert metric.data.is_monotonic is False


def test_the_cost_sum_is_exactly_the_tracker_total_and_stays_so_when_instrumented_again(tracker):
    # 1000 calls of $0.0005253: float adds per entry drift (0.5253000000000028); the exported sum must not.
    o = OTel()
    instrument_tracker(tracker, tracer_provider=o.tracer_provider, meter_provider=o.meter_provider)
    for _ in range(1000):
        tracker.record(model="gpt-4o-mini", provider="openai", resource="bot", input_tokens=1234, output_tokens=567)
    (point,) = o.points("llmcost.cost")
    assert tracker.total() == Decimal("0.5253")
    assert point.value == float(tracker.total()) == 0.5253
    # Exported again to the same meter provider (an export replaced): one instrument, its sum going on exactly.
    undo = instrument_tracker(tracker, tracer_provider=o.tracer_provider, meter_provider=o.meter_provider)
    for _ in range(1000):
        tracker.record(model="gpt-4o-mini", provider="openai", resource="bot", input_tokens=1234, output_tokens=567)
    undo()
    tracker.record(model="gpt-4o-mini", provider="openai", resource="bot", input_tokens=1234, output_tokens=567)
    (point,) = o.points("llmcost.cost")
    assert point.value == float(Decimal("0.5253") * 2) == 1.0506


def test_exports_before_and_after_the_global_meter_provider_is_set_add_to_one_sum():
    # In a child: the global provider is set once per process. An export made before it is set goes to the API's proxy,
    # whose instrument is made in the provider set later; an export made after adds to that instrument (one of its own
    # would be a duplicate name there, its sums dropped: 3.0 exported against a total of 7).
    code = (
        "from opentelemetry import metrics\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.metrics.export import InMemoryMetricReader\n"
        "import llmcost\n"
        "from llmcost.otel import instrument_tracker\n"
        "t = llmcost.CostTracker()\n"
        "undo = instrument_tracker(t)\n"
        "t.record(amount='1', category='compute')\n"
        "reader = InMemoryMetricReader()\n"
        "metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))\n"
        "t.record(amount='2', category='compute')\n"
        "undo()\n"
        "undo = instrument_tracker(t)\n"
        "t.record(amount='4', category='compute')\n"
        "instrument_tracker(t, meter_provider=metrics.get_meter_provider())\n"
        "t.record(amount='8', category='compute')\n"
        "(m,) = [m for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics for m in s.metrics\n"
        "        if m.name == 'llmcost.cost']\n"
        "print(sum(p.value for p in m.data.data_points), t.total())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["15.0", "15"]


def test_undo_stops_and_instrumenting_again_exports_once(tracker):
    o = OTel()
    instrument_tracker(tracker, tracer_provider=o.tracer_provider, meter_provider=o.meter_provider)
    undo = instrument_tracker(tracker, tracer_provider=o.tracer_provider, meter_provider=o.meter_provider)
    tracker.record(model="gpt-4o", input_tokens=10, output_tokens=1)
    assert len(o.finished()) == 1
    undo()
    tracker.record(model="gpt-4o", input_tokens=10, output_tokens=1)
    assert len(o.finished()) == 1


def test_the_default_tracker_and_latency(clock):
    tracker = llmcost.configure(clock=clock)
    o = OTel()
    undo = instrument_tracker(tracer_provider=o.tracer_provider, meter_provider=o.meter_provider)
    entry = tracker.record(model="gpt-4o", input_tokens=10, output_tokens=1, latency_ms=1500.0)
    (span,) = o.finished()
    assert span.start_time == int((entry.timestamp - timedelta(milliseconds=1500)).timestamp() * 1e9)
    undo()


def test_bad_tracker():
    with pytest.raises(TypeError, match="CostTracker"):
        instrument_tracker("memory://")


def test_bad_providers_are_refused_naming_them():
    tracker = llmcost.CostTracker()
    with pytest.raises(TypeError, match=r"tracer_provider must be an OpenTelemetry TracerProvider .*got 5"):
        instrument_tracker(tracker, tracer_provider=5)
    with pytest.raises(TypeError, match=r"meter_provider must be an OpenTelemetry MeterProvider .*got 'x'"):
        instrument_tracker(tracker, meter_provider="x")
    with pytest.raises(TypeError, match="meter_provider"):
        instrument_tracker(tracker, meter_provider=TracerProvider())  # the providers swapped
    tracker.record(amount="1")  # nothing was left subscribed


def test_import_llmcost_does_not_import_opentelemetry():
    code = "import sys, llmcost; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_the_extra_the_import_error_says_what_to_install():
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "try:\n    import llmcost.otel\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'llmcost[otel]'" in out.stdout
