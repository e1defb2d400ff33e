"""Prices: the genai-prices catalog, user overrides, and ``ModelPrice.cost``.

A model id is resolved once per ``(model, provider)`` and the converted price cached, so pricing a call is a dict
lookup plus a few Decimal multiplications. genai-prices is imported on first use, not with llmcost.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from . import _state
from ._errors import PricingError, UnknownModelError
from ._money import MONEY_SCALE, ZERO, to_money, to_utc
from ._usage import Usage

if TYPE_CHECKING:
    from genai_prices import types as gp

__all__ = [
    "MODEL_PRICING",
    "ModelPrice",
    "PriceTier",
    "catalog_version",
    "cost_of",
    "get_price",
    "load_prices",
    "price_for",
    "priced",
    "register_price",
    "registered_prices",
]


def _price(field: str, optional: bool = False) -> Any:
    def convert(value: object) -> Decimal | None:
        if value is None and optional:
            return None
        dec = to_money(value, field)
        if dec < 0:
            raise ValueError(f"{field} must not be negative, got {value!r}")
        return dec

    return convert


def _nonempty(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name} must be a non-empty str, got {value!r}")


def _provider(instance: object, attribute: attrs.Attribute[str | None], value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"provider must be a str or None, got {value!r}")


def _context_window(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"context_window must be a positive int or None, got {value!r}")
    return value


@attrs.frozen
class PriceTier:
    """Prices that apply to a whole call once its input tokens exceed ``start`` (the providers' "cliff" tiers,
    e.g. Gemini and Claude long-context prices). ``None`` means the base price of that part still applies.

    Example::

        PriceTier(start=200_000, input_per_mtok="6", output_per_mtok="22.5")
    """

    start: int
    input_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("input_per_mtok", True))  # type: ignore[misc]  # a converter factory
    output_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("output_per_mtok", True))  # type: ignore[misc]  # a converter factory
    cache_read_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("cache_read_per_mtok", True))  # type: ignore[misc]  # a converter factory
    cache_write_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("cache_write_per_mtok", True))  # type: ignore[misc]  # a converter factory
    reasoning_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("reasoning_per_mtok", True))  # type: ignore[misc]  # a converter factory


def _tiers(value: object) -> tuple[PriceTier, ...]:
    if not value:
        return ()
    tiers = []
    for item in value:  # type: ignore[attr-defined]
        tiers.append(item if isinstance(item, PriceTier) else PriceTier(**item))
    return tuple(sorted(tiers, key=lambda t: t.start))


_MTOK = -6  # prices are per million tokens: scale the product by 10**-6, exactly


def _places(value: Decimal) -> int:
    """Decimal places of ``value`` as written (``Decimal("2.50")``: 2)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


@attrs.frozen
class ModelPrice:
    """What a model costs, in USD per million tokens.

    ``cache_read_per_mtok``/``cache_write_per_mtok`` price the cached parts of the input (``None``: billed as
    ordinary input); ``reasoning_per_mtok`` prices reasoning tokens (``None``: billed as output); ``request_price``
    is a flat fee per call; ``tiers`` are long-context prices. ``cost(usage)`` returns the exact Decimal amount.

    Example::

        >>> p = ModelPrice("my-model", "acme", input_per_mtok="3", output_per_mtok="15", cache_read_per_mtok="0.3")
        >>> p.cost(Usage(input_tokens=10_000, cache_read_tokens=8_000, output_tokens=500))
        Decimal('0.0159')
    """

    model: str = attrs.field(validator=_nonempty)
    provider: str | None = attrs.field(validator=_provider)
    input_per_mtok: Decimal = attrs.field(converter=_price("input_per_mtok"))  # type: ignore[misc]  # a converter factory
    output_per_mtok: Decimal = attrs.field(converter=_price("output_per_mtok"))  # type: ignore[misc]  # a converter factory
    cache_read_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("cache_read_per_mtok", True))  # type: ignore[misc]  # a converter factory
    cache_write_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("cache_write_per_mtok", True))  # type: ignore[misc]  # a converter factory
    context_window: int | None = attrs.field(default=None, converter=_context_window)
    reasoning_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("reasoning_per_mtok", True))  # type: ignore[misc]  # a converter factory
    request_price: Decimal | None = attrs.field(default=None, converter=_price("request_price", True))  # type: ignore[misc]  # a converter factory
    tiers: tuple[PriceTier, ...] = attrs.field(default=(), converter=_tiers)
    # Whether every cost at these prices already fits MONEY_SCALE places (no per-mtok price has more than
    # MONEY_SCALE - 6), so the tracker need not round amounts (a measurable part of each tracked call).
    _fits_money_scale: bool = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        per_mtok = [
            self.input_per_mtok,
            self.output_per_mtok,
            self.cache_read_per_mtok,
            self.cache_write_per_mtok,
            self.reasoning_per_mtok,
        ]
        for tier in self.tiers:
            per_mtok += [
                tier.input_per_mtok,
                tier.output_per_mtok,
                tier.cache_read_per_mtok,
                tier.cache_write_per_mtok,
                tier.reasoning_per_mtok,
            ]
        fits = all(_places(p) <= MONEY_SCALE + _MTOK for p in per_mtok if p is not None)
        fits = fits and (self.request_price is None or _places(self.request_price) <= MONEY_SCALE)
        object.__setattr__(self, "_fits_money_scale", fits)

    def cost(self, usage: Usage) -> Decimal:
        """The exact cost of ``usage`` at these prices, in USD."""
        inp = self.input_per_mtok
        out = self.output_per_mtok
        cr = self.cache_read_per_mtok
        cw = self.cache_write_per_mtok
        rs = self.reasoning_per_mtok
        if self.tiers:
            for tier in reversed(self.tiers):
                if usage.input_tokens > tier.start:
                    inp = tier.input_per_mtok if tier.input_per_mtok is not None else inp
                    out = tier.output_per_mtok if tier.output_per_mtok is not None else out
                    cr = tier.cache_read_per_mtok if tier.cache_read_per_mtok is not None else cr
                    cw = tier.cache_write_per_mtok if tier.cache_write_per_mtok is not None else cw
                    rs = tier.reasoning_per_mtok if tier.reasoning_per_mtok is not None else rs
                    break
        plain_in = usage.input_tokens
        total = ZERO
        if usage.cache_read_tokens and cr is not None:
            plain_in -= usage.cache_read_tokens
            total += cr * usage.cache_read_tokens
        if usage.cache_write_tokens and cw is not None:
            plain_in -= usage.cache_write_tokens
            total += cw * usage.cache_write_tokens
        plain_out = usage.output_tokens
        if usage.reasoning_tokens and rs is not None:
            plain_out -= usage.reasoning_tokens
            total += rs * usage.reasoning_tokens
        if plain_in:
            total += inp * plain_in
        if plain_out:
            total += out * plain_out
        total = total.scaleb(_MTOK)
        if self.request_price is not None:
            total += self.request_price
        return _tidy(total)


def _tidy(amount: Decimal) -> Decimal:
    """Drop trailing zeros (``3.5000000`` -> ``3.5``) without turning ``100`` into ``1E+2``."""
    if amount == amount.to_integral_value():
        return amount.quantize(_ONE)
    return amount.normalize()


_ONE = Decimal(1)


# ---------------------------------------------------------------------------------------------------------------
# The catalog (genai-prices), converted lazily. The registry and the caches are process state (``_state``).

_lock = _state.prices_lock
_user_prices: dict[tuple[str | None, str], ModelPrice] = _state.user_prices
_resolved: dict[tuple[str, str | None], _Resolved] = _state.resolved_prices


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
class _Resolved:
    """A resolved model id: a fixed price, or the catalog entry's dated prices converted on demand."""

    label: str
    price: ModelPrice | None = None
    model: Any = None
    provider: Any = None
    by_index: dict[int, ModelPrice] = attrs.field(factory=dict)

    def at(self, when: datetime) -> ModelPrice:
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


def _catalog_ids() -> list[str]:
    return [m.id for p in _snapshot().providers for m in p.models]


#: Providers that make their own models, preferred over resellers when an id matches several catalogs.
_MODEL_MAKERS = frozenset({"openai", "anthropic", "google", "mistral", "deepseek", "x-ai", "cohere", "meta"})


def _resolve(model: str, provider: str | None) -> _Resolved:
    lowered = model.lower()
    user = _user_prices.get((provider.lower() if provider else None, lowered))
    if user is None and provider is None:
        user = _user_prices.get((None, lowered))
    if user is None and provider is not None:
        user = _user_prices.get((None, lowered))
    if user is not None:
        return _Resolved(label="user", price=user)
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
        candidates = list(dict.fromkeys([*_catalog_ids(), *(m for _, m in _user_prices)]))
        close = difflib.get_close_matches(lowered, candidates, n=5, cutoff=0.6)
        raise UnknownModelError(model, close, provider)
    label = f"catalog@{catalog_version()}"
    if isinstance(info.prices, list):
        return _Resolved(label=label, model=info, provider=prov)
    return _Resolved(label=label, price=_convert(info, prov, info.prices))


def price_for(model: str, provider: str | None = None, at: datetime | None = None) -> tuple[ModelPrice, str]:
    """The price of ``model`` in force at ``at`` and where it came from (``user`` or ``catalog@<version>``).

    The hot path of pricing: after the first call for a ``(model, provider)`` pair it is a dict lookup.
    """
    key = (model, provider)
    resolved = _resolved.get(key)
    if resolved is None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty str, got {model!r}")
        with _lock:
            resolved = _resolved.get(key)
            if resolved is None:
                resolved = _resolved[key] = _resolve(model, provider)
    if resolved.price is not None:
        return resolved.price, resolved.label
    when = datetime.now(timezone.utc) if at is None else to_utc(at, "at")
    return resolved.at(when), resolved.label


def priced(model: str, provider: str | None, usage: Usage, at: datetime) -> tuple[Decimal, str, str | None]:
    """What ``usage`` of ``model`` cost at ``at``, rounded as every store keeps amounts (``MONEY_SCALE`` places,
    usually already so), where the price came from, and the price's provider (the tracker's hot path).

    Raises ``UnknownModelError`` like ``price_for``.
    """
    price, label = price_for(model, provider, at)
    amount = price.cost(usage)
    return (amount if price._fits_money_scale else to_money(amount)), label, price.provider


def get_price(model: str, provider: str | None = None, *, at: datetime | None = None) -> ModelPrice:
    """The price of ``model`` (optionally from ``provider``) in force at ``at`` (default: now).

    Dated and aliased ids resolve to their catalog model (``gpt-4o-2024-08-06``, ``claude-3-5-sonnet-20241022``);
    prices registered with ``register_price`` or ``load_prices`` win over the catalog. An unknown model raises
    ``UnknownModelError`` naming the closest known ids.

    Example::

        >>> get_price("gpt-4o-2024-08-06").input_per_mtok
        Decimal('2.5')
    """
    return price_for(model, provider, at)[0]


def cost_of(
    model: str,
    usage: Usage | None = None,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    provider: str | None = None,
    at: datetime | None = None,
) -> Decimal:
    """The exact USD cost of a call to ``model`` with ``usage`` (or the token keywords), priced at ``at``.

    Example::

        >>> cost_of("gpt-4o", input_tokens=1_000_000, output_tokens=100_000)
        Decimal('3.5')
    """
    if usage is None:
        usage = Usage(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    elif not isinstance(usage, Usage):
        raise TypeError(f"usage must be a llmcost.Usage, got {usage!r}")
    return price_for(model, provider, at)[0].cost(usage)


def register_price(price: ModelPrice) -> None:
    """Use ``price`` for ``price.model`` (and ``price.provider``, when set) from now on, over the catalog.

    Example::

        register_price(ModelPrice("ft:gpt-4o-mini:acme", "openai", input_per_mtok="0.3", output_per_mtok="1.2"))
    """
    if not isinstance(price, ModelPrice):
        raise TypeError(f"price must be a llmcost.ModelPrice, got {price!r}")
    with _lock:
        _user_prices[(price.provider.lower() if price.provider else None, price.model.lower())] = price
        _user_prices.setdefault((None, price.model.lower()), price)
        _resolved.clear()
        _state.set_pricing_table(None)


def registered_prices() -> list[ModelPrice]:
    """Every price registered with ``register_price`` or ``load_prices``, each once."""
    with _lock:
        return list({id(p): p for p in _user_prices.values()}.values())


_FIELDS = {a.name for a in attrs.fields(ModelPrice)}


def load_prices(path: str | PathLike[str]) -> list[ModelPrice]:
    """Register every price in a TOML file (``[[price]]`` tables) or JSON file (a list of objects) and return them.

    Fields are those of ``ModelPrice``; money as strings keeps it exact. A bad file raises ``PricingError``
    naming the file, the entry and the field.

    Example (``prices.toml``)::

        [[price]]
        model = "acme-large"
        provider = "acme"
        input_per_mtok = "2.00"
        output_per_mtok = "8.00"
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PricingError(f"cannot read price file {str(file)!r}: {exc}") from exc
    try:
        if file.suffix.lower() == ".json":
            rows = json.loads(text)
        else:
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - exercised on Python 3.10 only
                import tomli as tomllib
            rows = tomllib.loads(text).get("price", [])
    except ValueError as exc:
        raise PricingError(f"price file {str(file)!r} is not valid {file.suffix or 'TOML'}: {exc}") from exc
    if not isinstance(rows, list):
        raise PricingError(f"price file {str(file)!r} must hold a list of prices ([[price]] tables or a JSON list)")
    prices = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise PricingError(f"price file {str(file)!r}: entry {index} is not a table/object: {row!r}")
        unknown = set(row) - _FIELDS
        if unknown:
            raise PricingError(f"price file {str(file)!r}: entry {index} has unknown fields {sorted(unknown)}")
        try:
            row = {"provider": None, **row}
            prices.append(ModelPrice(**row))
        except (TypeError, ValueError) as exc:
            raise PricingError(f"price file {str(file)!r}: entry {index} ({row.get('model')!r}): {exc}") from exc
    for price in prices:
        register_price(price)
    return prices


class _PricingView(Mapping[str, ModelPrice]):
    """``MODEL_PRICING``: a read-only mapping of model id to current ``ModelPrice`` over the whole catalog plus
    registered prices. Built on first access, kept in ``_state.pricing_table``."""

    def _build(self) -> dict[str, ModelPrice]:
        data = _state.pricing_table
        if data is None:
            now = datetime.now(timezone.utc)
            data = {}
            label = f"catalog@{catalog_version()}"
            for prov in _snapshot().providers:
                for info in prov.models:
                    if info.id in data:
                        continue
                    resolved = (
                        _Resolved(label, model=info, provider=prov)
                        if isinstance(info.prices, list)
                        else _Resolved(label, price=_convert(info, prov, info.prices))
                    )
                    data[info.id] = resolved.at(now)
            for (_, model), price in _user_prices.items():
                data[model] = price
            _state.set_pricing_table(data)
        return data

    def __getitem__(self, model: str) -> ModelPrice:
        data = self._build()
        try:
            return data[model]
        except KeyError:
            raise UnknownModelError(model, difflib.get_close_matches(model, list(data), n=5)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return f"<MODEL_PRICING: {len(self)} models>"


#: Read-only mapping of every catalog (and registered) model id to its current ``ModelPrice``.
MODEL_PRICING: Mapping[str, ModelPrice] = _PricingView()
