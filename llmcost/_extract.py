"""Reading model and token usage out of provider responses, SDK objects or dicts of the same shapes.

Every shape is normalised into the API.md convention: ``input_tokens`` counts all input (Anthropic reports cache
tokens outside it, so they are added), ``output_tokens`` all output (Google reports thoughts outside candidates,
so they are added). Nothing here imports a provider SDK.

Over 400 lines because each provider's shape is a short reader, and they share one dispatch and its per-type
caches; ``StreamAccumulator`` reads the same shapes chunk by chunk, so it stays beside them. The OpenAI chat,
OpenAI Responses, Anthropic message and google-genai response readers are also compiled per SDK response type for
the plain case (``_compiled_reader``, ``_google_reader``): they read exactly as the general readers beside them,
which they fall back to.
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from . import _state
from ._catalog import provider_for_url
from ._entry import TO_US_TIER, US_TIERS, CostCategory
from ._usage import (
    FIELD_UNITS,
    MAX_COUNT,
    NO_UNITS,
    Units,
    Usage,
    fit_parts,
    requests_of,
    requests_sum,
    trusted_units,
    trusted_usage,
    unit_registry,
)

__all__ = ["Extracted", "StreamAccumulator", "extract_usage", "is_sdk_stream", "is_stream_manager", "may_be_stream"]


class Extracted(NamedTuple):
    """What a response says about itself: model, provider (genai-prices id, when known), usage, category, and
    the service tier it was billed at (``None``: standard).

    A named tuple rather than an attrs class: one is made on every tracked call, and a tuple is made faster.
    """

    model: str | None
    provider: str | None
    usage: Usage
    category: CostCategory | None = None
    service_tier: str | None = None


#: ``Extracted`` from a tuple of its five fields, without the keyword handling of its constructor (hot path).
_extracted = functools.partial(tuple.__new__, Extracted)

# What a type is, for reading: a mapping, a pydantic model (_PYDANTIC_ODD: one whose class has an attribute named
# like a key ``_view`` readers ask for, so it is read through ``_get``, which asks the attribute), anything else.
_MAPPING, _PYDANTIC, _OBJECT, _PYDANTIC_ODD = 0, 1, 2, 3
_PYDANTIC_KINDS = (_PYDANTIC, _PYDANTIC_ODD)
#: Every key the usage readers ask a ``_view`` for (none private: ``_get`` alone reads those).
_VIEW_KEYS = frozenset(
    {
        "audio_tokens", "billed_units", "cache_creation", "cache_creation_input_tokens", "cache_creation_token_details",
        "cache_creation_tokens", "cache_read_input_tokens", "cache_write_tokens", "cached_tokens", "citation_tokens",
        "completion_tokens", "completion_tokens_details", "ephemeral_1h_input_tokens", "ephemeral_5m_input_tokens",
        "image_tokens", "inference_geo", "inputTokens", "input_tokens", "input_tokens_details", "model",
        "num_search_queries", "object", "output", "output_tokens", "output_tokens_details", "prompt_tokens",
        "prompt_tokens_details", "reasoning_tokens", "server_tool_use", "service_tier", "speed", "thinking_tokens",
        "tools", "total_tokens", "usage", "web_search_requests",
    }
)  # fmt: skip
# Per-type facts, found once per type (the caches live in _state; each is bounded here, since classes made at run
# time must not grow them without bound).
_kinds: dict[type, int] = _state.type_kinds
_class_attrs: dict[tuple[type, str], bool] = _state.class_attributes
_type_providers: dict[type, str | None] = _state.type_providers
_is_one_of: dict[tuple[type, frozenset[tuple[str, str]]], bool] = _state.type_is_one_of
_may_stream: dict[type, bool] = _state.type_may_stream
_unit_clamps: dict[tuple[str, ...], Any] = _state.unit_clamps
_CLAMPS_KEPT = 256  # tuples of unit names whose clamp is remembered
_USAGE_FIELD_UNITS = frozenset(FIELD_UNITS.values())  # the unit names of the five ``Usage`` fields
_MISSING = object()


def _kind(cls: type) -> int:
    # Checked once per type: the Mapping ABC check is slow on the hot path.
    kind = _kinds.get(cls)
    if kind is None:
        if issubclass(cls, Mapping):
            kind = _MAPPING
        elif isinstance(getattr(cls, "__pydantic_fields__", None), dict):
            kind = _PYDANTIC_ODD if any(hasattr(cls, key) for key in _VIEW_KEYS) else _PYDANTIC
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
    if kind != _OBJECT:
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


class _Attrs:
    """An object that is neither a dict nor a plain pydantic model, with a dict's ``get`` (through ``_get``)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def get(self, key: str) -> Any:
        return _get(self.obj, key)


def _view(obj: Any) -> Any:
    """``obj`` with a ``get(key)`` that answers as ``_get(obj, key)`` for the ``_VIEW_KEYS``: a dict or mapping
    itself, a pydantic model its fields dict (no copy without extra fields), anything else an ``_Attrs``.

    Readers take one view of each object and call its ``get``: a dict's own ``get`` is the cheapest read there is,
    and this runs for every object of every tracked response.
    """
    if type(obj) is dict:
        return obj
    kind = _kinds.get(type(obj))
    if kind is None:
        kind = _kind(type(obj))
    if kind == _PYDANTIC:
        extra = getattr(obj, "__pydantic_extra__", None)
        return {**extra, **obj.__dict__} if extra else obj.__dict__
    if kind == _MAPPING:
        return obj
    return _Attrs(obj)


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


def _usage(
    inp: int,
    out: int,
    cache_read: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
    units: dict[str, int] | None = None,
) -> Usage:
    # Clamp impossible parts instead of failing: tracking must never break the call on an odd response.
    if cache_read > inp:
        cache_read = inp
    if cache_write > inp - cache_read:
        cache_write = inp - cache_read
    if reasoning > out:
        reasoning = out
    if units:
        fields = {"input_tokens": inp, "output_tokens": out, "cache_read_tokens": cache_read,
                  "cache_write_tokens": cache_write, "output_reasoning_tokens": reasoning}  # fmt: skip
        return trusted_usage(inp, out, cache_read, cache_write, reasoning, _clamped_units(units, fields))
    return trusted_usage(inp, out, cache_read, cache_write, reasoning)  # _int() made them valid counts


def _clamped_units(units: dict[str, int], fields: dict[str, int]) -> Units:
    """``units`` with zero, unknown and field-named counts dropped and each part cut to its wholes."""
    names = tuple(units)
    clamp = _unit_clamps.get(names)
    if clamp is None:
        clamp = _clamp_of(names, fields)
    known, order, shared = clamp
    kept = {k: units[k] for k in known if units[k] > 0}
    for key, wholes in order:  # wholes before their parts
        value = kept.get(key)
        if value is None:
            continue
        for whole in wholes:
            cap = fields.get(whole, kept.get(whole))
            if cap is not None and value > cap:
                value = kept[key] = cap
    if 0 in kept.values():
        kept = {k: v for k, v in kept.items() if v > 0}
    if shared and not _parts_within(kept, fields, shared):
        # Parts that together count more than their whole overlap (cached tokens that include audio, reported
        # without the split): counted where genai-prices prices the overlap, so the call can be priced at all.
        fit_parts(kept, fields)
    return Units(kept) if kept else NO_UNITS


def _parts_within(units: Mapping[str, int], fields: Mapping[str, int], shared: tuple[Any, ...]) -> bool:
    """Whether no whole in ``shared`` (``_clamp_of``'s: the wholes of two or more parts; a whole of one part holds
    it, cut to it) has a negative own share: then ``fit_parts`` has nothing to do."""
    for own in shared:
        total = 0
        for name, sign in own:  # (a loop, not ``sum``: a handful of terms, on every response with such parts)
            count = fields.get(name)
            total += (units.get(name, 0) if count is None else count) * sign
        if total < 0:
            return False
    return True


def _clamp_of(
    names: tuple[str, ...], fields: Mapping[str, int]
) -> tuple[tuple[str, ...], tuple[Any, ...], tuple[Any, ...]]:
    """How ``_clamped_units`` treats units reported under ``names`` (made once per tuple of names): the names it
    keeps (known to genai-prices, not a ``Usage`` field), in order; the order it cuts them to their wholes in
    (fewer dimensions first, a stable sort), each with its wholes; and the wholes that two or more of the parts a
    response may report (these units, the part fields) fall in, as their own shares: sums of signed counts, which a
    usage whose parts count more than their whole makes negative (``_parts_within``, ``fit_parts``)."""
    registry = unit_registry()
    known = tuple(k for k in names if k in registry and k not in fields)
    order = tuple((k, registry[k].ancestors) for k in sorted(known, key=lambda k: len(registry[k].dimensions)))
    parts = (*known, *(k for k in fields if registry[k].ancestors))
    # Each name's own share (its count less its parts', as genai-prices bills it) as a sum of counts, each times
    # +1 or -1, found once per shape: the parts of a whole that a response leaves out count 0 (so do theirs, cut
    # to them), so the same sum holds whichever are reported.
    own: dict[str, dict[str, int]] = {}
    for name in sorted((*fields, *known), key=lambda k: -len(registry[k].dimensions)):  # parts before wholes
        terms = {name: 1}
        for part, its in own.items():
            if name in registry[part].ancestors:
                for key, sign in its.items():
                    terms[key] = terms.get(key, 0) - sign
        own[name] = {key: sign for key, sign in terms.items() if sign}
    shared = tuple(
        tuple(own[whole].items())
        for whole in (*fields, *known)
        if sum(whole in registry[part].ancestors for part in parts) > 1
    )
    clamp = (known, order, shared)
    if len(_unit_clamps) < _CLAMPS_KEPT:  # (names come from responses: keep a bounded number)
        _unit_clamps[names] = clamp
    return clamp


#: Service tiers as responses name them, to the tiers llmcost prices (``default``, ``auto``, ``standard``: None).
_TIERS = {
    "batch": "batch",
    "flex": "flex",
    "priority": "priority",
    "fast": "priority",  # OpenAI reports a "fast" request as priority
    "on_demand_flex": "flex",  # Vertex AI traffic_type
    "on_demand_priority": "priority",
}


def _tier(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = getattr(value, "value", None)  # an SDK enum
        if not isinstance(value, str):
            return None
    return _TIERS.get(value.lower())


def _speed(value: Any) -> str | None:
    """The tier of Anthropic's ``usage.speed``: ``"fast"`` for fast mode, billed at its own rates whatever the
    service tier; ``None`` for ``"standard"``, the missing and the unknown."""
    if not isinstance(value, str):
        value = getattr(value, "value", None)  # an SDK enum
    return "fast" if isinstance(value, str) and value.lower() == "fast" else None


def _us_only(tier: str | None, geo: Any) -> str | None:
    """``tier`` run in the US only (``"us"``, ``"batch+us"``...: Anthropic bills it at 1.1x for the models the rule
    covers) where Anthropic's ``usage.inference_geo`` is ``"us"``; else ``tier`` (``"global"``, the missing and the
    unknown: standard)."""
    if not isinstance(geo, str):
        geo = getattr(geo, "value", None)  # an SDK enum
    return TO_US_TIER[tier] if isinstance(geo, str) and geo.lower() == "us" else tier


def _with_speed(tier: str | None, speed: str | None) -> str | None:
    """``tier`` with Anthropic's fast mode (``_speed``) in its place, a US-only tier staying US-only."""
    if speed is None:
        return tier
    return TO_US_TIER[speed] if tier is not None and tier in US_TIERS else speed


def _add_count(units: dict[str, int], key: str, value: Any) -> None:
    count = _int(value)
    if count:
        units[key] = units.get(key, 0) + count


def _openai_usage(usage: Any) -> Usage | None:
    """OpenAI chat (prompt/completion) and Responses API (input/output) usage; also Anthropic, Mistral, LiteLLM,
    Bedrock Converse (camelCase) and Cohere (``billed_units``)."""
    get = usage.get if type(usage) is dict else _view(usage).get
    if get("prompt_tokens") is not None:
        return _chat_usage(usage)
    inp = get("input_tokens")
    if inp is None:
        if get("inputTokens") is not None:
            return _converse_usage(usage)
        billed = get("billed_units")
        if billed is not None:  # Cohere v2: bill on billed_units (usage.tokens counts more than is billed)
            return _usage(_int(_get(billed, "input_tokens")), _int(_get(billed, "output_tokens")))
        return None
    cache_creation = get("cache_creation_input_tokens")
    cache_read = get("cache_read_input_tokens")
    if (
        cache_creation is not None
        or cache_read is not None
        # Parts only Anthropic reports: a message whose cache counts are missing (not 0) is still Anthropic's, and
        # its web searches must be billed.
        or get("server_tool_use") is not None
        or get("cache_creation") is not None
        or get("iterations") is not None
    ):
        return _anthropic_usage(get, inp, cache_read, cache_creation)
    if type(inp) is not int or not 0 <= inp <= MAX_COUNT:
        inp = _int(inp)
    out = get("output_tokens")
    if type(out) is not int or not 0 <= out <= MAX_COUNT:
        out = _int(out)
    cache_read_count = cache_write = reasoning = 0
    units: dict[str, int] | None = None  # (audio and image tokens: the Images, audio and Realtime APIs')
    in_details = get("input_tokens_details")
    if in_details is None:
        in_details = get("input_token_details")  # (transcriptions' and Realtime's name for it)
    if in_details is not None:
        if _kinds.get(type(in_details)) == _PYDANTIC:  # _view's pydantic case inline (an SDK object's details)
            extra = getattr(in_details, "__pydantic_extra__", None)
            dget = ({**extra, **in_details.__dict__} if extra else in_details.__dict__).get
        else:
            dget = _view(in_details).get
        value = dget("cached_tokens")
        if value:
            cache_read_count = value if type(value) is int and 0 < value <= MAX_COUNT else _int(value)
        value = dget("cache_write_tokens")
        cache_write = _int(value) if value else 0
        audio, image, cached_split = dget("audio_tokens"), dget("image_tokens"), dget("cached_tokens_details")
        if audio or image or cached_split:
            units = {}
            _add_count(units, "input_audio_tokens", audio)
            _add_count(units, "input_image_tokens", image)
            if cached_split:
                sget = _view(cached_split).get
                _add_count(units, "cache_audio_read_tokens", sget("audio_tokens"))
                _add_count(units, "cache_image_read_tokens", sget("image_tokens"))
    out_details = get("output_tokens_details")
    if out_details is None:
        out_details = get("output_token_details")  # (as above)
    if out_details is not None:
        if _kinds.get(type(out_details)) == _PYDANTIC:
            extra = getattr(out_details, "__pydantic_extra__", None)
            oget = ({**extra, **out_details.__dict__} if extra else out_details.__dict__).get
        else:
            oget = _view(out_details).get
        value = oget("reasoning_tokens")
        if value is None and oget("thinking_tokens") is not None:  # Anthropic's thinking, its cache counts missing
            return _anthropic_usage(get, inp, None, None)
        if value:
            reasoning = value if type(value) is int and 0 < value <= MAX_COUNT else _int(value)
        audio, image = oget("audio_tokens"), oget("image_tokens")
        if audio or image:
            if units is None:
                units = {}
            _add_count(units, "output_audio_tokens", audio)
            _add_count(units, "output_image_tokens", image)
    if units:
        return _usage(inp, out, cache_read_count, cache_write, reasoning, units)
    if cache_read_count + cache_write <= inp and reasoning <= out:  # nothing for _usage to clamp: skip a call
        return trusted_usage(inp, out, cache_read_count, cache_write, reasoning)
    return _usage(inp, out, cache_read_count, cache_write, reasoning)


def _anthropic_usage(get: Callable[[str], Any], inp: Any, cache_read: Any, cache_creation: Any) -> Usage:
    """Anthropic (``get`` reads its usage): ``input_tokens`` excludes cache reads and writes; writes split by TTL
    in ``cache_creation``; web searches in ``server_tool_use``; thinking in ``output_tokens_details``."""
    # Plain counts taken as they are (what _int would return for them): this runs on every Anthropic call.
    cr = cache_read if type(cache_read) is int and 0 <= cache_read <= MAX_COUNT else _int(cache_read)
    cw = cache_creation if type(cache_creation) is int and 0 <= cache_creation <= MAX_COUNT else _int(cache_creation)
    units: dict[str, int] = {}
    split = get("cache_creation")
    if split is not None:
        sget = _view(split).get
        _add_count(units, "cache_write_5m_tokens", sget("ephemeral_5m_input_tokens"))
        _add_count(units, "cache_write_1h_tokens", sget("ephemeral_1h_input_tokens"))
        cw = max(cw, units.get("cache_write_5m_tokens", 0) + units.get("cache_write_1h_tokens", 0))
    tools = get("server_tool_use")
    if tools is not None:
        _add_count(units, "web_searches", _view(tools).get("web_search_requests"))
    out_details = get("output_tokens_details")
    thinking = _int(_view(out_details).get("thinking_tokens")) if out_details is not None else 0
    if type(inp) is not int or not 0 <= inp <= MAX_COUNT:
        inp = _int(inp)
    out = get("output_tokens")
    if type(out) is not int or not 0 <= out <= MAX_COUNT:
        out = _int(out)
    if not units and thinking <= out:  # nothing for _usage to clamp (the input includes both cache parts)
        usage = trusted_usage(inp + cr + cw, out, cr, cw, thinking)
    else:
        usage = _usage(inp + cr + cw, out, cr, cw, thinking, units)
    iterations = get("iterations")
    if iterations:
        compactions = _compactions(iterations)
        if compactions:
            return requests_sum([usage, *compactions])
    return usage


def _compactions(iterations: Any) -> list[Usage]:
    """The usage of each ``compaction`` among an Anthropic usage's ``iterations`` (beta server-side compaction): the
    request that summarised the context, whose "tokens are not included in the top-level usage fields" and are
    billed as a request of the message's model of their own."""
    found: list[Usage] = []
    if isinstance(iterations, (str, bytes)):
        return found
    for item in iterations:
        if _get(item, "type") == "compaction":
            get = _view(item).get
            found.append(
                _anthropic_usage(
                    get, get("input_tokens"), get("cache_read_input_tokens"), get("cache_creation_input_tokens")
                )
            )
    return found


def _converse_usage(usage: Any) -> Usage:
    """Bedrock Converse ``TokenUsage``: ``inputTokens`` excludes cache reads and writes; ``cacheDetails`` splits
    writes by TTL."""
    cr, cw = _int(_get(usage, "cacheReadInputTokens")), _int(_get(usage, "cacheWriteInputTokens"))
    units: dict[str, int] = {}
    for detail in _get(usage, "cacheDetails") or ():
        ttl = _get(detail, "ttl")
        if ttl in ("5m", "1h"):
            _add_count(units, f"cache_write_{ttl}_tokens", _get(detail, "inputTokens"))
    cw = max(cw, units.get("cache_write_5m_tokens", 0) + units.get("cache_write_1h_tokens", 0))
    return _usage(_int(_get(usage, "inputTokens")) + cr + cw, _int(_get(usage, "outputTokens")), cr, cw, 0, units)


#: Gemini modalities to genai-prices' (documents are billed as images, as genai-prices reads them).
_MODALITIES = {"AUDIO": "audio", "IMAGE": "image", "VIDEO": "video", "DOCUMENT": "image"}


def _modality_name(modality: Any) -> str | None:
    """The genai-prices name of a Gemini modality (an SDK enum, or its value), ``None`` for text and the unknown."""
    modality = getattr(modality, "value", modality)
    return _MODALITIES.get(modality.upper()) if isinstance(modality, str) else None


def _modalities(units: dict[str, int], details: Any, pattern: str) -> None:
    """Gemini ``*_tokens_details`` (lists of ``{modality, token_count}``) into ``units``; text is the default."""
    if not details or isinstance(details, (str, bytes)):
        return
    for item in details:
        name = _modality_name(_get(item, "modality"))
        if name is not None:
            count = _get(item, "token_count")
            _add_count(units, pattern.format(name), count if count is not None else _get(item, "tokenCount"))


def _either(meta: Any, snake: str, camel: str) -> Any:
    value = _get(meta, snake)
    return value if value is not None else _get(meta, camel)


#: Gemini's ``*_tokens_details`` (snake and camel case) and the pattern of the units each one's modalities become.
_GEMINI_DETAILS = (
    ("prompt_tokens_details", "promptTokensDetails", "input_{}_tokens"),
    ("cache_tokens_details", "cacheTokensDetails", "cache_{}_read_tokens"),
    ("candidates_tokens_details", "candidatesTokensDetails", "output_{}_tokens"),
    ("response_tokens_details", "responseTokensDetails", "output_{}_tokens"),  # (the Live API's name)
    # The tool-use prompt's modalities: a part of the input (its count is added to the prompt's), as genai-prices
    # reads them (its input_*_tool_tokens, priced by no model, are billed as these).
    ("tool_use_prompt_tokens_details", "toolUsePromptTokensDetails", "input_{}_tokens"),
)


def _google_usage(meta: Any) -> Usage | None:
    """Gemini's ``usage_metadata`` (snake or camel case: the SDK's objects, or the JSON). The google-genai response
    types have a reader compiled for them (``_google_reader``), which reads as this does."""
    get = functools.partial(_either, meta)
    prompt = get("prompt_token_count", "promptTokenCount")
    if prompt is None:
        return None
    candidates = get("candidates_token_count", "candidatesTokenCount")
    if candidates is None:  # the Live API's ``UsageMetadata`` names the output ``response_token_count``
        candidates = get("response_token_count", "responseTokenCount")
    thoughts = get("thoughts_token_count", "thoughtsTokenCount")
    cached = get("cached_content_token_count", "cachedContentTokenCount")
    tool = get("tool_use_prompt_token_count", "toolUsePromptTokenCount")
    units: dict[str, int] = {}
    for snake, camel, pattern in _GEMINI_DETAILS:
        _modalities(units, get(snake, camel), pattern)
    out = _int(candidates) + _int(thoughts)
    return _usage(_int(prompt) + _int(tool), out, _int(cached), 0, _int(thoughts), units)


#: langchain-openai's flex and priority counts: (tier, its cache-read key, its reasoning key, its cache-write key).
_PREFIXED_TIERS = tuple(
    (name, f"{name}_cache_read", f"{name}_reasoning", f"{name}_cache_creation") for name in ("flex", "priority")
)


def _getter(obj: Any) -> Callable[[str], Any]:
    """``_get(obj, key)`` as a function of ``key``: a dict's own ``get`` for a dict (what ``_get`` does for one)."""
    return obj.get if type(obj) is dict else functools.partial(_get, obj)  # type: ignore[no-any-return]


def _langchain_usage(meta: Any, response_meta: Any = None) -> tuple[Usage, str | None] | None:
    """LangChain ``usage_metadata`` (``input_tokens`` already include cache reads and writes) and the service tier
    it shows: langchain-openai prefixes flex and priority counts (``flex_cache_read``), langchain-anthropic reports
    writes by TTL (``ephemeral_1h_input_tokens``, with ``cache_creation`` 0)."""
    mget = _getter(meta)  # (``_get`` of each, a dict's own ``get`` for the dicts LangChain keeps these in)
    inp = mget("input_tokens")
    if inp is None:
        return None
    iget = _getter(mget("input_token_details") or {})
    oget = _getter(mget("output_token_details") or {})
    tier = None
    cache_read = _int(iget("cache_read"))
    reasoning = _int(oget("reasoning"))
    tiered_writes = 0
    for name, read_key, reasoning_key, write_key in _PREFIXED_TIERS:
        tiered_read, tiered_reasoning, tiered_write = iget(read_key), oget(reasoning_key), iget(write_key)
        if (
            tiered_read is not None
            or tiered_reasoning is not None
            or tiered_write is not None
            or iget(name) is not None
        ):
            tier = name
            cache_read += _int(tiered_read)
            reasoning += _int(tiered_reasoning)
            tiered_writes += _int(tiered_write)
    units: dict[str, int] = {}
    _add_count(units, "cache_write_5m_tokens", iget("ephemeral_5m_input_tokens"))
    _add_count(units, "cache_write_1h_tokens", iget("ephemeral_1h_input_tokens"))
    split = units.get("cache_write_5m_tokens", 0) + units.get("cache_write_1h_tokens", 0)
    cache_write = max(_int(iget("cache_creation")) + tiered_writes, split)
    _add_count(units, "input_audio_tokens", iget("audio"))
    _add_count(units, "output_audio_tokens", oget("audio"))
    if response_meta:
        provider_usage = _get(response_meta, "usage")
        if provider_usage is not None and not isinstance(provider_usage, (str, bytes, int)):
            tools = _get(provider_usage, "server_tool_use")
            if tools is not None:
                _add_count(units, "web_searches", _get(tools, "web_search_requests"))
            tier = tier or _speed(_get(provider_usage, "speed")) or _tier(_get(provider_usage, "service_tier"))
            geo = _get(provider_usage, "inference_geo")  # (Anthropic's, as langchain-anthropic keeps its usage)
        else:
            geo = None
        tier = tier or _tier(_get(response_meta, "service_tier"))
        if geo is not None:
            tier = _us_only(tier, geo)
    usage = _usage(_int(inp), _int(mget("output_tokens")), cache_read, cache_write, reasoning, units)
    return usage, tier


def _from_dict(result: dict[str, Any]) -> Extracted | None:
    """A plain dict: OpenAI-style chat or embedding usage read directly (the common case), else the general path."""
    usage = result.get("usage")
    if type(usage) is not dict or "prompt_tokens" not in usage or "_hidden_params" in result:
        return _general(result)
    return _chat(result, usage, None)


def _chat(response: dict[str, Any], usage: dict[str, Any], provider: str | None) -> Extracted:
    """An OpenAI-style chat or embedding response (``prompt_tokens`` present) read as dicts: the hot path."""
    model = response.get("model")
    tier = response.get("service_tier")
    if tier is None:
        tier = usage.get("service_tier")  # LiteLLM keeps Anthropic's service tier in usage
    return _extracted(
        (
            model if type(model) is str and model else _str(model),
            provider,
            _chat_usage(usage),
            CostCategory.LLM_EMBEDDING
            if response.get("object") == "list" and _embeds(response.get("data"), usage.get("completion_tokens"))
            else None,
            None if tier is None or tier == "default" else _tier(tier),
        )
    )


def _embeds(data: Any, completion_tokens: Any) -> bool:
    """Whether a response of ``object == "list"`` with this ``data`` and ``completion_tokens`` is an embedding one:
    no completion tokens reported, or 0 of them beside embedding items (LiteLLM's usage always fills
    ``completion_tokens``, 0 for an embedding)."""
    if completion_tokens is None:
        return True
    if completion_tokens != 0 or not data or not isinstance(data, (list, tuple)):
        return False
    return all(_get(item, "object") == "embedding" for item in data)


def _chat_usage(usage: Any) -> Usage:
    """OpenAI chat completion usage (``prompt_tokens``, ``completion_tokens`` and their details): cached reads,
    cache writes (OpenAI's own, and LiteLLM's for Anthropic, with its TTL split), audio and image tokens, web
    searches (LiteLLM). Dicts are read with their own ``get``: this runs on every tracked chat call."""
    get = usage.get if type(usage) is dict else _view(usage).get
    inp = get("prompt_tokens")
    out = get("completion_tokens")
    if type(inp) is not int or not 0 <= inp <= MAX_COUNT:
        inp = _int(inp)
    if type(out) is not int or not 0 <= out <= MAX_COUNT:
        out = _int(out)
    details = get("prompt_tokens_details")
    out_details = get("completion_tokens_details")
    cache_read = cache_write = reasoning = 0
    units: dict[str, int] = {}
    if details:
        if type(details) is dict:
            dget = details.get
        elif _kinds.get(type(details)) == _PYDANTIC:  # _view's pydantic case inline (an SDK object's details)
            extra = getattr(details, "__pydantic_extra__", None)
            dget = ({**extra, **details.__dict__} if extra else details.__dict__).get
        else:
            dget = _view(details).get
        value = dget("cached_tokens")
        if value:
            cache_read = value if type(value) is int and 0 < value <= MAX_COUNT else _int(value)
        value = dget("cache_write_tokens")
        if value is None:
            value = dget("cache_creation_tokens")
        cache_write = _int(value) if value else 0
        value = dget("audio_tokens")
        if value:
            _add_count(units, "input_audio_tokens", value)
        cached_split = dget("cached_tokens_details")  # (LiteLLM's of Gemini's cache reads by modality)
        if cached_split:
            _add_count(units, "cache_audio_read_tokens", _view(cached_split).get("audio_tokens"))
        split = dget("cache_creation_token_details")
        if split:
            sget = _view(split).get
            _add_count(units, "cache_write_5m_tokens", sget("ephemeral_5m_input_tokens"))
            _add_count(units, "cache_write_1h_tokens", sget("ephemeral_1h_input_tokens"))
            cache_write = max(
                cache_write, units.get("cache_write_5m_tokens", 0) + units.get("cache_write_1h_tokens", 0)
            )
    if out_details:
        if type(out_details) is dict:
            oget = out_details.get
        elif _kinds.get(type(out_details)) == _PYDANTIC:
            extra = getattr(out_details, "__pydantic_extra__", None)
            oget = ({**extra, **out_details.__dict__} if extra else out_details.__dict__).get
        else:
            oget = _view(out_details).get
        value = oget("reasoning_tokens")
        if value:
            reasoning = value if type(value) is int and 0 < value <= MAX_COUNT else _int(value)
            if reasoning and _reasoning_apart(get("total_tokens"), inp, out, reasoning):
                out = min(out + reasoning, MAX_COUNT)
        value = oget("audio_tokens")
        if value:
            _add_count(units, "output_audio_tokens", value)
        value = oget("image_tokens")
        if value:
            _add_count(units, "output_image_tokens", value)
    tools = get("server_tool_use")
    if tools:
        _add_count(units, "web_searches", _view(tools).get("web_search_requests"))
    apart, cited, searches = get("reasoning_tokens"), get("citation_tokens"), get("num_search_queries")
    if apart or cited or searches:
        out, reasoning = _counts_beside_completion(
            get("total_tokens"), inp, out, reasoning, apart, cited, searches, units
        )
    if units:
        return _usage(inp, out, cache_read, cache_write, reasoning, units)
    if cache_read + cache_write <= inp and reasoning <= out:  # nothing for _usage to clamp: skip a call
        return trusted_usage(inp, out, cache_read, cache_write, reasoning)
    return _usage(inp, out, cache_read, cache_write, reasoning)


def _reasoning_apart(total: Any, inp: int, out: int, reasoning: int) -> bool:
    """Whether a chat usage's reasoning tokens are counted apart from its ``completion_tokens`` (xAI's: ``total_tokens``
    is prompt + completion + reasoning, and genai-prices' x-ai reader adds them to the output), not as a part of it
    (OpenAI's, DeepSeek's: the total is prompt + completion). Told by the total; without one that says either,
    reasoning beyond the completion cannot be a part of it."""
    return total == inp + out + reasoning or (reasoning > out and total != inp + out)


def _counts_beside_completion(
    total: Any, inp: int, out: int, reasoning: int, apart: Any, cited: Any, searches: Any, units: dict[str, int]
) -> tuple[int, int]:
    """The output and reasoning of a chat usage with counts beside ``completion_tokens``: Perplexity's
    ``citation_tokens`` (the output's citation part, in ``units``, billed as output as genai-prices' perplexity
    reader bills it) and a top-level ``reasoning_tokens``. That one is outside the completion for Perplexity and
    xAI's older shape (genai-prices adds it to the output) but inside it for Databricks and Modal (genai-prices
    does not): told apart by ``total_tokens``, as the completion details' reasoning is (``_reasoning_apart``), and
    without a total by Perplexity's other counts. ``num_search_queries`` are Perplexity's ``web_searches``."""
    cited, searches = _int(cited), _int(searches)
    completion = out
    if cited:
        out = min(out + cited, MAX_COUNT)
        units["output_citation_tokens"] = units.get("output_citation_tokens", 0) + cited
    if searches:
        units["web_searches"] = units.get("web_searches", 0) + searches
    apart = _int(apart)
    if apart and not reasoning:  # (a reasoning count in the completion's details is the one read)
        reasoning = apart
        # Perplexity's (its citations or searches say so) is outside the completion whatever its total counts (its
        # documented total is prompt + completion); another's is told by the total against the completion alone.
        if cited or searches or _reasoning_apart(total, inp, completion, apart):
            out = min(out + apart, MAX_COUNT)
    return out, reasoning


def _sdk_reader(cls: type) -> Callable[[Any], Extracted | None]:
    """The reader of an OpenAI, Anthropic, Mistral or LiteLLM SDK response type, made once per type: the reader
    compiled for the type (``_compiled_reader``) when there is one, which hands anything but the plain case to
    the general reader (``_general_sdk_reader``); else the general reader."""
    read = _general_sdk_reader(cls)
    return _compiled_reader(cls, read) or read


def _general_sdk_reader(cls: type) -> Callable[[Any], Extracted | None]:
    """The general reader of an SDK response type (``_sdk_reader``), made once per type: its ``usage`` first.

    Most are pydantic models, whose fields live in ``__dict__``: read as dicts, they take the fast dict paths and
    never probe attributes a model lacks (which raises inside pydantic). The type's kind and provider are found
    here, once, so a call only reads fields. Objects without usage (stream events) go the general way.
    """
    if not _is_pydantic(cls):

        def read_object(result: Any) -> Extracted | None:
            usage_obj = getattr(result, "usage", None)
            return _general(result) if usage_obj is None else _from_usage(result, usage_obj)

        return read_object
    provider = _module_provider(cls)

    def read(result: Any) -> Extracted | None:
        extra = getattr(result, "__pydantic_extra__", None)
        view = {**extra, **result.__dict__} if extra else result.__dict__
        usage_obj = view.get("usage")
        if usage_obj is None:
            return _general(result)
        if type(usage_obj) is not dict and (_kinds.get(type(usage_obj)) or _kind(type(usage_obj))) in _PYDANTIC_KINDS:
            extra = getattr(usage_obj, "__pydantic_extra__", None)
            usage_obj = {**extra, **usage_obj.__dict__} if extra else usage_obj.__dict__
        if provider is not None and type(usage_obj) is dict:
            if "prompt_tokens" in usage_obj:
                return _chat(view, usage_obj, provider)
            return _from_usage(result, usage_obj, view, provider)
        return _from_usage(result, usage_obj, view)

    return read


class _NoCompiledReader(Exception):
    """A response type ``_compiled_reader`` does not compile a reader for."""


def _part_class(fields: Mapping[str, Any], name: str) -> Any:
    """The pydantic class (kind ``_PYDANTIC``) that field ``name`` holds when it is not ``None``; ``None`` when
    there is no such field. Raises ``_NoCompiledReader`` for any other field (a union of classes, a dict...)."""
    field = fields.get(name)
    if field is None:
        return None
    annotation = getattr(field, "annotation", None)
    origin = typing.get_origin(annotation)
    if origin is None:
        classes = [annotation]
    elif origin is typing.Union or origin is types.UnionType:  # Optional[X], X | None
        classes = [t for t in typing.get_args(annotation) if t is not type(None)]
    else:  # list[X], Annotated[X, ...]...
        raise _NoCompiledReader(name)
    if len(classes) != 1 or not isinstance(classes[0], type) or _kind(classes[0]) != _PYDANTIC:
        raise _NoCompiledReader(name)
    return classes[0]


def _declared(cls: Any) -> Mapping[str, Any]:
    return {} if cls is None else cls.__pydantic_fields__  # type: ignore[no-any-return]


def _compiled_reader(cls: type, general: Callable[[Any], Extracted | None]) -> Callable[[Any], Extracted | None] | None:
    """A reader of SDK response type ``cls`` (an OpenAI chat completion, OpenAI Responses response, Anthropic
    message...) compiled from the fields it and its usage declare, or ``None`` for a type it does not compile.

    It reads the plain case: pydantic objects (kind ``_PYDANTIC``) of the declared classes with no extra fields all
    the way down, counts plain ints, nothing that becomes a unit (audio, image, cache writes split by TTL, web
    searches); it hands anything else to ``general``, the type's general reader. What it returns is exactly what
    ``general`` returns: a key the general reader asks for that the classes do not declare is ``None`` in an object
    without extra fields, so it is not asked for, and what the general reader decides by value (which shape the
    usage is) is decided the same way. Why: the general reader asks for every key any provider's shape might have,
    through a call per shape, and this runs on every tracked SDK call.
    """
    provider = _module_provider(cls)
    if provider is None or _kind(cls) != _PYDANTIC:
        return None
    try:
        usage_cls = _part_class(cls.__pydantic_fields__, "usage")  # type: ignore[attr-defined]
        if usage_cls is None:
            return None
        fields = usage_cls.__pydantic_fields__
        if "prompt_tokens" in fields:
            return _chat_reader(usage_cls, provider, general)
        if "input_tokens" in fields and "output_tokens" in fields:
            return _usage_reader(usage_cls, provider, general, cls.__pydantic_fields__)  # type: ignore[attr-defined]
    except _NoCompiledReader:
        pass
    return None


def _chat_reader(
    usage_cls: Any, provider: str, general: Callable[[Any], Extracted | None]
) -> Callable[[Any], Extracted | None] | None:
    """An OpenAI chat completion's reader, reading as ``_chat`` and ``_chat_usage`` do (``_compiled_reader``)."""
    fields = usage_cls.__pydantic_fields__
    if "completion_tokens" not in fields:
        return None  # an embedding's: the general reader
    prompt, completion = _part_class(fields, "prompt_tokens_details"), _part_class(fields, "completion_tokens_details")
    in_fields, out_fields = _declared(prompt), _declared(completion)
    has_cached, has_write = "cached_tokens" in in_fields, "cache_write_tokens" in in_fields
    has_creation = "cache_creation_tokens" in in_fields
    in_units = tuple(k for k in ("audio_tokens", "cache_creation_token_details") if k in in_fields)
    has_reasoning = "reasoning_tokens" in out_fields
    out_units = tuple(k for k in ("audio_tokens", "image_tokens") if k in out_fields)
    has_tools, has_tier = "server_tool_use" in fields, "service_tier" in fields
    has_total = "total_tokens" in fields
    if any(k in fields for k in ("reasoning_tokens", "citation_tokens", "num_search_queries")):
        return None  # counts beside the completion (Perplexity's): the general reader

    def read(result: Any) -> Extracted | None:
        # ``return general(result)`` inside the try: should the general reader raise one of the errors caught here,
        # it raises it again when called from the handler, and ``extract_usage`` gets it either way.
        try:
            if result.__pydantic_extra__:
                return general(result)
            view = result.__dict__
            usage_obj = view["usage"]
            if type(usage_obj) is not usage_cls or usage_obj.__pydantic_extra__:
                # Without usage (a stream chunk), straight to where the general reader sends it.
                return _general(result) if usage_obj is None else general(result)
            u = usage_obj.__dict__
            inp, out = u["prompt_tokens"], u["completion_tokens"]
            if type(inp) is not int or type(out) is not int or not 0 <= inp | out <= MAX_COUNT:
                return general(result)
            cache_read = cache_write = reasoning = 0
            details = u["prompt_tokens_details"] if prompt is not None else None
            if details:
                if type(details) is not prompt or details.__pydantic_extra__:
                    return general(result)
                d = details.__dict__
                if has_cached:
                    value = d["cached_tokens"]
                    if value:
                        if type(value) is not int or not 0 < value <= MAX_COUNT:
                            return general(result)
                        cache_read = value
                value = d["cache_write_tokens"] if has_write else None
                if value is None and has_creation:
                    value = d["cache_creation_tokens"]
                if value:
                    if type(value) is not int or not 0 < value <= MAX_COUNT:
                        return general(result)
                    cache_write = value
                for key in in_units:
                    if d[key]:
                        return general(result)  # a unit
            details = u["completion_tokens_details"] if completion is not None else None
            if details:
                if type(details) is not completion or details.__pydantic_extra__:
                    return general(result)
                d = details.__dict__
                if has_reasoning:
                    value = d["reasoning_tokens"]
                    if value:
                        if type(value) is not int or not 0 < value <= MAX_COUNT:
                            return general(result)
                        if has_total and u["total_tokens"] == inp + out + value:
                            return general(result)  # reasoning counted apart from the completion (xAI)
                        reasoning = value
                for key in out_units:
                    if d[key]:
                        return general(result)  # a unit
            if (has_tools and u["server_tool_use"]) or cache_read + cache_write > inp or reasoning > out:
                return general(result)  # a unit, or counts to clamp
            model = view.get("model")
            if type(model) is not str or not model:
                model = _str(model)
            tier = view.get("service_tier")
            if tier is None and has_tier:
                tier = u["service_tier"]  # LiteLLM keeps Anthropic's service tier in usage
            return _extracted(
                (
                    model,
                    provider,
                    trusted_usage(inp, out, cache_read, cache_write, reasoning),
                    None,  # not an embedding: it has completion tokens
                    None if tier is None or tier == "default" else _tier(tier),
                )
            )
        except (AttributeError, KeyError):  # an odd object (a field missing from ``__dict__``...)
            return general(result)

    return read


#: The unit each count of Anthropic's usage parts becomes (``_anthropic_usage`` reads them the same way).
_ANTHROPIC_UNITS = {
    "ephemeral_5m_input_tokens": "cache_write_5m_tokens",
    "ephemeral_1h_input_tokens": "cache_write_1h_tokens",
    "web_search_requests": "web_searches",
}


#: ``Units`` of Anthropic's counts ``(5-minute cache write, 1-hour cache write, web searches)``, by those counts: one
#: object per distinct counts, so a call whose counts were seen before builds none (an application's cache writes are
#: of the same prompt prefix, its searches few), and stores keep one object for all its calls. Bounded: counts come
#: from responses.
_anthropic_units: dict[tuple[int, int, int], Units] = _state.anthropic_units
_ANTHROPIC_UNITS_KEPT = 1024


def _new_anthropic_units(w5: int, w1: int, searches: int) -> Units:
    """The ``Units`` of Anthropic's counts (valid ints, not all 0), as the reader's loop over its usage parts builds
    them (positive counts, in that order), remembered in ``_anthropic_units``."""
    counts: dict[str, int] = {}
    if w5:
        counts["cache_write_5m_tokens"] = w5
    if w1:
        counts["cache_write_1h_tokens"] = w1
    if searches:
        counts["web_searches"] = searches
    units = trusted_units(counts)
    if len(_anthropic_units) >= _ANTHROPIC_UNITS_KEPT:
        _anthropic_units.clear()
    _anthropic_units[(w5, w1, searches)] = units
    return units


def _anthropic_units_kept() -> bool:
    """Whether ``_clamped_units`` keeps Anthropic's units as read (positive counts) once the cache write is at
    least its split by TTL: each unit is known to genai-prices and no ``Usage`` field, a cache write by TTL is a
    part of the input and of the cache write alone, and a web search a part of nothing."""
    registry = unit_registry()
    wholes = {"cache_write_5m_tokens": {"input_tokens", "cache_write_tokens"}, "web_searches": set()}
    wholes["cache_write_1h_tokens"] = wholes["cache_write_5m_tokens"]
    return all(
        unit in registry and unit not in _USAGE_FIELD_UNITS and set(registry[unit].ancestors) <= wholes[unit]
        for unit in _ANTHROPIC_UNITS.values()
    )


def _usage_reader(
    usage_cls: Any,
    provider: str,
    general: Callable[[Any], Extracted | None],
    declared: Mapping[str, Any] | None = None,
) -> Callable[[Any], Extracted | None]:
    """The reader of a response whose usage counts ``input_tokens`` and ``output_tokens`` (OpenAI Responses,
    Anthropic messages), reading as ``_from_usage``, ``_openai_usage`` and ``_anthropic_usage`` do
    (``_compiled_reader``): Anthropic's way for Anthropic's usage classes, else OpenAI Responses' way.

    ``declared``: the response class's fields, when known. A response without extra fields has no other keys, so a
    key it does not declare (Anthropic's message: ``object``, ``service_tier``) is not looked up."""
    fields = usage_cls.__pydantic_fields__
    has_creation, has_read = "cache_creation_input_tokens" in fields, "cache_read_input_tokens" in fields
    # Anthropic: (field, its class, the counts in it that become units) of each part whose counts must be 0 or None;
    # each count with the unit it becomes and whether it is a cache write by TTL.
    unit_parts = tuple(
        (name, part, tuple((k, _ANTHROPIC_UNITS[k], k.startswith("ephemeral_")) for k in keys if k in _declared(part)))
        for name, keys in (
            ("cache_creation", ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")),
            ("server_tool_use", ("web_search_requests",)),
        )
        for part in (_part_class(fields, name),)
        if part is not None
    )
    inputs, outputs = _part_class(fields, "input_tokens_details"), _part_class(fields, "output_tokens_details")
    in_fields, out_fields = _declared(inputs), _declared(outputs)
    has_cached, has_write = "cached_tokens" in in_fields, "cache_write_tokens" in in_fields
    has_reasoning, has_thinking = "reasoning_tokens" in out_fields, "thinking_tokens" in out_fields
    # OpenAI's counts that become units (the Images API's image tokens, audio): a response with any is read generally.
    in_units = tuple(k for k in ("audio_tokens", "image_tokens", "cached_tokens_details") if k in in_fields)
    out_units = tuple(k for k in ("audio_tokens", "image_tokens") if k in out_fields)
    if "input_token_details" in fields or "output_token_details" in fields:
        raise _NoCompiledReader("input_token_details")  # (transcriptions', Realtime's: their units read generally)
    has_tier, has_completion = "service_tier" in fields, "completion_tokens" in fields
    has_speed = "speed" in fields  # Anthropic's fast mode
    has_geo = "inference_geo" in fields  # Anthropic's US-only inference
    has_iterations = "iterations" in fields  # Anthropic's beta usage: compactions, billed apart
    has_object = declared is None or "object" in declared
    has_response_tier = declared is None or "service_tier" in declared
    has_tools = declared is None or "tools" in declared  # (OpenAI Responses: the hosted tools it may call)
    # Anthropic's usage classes declare its cache counts: read them Anthropic's way even when both are missing, as
    # ``_openai_usage`` does once it sees Anthropic's web searches, TTL split or thinking.
    anthropic = has_creation or has_read
    units_kept = anthropic and _anthropic_units_kept()

    def read(result: Any) -> Extracted | None:
        # ``return general(result)`` inside the try: see ``_chat_reader``.
        try:
            if result.__pydantic_extra__:
                return general(result)
            view = result.__dict__
            usage_obj = view["usage"]
            if type(usage_obj) is not usage_cls or usage_obj.__pydantic_extra__:
                # Without usage (a stream chunk), straight to where the general reader sends it.
                return _general(result) if usage_obj is None else general(result)
            u = usage_obj.__dict__
            inp, out = u["input_tokens"], u["output_tokens"]
            if type(inp) is not int or type(out) is not int or not 0 <= inp | out <= MAX_COUNT:
                return general(result)
            creation = u["cache_creation_input_tokens"] if has_creation else None
            cache_read = u["cache_read_input_tokens"] if has_read else None
            reasoning = 0
            if anthropic:  # Anthropic (``_anthropic_usage``), even with its cache counts missing
                if has_iterations and u["iterations"] and _has_compaction(u["iterations"]):
                    return general(result)  # compactions, billed as requests of their own
                if creation is None:
                    creation = 0
                if cache_read is None:
                    cache_read = 0
                if (
                    type(creation) is not int
                    or type(cache_read) is not int
                    or not 0 <= creation | cache_read <= MAX_COUNT
                ):
                    return general(result)
                units: dict[str, int] | None = None
                split = 0  # the cache writes by TTL
                for name, part_cls, keys in unit_parts:
                    part = u[name]
                    if part is not None:
                        if type(part) is not part_cls or part.__pydantic_extra__:
                            return general(result)
                        d = part.__dict__
                        for key, unit, by_ttl in keys:
                            value = d[key]
                            if value:  # a unit (a cache write by TTL, a web search), as ``_anthropic_usage``
                                if type(value) is not int or not 0 < value <= MAX_COUNT:
                                    return general(result)
                                if units is None:
                                    units = {unit: value}
                                else:
                                    units[unit] = value
                                if by_ttl:
                                    split += value
                details = u["output_tokens_details"] if outputs is not None else None
                if details is not None:
                    if type(details) is not outputs or details.__pydantic_extra__:
                        return general(result)
                    value = details.__dict__["thinking_tokens"] if has_thinking else None
                    if value is not None:
                        if type(value) is not int or not 0 <= value <= MAX_COUNT:
                            return general(result)
                        reasoning = value
                if units is not None:
                    if split > creation:
                        creation = split
                    if units_kept and reasoning <= out:
                        # Nothing for ``_usage`` to clamp: the input holds both cache parts, the cache write its
                        # split by TTL, and ``_clamped_units`` would keep these units as read (``units_kept``).
                        usage = trusted_usage(
                            inp + cache_read + creation, out, cache_read, creation, reasoning, trusted_units(units)
                        )
                    else:
                        usage = _usage(inp + cache_read + creation, out, cache_read, creation, reasoning, units)
                else:
                    if reasoning > out:
                        return general(result)  # to clamp
                    usage = trusted_usage(inp + cache_read + creation, out, cache_read, creation, reasoning)
            else:  # OpenAI Responses (``_openai_usage``)
                cache_read = cache_write = 0
                details = u["input_tokens_details"] if inputs is not None else None
                if details is not None:
                    if type(details) is not inputs or details.__pydantic_extra__:
                        return general(result)
                    d = details.__dict__
                    value = d["cached_tokens"] if has_cached else None
                    if value:
                        if type(value) is not int or not 0 < value <= MAX_COUNT:
                            return general(result)
                        cache_read = value
                    value = d["cache_write_tokens"] if has_write else None
                    if value:
                        if type(value) is not int or not 0 < value <= MAX_COUNT:
                            return general(result)
                        cache_write = value
                    for key in in_units:
                        if d[key]:
                            return general(result)  # units
                details = u["output_tokens_details"] if outputs is not None else None
                if details is not None:
                    if type(details) is not outputs or details.__pydantic_extra__:
                        return general(result)
                    d = details.__dict__
                    value = d["reasoning_tokens"] if has_reasoning else None
                    if value:
                        if type(value) is not int or not 0 < value <= MAX_COUNT:
                            return general(result)
                        reasoning = value
                    for key in out_units:
                        if d[key]:
                            return general(result)  # units
                if cache_read + cache_write > inp or reasoning > out:
                    return general(result)  # counts to clamp
                if (
                    has_tools
                    and view.get("tools")
                    and view.get("object") == "response"
                    and _hosted_tool_calls(view.get("output"))
                ):
                    return general(result)  # hosted tool calls: units
                usage = trusted_usage(inp, out, cache_read, cache_write, reasoning)
            model = view.get("model")  # the rest as ``_from_usage``
            if type(model) is not str or not model:
                model = _str(model)
            category = None
            if (
                has_object
                and view.get("object") == "list"
                and _embeds(view.get("data"), u["completion_tokens"] if has_completion else None)
            ):
                category = CostCategory.LLM_EMBEDDING
            # The tiers real responses name most (OpenAI's "default", Anthropic's "standard") are no tier to
            # ``_tier``: answered without the call.
            tier = view.get("service_tier") if has_response_tier else None
            tier = None if tier is None or tier == "default" else _tier(tier)
            if tier is None and has_tier:
                tier = u["service_tier"]
                tier = None if tier is None or tier == "standard" else _tier(tier)
            if has_speed:
                speed = u["speed"]
                if speed is not None and speed != "standard":
                    tier = _speed(speed) or tier
            if has_geo:
                geo = u["inference_geo"]
                if geo is not None and geo != "global":
                    tier = _us_only(tier, geo)
            return _extracted((model, provider, usage, category, tier))
        except (AttributeError, KeyError):  # an odd object (a field missing from ``__dict__``...)
            return general(result)

    if (
        has_creation
        and has_read
        and units_kept
        and not has_object
        and not has_response_tier
        and [(name, len(keys)) for name, _, keys in unit_parts] == [("cache_creation", 2), ("server_tool_use", 1)]
    ):
        split_cls, tools_cls = unit_parts[0][1], unit_parts[1][1]
        return _message_reader(
            usage_cls,
            split_cls,
            tools_cls,
            outputs,
            has_thinking,
            has_tier,
            has_speed,
            has_geo,
            has_iterations,
            provider,
            read,
        )
    return read


def _message_reader(
    usage_cls: Any,
    split_cls: Any,
    tools_cls: Any,
    outputs: Any,
    has_thinking: bool,
    has_tier: bool,
    has_speed: bool,
    has_geo: bool,
    has_iterations: bool,
    provider: str,
    read: Callable[[Any], Extracted | None],
) -> Callable[[Any], Extracted | None]:
    """The reader of a current Anthropic message (``_usage_reader``'s ``read`` for a message class that declares
    neither ``object`` nor ``service_tier``, whose usage declares both cache counts, the cache write by TTL and the
    web searches): the usual message read in one pass, without the branches ``read`` takes for other classes, its
    units found by value (``_anthropic_units``). Anything else (extra fields, a count that is not a plain int, counts
    to clamp) is handed to ``read``, which reads it as before."""

    def read_message(result: Any) -> Extracted | None:
        # ``return read(result)`` inside the try: see ``_chat_reader``.
        try:
            if result.__pydantic_extra__:
                return read(result)
            view = result.__dict__
            usage_obj = view["usage"]
            if type(usage_obj) is not usage_cls or usage_obj.__pydantic_extra__:
                return read(result)
            u = usage_obj.__dict__
            if has_iterations and u["iterations"] and _has_compaction(u["iterations"]):
                return read(result)  # compactions, billed as requests of their own
            inp, out = u["input_tokens"], u["output_tokens"]
            creation, cache_read = u["cache_creation_input_tokens"], u["cache_read_input_tokens"]
            if creation is None:
                creation = 0
            if cache_read is None:
                cache_read = 0
            if not (
                type(inp) is int
                and type(out) is int
                and type(creation) is int
                and type(cache_read) is int
                and 0 <= inp | out | creation | cache_read <= MAX_COUNT  # none negative (or-ing keeps a sign) or wide
            ):
                return read(result)
            reasoning = 0
            details = u["output_tokens_details"] if outputs is not None else None
            if details is not None:
                if type(details) is not outputs or details.__pydantic_extra__:
                    return read(result)
                value = details.__dict__["thinking_tokens"] if has_thinking else None
                if value is not None:
                    if type(value) is not int or not 0 <= value <= MAX_COUNT:
                        return read(result)
                    reasoning = value
            if reasoning > out:
                return read(result)  # to clamp
            by_ttl, tools = u["cache_creation"], u["server_tool_use"]
            if by_ttl is None and tools is None:  # the usual message: no units
                usage = trusted_usage(inp + cache_read + creation, out, cache_read, creation, reasoning)
            else:
                # A part's extra fields are not looked at: every count read here is declared, and the general
                # reader's view of a part lets a declared field win over an extra one.
                w5 = w1 = searches = 0
                if by_ttl is not None:
                    if type(by_ttl) is not split_cls:
                        return read(result)
                    d = by_ttl.__dict__
                    w5, w1 = d["ephemeral_5m_input_tokens"], d["ephemeral_1h_input_tokens"]
                if tools is not None:
                    if type(tools) is not tools_cls:
                        return read(result)
                    searches = tools.__dict__["web_search_requests"]
                if not (
                    type(w5) is int
                    and type(w1) is int
                    and type(searches) is int
                    and 0 <= w5 | w1 | searches <= MAX_COUNT
                ):
                    return read(result)
                if w5 or w1 or searches:
                    found = _anthropic_units.get((w5, w1, searches))
                    if found is None:
                        found = _new_anthropic_units(w5, w1, searches)
                    if w5 + w1 > creation:  # the cache write is at least its split by TTL, as ``read`` makes it
                        creation = w5 + w1
                    # Nothing for ``_usage`` to clamp (``read``'s ``units_kept`` case).
                    usage = trusted_usage(inp + cache_read + creation, out, cache_read, creation, reasoning, found)
                else:
                    usage = trusted_usage(inp + cache_read + creation, out, cache_read, creation, reasoning)
            model = view.get("model")
            if type(model) is not str or not model:
                model = _str(model)
            tier = u["service_tier"] if has_tier else None  # (the message itself declares none)
            if tier is not None:
                tier = None if tier == "standard" else _tier(tier)
            if has_speed:  # (most messages: None or "standard", answered without the call)
                speed = u["speed"]
                if speed is not None and speed != "standard":
                    tier = _speed(speed) or tier
            if has_geo:  # (most messages: None or "global", answered without the call)
                geo = u["inference_geo"]
                if geo is not None and geo != "global":
                    tier = _us_only(tier, geo)
            return _extracted((model, provider, usage, None, tier))  # (no ``object``: not an embedding)
        except (AttributeError, KeyError):  # an odd object (a field missing from ``__dict__``...)
            return read(result)

    return read_message


def _has_compaction(iterations: Any) -> bool:
    """Whether an Anthropic usage's ``iterations`` hold a ``compaction`` (``_compactions``)."""
    return bool(iterations) and any(_get(item, "type") == "compaction" for item in iterations)


def _optional_class(fields: Mapping[str, Any], name: str) -> Any:
    """The one class field ``name`` holds when it is not ``None`` (``X``, ``X | None``, ``Optional[X]``); raises
    ``_NoCompiledReader`` for a missing field or any other annotation."""
    annotation = getattr(fields.get(name), "annotation", None)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        classes = [t for t in typing.get_args(annotation) if t is not type(None)]
        annotation = classes[0] if len(classes) == 1 else None
    if annotation is None:
        raise _NoCompiledReader(name)
    return annotation


def _gemini_unit_wholes() -> dict[str, tuple[str, ...]] | None:
    """The wholes of every unit Gemini's modalities become (``_GEMINI_DETAILS``), as ``_clamped_units`` cuts each
    to them; ``None`` unless ``_clamped_units`` keeps each as read when it is within them (each known to
    genai-prices, no ``Usage`` field) and the only fields among them are those ``_within_wholes`` is given."""
    registry = unit_registry()
    names = [pattern.format(name) for _, _, pattern in _GEMINI_DETAILS for name in sorted(set(_MODALITIES.values()))]
    if any(name not in registry or name in _USAGE_FIELD_UNITS for name in names):
        return None
    wholes = {name: registry[name].ancestors for name in names}
    if any(set(found) & _USAGE_FIELD_UNITS - _GEMINI_WHOLE_FIELDS for found in wholes.values()):
        return None
    return wholes


#: The ``Usage`` fields (by their genai-prices names) ``_within_wholes`` checks Gemini's units against.
_GEMINI_WHOLE_FIELDS = frozenset({"input_tokens", "output_tokens", "cache_read_tokens"})


def _within_wholes(
    units: dict[str, int], wholes: dict[str, tuple[str, ...]], inp: int, out: int, cached: int, thoughts: int
) -> bool:
    """Whether each of Gemini's ``units`` is at most each of its ``wholes`` (one of ``_GEMINI_WHOLE_FIELDS``, or a
    unit reported beside it), and the parts of each whole count no more than it together: then ``_clamped_units``
    neither cuts nor adds to them."""
    fields = {"input_tokens": inp, "output_tokens": out, "cache_read_tokens": cached}
    for unit, value in units.items():
        for whole in wholes[unit]:
            cap = fields.get(whole)
            if cap is None:
                cap = units.get(whole)
            if cap is not None and value > cap:
                return False
    if cached or thoughts or len(units) > 1:  # (else one unit alone in its whole, checked above)
        fields["output_reasoning_tokens"] = thoughts
        names = tuple(units)
        clamp = _unit_clamps.get(names)
        if clamp is None:
            clamp = _clamp_of(names, {**_NO_FIELDS, **fields})
        return _parts_within(units, fields, clamp[2])
    return True


#: The five ``Usage`` fields by their genai-prices names, none reported (``_within_wholes``' defaults).
_NO_FIELDS = dict.fromkeys(FIELD_UNITS.values(), 0)


def _google_reader(cls: type) -> Callable[[Any], Extracted | None] | None:
    """The reader of a google-genai response type with ``usage_metadata`` (``GenerateContentResponse``), compiled
    from the fields it, its usage metadata and their ``ModalityTokenCount`` declare (as ``_compiled_reader`` compiles
    the OpenAI and Anthropic ones; also ``LiveServerMessage``, whose metadata declares fewer of them); ``None`` for
    any other type, or one whose fields could make ``_general`` read it another way.

    It reads the plain case, from the objects' ``__dict__``: pydantic objects of the declared classes without extra
    fields, counts plain ints or ``None``, details lists of ``ModalityTokenCount`` whose modality is the SDK's enum
    (or ``None``); it hands anything else to ``_general``, and returns exactly what ``_general`` returns (``_general``
    asks each key in snake and camel case, of every shape: the camel keys are ``None`` in an object without extra
    fields, and no other shape's keys are declared).
    """
    if _kind(cls) != _PYDANTIC:
        return None
    fields = cls.__pydantic_fields__  # type: ignore[attr-defined]
    try:
        meta_cls = _part_class(fields, "usage_metadata")
        if meta_cls is None:
            return None
        meta_fields = meta_cls.__pydantic_fields__
        # (LangChain's shape reads ``input_tokens`` of the metadata, and a model from ``response_metadata``.)
        if "response_metadata" in fields or "input_tokens" in meta_fields or "prompt_token_count" not in meta_fields:
            return None
        # A field the classes do not declare is None in an object without extra fields: not read.
        # The output count: ``candidates_token_count``, or the Live API's ``response_token_count``.
        output_field = next((f for f in ("candidates_token_count", "response_token_count") if f in meta_fields), None)
        if "candidates_token_count" in meta_fields and "response_token_count" in meta_fields:
            return None  # (``_general`` reads the second when the first is None: not compiled)
        has_thoughts = "thoughts_token_count" in meta_fields
        has_cached, has_tool = "cached_content_token_count" in meta_fields, "tool_use_prompt_token_count" in meta_fields
        has_tier, has_model = "traffic_type" in meta_fields, "model_version" in fields
        # The details: (field, the class of its items, the unit each modality of the SDK's enum becomes).
        details: list[tuple[str, Any, Any, dict[Any, str | None], str]] = []
        for name, _, pattern in _GEMINI_DETAILS:
            if name not in meta_fields:
                continue
            annotation = _optional_class(meta_fields, name)
            item_cls: Any = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
            if not isinstance(item_cls, type) or _kind(item_cls) != _PYDANTIC:
                return None
            item_fields = _declared(item_cls)
            if "token_count" not in item_fields:
                return None
            modality_cls = _optional_class(item_fields, "modality")
            if not isinstance(modality_cls, type) or not issubclass(modality_cls, enum.Enum):
                return None
            units: dict[Any, str | None] = {}
            for member in modality_cls:
                unit = _modality_name(member)
                units[member] = None if unit is None else pattern.format(unit)
            details.append((name, item_cls, modality_cls, units, pattern))
    except _NoCompiledReader:
        return None
    parts = tuple(details)
    wholes = _gemini_unit_wholes()

    def read(result: Any) -> Extracted | None:
        # ``return _general(result)`` inside the try: see ``_chat_reader``.
        try:
            if result.__pydantic_extra__:
                return _general(result)
            view = result.__dict__
            meta = view["usage_metadata"]
            if type(meta) is not meta_cls or meta.__pydantic_extra__:
                return _general(result)
            m = meta.__dict__
            prompt = m["prompt_token_count"]
            candidates = None if output_field is None else m[output_field]
            thoughts = m["thoughts_token_count"] if has_thoughts else None
            cached = m["cached_content_token_count"] if has_cached else None
            tool = m["tool_use_prompt_token_count"] if has_tool else None
            if type(prompt) is not int:
                return _general(result)  # no prompt count: not Gemini's usage (or an odd one)
            if candidates is None:
                candidates = 0
            if thoughts is None:
                thoughts = 0
            if cached is None:
                cached = 0
            if tool is None:
                tool = 0
            if (
                type(candidates) is not int
                or type(thoughts) is not int
                or type(cached) is not int
                or type(tool) is not int
                or not 0 <= prompt | candidates | thoughts | cached | tool <= MAX_COUNT
            ):
                return _general(result)
            inp, out = prompt + tool, candidates + thoughts
            if inp > MAX_COUNT or out > MAX_COUNT or cached > inp:
                # A cache read to clamp; sums past 2**63 - 1 (``_general`` keeps them as they are: left to it)
                return _general(result)
            units: dict[str, int] | None = None
            for name, item_cls, modality_cls, unit_of, pattern in parts:
                items = m[name]
                if not items:
                    continue
                if type(items) is not list:
                    return _general(result)
                for item in items:
                    if type(item) is not item_cls or item.__pydantic_extra__:
                        return _general(result)
                    d = item.__dict__
                    modality = d["modality"]
                    unit: Any = unit_of.get(modality, _MISSING) if type(modality) is modality_cls else _MISSING
                    if unit is _MISSING:  # None, or a value the SDK's enum does not know
                        unit = _modality_name(modality)
                        if unit is not None:
                            unit = pattern.format(unit)
                    if unit is None:
                        continue  # text, or not billed apart
                    count = d["token_count"]
                    if count:  # (``_int`` reads any other as 0, as ``_general`` does)
                        if type(count) is not int or not 0 < count <= MAX_COUNT:
                            return _general(result)
                        if units is None:
                            units = {unit: count}
                        else:
                            units[unit] = units.get(unit, 0) + count
            if units is None:
                usage = trusted_usage(inp, out, cached, 0, thoughts)
            elif wholes is not None and _within_wholes(units, wholes, inp, out, cached, thoughts):
                # Nothing for ``_usage`` to clamp, and ``_clamped_units`` would keep these units as read
                usage = trusted_usage(inp, out, cached, 0, thoughts, trusted_units(units))
            else:
                usage = _usage(inp, out, cached, 0, thoughts, units)
            model = view["model_version"] if has_model else None
            if type(model) is not str or not model:
                model = _str(model)
            tier = m["traffic_type"] if has_tier else None
            return _extracted((model, "google", usage, None, None if tier is None else _tier(tier)))
        except (AttributeError, KeyError):  # an odd object (a field missing from ``__dict__``...)
            return _general(result)

    return read


def _is_pydantic(cls: type) -> bool:
    kind = _kinds.get(cls)
    if kind is None:
        kind = _kind(cls)
    return kind in _PYDANTIC_KINDS


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
    if isinstance(hidden, Mapping):
        base = hidden.get("api_base")
        if isinstance(base, str) and base:
            host = provider_for_url(base)  # LiteLLM against an OpenAI-compatible host: the host bills
            if host is not None:
                return host
        if _str(hidden.get("custom_llm_provider")):
            return str(hidden["custom_llm_provider"])
    obj_type = _get(result, "type")
    if (
        obj_type == "message"
        or _get(usage, "cache_creation_input_tokens") is not None
        or _get(usage, "cache_read_input_tokens") is not None
    ):
        return "anthropic"
    if _get(usage, "inputTokens") is not None:
        return "aws"
    if _get(usage, "billed_units") is not None:
        return "cohere"
    return None


def extract_usage(result: object) -> Extracted | None:
    """Model, provider and usage of ``result``, or ``None`` when its shape is not recognised (never raises)."""
    try:
        # _extract's body, not a call to it: this runs on every tracked call.
        extractor = _extractors.get(type(result))
        return _extract(result) if extractor is None else extractor(result)
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
    module = kind.__module__.split(".", 1)[0]
    if module in _SDK_MODULES:
        if kind.__name__ in _RAW_RESPONSES and module in ("openai", "anthropic"):
            return _raw_response
        return _sdk_reader(kind)
    if module == "google":
        return _google_reader(kind) or _general
    return _general


#: The OpenAI and Anthropic SDKs' raw HTTP responses (``client.chat.completions.with_raw_response.create(...)``).
_RAW_RESPONSES = frozenset({"LegacyAPIResponse", "APIResponse", "AsyncAPIResponse"})


def _raw_response(result: Any) -> Extracted | None:
    """An SDK's raw response (``with_raw_response``): read from its JSON body when the SDK has read the body already
    (a response that is not a stream); the provider is the SDK's. Its ``parse()`` is left to the caller (an async
    response's is a coroutine, and a stream's would consume it); a body not yet read is not read here."""
    http = getattr(result, "http_response", None)
    if http is None or "json" not in str(http.headers.get("content-type", "")):
        return None
    try:
        body = http.json()  # (raises, without any I/O, for a body that has not been read)
    except Exception:  # noqa: BLE001 - a streamed body, or not JSON after all: nothing to read
        return None
    if type(body) is not dict:
        return None
    found = _from_dict(body)
    if found is not None and found.provider is None:
        model, _, usage, category, tier = found
        found = Extracted(model, _module_provider(type(result)), usage, category, tier)
    return found


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
        response_meta = _get(result, "response_metadata") or {}
        found_lc = _langchain_usage(meta, response_meta)
        usage, tier = found_lc if found_lc is not None else (_google_usage(meta), None)
        if usage is not None:
            content = _get(result, "content")
            if found_lc is not None and isinstance(content, list):
                # langchain-openai keeps a Responses call's hosted tool calls as content blocks
                # (``{"type": "web_search_call", ...}``): billed per call, as the SDK's own response is.
                usage = _with_hosted_tool_calls(usage, content)
            model = _str(_get(response_meta, "model_name")) or _str(_get(response_meta, "model"))
            model = model or _str(_get(result, "model_version")) or _str(_get(result, "modelVersion"))
            provider = "google" if _get(meta, "prompt_token_count") is not None else None
            tier = tier or _tier(_get(meta, "traffic_type"))
            return Extracted(model, provider, usage, None, tier)
    google_meta = _get(result, "usageMetadata")
    if google_meta is not None:
        usage = _google_usage(google_meta)
        if usage is not None:
            tier = _tier(_get(google_meta, "trafficType"))
            return Extracted(_str(_get(result, "modelVersion")), "google", usage, None, tier)
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
        # mistralai's stream events (``CompletionEvent``) carry the chunk, and its usage, in ``data``.
        data = _get(result, "data")
        if data is not None and not isinstance(data, (str, bytes, list, tuple)):
            found = _extract(data)
            if found is not None:
                return found
        # Cohere v1 chat: meta.billed_units; Bedrock ConverseStream: the metadata event's usage.
        for key in ("meta", "metadata"):
            inner = _get(result, key)
            if inner is not None and not isinstance(inner, (str, bytes)):
                if key == "meta" and _get(inner, "billed_units") is not None:
                    return _from_usage(result, inner)
                if key == "metadata" and _get(inner, "usage") is not None:
                    return _from_usage(result, _get(inner, "usage"))
        generations = _get(result, "generations")  # LangChain's LLMResult
        if generations and isinstance(generations, list):
            return _from_generations(generations, _get(result, "llm_output"))
        embeddings = _get(result, "embeddings")  # google-genai's EmbedContentResponse from Vertex AI
        if embeddings and isinstance(embeddings, list):
            return _from_embedding_statistics(embeddings)
        return None
    return _from_usage(result, usage_obj)


def _from_generations(generations: list[Any], llm_output: Any) -> Extracted | None:
    """LangChain's ``LLMResult`` (``chat_model.generate()``): a list of generations per prompt, each prompt a request
    of its own. A prompt's candidates share its request's usage (langchain-openai gives each of them the whole
    response's), so it is read from the first whose message carries it, and the prompts' usages are added up as
    requests (as LangChain adds its ``llm_output`` token usage over the prompts): one entry for the call. Without
    messages' usage, ``llm_output``'s OpenAI-shaped ``token_usage`` and ``model_name`` are read."""
    found: list[Extracted] = []
    for candidates in generations:
        if not isinstance(candidates, list):
            continue
        for generation in candidates:
            message = _get(generation, "message")
            one = None if message is None or _get(message, "usage_metadata") is None else _extract(message)
            if one is not None:
                found.append(one)
                break
    if not found:
        token_usage = _get(llm_output, "token_usage") if llm_output else None
        usage = _openai_usage(token_usage) if token_usage else None
        if usage is None:
            return None
        return Extracted(_str(_get(llm_output, "model_name")), None, usage)
    first = found[0]
    usage = first.usage if len(found) == 1 else requests_sum([one.usage for one in found])
    return Extracted(first.model, first.provider, usage, None, first.service_tier)


def _from_embedding_statistics(embeddings: list[Any]) -> Extracted | None:
    """google-genai's ``EmbedContentResponse`` from Vertex AI: tokens counted per embedding
    (``statistics.token_count``), added up; it names no model (``model=`` says it)."""
    total = 0
    seen = False
    for embedding in embeddings:
        statistics = _get(embedding, "statistics")
        if statistics is None:
            continue
        count = _get(statistics, "token_count")
        if count is None:
            count = _get(statistics, "tokenCount")
        if count is not None:
            seen = True
            total += _int(count)
    if not seen:
        return None
    return Extracted(None, "google", _usage(_int(total), 0), CostCategory.LLM_EMBEDDING)


def _from_usage(result: Any, usage_obj: Any, view: Any = None, provider: str | None = None) -> Extracted | None:
    """OpenAI, Anthropic, Mistral, LiteLLM, Bedrock and Cohere responses: ``usage_obj`` is the response's
    ``usage``; ``view`` is what to read the response's other fields from (default: the response itself);
    ``provider``, when given, is the provider of ``result``'s SDK (``_module_provider``), found already."""
    usage = _openai_usage(usage_obj)
    if usage is None:
        return None
    get = view.get if type(view) is dict else _view(result if view is None else view).get
    model = get("model")
    if type(model) is not str or not model:
        model = _str(model)
    if provider is None:
        provider = _provider_of(result, usage_obj)
    category = None
    usage_get = usage_obj.get if type(usage_obj) is dict else _view(usage_obj).get
    kind = get("object")
    if kind == "list" and _embeds(get("data"), usage_get("completion_tokens")):
        category = CostCategory.LLM_EMBEDDING
    elif kind == "response" and get("tools"):  # OpenAI Responses that may have called hosted tools
        usage = _with_hosted_tool_calls(usage, get("output"))
    if provider is None and model is not None and "/" in model and _get(result, "_hidden_params") is not None:
        provider = model.split("/", 1)[0]
    tier = get("service_tier")
    tier = None if tier is None else _tier(tier)
    if tier is None:
        tier = usage_get("service_tier")
        tier = None if tier is None else _tier(tier)
    speed = usage_get("speed")  # Anthropic's fast mode
    if speed is not None:
        tier = _speed(speed) or tier
    geo = usage_get("inference_geo")  # Anthropic's US-only inference
    if geo is not None:
        tier = _us_only(tier, geo)
    return _extracted((model, provider, usage, category, tier))


def _hosted_tool_calls(output: Any) -> dict[str, int]:
    """The calls of OpenAI's hosted tools among a Responses ``output``'s items, each billed per call: a
    ``web_search_call`` whose action is a search ("Search actions incur a tool call cost"; opening a page or
    finding in it do not), counted as ``web_searches``, and a ``file_search_call``, as ``storage_searches``."""
    calls: dict[str, int] = {}
    if not output or isinstance(output, (str, bytes)):
        return calls
    for item in output:
        kind = _get(item, "type")
        if kind == "web_search_call":
            action = _get(item, "action")
            if action is None or _get(action, "type") in (None, "search"):
                calls["web_searches"] = calls.get("web_searches", 0) + 1
        elif kind == "file_search_call":
            calls["storage_searches"] = calls.get("storage_searches", 0) + 1
    return calls


def _with_hosted_tool_calls(usage: Usage, output: Any) -> Usage:
    """``usage`` of a Responses response with its hosted tools' calls (``_hosted_tool_calls``) among its units."""
    calls = _hosted_tool_calls(output)
    if not calls:
        return usage
    units = dict(usage.units)
    for key, count in calls.items():
        units[key] = units.get(key, 0) + count
    return _usage(
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
        units,
    )


_STREAM_TYPES = frozenset(
    {
        ("openai", "Stream"),
        ("openai", "AsyncStream"),
        ("anthropic", "Stream"),
        ("anthropic", "AsyncStream"),
        # mistralai's ``chat.stream()`` / ``stream_async()`` (and its Azure and GCP clients'): iterators of
        # ``CompletionEvent``, their generator in ``generator``.
        ("mistralai", "EventStream"),
        ("mistralai", "EventStreamAsync"),
        # LiteLLM's ``completion(stream=True)`` and ``acompletion(stream=True)``: one class iterated either way, its
        # last chunk carrying the usage with ``stream_options={"include_usage": True}``.
        ("litellm", "CustomStreamWrapper"),
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


# The SDKs' raw responses (``with_streaming_response``, ``with_raw_response``): their body may be unread yet.
_RAW_TYPES = frozenset((sdk, name) for sdk in ("openai", "anthropic") for name in _RAW_RESPONSES)
# Generators and async generators returned by a tracked function (google-genai's ``generate_content_stream``).
_GENERATOR_TYPES = frozenset({("builtins", "generator"), ("builtins", "async_generator")})
_ANY_STREAM_TYPES = _STREAM_TYPES | _MANAGER_TYPES | _RAW_TYPES | _GENERATOR_TYPES


def may_be_stream(result: object) -> bool:
    """True for what ``is_sdk_stream`` or ``is_stream_manager`` is true of, for the SDKs' raw responses, and for
    generators and async generators: one look, for the tracked call's path (which then asks which)."""
    # Its own cache by type alone: a key of (type, names) is a tuple to make and hash on every tracked call.
    known = _may_stream.get(type(result))
    if known is None:
        known = _type_is_one_of(result, _ANY_STREAM_TYPES)
        if len(_may_stream) < 1024:  # classes made at run time must not grow this without bound
            _may_stream[type(result)] = known
    return known


def is_sdk_stream(result: object) -> bool:
    """True for OpenAI and Anthropic ``Stream``/``AsyncStream`` objects, mistralai's ``EventStream``s and LiteLLM's
    ``CustomStreamWrapper``."""
    return _type_is_one_of(result, _STREAM_TYPES)


def is_stream_manager(result: object) -> bool:
    """True for Anthropic ``messages.stream()`` managers."""
    return _type_is_one_of(result, _MANAGER_TYPES)


def _model_of(chunk: Any) -> str | None:
    """The model a stream chunk or event names, wherever its shape keeps it."""
    model = _str(_get(chunk, "model"))
    if model:
        return model
    for key in ("message", "response", "data"):  # Anthropic message_start; OpenAI Responses events; mistralai's
        inner = _get(chunk, key)
        if inner is not None and not isinstance(inner, (str, bytes, list, tuple)):
            model = _str(_get(inner, "model"))
            if model:
                return model
    model = _str(_get(chunk, "model_version")) or _str(_get(chunk, "modelVersion"))  # Gemini
    if model:
        return model
    meta = _get(chunk, "response_metadata")  # LangChain
    if meta:
        return _str(_get(meta, "model_name")) or _str(_get(meta, "model"))
    return None


def _response_id(chunk: Any) -> str | None:
    """The id of the response a chunk belongs to (chunks of one stream share it; separate responses differ)."""
    found = _str(_get(chunk, "id")) or _str(_get(chunk, "response_id")) or _str(_get(chunk, "responseId"))
    if found:
        return found
    for key in ("message", "response", "data"):
        inner = _get(chunk, key)
        if inner is not None and not isinstance(inner, (str, bytes, list, tuple)):
            found = _str(_get(inner, "id"))
            if found:
                return found
    return None


#: Objects that are a whole response, never a piece of a stream (their ``object``/``type`` field, LangChain class).
_COMPLETE = frozenset({"chat.completion", "response", "message"})


def _is_complete(chunk: Any, response_id: str | None) -> bool:
    """Whether ``chunk`` is a whole response (``response_id``: its id, or ``None``)."""
    kind = _get(chunk, "object")
    if kind is None:
        kind = _get(chunk, "type")
    if isinstance(kind, str):
        if kind in _COMPLETE:
            return True
        if kind == "text_completion":
            # The legacy completions API names a whole response and each chunk of its stream alike; chunks share
            # their response's id, and a host may report cumulative usage on each (vLLM's continuous usage stats):
            # one with the open response's id is a piece of it (a new id closes it anyway, as for chat chunks).
            return response_id is None
    if type(chunk) is dict and "stopReason" in chunk and "output" in chunk:
        return True  # a Bedrock Converse response (no id: its request id is in ``ResponseMetadata``)
    return type(chunk).__name__ == "AIMessage"


#: LangChain's message chunks, whose usage within one run is additive (``StreamAccumulator``).
_LANGCHAIN_CHUNKS = frozenset({("langchain_core", "AIMessageChunk")})


class StreamAccumulator:
    """Fed every chunk or event of a stream (or every item a generator yields) in order; adds up usage the way
    each provider reports it.

    Within one response the latest report of each count wins: OpenAI sends usage once, in the last chunk (with
    ``stream_options={"include_usage": True}``); Anthropic sends input, cache and TTL counts in ``message_start``
    and *cumulative* counts in each ``message_delta``; Google sends cumulative counts on chunks. LangChain's
    ``AIMessageChunk`` counts alone are added up, as LangChain adds chunks: each carries a part of the run's usage.
    Separate responses (a new response id, or a whole response object) are summed.

    The events of one response are one request: their counts are merged here, never added with ``Usage.__add__``,
    so a single stream's usage says no ``requests`` (one, as pricing takes it). Separate responses are summed as
    separate requests (``requests_sum``): the sum counts each (``units["requests"]``), and pricing prices each on
    its own, so a per-request fee is charged once for each and a long-context tier applies to a request past it,
    never to two requests whose sum is.
    """

    __slots__ = (
        "_apart",
        "_background",
        "_closed",
        "_id",
        "_model",
        "_open",
        "_provider",
        "_responses",
        "_seen",
        "_tier",
        "_units",
        "counts",
    )

    def __init__(self) -> None:
        self._model: str | None = None
        self._provider: str | None = None
        self._tier: str | None = None
        self._id: str | None = None
        self.counts = [0, 0, 0, 0, 0]  # input, output, cache read, cache write, reasoning of the open response
        self._units: dict[str, int] = {}
        self._apart: list[Usage] = []  # the open response's requests billed apart (Anthropic's compactions)
        self._open = False  # usage seen for the open response
        self._closed: list[Usage] = []  # the usage of each closed response
        self._seen = False
        self._responses = False  # OpenAI Responses events (their usage comes unasked, in the last)
        self._background: str | None = None  # the id of the background response they created

    def add(self, chunk: object) -> None:
        """Take one chunk or event into account (odd chunks are ignored)."""
        try:
            self._add(chunk)
        except (TypeError, ValueError, AttributeError, KeyError):
            return

    def _close(self) -> None:
        if self._open:
            self._closed.append(self._current())
        self.counts = [0, 0, 0, 0, 0]
        self._units = {}
        self._apart = []
        self._open = False

    def _current(self) -> Usage:
        inp, out, cache_read, cache_write, reasoning = self.counts
        usage = _usage(inp, out, cache_read, cache_write, reasoning, self._units)
        return requests_sum([usage, *self._apart]) if self._apart else usage

    def _add(self, chunk: Any) -> None:
        if isinstance(chunk, (str, bytes)) or chunk is None:
            return
        response_id = _response_id(chunk)
        if (response_id is not None and self._id is not None and response_id != self._id) or (
            self._open and _is_complete(chunk, response_id)
        ):
            self._close()
        if response_id is not None:
            if self._id is None:  # (once a stream: its first chunk that names its response)
                self._opened(chunk, response_id)
            self._id = response_id
        model = _model_of(chunk)
        if model:
            self._model = model
        counts = self.counts
        if _get(chunk, "type") == "message_delta":
            usage = _get(chunk, "usage")
            if usage is not None:
                self._seen = self._open = True
                self._provider = "anthropic"
                counts[1] = max(counts[1], _int(_get(usage, "output_tokens")))
                # Newer APIs repeat (cumulative) input and cache counts here, without the TTL split or tier.
                read, write = _get(usage, "cache_read_input_tokens"), _get(usage, "cache_creation_input_tokens")
                if read is not None:
                    counts[2] = max(counts[2], _int(read))
                if write is not None:
                    counts[3] = max(counts[3], _int(write))
                base = _get(usage, "input_tokens")
                if base is not None:
                    counts[0] = max(counts[0], _int(base) + counts[2] + counts[3])
                details = _get(usage, "output_tokens_details")
                if details is not None:
                    counts[4] = max(counts[4], _int(_get(details, "thinking_tokens")))
                tools = _get(usage, "server_tool_use")
                if tools is not None:
                    searches = _int(_get(tools, "web_search_requests"))
                    if searches > self._units.get("web_searches", 0):
                        self._units["web_searches"] = searches
                # Fast mode and US-only inference (message_start's usage says them today).
                tier = _with_speed(self._tier, _speed(_get(usage, "speed")))
                self._tier = _us_only(tier, _get(usage, "inference_geo"))
                iterations = _get(usage, "iterations")
                if iterations:  # (all of the message's, the latest report wins)
                    self._apart = _compactions(iterations)
            return
        found = _extract(chunk)
        if found is None:
            return
        self._seen = self._open = True
        u = found.usage
        requests = requests_of(u) if u.units is not NO_UNITS else None
        if requests is not None:  # a message and its compactions: the message's counts merged, the rest apart
            u, self._apart = requests[0], list(requests[1:])
        self._provider = found.provider or self._provider
        self._tier = found.service_tier or self._tier
        if found.model and not self._model:
            self._model = found.model
        if _type_is_one_of(chunk, _LANGCHAIN_CHUNKS):
            # LangChain's chunks of one run carry parts of its usage, added up (``AIMessageChunk.__add__`` adds
            # their ``usage_metadata``; langchain-google-genai reports each chunk's difference from the last).
            counts[0] += u.input_tokens
            counts[1] += u.output_tokens
            counts[2] += u.cache_read_tokens
            counts[3] += u.cache_write_tokens
            counts[4] += u.reasoning_tokens
            if u.units is not NO_UNITS:
                for key, value in u.units.items():
                    self._units[key] = self._units.get(key, 0) + value
            return
        counts[0] = max(counts[0], u.input_tokens)
        counts[1] = max(counts[1], u.output_tokens)
        counts[2] = max(counts[2], u.cache_read_tokens)
        counts[3] = max(counts[3], u.cache_write_tokens)
        counts[4] = max(counts[4], u.reasoning_tokens)
        if u.units is not NO_UNITS:
            for key, value in u.units.items():
                if value > self._units.get(key, 0):
                    self._units[key] = value

    def _opened(self, chunk: Any, response_id: str) -> None:
        """The first chunk (event) naming its response: an OpenAI Responses event (``response.created``, first of a
        stream that creates one) says the response, and whether it runs in background mode."""
        kind = _get(chunk, "type")
        if type(kind) is str and kind.startswith("response.") and _get(chunk, "response") is not None:
            self._responses = True
            if kind == "response.created" and _get(_get(chunk, "response"), "background") is True:
                self._background = response_id

    @property
    def responses(self) -> bool:
        """Whether these are OpenAI Responses events, which report their usage unasked (in the last)."""
        return self._responses

    @property
    def background_id(self) -> str | None:
        """The id of the background response (OpenAI Responses' ``background=True``) these events created, while
        no usage was seen: a stream ended (the connection dropped) before the response finished, which runs on and is
        fetched finished later (``responses.retrieve``)."""
        return None if self._seen else self._background

    def result(self) -> Extracted | None:
        """What the stream (or the responses) cost in tokens, or ``None`` if no usage was seen."""
        if not self._seen:
            return None
        if self._closed:
            usage = requests_sum([*self._closed, self._current()] if self._open else self._closed)
        else:
            usage = self._current()
        return Extracted(self._model, self._provider, usage, None, self._tier)
