"""One recorded cost: ``CostEntry``, its ``CostCategory`` and its read-only ``tags``."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from . import _state
from ._frozen_map import FrozenMap
from ._money import to_amount, to_utc
from ._time import EPOCH
from ._usage import Usage

__all__ = [
    "TO_US_TIER",
    "US_TIERS",
    "CostCategory",
    "CostEntry",
    "FrozenTags",
    "check_text",
    "entry_id",
    "intern_tags",
    "new_entry_id",
    "to_category",
    "to_latency",
    "to_service_tier",
    "to_tags",
    "trusted_entry",
]

#: The service tiers an entry may be billed at (``None``: standard).
SERVICE_TIERS = ("batch", "flex", "priority", "fast")
#: Anthropic's US-only inference (``usage.inference_geo == "us"``, "data residency"): a request of Claude Opus 4.6 or
#: a later model is billed at 1.1 times every token price, whatever its tier, so it is a tier of its own (``"us"``)
#: or a suffix of one (``"batch+us"``), each to the tier it modifies (``None``: standard).
US_TIERS: dict[str, str | None] = {"us": None, **{f"{tier}+us": tier for tier in SERVICE_TIERS}}
#: A tier (``None``: standard), US-only or not, to that tier run in the US only (``US_TIERS`` backwards).
TO_US_TIER: dict[str | None, str] = {**{base: us for us, base in US_TIERS.items()}, **{us: us for us in US_TIERS}}


class CostCategory(str, enum.Enum):
    """What kind of spend an entry is. Plain strings with these values are accepted wherever a category is.

    Example::

        tracker.record(amount="0.40", category=CostCategory.COMPUTE, resource="gpu-worker")
        tracker.record(amount="0.02", category="storage")
    """

    LLM_INFERENCE = "llm_inference"
    LLM_EMBEDDING = "llm_embedding"
    COMPUTE = "compute"
    STORAGE = "storage"
    NETWORK = "network"
    API_CALLS = "api_calls"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


_CATEGORIES = {c.value: c for c in CostCategory}


def to_category(value: object, field: str = "category") -> CostCategory:
    """Return ``value`` as a ``CostCategory``; raise ``ValueError`` naming the value otherwise."""
    if isinstance(value, CostCategory):
        return value
    if isinstance(value, str):
        found = _CATEGORIES.get(value.lower())
        if found is not None:
            return found
    raise ValueError(f"{field} must be one of {', '.join(_CATEGORIES)}; got {value!r}")


def check_text(value: str, field: str) -> str:
    """Return ``value`` if it can be stored as UTF-8 text; a lone surrogate (``"\\ud800"``, which JSON escapes and
    some decoders let through) raises ``ValueError`` naming the field, since no store could write it.

    >>> check_text("gpt-4o", "model")
    'gpt-4o'
    """
    if not value.isascii():  # the common case costs one C-level scan
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{field} must be valid Unicode text (no lone surrogates), got {value!r}") from None
    return value


class FrozenTags(FrozenMap[str]):
    """A read-only, hashable mapping of tag key to tag value (both ``str``).

    Example::

        >>> t = FrozenTags({"team": "search"})
        >>> t["team"], dict(t)
        ('search', {'team': 'search'})
    """

    __slots__ = ()


EMPTY_TAGS = FrozenTags()

_INTERNED_TAGS = 4096  # distinct maps remembered; past that the table starts afresh (bounded memory)
_interned_tags = _state.interned_tags


def intern_tags(data: Mapping[str, str]) -> FrozenTags:
    """One shared ``FrozenTags`` per distinct map of validated ``str`` keys and values (``{}``: ``EMPTY_TAGS``).

    Entries recorded with equal tags then hold the same object: memory keeps one copy, and stores group entries
    by tag map through ``id()``, which is far cheaper than hashing and comparing maps.
    """
    if not data:
        return EMPTY_TAGS
    key = tuple(data.items())
    found = _interned_tags.get(key)
    if found is None:
        if len(_interned_tags) >= _INTERNED_TAGS:
            _interned_tags.clear()
        found = _interned_tags[key] = FrozenTags(data)
    return found


def to_tags(value: object, field: str = "tags") -> FrozenTags:
    """Validate a tag mapping: keys and values must be strings, keys non-empty."""
    if isinstance(value, FrozenTags):
        return value
    if value is None:
        return EMPTY_TAGS
    if not isinstance(value, Mapping):
        raise TypeError(f"{field} must be a mapping of str to str, got {value!r}")
    for key, val in value.items():
        if not isinstance(key, str):
            raise TypeError(f"{field} keys must be str, got key {key!r}")
        if not key:
            raise ValueError(f"{field} keys must not be empty, got {dict(value)!r}")
        if not isinstance(val, str):
            raise TypeError(f"{field}[{key!r}] must be a str, got {val!r}")
        check_text(key, f"{field} key")
        check_text(val, f"{field}[{key!r}]")
    return intern_tags(value)


# Entry ids: 14 hex digits of microseconds since the epoch (so ids sort by time), 6 of a per-process random
# prefix and 6 of a per-process counter (so they are unique across processes without coordination; both in _state).


_ID_MICROS_LIMIT = 1 << 56  # microseconds that fit the id's 14 hex digits (until the year 4253)


def new_entry_id(timestamp: datetime) -> str:
    """A unique id that sorts by ``timestamp`` (an aware datetime)."""
    since = timestamp - EPOCH
    return entry_id((since.days * 86400 + since.seconds) * 1_000_000 + since.microseconds)


def entry_id(micros: int) -> str:
    """``new_entry_id`` of the timestamp ``micros`` microseconds after the epoch (for callers that have them)."""
    seq = next(_state.entry_seq) & 0xFFFFFF
    if 0 < micros < _ID_MICROS_LIMIT:
        # The three parts as one 104-bit number written as 13 bytes of hex: the same 26 digits as the format below,
        # in half its time (this runs on every tracked call).
        return ((micros << 48) | (_state.process_tag << 24) | seq).to_bytes(13, "big").hex()
    return "%014x%06x%06x" % (micros if micros > 0 else 0, _state.process_tag, seq)  # noqa: UP031


def _category(value: object) -> CostCategory:
    return to_category(value)


def _optional_str(field: str) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f"{field} must be a str or None, got {value!r}")
            check_text(value, field)

    return check


def to_latency(value: object) -> float | None:
    """Validate ``latency_ms``: ``None`` or a finite, non-negative number (as a float)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise TypeError(f"latency_ms must be a number or None, got {value!r}")
    try:
        result = float(value)
    except OverflowError:  # an int beyond any float (a Decimal that large becomes inf): out of range, as inf is
        result = math.inf
    if not math.isfinite(result) or result < 0:
        raise ValueError(f"latency_ms must be a finite, non-negative number, got {value!r}")
    return result


def to_service_tier(value: object, field: str = "service_tier") -> str | None:
    """Validate a service tier: ``None`` (standard), ``"batch"``, ``"flex"``, ``"priority"`` or ``"fast"``, or
    Anthropic's US-only inference: ``"us"`` (standard tier) or a tier with ``"+us"`` (``"batch+us"``).

    >>> to_service_tier("flex"), to_service_tier(None), to_service_tier("us")
    ('flex', None, 'us')
    """
    if value is None or value in SERVICE_TIERS or (type(value) is str and value in US_TIERS):
        return value  # type: ignore[return-value]
    raise ValueError(
        f"{field} must be None (standard) or one of {', '.join(SERVICE_TIERS)}, or us or one of them with +us"
        f" (Anthropic's US-only inference); got {value!r}"
    )


def _usage(instance: object, attribute: attrs.Attribute[Usage], value: object) -> None:
    if not isinstance(value, Usage):
        raise TypeError(f"usage must be a llmcost.Usage, got {value!r}")


def _str(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str, got {value!r}")
    check_text(value, attribute.name)


@attrs.frozen
class CostEntry:
    """One recorded cost. Made by ``CostTracker.record`` and ``@track_cost``; read from stores.

    ``pricing`` says where ``amount`` came from: ``catalog@<genai-prices version>``, ``user`` (a registered
    price), ``given`` (the caller passed ``amount``) or ``unpriced`` (unknown model under
    ``on_unknown_model="warn"``: amount 0, never a silent $0). A rule or correction applied to the price says so:
    ``catalog@0.2.3+batch-rule`` (the provider's published Batch discount, where the catalog has no batch price
    for that date), ``correction:<id>`` (one of llmcost's cited corrections of catalog errors).

    ``service_tier`` is ``None`` (standard) or ``"batch"``, ``"flex"``, ``"priority"`` or ``"fast"`` (Anthropic's fast
    mode); Anthropic's US-only inference (``usage.inference_geo == "us"``) is ``"us"``, or the tier with ``"+us"``
    (``"batch+us"``), priced at 1.1 times the tier's token prices for the models it applies to
    (``pricing``: ``...+us-inference``).

    ``model`` is the id as the provider returned it (``gpt-4o-mini-2024-07-18``); ``canonical_model`` is the
    catalog's id of the model that priced the entry (``gpt-4o-mini``, when the catalog treats both as one model), or
    the ``model`` of a registered price; ``None`` when the entry is unpriced or its amount was given. Filters by
    ``model=`` match either id, and groupings by model use the canonical id where there is one.

    Example::

        entry = tracker.record(model="gpt-4o", input_tokens=1000, output_tokens=200, tags={"team": "search"})
        print(entry.amount, entry.pricing, entry.tags["team"])
    """

    id: str = attrs.field(validator=_str)
    timestamp: datetime = attrs.field(converter=to_utc)
    amount: Decimal = attrs.field(converter=to_amount)
    currency: str = attrs.field(default="USD", validator=_str)
    category: CostCategory = attrs.field(default=CostCategory.LLM_INFERENCE, converter=_category)
    resource: str | None = attrs.field(default=None, validator=_optional_str("resource"))
    description: str = attrs.field(default="", validator=_str)
    model: str | None = attrs.field(default=None, validator=_optional_str("model"))
    provider: str | None = attrs.field(default=None, validator=_optional_str("provider"))
    usage: Usage = attrs.field(factory=Usage, validator=_usage)
    latency_ms: float | None = attrs.field(default=None, converter=to_latency)
    tags: FrozenTags = attrs.field(default=EMPTY_TAGS, converter=to_tags)
    pricing: str = attrs.field(default="given", validator=_str)
    service_tier: str | None = attrs.field(default=None, converter=to_service_tier)
    canonical_model: str | None = attrs.field(default=None, validator=_optional_str("canonical_model"))

    @classmethod
    def _trusted(
        cls,
        id: str,
        timestamp: datetime,
        amount: Decimal,
        category: CostCategory,
        resource: str | None,
        description: str,
        model: str | None,
        provider: str | None,
        usage: Usage,
        latency_ms: float | None,
        tags: FrozenTags,
        pricing: str,
        currency: str = "USD",
        service_tier: str | None = None,
        canonical_model: str | None = None,
    ) -> CostEntry:
        """Build an entry from values already validated and converted: the tracker's hot path, and stores reading
        back rows they wrote. ``currency`` comes last so that the tracker, which records USD, need not pass it."""
        entry = _new(cls)
        _set_id(entry, id)
        _set_timestamp(entry, timestamp)
        _set_amount(entry, amount)
        _set_currency(entry, currency)
        _set_category(entry, category)
        _set_resource(entry, resource)
        _set_description(entry, description)
        _set_model(entry, model)
        _set_provider(entry, provider)
        _set_usage(entry, usage)
        _set_latency_ms(entry, latency_ms)
        _set_tags(entry, tags)
        _set_pricing(entry, pricing)
        _set_service_tier(entry, service_tier)
        _set_canonical_model(entry, canonical_model)
        return entry


#: ``CostEntry._trusted`` for the tracker's hot path (a named seam: other modules do not reach into the class).
trusted_entry = CostEntry._trusted

# The slots' own setters, which a frozen class's __setattr__ does not stand in front of: calling them directly is
# a third faster than object.__setattr__, and ``_trusted`` runs on every tracked call.
_new = object.__new__
_setters = {a.name: vars(CostEntry)[a.name].__set__ for a in attrs.fields(CostEntry)}
_set_id = _setters["id"]
_set_timestamp = _setters["timestamp"]
_set_amount = _setters["amount"]
_set_currency = _setters["currency"]
_set_category = _setters["category"]
_set_resource = _setters["resource"]
_set_description = _setters["description"]
_set_model = _setters["model"]
_set_provider = _setters["provider"]
_set_usage = _setters["usage"]
_set_latency_ms = _setters["latency_ms"]
_set_tags = _setters["tags"]
_set_pricing = _setters["pricing"]
_set_service_tier = _setters["service_tier"]
_set_canonical_model = _setters["canonical_model"]
