"""The genai-prices catalog: finding a model in it and converting its prices to ``ModelPrice`` (dated prices on
demand). genai-prices is imported on first use, not with llmcost; a fixed catalog price is read from the pre-built
price table (``_price_table``, built here by ``build_price_table``) while genai-prices is not imported."""

from __future__ import annotations

import functools
import json
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

from . import _state
from ._corrections import Correction, corrections_for
from ._entry import US_TIERS
from ._model_price import (
    AttoPricer,
    ModelPrice,
    Pricer,
    PriceTier,
    UsagePricer,
    atto_pricer,
    counts_pricer,
    fits_money_scale,
    same_rates_up_to,
    usage_pricer,
)
from ._money import ZERO
from ._price_table import TABLE_FORMAT, TABLE_PATH, genai_prices_files, table_price, table_version
from ._time import EPOCH
from ._usage import MAX_COUNT

if TYPE_CHECKING:
    from genai_prices import types as gp

__all__ = [
    "DAY_MICROS",
    "Quote",
    "Resolved",
    "build_price_table",
    "catalog_ids",
    "catalog_models",
    "catalog_table",
    "catalog_version",
    "find_in_catalog",
    "provider_for_url",
    "quoted",
    "tier_rule",
    "us_inference_applies",
    "write_price_table",
]


def catalog_version() -> str:
    """The installed genai-prices version, as used in ``CostEntry.pricing`` (``catalog@<version>``)."""
    found = _state.catalog_version
    if found is None:
        found = table_version()  # the pre-built table's, checked to be the installed one: no metadata import
        if found is None:
            from importlib.metadata import version

            found = version("genai-prices")
        _state.set_catalog_version(found)
    return found


def _snapshot() -> Any:
    from genai_prices import data_snapshot

    return data_snapshot.get_snapshot()


_KEYS = {
    "input_per_mtok": ("input_mtok", "input_text_mtok"),
    "output_per_mtok": ("output_mtok", "output_text_mtok"),
    "cache_read_per_mtok": ("cache_read_mtok", "cache_text_read_mtok"),
    "cache_write_per_mtok": ("cache_write_mtok", "cache_write_5m_mtok", "cache_text_write_mtok"),
    "reasoning_per_mtok": ("output_reasoning_mtok", "output_text_reasoning_mtok"),
}


def _convert(model: gp.ModelInfo, provider: gp.Provider, prices: gp.ModelPrice) -> ModelPrice:
    """A genai-prices ``ModelPrice`` as ours: flat base prices, per-unit prices, and cliff tiers."""
    from genai_prices.types import TieredPrices

    base: dict[str, Decimal | None] = {}
    tiered: dict[str, Any] = {}
    used = {"requests_kcount"}
    for ours, keys in _KEYS.items():
        value = None
        for key in keys:
            value = prices.__dict__.get(key)
            if value is not None:
                used.add(key)
                break
        if isinstance(value, TieredPrices):
            tiered[ours] = value
            value = value.base
        base[ours] = value
    units: dict[str, Decimal] = {}
    for key, value in prices.__dict__.items():
        if value is None or key in used or key.startswith("_"):
            continue
        if isinstance(value, TieredPrices):
            tiered[key] = value
            value = value.base
        units[key] = value
    requests = prices.__dict__.get("requests_kcount")
    starts = sorted({t.start for tp in tiered.values() for t in tp.tiers})
    tiers = []
    for start in starts:
        fields: dict[str, Decimal | None] = {}
        tier_units: dict[str, Decimal] = {}
        for ours, tp in tiered.items():
            applicable = None
            for t in tp.tiers:
                if t.start <= start:
                    applicable = t.price
            if ours in _KEYS:
                fields[ours] = applicable
            elif applicable is not None:
                tier_units[ours] = applicable
        tiers.append(PriceTier(start=start, unit_prices=tier_units, **fields))
    return ModelPrice(
        model=model.id,
        provider=provider.id,
        input_per_mtok=base["input_per_mtok"] if base["input_per_mtok"] is not None else ZERO,
        output_per_mtok=base["output_per_mtok"] if base["output_per_mtok"] is not None else ZERO,
        cache_read_per_mtok=base["cache_read_per_mtok"],
        cache_write_per_mtok=base["cache_write_per_mtok"],
        reasoning_per_mtok=base["reasoning_per_mtok"],
        request_price=None if requests is None else Decimal(requests) / 1000,
        context_window=model.context_window,
        tiers=tiers,
        unit_prices=units,
    )


# What a service tier is called in genai-prices' price variants (``price_context``).
_CONTEXTS: dict[str, dict[str, str]] = {
    "batch": {"processing": "batch"},
    "flex": {"service_tier": "flex"},
    "priority": {"service_tier": "priority"},
    # Anthropic's fast mode is a speed in genai-prices (``usage.speed == "fast"`` in the response); OpenAI's "fast"
    # service tier (what its responses call priority) is matched too, so that ``cost_of(..., service_tier="fast")``
    # prices either maker's fast calls. No model has both variants.
    "fast": {"speed": "fast", "service_tier": "fast"},
}
_HALF = Decimal("0.5")
#: Microseconds in a day: ``micros // DAY_MICROS`` is the UTC day number ``quote_at`` keeps quotes by.
DAY_MICROS = 86_400_000_000


def _scaled(price: ModelPrice, factor: Decimal) -> ModelPrice:
    """Every token price of ``price`` (its long-context tiers' too) times ``factor``; per-request and per-search
    fees kept."""

    def scale(value: Decimal | None) -> Any:
        return None if value is None else value * factor

    def scale_units(units: Any) -> dict[str, Decimal]:
        return {k: v * factor if k.endswith("_mtok") else v for k, v in units.items()}

    fields = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok", "reasoning_per_mtok")
    tiers = [
        attrs.evolve(t, unit_prices=scale_units(t.unit_prices), **{f: scale(getattr(t, f)) for f in fields})
        for t in price.tiers
    ]
    return attrs.evolve(
        price, tiers=tiers, unit_prices=scale_units(price.unit_prices), **{f: scale(getattr(price, f)) for f in fields}
    )


def _halved(price: ModelPrice) -> ModelPrice:
    """Every token price halved (per-request and per-search fees kept): the providers' published Batch rule.

    Anthropic: "The Batch API offers a 50% discount" on all token rates, cache included, web search not discounted
    (https://docs.claude.com/en/docs/build-with-claude/batch-processing#pricing); OpenAI: "50% cost discount"
    (https://platform.openai.com/docs/guides/batch), and Flex processing "at Batch API rates"
    (https://platform.openai.com/docs/guides/flex-processing); Google: batch at "50% of the standard cost"
    (https://ai.google.dev/gemini-api/docs/batch-mode).
    """
    return _scaled(price, _HALF)


#: Anthropic's US-only inference multiplier: "a 1.1x multiplier on all token pricing categories, including input
#: tokens, output tokens, cache writes, and cache reads" for Claude Opus 4.6 and newer models
#: (https://platform.claude.com/docs/en/about-claude/pricing, "Data residency pricing"; the parameter is
#: "supported on Claude Opus 4.6 and all subsequent models":
#: https://platform.claude.com/docs/en/build-with-claude/data-residency). It applies on top of the tier's prices
#: (fast mode, long context, batch), as the other modifiers stack.
_US_FACTOR = Decimal("1.1")
#: Claude ids with the family first and its version after (``claude-opus-4-6``, ``claude-sonnet-4-6-20260217``,
#: ``claude-opus-5``): the minor version is one or two digits, never a date (``claude-opus-4-20250514`` is 4.0).
_CLAUDE_VERSION = re.compile(r"claude-[a-z]+-(\d{1,2})(?:[-.](\d{1,2}))?(?!\d)")


def us_inference_applies(model: str) -> bool:
    """Whether Anthropic bills ``model``'s US-only inference at 1.1x (``_US_FACTOR``): Claude Opus 4.6 and the
    models after it, version 4.6 and later of any family (``claude-sonnet-4-6``, ``claude-opus-4-7``,
    ``claude-opus-5``), also under a provider's prefix (``anthropic/claude-opus-4-6``). Older Claude models (whose
    ids put the version first, ``claude-3-5-sonnet``, or are below 4.6) do not take the parameter.

    >>> us_inference_applies("claude-opus-4-6"), us_inference_applies("claude-opus-4-5-20251101")
    (True, False)
    """
    found = _CLAUDE_VERSION.search(model.lower())
    if found is None:
        return False
    major, minor = int(found[1]), int(found[2] or 0)
    return (major, minor) >= (4, 6)


def _us_quote(quote: Quote) -> Quote:
    """``quote`` for a request run in the US only (``us_inference_applies``): every token price 1.1 times, its
    baseline's too, labelled ``+us-inference``."""
    price, label = _scaled(quote.price, _US_FACTOR), quote.label + "+us-inference"
    if quote.baseline is None:
        return quoted(price, label)
    return quoted(price, label, _scaled(quote.baseline, _US_FACTOR), quote.baseline_label + "+us-inference")


class Quote(NamedTuple):
    """A price for one call and its ``pricing`` label; ``baseline``: the price without a correction (``None``
    when none applied), and its label, used when the correction does not change the amount. Made by ``quoted``."""

    price: ModelPrice
    label: str
    #: ``counts_pricer(price)`` where its amounts are as stores keep them (``Resolved.money_pricer``), else ``None``.
    money_pricer: Pricer | None
    #: ``usage_pricer(price)``: the money amount of a usage with units in integers, or ``None`` where
    #: ``money_cost`` must.
    units_pricer: UsagePricer
    baseline: ModelPrice | None = None
    baseline_label: str = ""
    #: Calls of at most this many input tokens are labelled ``plain_label`` whatever they cost: without a baseline
    #: every call (``MAX_COUNT``) is labelled ``label``; with one, a call its rates price as the baseline's
    #: (``same_rates_up_to``) is labelled ``baseline_label``, as ``priced`` labels it.
    same_up_to: int = MAX_COUNT
    plain_label: str = ""


def quoted(price: ModelPrice, label: str, baseline: ModelPrice | None = None, baseline_label: str = "") -> Quote:
    """The ``Quote`` of ``price`` labelled ``label``, corrected from ``baseline`` (labelled ``baseline_label``)."""
    money = counts_pricer(price) if fits_money_scale(price) else None
    if baseline is None:
        return Quote(price, label, money, usage_pricer(price), None, "", MAX_COUNT, label)
    same = same_rates_up_to(price, baseline)
    return Quote(price, label, money, usage_pricer(price), baseline, baseline_label, same, baseline_label)


#: Anthropic's fast mode on Claude Opus 4.6, which the catalog has no fast price for: "6x standard Opus rates", long
#: context included ($30 / $150 per 1M, $60 / $225 over 200K input tokens), other modifiers (caching, batch, data
#: residency) stacking on it (https://platform.claude.com/docs/en/build-with-claude/fast-mode, as it read while
#: Opus 4.6 offered it). The later models' fast prices are the catalog's (``{"speed": "fast"}`` variants).
_FAST_FACTORS = {"claude-opus-4-6": Decimal(6)}


def tier_rule(price: ModelPrice, label: str, tier: str) -> tuple[ModelPrice, str]:
    """``price`` at service ``tier`` by the providers' published rule, where no tier price is known: Batch and
    Flex at half the token prices; fast mode at Opus 4.6's six times (``_FAST_FACTORS``). Priority, and fast mode on
    other models, have no published rule, so the standard price (said in the label). Anthropic's US-only inference
    (``"us"``, ``"batch+us"``...): 1.1x the tier's token prices for the models it applies to
    (``us_inference_applies``)."""
    if tier in US_TIERS:  # Anthropic's US-only inference: the tier it modifies, then 1.1x where it applies
        plain = US_TIERS[tier]
        if plain is not None:
            price, label = tier_rule(price, label, plain)
        if us_inference_applies(price.model):
            return _scaled(price, _US_FACTOR), label + "+us-inference"
        return price, label
    if tier == "fast" and price.model in _FAST_FACTORS:
        return _scaled(price, _FAST_FACTORS[price.model]), f"{label}+fast-rule"
    if tier == "priority" or tier == "fast":
        return price, f"{label}+{tier}-at-standard"
    return _halved(price), f"{label}+{tier}-rule"


@attrs.define
class Resolved:
    """A resolved model id: a fixed price (``price``: the hot path), or the catalog entry's prices, converted on
    demand for the date, service tier and corrections in force."""

    label: str
    price: ModelPrice | None = None
    model: Any = None
    provider: Any = None
    corrections: tuple[Correction, ...] = ()
    quotes: dict[Any, Quote] = attrs.field(factory=dict)
    #: ``(provider id, model id)`` of a catalog price read from the pre-built table: ``model`` and ``provider``
    #: are looked up in the catalog only when a quote needs them (a service tier).
    entry: tuple[str, str] | None = None
    #: ``price``'s cost of five token counts (``counts_pricer``), for ``cost_of``'s fast path; ``None`` without one.
    pricer: Pricer | None = attrs.field(init=False, default=None)
    #: ``pricer`` where its amounts are already as stores keep them (``MONEY_SCALE`` places): ``priced``'s path.
    money_pricer: Pricer | None = attrs.field(init=False, default=None)
    #: ``usage_pricer(price)``: ``priced``'s path for a usage with units; ``None`` without a fixed price.
    units_pricer: UsagePricer | None = attrs.field(init=False, default=None)
    #: ``atto_pricer(price)``: ``priced``'s path for the five token counts, each amount also in 10**-18 units;
    #: ``None`` without a fixed price or where it has none.
    atto_pricer: AttoPricer | None = attrs.field(init=False, default=None)
    #: ``(UTC day number, quote)``: the standard quote of the last day asked for (``quote_at``); ``False`` once the
    #: prices are found to change within a day (a time-of-day price), so that no quote is kept by day. Read by
    #: ``priced`` before it calls ``quote_at`` (the tracker's path, where a call saved counts), never written there.
    day_quote: tuple[int, Quote] | bool | None = attrs.field(init=False, default=None)
    #: The standard quote when it holds at every time (a catalog price that never changes with corrections that
    #: have no dates, as Claude Sonnet 4's long-context one): ``priced`` takes it without asking which day it is.
    #: Set by ``quote_at``; ``None`` until then, and for prices that change.
    standing: Quote | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.price is not None:
            self.pricer = counts_pricer(self.price)
            self.money_pricer = self.pricer if fits_money_scale(self.price) else None
            self.units_pricer = usage_pricer(self.price)
            self.atto_pricer = atto_pricer(self.price)

    def catalog_model(self) -> str | None:
        """The id of the catalog model this resolves to (``gpt-4o`` for ``gpt-4o-2024-08-06``); ``None`` for a price
        that is no catalog entry's (a registered price, OpenRouter's free variants)."""
        if self.model is not None:
            return str(self.model.id)
        return None if self.entry is None else self.entry[1]

    def _load_entry(self) -> None:
        """The catalog objects of a price read from the pre-built table."""
        assert self.entry is not None
        provider_id, model_id = self.entry
        for prov in _snapshot().providers:
            if prov.id == provider_id:
                for info in prov.models:
                    if info.id == model_id:
                        self.provider, self.model = prov, info
                        return

    def _index(self, when: datetime) -> int:
        conditional = self.model.prices
        if not isinstance(conditional, list):
            return 0
        for i in range(len(conditional) - 1, -1, -1):
            constraint = conditional[i].constraint
            if constraint is None or constraint.active(when):
                return i
        return 0

    def _standard(self, index: int) -> ModelPrice:
        prices = self.model.prices
        return _convert(self.model, self.provider, prices[index].prices if isinstance(prices, list) else prices)

    def at(self, when: datetime) -> ModelPrice:
        """The price in force at ``when`` (corrections applied)."""
        return self.quote(when, None).price

    def quote(self, when: datetime, tier: str | None) -> Quote:
        """The price of a call at ``when`` in service ``tier`` (``None``: standard), with its label."""
        plain, us = tier, False
        if tier is not None and tier in US_TIERS:  # Anthropic's US-only inference: the tier it modifies, then 1.1x
            plain, us = US_TIERS[tier], True
        if self.model is None and self.entry is not None:
            self._load_entry()
        if self.model is None:  # a user's price
            assert self.price is not None
            return quoted(self.price, self.label) if tier is None else quoted(*tier_rule(self.price, self.label, tier))
        index = self._index(when)
        variants = self._variants(when, plain) if plain is not None else ()
        active = tuple(c for c in self.corrections if c.active(when)) if self.corrections else ()
        key = (index, tier, variants, active)
        found = self.quotes.get(key)
        if found is None:
            found = self._quote(when, index, plain, variants, active)
            if us and us_inference_applies(self.model.id):
                found = _us_quote(found)
            self.quotes[key] = found
        return found

    def quote_at(self, micros: int) -> Quote:
        """``quote(when, None)`` for ``when`` given as microseconds since the epoch (UTC): the tracker's path.

        The catalog's price changes start on a UTC date and corrections apply between UTC dates, so a day's quote
        holds all day: it is kept for the day last asked for, and ``when`` is made only on a new day. A model whose
        price changes with the time of day (off-peak prices) is quoted afresh each time.
        """
        day = micros // DAY_MICROS
        kept = self.day_quote
        if type(kept) is tuple and kept[0] == day:
            return kept[1]
        quote = self.quote(EPOCH + timedelta(microseconds=micros), None)
        if kept is None:
            kept = self.day_quote = self._changes_by_day()
            if self._never_changes():
                self.standing = quote
        if kept is not False:
            self.day_quote = (day, quote)
        return quote

    def _never_changes(self) -> bool:
        """Whether the standard quote is the same at every time: one catalog price (not a list of prices by date
        or time) and corrections without dates."""
        return (
            self.model is not None
            and not isinstance(self.model.prices, list)
            and all(c.since is None and c.until is None for c in self.corrections)
        )

    def change_days(self) -> tuple[date, ...]:
        """The UTC days on which the standard price may change, sorted: the start dates of the catalog's dated
        prices and of its tier variants, and the ``since``/``until`` of each correction (a price that changes
        and changes back has both days here). A fixed price has none; a time-of-day price changes within each
        day, which this does not list."""
        if self.model is None and self.entry is not None:
            self._load_entry()
        days: set[date] = set()
        if self.model is not None:
            prices = self.model.prices
            conditionals = [*(prices if isinstance(prices, list) else ()), *(self.model.price_variants or ())]
            for conditional in conditionals:
                start = getattr(conditional.constraint, "start_date", None)
                if isinstance(start, date):
                    days.add(start)
        for correction in self.corrections:
            days.update(d for d in (correction.since, correction.until) if d is not None)
        return tuple(sorted(days))

    def _changes_by_day(self) -> bool | None:
        """``None`` when each price change of the model starts on a date (a day's quote then holds all day), else
        ``False``."""
        prices = self.model.prices if self.model is not None else None
        if not isinstance(prices, list):
            return None
        for conditional in prices:
            constraint = conditional.constraint
            if constraint is not None and type(constraint).__name__ != "StartDateConstraint":
                return False  # a time-of-day price, or a kind not known here: quoted each time
        return None

    def _quote(
        self, when: datetime, index: int, tier: str | None, variants: tuple[int, ...], active: tuple[Correction, ...]
    ) -> Quote:
        base = self._standard(index)
        if tier is None:
            price, label = base, self.label
        elif variants:
            price, label = _convert(self.model, self.provider, self.model.get_prices(when, _CONTEXTS[tier])), self.label
        else:
            price, label = tier_rule(base, self.label, tier)
        if not active:
            return quoted(price, label)
        fixed = functools.reduce(lambda p, c: c.apply(p), active, price if tier is None or variants else base)
        if tier is not None and not variants:
            fixed = tier_rule(fixed, "", tier)[0]
        names = "+".join(f"correction:{c.id}" for c in active)
        return quoted(fixed, names + label[len(self.label) :], price, label)

    def _variants(self, when: datetime, tier: str) -> tuple[int, ...]:
        """The catalog's own price variants for ``tier`` in force at ``when`` (none: a published rule applies)."""
        variants = self.model.price_variants
        if not variants or not any(self.model is m for m in self.provider.models):
            return ()  # genai-prices ignores price_context for models borrowed from another provider
        context = _CONTEXTS[tier]
        return tuple(
            i
            for i, v in enumerate(variants)
            if (v.constraint is None or v.constraint.active(when))
            and all(context.get(k) == want for k, want in v.when.items())
            and any(p is not None for p in v.prices.__dict__.values())
        )


def catalog_ids() -> list[str]:
    """Every model id in the catalog."""
    return [m.id for p in _snapshot().providers for m in p.models]


def catalog_models() -> list[tuple[str, str, bool]]:
    """``(provider id, model id, deprecated)`` of every genai-prices catalog model, in catalog order.

    >>> ("openai", "gpt-4o", False) in catalog_models()
    True
    """
    return [(p.id, m.id, bool(m.deprecated)) for p in _snapshot().providers for m in p.models]


#: Providers that make their own models, preferred over resellers when an id matches several catalogs. (A
#: provider that lists other makers' models beside its own, as Bedrock, Cursor or Arcee do, is not one: its
#: listing of another maker's id would win over the resellers' by this.)
_MODEL_MAKERS = frozenset(
    {
        "openai",
        "anthropic",
        "google",
        "mistral",
        "deepseek",
        "x-ai",
        "cohere",
        "meta",
        "perplexity",
        "minimax",
        "moonshotai",
        "zai",
        "zhipuai",
        "voyageai",
        "elevenlabs",
    }
)
#: The reseller whose entry prices an id that only resellers list, before the others (then catalog order):
#: OpenRouter names models ``maker/model``, the form such ids come in, and bills the serving providers' own prices.
_FIRST_RESELLER = "openrouter"
_index: dict[str, Any] = _state.catalog_index


def _preference(provider: Any) -> int:
    """Where ``provider``'s listing of an id ranks when several list it: model makers, OpenRouter, the others."""
    return 0 if provider.id in _MODEL_MAKERS else 1 if provider.id == _FIRST_RESELLER else 2


def _by_id() -> dict[str, Any]:
    """Every catalog model id, lowercased, to its ``(provider, model)``: a model maker's own entry first, then
    OpenRouter's, then the first provider in catalog order that lists the id (so ``gpt-4o-mini`` is OpenAI's, not a
    reseller's)."""
    if not _index:
        table: dict[str, Any] = {}
        ordered = sorted(_snapshot().providers, key=_preference)  # stable: catalog order within each rank
        for prov in ordered:
            for info in prov.models:
                table.setdefault(info.id.lower(), (prov, info))
        _index.update(table)
    return _index


def _lookup(snapshot: Any, model: str, provider: str | None) -> tuple[Any, Any]:
    if provider is not None:
        try:
            return snapshot.find_provider_model(model, None, provider, None)  # type: ignore[no-any-return]
        except LookupError:
            return None, None
    # No provider: the model maker's entry, as the maker bills it. For "maker/model" (LiteLLM, OpenRouter, proxies),
    # the entry of the provider the prefix names (``_prefixed``), before any reseller's word-for-word listing of the
    # whole id. Else a maker's own listing of the id; then, for a family whose maker is known, the maker's catalog
    # by its own matching rules ("gemma-3-27b-it" is Google's gemma-3, though only Fireworks lists it word for
    # word); then genai-prices' own choice when it is a maker (a dated id such as "o3-2025-04-16" that only a
    # reseller lists word for word, or "claude-3-5-haiku", which Vertex lists but Anthropic claims); then whoever
    # lists the id, OpenRouter first ("global.anthropic.claude-…" is Bedrock's alone); then genai-prices' choice
    # whoever it is.
    prefixed = _prefixed(snapshot, model)
    if prefixed is not None:
        return prefixed
    bedrock = _BEDROCK.match(model)
    if bedrock is not None:  # a Bedrock id ("us.anthropic.claude-…-v1:0"), as Bedrock bills it (as its ARNs)
        prov, info = _lookup(snapshot, model, "aws")
        if info is None and model.lower() not in _by_id():
            # One that no entry lists or matches (a "ca." profile): its model, by the rules below.
            prov, info = _lookup(snapshot, bedrock["model"], None)
        if info is not None:
            return prov, info
    found = _by_id().get(model.lower())
    if found is not None and found[0].id in _MODEL_MAKERS and found[0].id == _family_maker(model, found[0].id):
        return found  # type: ignore[no-any-return]
    family = _family_maker(model, "")
    if family:
        try:
            return snapshot.find_provider_model(model, None, family, None)  # type: ignore[no-any-return]
        except LookupError:
            pass
    try:
        chosen = snapshot.find_provider_model(model, None, None, None)
    except LookupError:
        chosen = (None, None)
    if chosen[1] is not None and chosen[0].id in _MODEL_MAKERS:
        return chosen  # type: ignore[no-any-return]
    if found is not None:
        return found  # type: ignore[no-any-return]
    return chosen  # type: ignore[no-any-return]


#: A Bedrock model id: a model provider's name on Bedrock, then a dot (``anthropic.claude-haiku-4-5-20251001-v1:0``,
#: ``amazon.nova-pro-v1:0``), after a cross-region inference profile's prefix (``us.``, ``eu.``, ``apac.``, ``jp.``,
#: ``global.``...) or none. Without a provider these are Bedrock's (provider ``aws``): Vertex also lists Claude,
#: under ``google``, and its patterns match these ids too. ``model``: the model's own id.
_BEDROCK = re.compile(
    r"(?:[a-z]+(?:-gov)?\.)?(?:ai21|amazon|anthropic|cohere|deepseek|google|luma|meta|minimax|mistral|moonshotai"
    r"|nvidia|openai|qwen|stability|twelvelabs|writer|zai)\.(?P<model>[a-z0-9].*)",
    re.IGNORECASE,
)
#: An OpenRouter variant of a model (``:free``, ``:batch``, ``:thinking``...): a reseller's offer, priced as listed.
_VARIANT = re.compile(r":[a-z]+$")


def _prefixed(snapshot: Any, model: str) -> tuple[Any, Any] | None:
    """For ``head/tail``, where ``head`` names a provider (genai-prices' provider lookup, with its aliases:
    ``xai`` is ``x-ai``, ``mistralai`` is ``mistral``, ``bedrock`` is ``aws``), that provider's own entry: its
    listing of the whole id ("perplexity/sonar" is Perplexity's), else of ``tail``. ``None`` otherwise, and for
    OpenRouter's variants (``deepseek/deepseek-r1:free``), which only OpenRouter sells."""
    head, slash, tail = model.partition("/")
    if not slash or not head or not tail or _VARIANT.search(tail):
        return None
    for name in (model, tail):
        prov, info = _lookup(snapshot, name, head)
        if info is not None:
            return prov, info
    return None


#: Who makes a family of models, where a maker also resells another's (Vertex lists Claude under "google").
_FAMILIES = {
    "claude": "anthropic",
    "gemini": "google",
    "gemma": "google",
    "gpt": "openai",
    "o1": "openai",
    "phi-": "azure",  # Microsoft's Phi, listed by Microsoft's Azure and by resellers
}


def _family_maker(model: str, default: str) -> str:
    lowered = model.lower()
    for prefix, maker in _FAMILIES.items():
        if lowered.startswith(prefix):
            return maker
    return default


def find_in_catalog(model: str, provider: str | None) -> Resolved | None:
    """The catalog's prices for ``model`` (from ``provider`` when given), or ``None`` if the catalog lacks it.

    A catalog id is the model maker's entry; ``provider/model`` ids (LiteLLM, OpenRouter, proxies) are the entry of
    the provider the part before the slash names, before any reseller's listing of the whole id (with ``provider``
    given: that provider's listing first, then the prefix's, then the part after the slash at ``provider``, then
    the id as without a provider, so that a tracked response whose provider was guessed is priced as ``cost_of``
    prices its id); an
    OpenRouter ``:free`` id the catalog lacks is the model at $0 (OpenRouter's free variants).
    """
    row = table_price(model, provider)
    if row is not None:  # what the lookup below gives, kept in the pre-built table
        return Resolved(label=f"catalog@{catalog_version()}", price=_price_of_row(row), entry=(row[0], row[1]))
    snapshot = _snapshot()
    prov, info = _lookup(snapshot, model, provider)
    if info is None and "/" in model:
        # "openai/gpt-4o" (LiteLLM, OpenRouter, proxies) that the provider given does not list: the prefix's own
        # entry, as without a provider (``_prefixed``), then the part after the slash at the provider given.
        head, _, tail = model.partition("/")
        prov, info = _prefixed(snapshot, model) or (None, None)
        candidates: tuple[str | None, ...] = (head, provider) if provider not in (None, head) else (head,)
        if provider not in (None, head) and _VARIANT.search(tail):
            # An OpenRouter variant ("…:free") that the provider given lacks: priced as without a provider (below),
            # which finds OpenRouter's listing before the prefix's model without its variant.
            candidates = (provider,)
        for candidate in candidates:
            if info is not None:
                break
            prov, info = _lookup(snapshot, tail, candidate)
        if info is None and provider is not None:  # as without a provider ("qwen/qwen3-32b"), then the tail alone
            prov, info = _lookup(snapshot, model, None)
            if info is None:
                prov, info = _lookup(snapshot, tail, None)
    if info is None and provider is not None and "/" not in model:
        # Hosts list some models under their maker's prefix (Groq: "openai/gpt-oss-120b").
        host = next((p for p in snapshot.providers if p.id == provider), None)
        suffix = "/" + model.lower()
        for candidate in host.models if host is not None else ():
            if candidate.id.lower().endswith(suffix):
                prov, info = host, candidate
                break
    if info is None and provider is None:
        # Providers claim model ids by pattern, and some ids fall outside every pattern (text-embedding-3-small):
        # take the first provider whose catalog matches the id itself.
        first_party = sorted(snapshot.providers, key=_preference)  # stable: catalog order within each rank
        for candidate in first_party:
            found = candidate.find_model(model)
            if found is not None:
                prov, info = candidate, found
                break
    label = f"catalog@{catalog_version()}"
    if info is None and model.endswith(":free"):
        free = find_in_catalog(model[: -len(":free")], provider or "openrouter")
        if free is None:
            return None
        price = free.at(datetime.now(timezone.utc))
        zero = ModelPrice(price.model, "openrouter", input_per_mtok=0, output_per_mtok=0)
        return Resolved(label=f"{label}+openrouter-free", price=zero)
    if info is None:
        return None
    corrections = corrections_for(prov.id, info.id)
    if isinstance(info.prices, list) or corrections:
        return Resolved(label=label, model=info, provider=prov, corrections=corrections)
    return Resolved(label=label, price=_convert(info, prov, info.prices), model=info, provider=prov)


def catalog_table(now: datetime) -> dict[str, ModelPrice]:
    """Every catalog model id with its price in force at ``now``: the model maker's entry where several providers
    list the id (as ``get_price`` and ``cost_of`` resolve it), corrections applied."""
    data: dict[str, ModelPrice] = {}
    label = f"catalog@{catalog_version()}"
    snapshot = _snapshot()
    for model_id, (_, listed) in _by_id().items():
        key = listed.id
        if key in data:
            continue
        prov, info = _lookup(snapshot, model_id, None)  # the entry get_price picks for this id
        corrections = corrections_for(prov.id, info.id)
        data[key] = Resolved(label, model=info, provider=prov, corrections=corrections).at(now)
    return data


def provider_for_url(url: str) -> str | None:
    """The genai-prices provider id of an API base URL (``https://api.groq.com/openai/v1``: ``groq``), or None."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    key = f"{parts.scheme}://{parts.netloc}{parts.path}"
    try:
        return _state.url_providers[key]
    except KeyError:
        pass
    try:
        found: str | None = _snapshot().find_provider(None, None, key).id
    except LookupError:
        found = None
    if len(_state.url_providers) < 1024:  # bounded: URLs come from responses
        _state.url_providers[key] = found
    return found


# -- the pre-built price table (``_price_table``) --------------------------------------------------------------------

_ROW_FIELDS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok", "reasoning_per_mtok")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)  # str() keeps a Decimal's digits and exponent exactly


def _row_of_price(price: ModelPrice, provider_id: str, model_id: str) -> list[Any]:
    tiers = [
        {
            "start": t.start,
            **{f: str(v) for f in _ROW_FIELDS if (v := getattr(t, f)) is not None},
            **({"unit_prices": {k: str(v) for k, v in t.unit_prices.items()}} if t.unit_prices else {}),
        }
        for t in price.tiers
    ]
    return [
        provider_id,
        model_id,
        price.provider,
        price.model,
        *(_text(getattr(price, f)) for f in _ROW_FIELDS),
        _text(price.request_price),
        price.context_window,
        tiers,
        {k: str(v) for k, v in price.unit_prices.items()},
    ]


def _price_of_row(row: list[Any]) -> ModelPrice:
    _, _, provider, model, *prices, request, context_window, tiers, units = row
    return ModelPrice(
        model,
        provider,
        request_price=request,
        context_window=context_window,
        tiers=tiers,
        unit_prices=units,
        **dict(zip(_ROW_FIELDS, prices, strict=True)),
    )


def _equals(clause: Any) -> list[str]:
    """The ids a model's match clause names word for word (``equals``, within ``or``)."""
    from genai_prices.types import ClauseEquals, ClauseOr

    if isinstance(clause, ClauseEquals):
        return [clause.equals]
    if isinstance(clause, ClauseOr):
        return [name for part in clause.or_ for name in _equals(part)]
    return []


def build_price_table() -> dict[str, Any]:
    """The pre-built price table (``_price_table``) of the installed genai-prices: every catalog model id and every
    id its match names word for word, without a provider and with its provider, each that ``find_in_catalog``
    resolves to a fixed price, with that price; and genai-prices' unit registry."""
    from genai_prices.data_units import unit_data

    installed = genai_prices_files()
    if installed is None:
        raise RuntimeError("cannot tell the installed genai-prices version and data size to key the table by")
    label = f"catalog@{catalog_version()}"
    keys: dict[tuple[str, str | None], None] = {}
    for prov in _snapshot().providers:
        for info in prov.models:
            for name in (info.id, *_equals(info.match)):
                keys[(name, None)] = keys[(name, prov.id)] = None
    rows: list[list[Any]] = []
    row_index: dict[str, int] = {}
    models: dict[str, int] = {}
    for model, provider in keys:
        found = find_in_catalog(model, provider)
        if found is None or found.price is None or found.label != label or found.model is None:
            continue  # unknown, dated or corrected prices, OpenRouter's free variants: read from the catalog
        row = _row_of_price(found.price, found.provider.id, found.model.id)
        text = json.dumps(row)
        if text not in row_index:
            row_index[text] = len(rows)
            rows.append(row)
        models[f"{model}\t{provider or ''}"] = row_index[text]
    units = {k: [v.get("price_key", k), v["per"], v.get("dimensions", {})] for k, v in unit_data.items()}
    version, size = installed
    return {
        "format": TABLE_FORMAT,
        "genai_prices": version,
        "data_size": size,
        "units": units,
        "prices": rows,
        "models": models,
    }


def write_price_table(path: str = TABLE_PATH) -> None:
    """Write ``build_price_table()`` to ``path`` (the table that ships with llmcost, by default)."""
    with open(path, "w", encoding="utf-8") as file:
        json.dump(build_price_table(), file, separators=(",", ":"))
        file.write("\n")
