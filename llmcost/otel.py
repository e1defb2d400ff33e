"""OpenTelemetry export: every entry a tracker records lands in the tracing and metrics backend you already run,
under the OpenTelemetry GenAI semantic-convention names (and OpenLIT's ``gen_ai.usage.cost``).

Needs the ``otel`` extra (``pip install 'llmcost[otel]'``); ``import llmcost`` never imports OpenTelemetry.

Example::

    import llmcost
    from llmcost.otel import instrument_tracker

    undo = instrument_tracker()        # the default tracker, the global tracer and meter providers
    ...
    undo()
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

try:
    from opentelemetry import metrics, trace
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the extra
    raise ImportError(
        "llmcost.otel needs OpenTelemetry: pip install 'llmcost[otel]' (opentelemetry-api and opentelemetry-sdk)"
    ) from exc

from ._config import get_tracker
from ._decorator import requested_model, wanting_requested
from ._entry import CostCategory, CostEntry
from ._money import ZERO, wide_context
from ._tracker import CostTracker
from ._usage import Usage

__all__ = ["instrument_tracker"]

#: genai-prices provider ids whose OpenTelemetry ``gen_ai.provider.name`` well-known value differs.
PROVIDER_NAMES = {
    "google": "gcp.gemini",
    "google-vertex": "gcp.vertex_ai",
    "mistral": "mistral_ai",
    "x-ai": "x_ai",
    "xai": "x_ai",
    "bedrock": "aws.bedrock",
    "aws": "aws.bedrock",
    "azure": "azure.ai.openai",
}
# gen_ai.operation.name: the conventions list well-known values and require the one that applies. An entry says
# which API made it only through instrument(client)'s resource label (the SDK method, "openai.completions.create");
# a label of the caller's own says nothing of the API. Labels of these SDKs name a chat API unless listed below.
_SDK_LABELS = ("openai.", "anthropic.")
_LABEL_OPERATIONS = {"openai.completions.create": "text_completion"}  # the legacy Completions API
# Providers whose LLM API is Gemini's generateContent (the Gemini API and Vertex AI), when no SDK label says otherwise
# (Gemini's OpenAI-compatible endpoint, or Claude on Vertex through the Anthropic SDK, are chat).
_GENERATE_CONTENT_PROVIDERS = frozenset({"google", "google-vertex"})
# The GenAI conventions' advised buckets for gen_ai.client.token.usage.
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]

_lock = threading.RLock()  # an undo run while instrumenting again takes it too
_undo_by_tracker: weakref.WeakKeyDictionary[CostTracker, Callable[[], None]] = weakref.WeakKeyDictionary()


class _CostTotals:
    """The ``llmcost.cost`` sums: one exact ``Decimal`` running total per attribute set, each reported as a float at
    every collection (an observable up-down counter's callback). A synchronous counter would add a float per entry,
    and its sum drift from the tracker's total (1000 calls of $0.0005253 add up to 0.5253000000000028); here the sum
    is ``float(total)`` of the exact one. Memory grows with the attribute sets (as the SDK's own aggregation does),
    never with the entries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[tuple[str, Any], ...], Decimal] = {}

    def add(self, amount: Decimal, attributes: dict[str, Any]) -> None:
        key = tuple(sorted(attributes.items()))
        with self._lock, wide_context():  # (exact: as many digits as money ever has)
            self._totals[key] = self._totals.get(key, ZERO) + amount

    def observe(self, options: Any) -> Iterable[metrics.Observation]:
        with self._lock:
            totals = list(self._totals.items())
        return [metrics.Observation(float(total), dict(key)) for key, total in totals]


#: The totals each meter provider's ``llmcost.cost`` reports: one instrument per provider, registered once (the SDK
#: keeps the first callback of an instrument registered again under its name), which every export to it adds to.
_totals_by_provider: weakref.WeakKeyDictionary[Any, _CostTotals] = weakref.WeakKeyDictionary()
#: The totals of an export made while no global meter provider was set (to the API's proxy provider), if any: the
#: proxy's instrument is made anew in whichever provider is set as the global later, so an export to that provider
#: adds to these (an instrument of its own would be a duplicate name there, its sums dropped).
_proxied: list[_CostTotals] = []


def _is_api_provider(provider: Any) -> bool:
    """Whether ``provider`` is the OpenTelemetry API's own (the proxy handed out while no global provider is set)."""
    return type(provider).__module__.startswith("opentelemetry.metrics")


def _cost_totals(meter_provider: Any, meter: Any) -> _CostTotals:
    """The running totals behind ``meter_provider``'s ``llmcost.cost``, its instrument made on first use."""
    current = metrics.get_meter_provider()
    provider = meter_provider if meter_provider is not None else current
    with _lock:
        try:
            totals = _totals_by_provider.get(provider)
        except TypeError:  # (a provider without weak references: an instrument per export)
            totals, provider = None, None
        if totals is None and _proxied and provider is current and not _is_api_provider(current):
            totals = _proxied[0]  # (the global provider, set since an export to the proxy: its instrument is there)
        if totals is None:
            totals = _CostTotals()
            meter.create_observable_up_down_counter(
                "llmcost.cost",
                callbacks=[totals.observe],
                unit="USD",
                description="What LLM calls and resources cost (credits negative)",
            )
            if provider is current and _is_api_provider(current):
                _proxied[:] = [totals]
        if provider is not None:
            _totals_by_provider[provider] = totals
    return totals


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmcost")
    except PackageNotFoundError:
        return "0"


def span_attributes(entry: CostEntry, request_model: str | None = None) -> dict[str, Any]:
    """The span attributes of one entry: GenAI names for LLM calls, ``llmcost.*`` for what only llmcost knows.
    ``request_model``: the model the call asked for, where known (else ``gen_ai.request.model`` is the entry's).

    >>> tracker = llmcost.CostTracker()
    >>> entry = tracker.record(model="gpt-4o-2024-08-06", input_tokens=10, output_tokens=1)
    >>> attributes = span_attributes(entry, "gpt-4o")
    >>> attributes["gen_ai.request.model"], attributes["gen_ai.response.model"]
    ('gpt-4o', 'gpt-4o-2024-08-06')
    """
    attributes: dict[str, Any] = {
        # Fixed point, every digit the entry holds, as the server's JSON writes amounts: str() writes 2E-7 and 1E+2.
        "llmcost.cost": format(entry.amount, "f"),
        "llmcost.currency": entry.currency,
        "llmcost.category": entry.category.value,
        "llmcost.pricing": entry.pricing,
    }
    if entry.resource is not None:
        attributes["llmcost.resource"] = entry.resource
    for key, value in entry.tags.items():
        attributes[f"llmcost.tag.{key}"] = value
    operation = operation_name(entry)
    if operation is None:  # not an LLM call (compute, storage...): only llmcost's own names
        return attributes
    usage = entry.usage
    attributes["gen_ai.operation.name"] = operation
    if entry.provider is not None:
        attributes["gen_ai.provider.name"] = PROVIDER_NAMES.get(entry.provider, entry.provider)
    # The model asked for ("gpt-4o"), where the call that made the entry said it (the request's model=, or
    # @track_cost's); else the entry's, the only one known. The model the provider answered with
    # ("gpt-4o-2024-08-06") is the response's.
    request_model = request_model or entry.model
    if request_model is not None:
        attributes["gen_ai.request.model"] = request_model
    if entry.model is not None:
        attributes["gen_ai.response.model"] = entry.model
    if _has_tokens(usage):
        attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        # Parts of the totals above (the same convention as llmcost's Usage), set when the provider reported any.
        if usage.cache_read_tokens:
            attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
        if usage.cache_write_tokens:
            attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
        if usage.reasoning_tokens:
            attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    attributes["gen_ai.usage.cost"] = float(entry.amount)  # USD, as OpenLIT writes it; exact in llmcost.cost
    return attributes


def _has_tokens(usage: Usage) -> bool:
    """Whether the entry counted tokens: an entry recorded without any (``record(amount=..., model=...)``, an
    invoice line) holds ``Usage()``, no input and no output, which says the tokens are unknown, not that a call used
    none; exporting it as 0 and 0 would put made-up zeros in token totals and counts."""
    return bool(usage.input_tokens or usage.output_tokens)


def operation_name(entry: CostEntry) -> str | None:
    """The entry's ``gen_ai.operation.name`` (``None``: not an LLM call). ``embeddings`` for category
    ``llm_embedding``; for ``llm_inference``: ``text_completion`` for the legacy Completions API
    (resource ``openai.completions.create``, as ``instrument(client)`` labels it), ``chat`` for any other method
    ``instrument(client)`` labels (``openai.*``, ``anthropic.*``), ``generate_content`` for provider ``google`` or
    ``google-vertex`` (Gemini's API), and ``chat`` when the entry cannot tell.

    >>> tracker = llmcost.CostTracker()
    >>> operation_name(tracker.record(amount="0.01", resource="openai.completions.create"))
    'text_completion'
    >>> operation_name(tracker.record(model="gemini-1.5-flash", input_tokens=10, output_tokens=1))
    'generate_content'
    """
    category = entry.category
    if category is CostCategory.LLM_EMBEDDING:
        return "embeddings"
    if category is not CostCategory.LLM_INFERENCE:
        return None
    resource = entry.resource
    if resource is not None and resource.startswith(_SDK_LABELS):
        return _LABEL_OPERATIONS.get(resource, "chat")
    if entry.provider in _GENERATE_CONTENT_PROVIDERS:
        return "generate_content"
    return "chat"


def _span_name(entry: CostEntry, request_model: str | None) -> str:
    # The conventions' name: "{gen_ai.operation.name} {gen_ai.request.model}" (the operation alone with no model).
    operation = operation_name(entry)
    if operation is None:
        return f"llmcost {entry.category.value}"
    model = request_model or entry.model
    return operation if model is None else f"{operation} {model}"


class _Exporter:
    """The ``cost.recorded`` subscriber: span attributes and metrics for each entry."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        version = _version()
        self.tracer = trace.get_tracer("llmcost", version, tracer_provider)
        meter = metrics.get_meter("llmcost", version, meter_provider)
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        # An up-down counter, not a Counter: a credit or refund is recorded as a negative amount, which a Counter
        # drops ("must be non-negative"), and the exported sum must stay the tracker's total; observable, reporting
        # exact running totals (``_CostTotals``).
        self.cost = _cost_totals(meter_provider, meter)

    def __call__(self, entry: CostEntry) -> None:
        request_model = requested_model.get()  # (set by the tracked call recording this entry, if any)
        attributes = span_attributes(entry, request_model)
        span = trace.get_current_span()
        # A span already holding an entry keeps it: the next one gets a span of its own, a child of it.
        held = getattr(span, "attributes", None)
        if span.is_recording() and not (held is not None and "llmcost.cost" in held):
            span.set_attributes(attributes)
        else:
            end = int(entry.timestamp.timestamp() * 1e9)
            start = end - int((entry.latency_ms or 0.0) * 1e6)
            own = self.tracer.start_span(
                _span_name(entry, request_model), kind=trace.SpanKind.CLIENT, attributes=attributes, start_time=start
            )
            own.end(end_time=end)
        self._measure(entry, attributes.get("gen_ai.request.model"))

    def _measure(self, entry: CostEntry, request_model: str | None = None) -> None:
        common: dict[str, Any] = {"llmcost.category": entry.category.value}
        if entry.resource is not None:
            common["llmcost.resource"] = entry.resource
        if entry.provider is not None:
            common["gen_ai.provider.name"] = PROVIDER_NAMES.get(entry.provider, entry.provider)
        if request_model is not None:
            common["gen_ai.request.model"] = request_model
        if entry.model is not None:
            common["gen_ai.response.model"] = entry.model
        self.cost.add(entry.amount, common)
        operation = operation_name(entry)
        if operation is None or not _has_tokens(entry.usage):
            return
        common["gen_ai.operation.name"] = operation
        self.tokens.record(entry.usage.input_tokens, {**common, "gen_ai.token.type": "input"})
        self.tokens.record(entry.usage.output_tokens, {**common, "gen_ai.token.type": "output"})


def instrument_tracker(
    tracker: CostTracker | None = None, *, tracer_provider: Any = None, meter_provider: Any = None
) -> Callable[[], None]:
    """Export every entry ``tracker`` records to OpenTelemetry; returns a function that stops it.

    Each entry puts its attributes on the current span, or, when there is no recording span (or the current one
    already holds an entry), on a CLIENT span of its own named ``"{operation} {request model}"`` (``chat gpt-4o``)
    with the call's start and end time: ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``
    (the model asked for: the request's ``model=`` under ``instrument(client)``, ``@track_cost``'s ``model=`` or the
    call's ``model`` argument; else the entry's), ``gen_ai.response.model`` (the model the response named),
    ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens`` (both left out when the entry has no tokens: an
    ``amount=`` without usage), ``gen_ai.usage.cache_read.input_tokens``,
    ``gen_ai.usage.cache_creation.input_tokens`` and ``gen_ai.usage.reasoning.output_tokens`` (those three when
    non-zero), ``gen_ai.usage.cost`` (USD, a float, as OpenLIT writes it), and ``llmcost.cost`` (the exact Decimal as
    a string in fixed point), ``llmcost.currency``, ``llmcost.category``, ``llmcost.resource``, ``llmcost.pricing``,
    ``llmcost.tag.<key>``. Metrics: ``gen_ai.client.token.usage`` (histogram, ``gen_ai.token.type`` input/output)
    and ``llmcost.cost`` (an observable up-down counter, USD: credits are negative; exact running totals, so its sum
    is ``float()`` of the tracker's total), with model, provider, category and resource attributes. Entries that are
    not LLM calls (compute, storage...) carry only the ``llmcost.*`` names and the cost counter.

    ``tracker``: default ``llmcost.get_tracker()`` now. ``tracer_provider``/``meter_provider``: default the
    global ones. Instrumenting a tracker again replaces the earlier export (an entry is exported once).

    Example::

        from llmcost.otel import instrument_tracker

        stop = instrument_tracker(tracker, tracer_provider=provider)
        ...
        stop()
    """
    target = tracker if tracker is not None else get_tracker()
    if not isinstance(target, CostTracker):
        raise TypeError(f"tracker must be a CostTracker or None, got {target!r}")
    # Checked here: a wrong provider used to fail inside OpenTelemetry with an AttributeError naming neither.
    for name, value, kind, method in (
        ("tracer_provider", tracer_provider, "TracerProvider", "get_tracer"),
        ("meter_provider", meter_provider, "MeterProvider", "get_meter"),
    ):
        if value is not None and not callable(getattr(value, method, None)):
            raise TypeError(f"{name} must be an OpenTelemetry {kind} (with .{method}) or None, got {value!r}")
    exporter = _Exporter(tracer_provider, meter_provider)
    with _lock:
        previous = _undo_by_tracker.pop(target, None)
        if previous is not None:
            previous()
        unsubscribe = target.subscribe("cost.recorded", exporter)
        wanting_requested.append(target)  # its tracked calls now say which model they asked for

        def undo() -> None:
            unsubscribe()
            with _lock:
                if target in wanting_requested:
                    wanting_requested.remove(target)
                if _undo_by_tracker.get(target) is undo:
                    del _undo_by_tracker[target]

        _undo_by_tracker[target] = undo
    return undo
