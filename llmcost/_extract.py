"""Reading model and token usage out of provider responses, SDK objects or dicts of the same shapes.

Every shape is normalised into the API.md convention: ``input_tokens`` counts all input (Anthropic reports cache
tokens outside it, so they are added), ``output_tokens`` all output (Google reports thoughts outside candidates,
so they are added). Nothing here imports a provider SDK.

Over 400 lines because each provider's shape is a short reader, and they share one dispatch and its per-type
caches; ``StreamAccumulator`` reads the same shapes chunk by chunk, so it stays beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from . import _state
from ._entry import CostCategory
from ._usage import MAX_COUNT, Usage, trusted_usage

__all__ = ["Extracted", "StreamAccumulator", "extract_usage", "is_sdk_stream", "is_stream_manager"]


class Extracted(NamedTuple):
    """What a response says about itself: model, provider (genai-prices id, when known), usage, category.

    A named tuple rather than an attrs class: one is made on every tracked call, and a tuple is made faster.
    """

    model: str | None
    provider: str | None
    usage: Usage
    category: CostCategory | None = None


_MAPPING, _PYDANTIC, _OBJECT = 0, 1, 2
# Per-type facts, found once per type (the caches live in _state; each is bounded here, since classes made at run
# time must not grow them without bound).
_kinds: dict[type, int] = _state.type_kinds
_class_attrs: dict[tuple[type, str], bool] = _state.class_attributes
_type_providers: dict[type, str | None] = _state.type_providers
_is_one_of: dict[tuple[type, frozenset[tuple[str, str]]], bool] = _state.type_is_one_of
_MISSING = object()


def _kind(cls: type) -> int:
    # Checked once per type: the Mapping ABC check is slow on the hot path.
    kind = _kinds.get(cls)
    if kind is None:
        if issubclass(cls, Mapping):
            kind = _MAPPING
        elif isinstance(getattr(cls, "__pydantic_fields__", None), dict):
            kind = _PYDANTIC
        else:
            kind = _OBJECT
        if len(_kinds) < 1024:
            _kinds[cls] = kind
    return kind


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` for mappings, else the attribute; ``None`` when absent."""
    if type(obj) is dict:
        return obj.get(key)
    kind = _kind(type(obj))
    if kind == _MAPPING:
        return obj.get(key)
    if kind == _PYDANTIC:
        # A pydantic (v2) model keeps its fields in __dict__; asking it for an attribute it lacks raises inside
        # pydantic and costs microseconds, and extraction asks for many (it probes every provider's shape).
        value = obj.__dict__.get(key, _MISSING)
        if value is not _MISSING:
            return value
        on_class = _class_attrs.get((type(obj), key))
        if on_class is None:
            on_class = key.startswith("_") or hasattr(type(obj), key)
            if len(_class_attrs) < 4096:  # classes made at run time must not grow this without bound
                _class_attrs[(type(obj), key)] = on_class
        if not on_class:  # neither a field nor a property: only an extra field can answer
            extra = getattr(obj, "__pydantic_extra__", None)
            return extra.get(key) if extra else None
    return getattr(obj, key, None)


def _int(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 0
    # A count no store can keep (2**63 or more) is as impossible as a negative one: read as 0, never a poison entry.
    if isinstance(value, int):
        return value if 0 < value <= MAX_COUNT else 0
    if isinstance(value, float) and value.is_integer() and 0 < value <= MAX_COUNT:
        return int(value)
    return 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _usage(inp: int, out: int, cache_read: int = 0, cache_write: int = 0, reasoning: int = 0) -> Usage:
    # Clamp impossible parts instead of failing: tracking must never break the call on an odd response.
    if cache_read > inp:
        cache_read = inp
    if cache_write > inp - cache_read:
        cache_write = inp - cache_read
    if reasoning > out:
        reasoning = out
    return trusted_usage(inp, out, cache_read, cache_write, reasoning)  # _int() made them valid counts


def _openai_usage(usage: Any) -> Usage | None:
    """OpenAI chat (prompt/completion) and Responses API (input/output) usage; also Mistral and LiteLLM."""
    if _get(usage, "prompt_tokens") is not None:
        return _chat_usage(usage)
    inp = _get(usage, "input_tokens")
    if inp is None:
        return None
    cache_creation = _get(usage, "cache_creation_input_tokens")
    cache_read = _get(usage, "cache_read_input_tokens")
    if cache_creation is not None or cache_read is not None:
        # Anthropic: input_tokens excludes cache reads and writes.
        cr, cw = _int(cache_read), _int(cache_creation)
        return _usage(_int(inp) + cr + cw, _int(_get(usage, "output_tokens")), cr, cw)
    in_details = _get(usage, "input_tokens_details")
    out_details = _get(usage, "output_tokens_details")
    return _usage(
        _int(inp),
        _int(_get(usage, "output_tokens")),
        _int(_get(in_details, "cached_tokens")) if in_details is not None else 0,
        0,
        _int(_get(out_details, "reasoning_tokens")) if out_details is not None else 0,
    )


def _google_usage(meta: Any) -> Usage | None:
    prompt = _get(meta, "prompt_token_count")
    if prompt is None:
        prompt = _get(meta, "promptTokenCount")
    if prompt is None:
        return None
    candidates = _get(meta, "candidates_token_count")
    if candidates is None:
        candidates = _get(meta, "candidatesTokenCount")
    thoughts = _get(meta, "thoughts_token_count")
    if thoughts is None:
        thoughts = _get(meta, "thoughtsTokenCount")
    cached = _get(meta, "cached_content_token_count")
    if cached is None:
        cached = _get(meta, "cachedContentTokenCount")
    tool = _get(meta, "tool_use_prompt_token_count") or _get(meta, "toolUsePromptTokenCount")
    out = _int(candidates) + _int(thoughts)
    return _usage(_int(prompt) + _int(tool), out, _int(cached), 0, _int(thoughts))


def _langchain_usage(meta: Any) -> Usage | None:
    inp = _get(meta, "input_tokens")
    if inp is None:
        return None
    in_details = _get(meta, "input_token_details") or {}
    out_details = _get(meta, "output_token_details") or {}
    # LangChain's input_tokens already include cache reads and writes.
    return _usage(
        _int(inp),
        _int(_get(meta, "output_tokens")),
        _int(_get(in_details, "cache_read")),
        _int(_get(in_details, "cache_creation")),
        _int(_get(out_details, "reasoning")),
    )


def _from_dict(result: dict[str, Any]) -> Extracted | None:
    """A plain dict: OpenAI-style chat or embedding usage read directly (the common case), else the general path."""
    usage = result.get("usage")
    if type(usage) is not dict or "prompt_tokens" not in usage or "_hidden_params" in result:
        return _general(result)
    return _chat(result, usage, None)


def _chat(response: dict[str, Any], usage: dict[str, Any], provider: str | None) -> Extracted:
    """An OpenAI-style chat or embedding response (``prompt_tokens`` present) read as dicts: the hot path."""
    model = response.get("model")
    return Extracted(
        model if type(model) is str and model else _str(model),
        provider,
        _chat_usage(usage),
        CostCategory.LLM_EMBEDDING if response.get("object") == "list" and "completion_tokens" not in usage else None,
    )


def _chat_usage(usage: Any) -> Usage:
    """OpenAI chat completion usage (``prompt_tokens``, ``completion_tokens`` and their details)."""
    inp = _get(usage, "prompt_tokens")
    out = _get(usage, "completion_tokens")
    if type(inp) is not int or not 0 <= inp <= MAX_COUNT:
        inp = _int(inp)
    if type(out) is not int or not 0 <= out <= MAX_COUNT:
        out = _int(out)
    details = _get(usage, "prompt_tokens_details")
    out_details = _get(usage, "completion_tokens_details")
    return _usage(
        inp,
        out,
        _int(_get(details, "cached_tokens")) if details else 0,
        0,
        _int(_get(out_details, "reasoning_tokens")) if out_details else 0,
    )


def _from_sdk_object(result: Any) -> Extracted | None:
    """An OpenAI, Anthropic, Mistral or LiteLLM SDK object: its ``usage`` first.

    These are pydantic models, whose fields live in ``__dict__``: read as dicts, they take the fast dict paths and
    never probe attributes a model lacks (which raises inside pydantic). Objects without usage (stream events) go
    the general way.
    """
    if _kind(type(result)) != _PYDANTIC:
        usage_obj = getattr(result, "usage", None)
        return _general(result) if usage_obj is None else _from_usage(result, usage_obj)
    view = _fields(result)
    usage_obj = view.get("usage")
    if usage_obj is None:
        return _general(result)
    if _kind(type(usage_obj)) == _PYDANTIC:
        usage_obj = _fields(usage_obj)
    provider = _module_provider(type(result))
    if provider is not None and type(usage_obj) is dict and "prompt_tokens" in usage_obj:
        return _chat(view, usage_obj, provider)
    return _from_usage(result, usage_obj, view)


def _fields(model: Any) -> dict[str, Any]:
    """A pydantic model's fields (and extra fields) as a dict, without copying when there are no extras."""
    extra = getattr(model, "__pydantic_extra__", None)
    return {**extra, **model.__dict__} if extra else model.__dict__  # type: ignore[no-any-return]


def _nothing(result: Any) -> Extracted | None:
    return None


_SDK_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "mistralai": "mistral", "google": "google"}


def _module_provider(cls: type) -> str | None:
    """The provider whose SDK defines ``cls`` (``None`` for LiteLLM and others), found once per type."""
    try:
        return _type_providers[cls]
    except KeyError:
        provider = _SDK_PROVIDERS.get(cls.__module__.split(".", 1)[0])
        if len(_type_providers) < 1024:  # classes made at run time must not grow this without bound
            _type_providers[cls] = provider
        return provider


def _provider_of(result: Any, usage: Any) -> str | None:
    provider = _module_provider(type(result))
    if provider is not None:
        return provider
    hidden = _get(result, "_hidden_params")
    if isinstance(hidden, Mapping) and _str(hidden.get("custom_llm_provider")):
        return str(hidden["custom_llm_provider"])
    obj_type = _get(result, "type")
    if (
        obj_type == "message"
        or _get(usage, "cache_creation_input_tokens") is not None
        or _get(usage, "cache_read_input_tokens") is not None
    ):
        return "anthropic"
    return None


def extract_usage(result: object) -> Extracted | None:
    """Model, provider and usage of ``result``, or ``None`` when its shape is not recognised (never raises)."""
    try:
        return _extract(result)
    except (TypeError, ValueError, AttributeError, KeyError):
        return None


_SDK_MODULES = frozenset({"openai", "anthropic", "mistralai", "litellm"})
_extractors: dict[type, Callable[[Any], Extracted | None]] = _state.extractors


def _extractor_for(kind: type) -> Callable[[Any], Extracted | None]:
    """The extraction function for results of type ``kind``, chosen once per type."""
    if kind is dict:
        return _from_dict
    if issubclass(kind, (str, bytes, int, float, list, tuple)) or kind is type(None):
        return _nothing
    if kind.__module__.split(".", 1)[0] in _SDK_MODULES:
        return _from_sdk_object
    return _general


def _extract(result: Any) -> Extracted | None:
    kind = type(result)
    extractor = _extractors.get(kind)
    if extractor is None:
        extractor = _extractor_for(kind)
        if len(_extractors) < 1024:  # classes made at run time must not grow this without bound
            _extractors[kind] = extractor
    return extractor(result)


def _general(result: Any) -> Extracted | None:
    """Any object or mapping: every known shape, tried in turn."""
    # LangChain AIMessage (and AIMessageChunk).
    meta = _get(result, "usage_metadata")
    if meta is not None:
        usage = _langchain_usage(meta) or _google_usage(meta)
        if usage is not None:
            response_meta = _get(result, "response_metadata") or {}
            model = _str(_get(response_meta, "model_name")) or _str(_get(response_meta, "model"))
            model = model or _str(_get(result, "model_version")) or _str(_get(result, "modelVersion"))
            provider = "google" if _get(meta, "prompt_token_count") is not None else None
            return Extracted(model, provider, usage)
    google_meta = _get(result, "usageMetadata")
    if google_meta is not None:
        usage = _google_usage(google_meta)
        if usage is not None:
            return Extracted(_str(_get(result, "modelVersion")), "google", usage)
    # OpenAI Responses API stream event "response.completed" carries the response.
    inner = _get(result, "response")
    if _get(result, "usage") is None and inner is not None and not isinstance(inner, (str, bytes)):
        found = _extract(inner)
        if found is not None:
            return found
    # Anthropic stream event message_start carries the message.
    message = _get(result, "message")
    if _get(result, "usage") is None and message is not None and _get(message, "usage") is not None:
        return _extract(message)
    usage_obj = _get(result, "usage")
    if usage_obj is None:
        return None
    return _from_usage(result, usage_obj)


def _from_usage(result: Any, usage_obj: Any, view: Any = None) -> Extracted | None:
    """OpenAI, Anthropic, Mistral and LiteLLM responses: ``usage_obj`` is the response's ``usage``; ``view`` is
    what to read the response's other fields from (default: the response itself)."""
    usage = _openai_usage(usage_obj)
    if usage is None:
        return None
    if view is None:
        view = result
    model = _str(_get(view, "model"))
    provider = _provider_of(result, usage_obj)
    category = None
    if _get(view, "object") == "list" and _get(usage_obj, "completion_tokens") is None:
        category = CostCategory.LLM_EMBEDDING
    if provider is None and model is not None and "/" in model and _get(result, "_hidden_params") is not None:
        provider = model.split("/", 1)[0]
    return Extracted(model, provider, usage, category)


_STREAM_TYPES = frozenset(
    {
        ("openai", "Stream"),
        ("openai", "AsyncStream"),
        ("anthropic", "Stream"),
        ("anthropic", "AsyncStream"),
    }
)
# What ``client.messages.stream(...)`` returns: a context manager that makes the request when entered and yields a
# stream object wrapping an SDK ``Stream`` (its ``_raw_stream``).
_MANAGER_TYPES = frozenset(
    {
        ("anthropic", "MessageStreamManager"),
        ("anthropic", "AsyncMessageStreamManager"),
        ("anthropic", "BetaMessageStreamManager"),
        ("anthropic", "BetaAsyncMessageStreamManager"),
    }
)


def _type_is_one_of(result: object, names: frozenset[tuple[str, str]]) -> bool:
    """Whether ``result``'s class (or a base) is one of ``names`` (SDK root module, class name), checked once per
    type, the SDKs never imported."""
    key = (type(result), names)
    known = _is_one_of.get(key)
    if known is None:
        known = any((cls.__module__.split(".", 1)[0], cls.__name__) in names for cls in type(result).__mro__)
        if len(_is_one_of) < 1024:  # classes made at run time must not grow this without bound
            _is_one_of[key] = known
    return known


def is_sdk_stream(result: object) -> bool:
    """True for OpenAI and Anthropic ``Stream``/``AsyncStream`` objects."""
    return _type_is_one_of(result, _STREAM_TYPES)


def is_stream_manager(result: object) -> bool:
    """True for Anthropic ``messages.stream()`` managers."""
    return _type_is_one_of(result, _MANAGER_TYPES)


class StreamAccumulator:
    """Fed every chunk or event of a stream in order; sums usage the way each provider reports it.

    OpenAI sends usage once, in the last chunk (with ``stream_options={"include_usage": True}``); Anthropic sends
    input and cache counts in ``message_start`` and a *cumulative* output count in each ``message_delta``; Google
    sends cumulative ``usage_metadata`` on chunks. So the latest report of each count wins; nothing is added up.
    """

    __slots__ = ("_cache_read", "_cache_write", "_input", "_model", "_output", "_provider", "_reasoning", "_seen")

    def __init__(self) -> None:
        self._model: str | None = None
        self._provider: str | None = None
        self._input = self._output = self._cache_read = self._cache_write = self._reasoning = 0
        self._seen = False

    def add(self, chunk: object) -> None:
        """Take one chunk or event into account (odd chunks are ignored)."""
        try:
            self._add(chunk)
        except (TypeError, ValueError, AttributeError, KeyError):
            return

    def _add(self, chunk: Any) -> None:
        if isinstance(chunk, (str, bytes)) or chunk is None:
            return
        model = _str(_get(chunk, "model"))
        message = _get(chunk, "message")
        if message is not None and not isinstance(message, (str, bytes)):
            model = model or _str(_get(message, "model"))
        if model:
            self._model = model
        kind = _get(chunk, "type")
        if kind == "message_delta":
            usage = _get(chunk, "usage")
            if usage is not None:
                self._seen = True
                self._provider = "anthropic"
                self._output = max(self._output, _int(_get(usage, "output_tokens")))
                # Newer APIs repeat (cumulative) input and cache counts here.
                for attr, key in (
                    ("_cache_read", "cache_read_input_tokens"),
                    ("_cache_write", "cache_creation_input_tokens"),
                ):
                    value = _get(usage, key)
                    if value is not None:
                        setattr(self, attr, max(getattr(self, attr), _int(value)))
                base = _get(usage, "input_tokens")
                if base is not None:
                    self._input = max(self._input, _int(base) + self._cache_read + self._cache_write)
            return
        found = _extract(chunk)
        if found is None:
            return
        self._seen = True
        u = found.usage
        self._provider = found.provider or self._provider
        self._input = max(self._input, u.input_tokens)
        self._output = max(self._output, u.output_tokens)
        self._cache_read = max(self._cache_read, u.cache_read_tokens)
        self._cache_write = max(self._cache_write, u.cache_write_tokens)
        self._reasoning = max(self._reasoning, u.reasoning_tokens)

    def result(self) -> Extracted | None:
        """What the stream cost in tokens, or ``None`` if no usage was seen."""
        if not self._seen:
            return None
        return Extracted(
            self._model,
            self._provider,
            _usage(self._input, self._output, self._cache_read, self._cache_write, self._reasoning),
        )
