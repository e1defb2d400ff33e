"""The genai-prices catalog: finding a model in it and converting its prices to ``ModelPrice`` (dated prices on
demand). genai-prices is imported on first use, not with llmcost."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from . import _state
from ._model_price import ModelPrice, PriceTier
from ._money import ZERO

if TYPE_CHECKING:
    from genai_prices import types as gp

__all__ = ["Resolved", "catalog_ids", "catalog_models", "catalog_table", "catalog_version", "find_in_catalog"]


def catalog_version() -> str:
    """The installed genai-prices version, as used in ``CostEntry.pricing`` (``catalog@<version>``)."""
    found = _state.catalog_version
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
    """A genai-prices ``ModelPrice`` as ours: flat base prices plus cliff tiers."""
    from genai_prices.types import TieredPrices

    base: dict[str, Decimal | None] = {}
    tiered: dict[str, Any] = {}
    for ours, keys in _KEYS.items():
        value = None
        for key in keys:
            value = prices.__dict__.get(key)
            if value is not None:
                break
        if isinstance(value, TieredPrices):
            tiered[ours] = value
            value = value.base
        base[ours] = value
    requests = prices.__dict__.get("requests_kcount")
    starts = sorted({t.start for tp in tiered.values() for t in tp.tiers})
    tiers = []
    for start in starts:
        fields: dict[str, Decimal | None] = {}
        for ours, tp in tiered.items():
            applicable = None
            for t in tp.tiers:
                if t.start <= start:
                    applicable = t.price
            fields[ours] = applicable
        tiers.append(PriceTier(start=start, **fields))
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
    )


@attrs.define
class Resolved:
    """A resolved model id: a fixed price, or the catalog entry's dated prices converted on demand."""

    label: str
    price: ModelPrice | None = None
    model: Any = None
    provider: Any = None
    by_index: dict[int, ModelPrice] = attrs.field(factory=dict)

    def at(self, when: datetime) -> ModelPrice:
        """The price in force at ``when``."""
        if self.price is not None:
            return self.price
        conditional = self.model.prices
        index = 0
        for i in range(len(conditional) - 1, -1, -1):
            constraint = conditional[i].constraint
            if constraint is None or constraint.active(when):
                index = i
                break
        price = self.by_index.get(index)
        if price is None:
            price = self.by_index[index] = _convert(self.model, self.provider, conditional[index].prices)
        return price


def catalog_ids() -> list[str]:
    """Every model id in the catalog."""
    return [m.id for p in _snapshot().providers for m in p.models]


def catalog_models() -> list[tuple[str, str, bool]]:
    """``(provider id, model id, deprecated)`` of every genai-prices catalog model, in catalog order.

    >>> ("openai", "gpt-4o", False) in catalog_models()
    True
    """
    return [(p.id, m.id, bool(m.deprecated)) for p in _snapshot().providers for m in p.models]


#: Providers that make their own models, preferred over resellers when an id matches several catalogs.
_MODEL_MAKERS = frozenset({"openai", "anthropic", "google", "mistral", "deepseek", "x-ai", "cohere", "meta"})


def find_in_catalog(model: str, provider: str | None) -> Resolved | None:
    """The catalog's prices for ``model`` (from ``provider`` when given), or ``None`` if the catalog lacks it."""
    snapshot = _snapshot()
    try:
        prov, info = snapshot.find_provider_model(model, None, provider, None)
    except LookupError:
        prov = info = None
    if info is None and "/" in model and provider is None:
        # "openai/gpt-4o" (LiteLLM, OpenRouter style): try the part before the slash as the provider.
        head, _, tail = model.partition("/")
        try:
            prov, info = snapshot.find_provider_model(tail, None, head, None)
        except LookupError:
            prov = info = None
    if info is None and provider is None:
        # Providers claim model ids by pattern, and some ids fall outside every pattern (text-embedding-3-small):
        # take the first provider whose catalog matches the id itself.
        first_party = sorted(snapshot.providers, key=lambda p: p.id not in _MODEL_MAKERS)  # stable: catalog order
        for candidate in first_party:
            found = candidate.find_model(model)
            if found is not None:
                prov, info = candidate, found
                break
    if info is None:
        return None
    label = f"catalog@{catalog_version()}"
    if isinstance(info.prices, list):
        return Resolved(label=label, model=info, provider=prov)
    return Resolved(label=label, price=_convert(info, prov, info.prices))


def catalog_table(now: datetime) -> dict[str, ModelPrice]:
    """Every catalog model id with its price in force at ``now`` (an id several providers list: the first)."""
    data: dict[str, ModelPrice] = {}
    label = f"catalog@{catalog_version()}"
    for prov in _snapshot().providers:
        for info in prov.models:
            if info.id in data:
                continue
            resolved = (
                Resolved(label, model=info, provider=prov)
                if isinstance(info.prices, list)
                else Resolved(label, price=_convert(info, prov, info.prices))
            )
            data[info.id] = resolved.at(now)
    return data
