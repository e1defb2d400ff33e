"""``ModelPrice`` and ``PriceTier``: what a model costs, as values, and the exact cost of a ``Usage`` at it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from ._money import MONEY_SCALE, ZERO, to_money
from ._usage import Usage

__all__ = ["ModelPrice", "PriceTier", "money_cost", "tidy"]


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
        return tidy(total)


def tidy(amount: Decimal) -> Decimal:
    """Drop trailing zeros (``3.5000000`` -> ``3.5``) without turning ``100`` into ``1E+2``."""
    if amount == amount.to_integral_value():
        return amount.quantize(_ONE)
    return amount.normalize()


_ONE = Decimal(1)


def money_cost(price: ModelPrice, usage: Usage) -> Decimal:
    """``price.cost(usage)`` rounded as every store keeps amounts (``MONEY_SCALE`` places; usually already so)."""
    amount = price.cost(usage)
    return amount if price._fits_money_scale else to_money(amount)
