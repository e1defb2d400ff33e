"""``ModelPrice`` and ``PriceTier``: what a model costs, as values, and the exact cost of a ``Usage`` at it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any, NoReturn, TypeVar

import attrs

from . import _state
from ._money import MONEY_SCALE, ZERO, tidy, to_amount, to_money, wide_context
from ._usage import FIELD_UNITS, MAX_COUNT, NO_UNITS, Units, Usage, requests_of, unit_counts, unit_registry

__all__ = [
    "BASE_PRICE_KEYS",
    "AttoPricer",
    "ModelPrice",
    "PriceTier",
    "Pricer",
    "UnitPrices",
    "UsagePricer",
    "atto_pricer",
    "counts_pricer",
    "fits_money_scale",
    "money_cost",
    "same_rates_up_to",
    "tidy",
    "usage_pricer",
]

#: The genai-prices price keys of ``ModelPrice``'s own fields (``request_price`` is ``requests_kcount`` / 1000).
BASE_PRICE_KEYS = {
    "input_per_mtok": "input_mtok",
    "output_per_mtok": "output_mtok",
    "cache_read_per_mtok": "cache_read_mtok",
    "cache_write_per_mtok": "cache_write_mtok",
    "reasoning_per_mtok": "output_reasoning_mtok",
}
_RESERVED_KEYS = {*BASE_PRICE_KEYS.values(), "requests_kcount"}


class UnitPrices(Mapping[str, Decimal]):
    """A read-only, hashable mapping of genai-prices price key (``cache_write_1h_mtok``, ``input_audio_mtok``,
    ``web_searches_kcount``...) to its USD price per that key's unit (per million tokens, per thousand searches).

    Example::

        >>> UnitPrices({"web_searches_kcount": "10"})["web_searches_kcount"]
        Decimal('10')
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, object] | None = None) -> None:
        self._data: dict[str, Decimal] = {}
        for key, value in (data or {}).items():
            if not isinstance(key, str):
                raise TypeError(f"unit_prices keys must be str, got {key!r}")
            self._data[key] = _price(f"unit_prices[{key!r}]")(value)  # type: ignore[assignment]
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Decimal:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, UnitPrices):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"UnitPrices({self._data!r})"


NO_UNIT_PRICES = UnitPrices()


def _unit_prices(value: object) -> UnitPrices:
    if value is None:
        return NO_UNIT_PRICES
    if isinstance(value, UnitPrices):
        prices = value
    elif isinstance(value, Mapping):
        prices = UnitPrices(value) if value else NO_UNIT_PRICES
    else:
        raise TypeError(f"unit_prices must be a mapping of price key to price, got {value!r}")
    if prices:
        known = {u.price_key for u in unit_registry().values()}
        for key in prices:
            if key in _RESERVED_KEYS:
                field = next((f for f, k in BASE_PRICE_KEYS.items() if k == key), "request_price")
                raise ValueError(f"unit_prices: {key!r} is a ModelPrice field; pass it as {field}=")
            if key not in known:
                raise ValueError(f"unit_prices: unknown price key {key!r} (genai-prices' price keys, e.g. "
                                 "cache_write_1h_mtok, input_audio_mtok, web_searches_kcount)")  # fmt: skip
    return prices


def _price(field: str, optional: bool = False) -> Any:
    def convert(value: object) -> Decimal | None:
        if value is None and optional:
            return None
        # Bounded as amounts are: a price past 10**20 (``"1e400"`` in a price file) would only fail later, deep in
        # a cost's arithmetic, with nothing to say which price it was.
        dec = to_amount(value, field)
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


def _tier_start(instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    # Checked here, not where tiers are compared: a str start used to pass and then break every call of the model.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"start must be an int (input tokens above which the tier applies), got {value!r}")
    if value < 0:
        raise ValueError(f"start must not be negative, got {value!r}")


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

    start: int = attrs.field(validator=_tier_start)
    input_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("input_per_mtok", True))  # type: ignore[misc]  # a converter factory
    output_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("output_per_mtok", True))  # type: ignore[misc]  # a converter factory
    cache_read_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("cache_read_per_mtok", True))  # type: ignore[misc]  # a converter factory
    cache_write_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("cache_write_per_mtok", True))  # type: ignore[misc]  # a converter factory
    reasoning_per_mtok: Decimal | None = attrs.field(default=None, converter=_price("reasoning_per_mtok", True))  # type: ignore[misc]  # a converter factory
    unit_prices: UnitPrices = attrs.field(default=NO_UNIT_PRICES, converter=_unit_prices)


def _tiers(value: object) -> tuple[PriceTier, ...]:
    if not value:
        return ()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"tiers must be a sequence of PriceTier (or mappings of their fields), got {value!r}")
    tiers = []
    for index, item in enumerate(value):
        if isinstance(item, PriceTier):
            tiers.append(item)
            continue
        if not isinstance(item, Mapping):
            raise TypeError(f"tiers[{index}] must be a PriceTier or a mapping of its fields, got {item!r}")
        try:
            tiers.append(PriceTier(**item))
        except (TypeError, ValueError) as exc:  # say which tier: a price file's entry may have several
            raise (TypeError if isinstance(exc, TypeError) else ValueError)(f"tiers[{index}]: {exc}") from exc
    return tuple(sorted(tiers, key=lambda t: t.start))


_MTOK = -6  # prices are per million tokens: scale the product by 10**-6, exactly
# An integer total made a Decimal in a context of its own, wide enough for any total under ``_EXACT_BELOW``: the
# operators would round to the caller's context (a call tracked inside ``localcontext(prec=3)`` recorded $0.0061 for
# $0.0061025). Bound methods, read as a closure's names on the per-call path.
_WIDE = Context(prec=80)
_multiply = _WIDE.multiply
_normalize = _WIDE.normalize
# The Decimal rules (``ModelPrice._cost_in_decimal``, ``_cost_by_unit``: amounts too large for the integers, units
# billed per hour) round where a quotient does not end: in the default context's 28 digits, whatever the caller's.
_STANDARD = Context(prec=28, rounding=ROUND_HALF_EVEN)
_M = TypeVar("_M", bound=Callable[..., Any])


def _in_standard_context(method: _M) -> _M:
    @functools.wraps(method)
    def standard(*args: Any, **kwargs: Any) -> Any:
        with localcontext(_STANDARD):
            return method(*args, **kwargs)

    return standard  # type: ignore[return-value]


def _places(value: Decimal) -> int:
    """Decimal places of ``value`` as written (``Decimal("2.50")``: 2)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


#: Integer totals below this have at most 27 digits: the Decimal rule (28-digit context) computes them exactly too,
#: so both give the same digits; a larger total is priced by the Decimal rule itself.
_EXACT_BELOW = 10**27


def _scaled(value: Decimal, exponent: int) -> int:
    """``value`` in units of ``10**exponent``, exactly (``exponent`` is at most ``value``'s own)."""
    sign, digits, own = value.as_tuple()
    assert isinstance(own, int)
    coefficient = int("".join(map(str, digits)) or "0") * 10 ** (own - exponent)
    return -coefficient if sign else coefficient


#: ``ModelPrice.cost`` as a function of the five token counts: see ``_per_token_pricer``.
Pricer = Callable[[int, int, int, int, int], "Decimal | None"]
#: A ``Pricer`` that also gives the amount in units of ``10**-MONEY_SCALE`` (an int): ``(amount, atto)``.
AttoPricer = Callable[[int, int, int, int, int], "tuple[Decimal, int] | None"]


def _per_token_pricer(price: ModelPrice, per_mtok: list[Decimal | None]) -> tuple[Pricer, AttoPricer | None]:
    """``price``'s cost of a call's counts ``(input, output, cache_read, cache_write, reasoning)`` (valid ints,
    parts within wholes), computed from its prices pre-scaled per token to integers at one exponent: integer
    multiplies and one Decimal construction, giving the digits ``ModelPrice``'s Decimal rule gives (``tidy``'s
    form). For each long-context tier and the base, the input, output, cache read, cache write and reasoning prices
    are kept with a missing part price replaced by the one it is billed at (cache parts at input, reasoning at
    output), plus the request fee. The function returns ``None`` for a total too large to match the Decimal rule
    digit for digit (over 27 digits).

    With it, where the prices have no long-context tiers and their amounts fit ``MONEY_SCALE`` places, the same
    function giving each amount also as an int of ``10**-MONEY_SCALE`` units (``None`` otherwise)."""
    exponents = [p.as_tuple().exponent for p in per_mtok if p is not None]
    exponent = min([0, *(e + _MTOK for e in exponents if isinstance(e, int))])
    if price.request_price is not None:
        own = price.request_price.as_tuple().exponent
        exponent = min(exponent, own if isinstance(own, int) else 0)
    request = 0 if price.request_price is None else _scaled(price.request_price, exponent)

    def coefficients(inp: Decimal, out: Decimal, *parts: Decimal | None) -> tuple[int, ...]:
        cr, cw, rs = (p if p is not None else whole for p, whole in zip(parts, (inp, inp, out), strict=True))
        per_token = exponent - _MTOK
        return (*(_scaled(p, per_token) for p in (inp, out, cr, cw, rs)), request)

    base_prices = (price.input_per_mtok, price.output_per_mtok)
    parts = (price.cache_read_per_mtok, price.cache_write_per_mtok, price.reasoning_per_mtok)
    tiers = []
    for tier in reversed(price.tiers):  # highest start first; of tiers with one start, the last, as in cost
        merged = [
            t if t is not None else b
            for t, b in zip(
                (
                    tier.input_per_mtok,
                    tier.output_per_mtok,
                    tier.cache_read_per_mtok,
                    tier.cache_write_per_mtok,
                    tier.reasoning_per_mtok,
                ),
                (*base_prices, *parts),
                strict=True,
            )
        ]
        tiers.append((tier.start, coefficients(*merged)))  # type: ignore[arg-type]
    base = coefficients(*base_prices, *parts)
    scale = 10**-exponent
    unit = Decimal(1).scaleb(exponent)  # one unit of the integers, in USD
    multiply, normalize = _multiply, _normalize

    if tiers:

        def tiered(inp: int, out: int, cache_read: int, cache_write: int, reasoning: int) -> Decimal | None:
            # As ``flat`` below, at the prices of the tier ``inp`` falls in (a corrected Claude, a Gemini Pro).
            prices = base
            for start, at_start in tiers:
                if inp > start:
                    prices = at_start
                    break
            i, o, r, w, x, fee = prices
            total = i * (inp - cache_read - cache_write) + o * (out - reasoning) + fee
            if cache_read or cache_write or reasoning:
                total += r * cache_read + w * cache_write + x * reasoning
            if total >= _EXACT_BELOW:
                return None
            if total % scale:
                return normalize(multiply(unit, total))  # exact, in any context
            return Decimal(total // scale)  # a whole amount, in tidy's form (exponent 0, not 1E+2)

        return tiered, None
    i, o, r, w, x, fee = base

    def flat(inp: int, out: int, cache_read: int, cache_write: int, reasoning: int) -> Decimal | None:
        # The integers made into an amount here, not by a shared function (as in ``tiered``, and in the usage
        # pricer's ``money``): this is the per-call path of most models, and a call more costs a tenth of it.
        total = i * (inp - cache_read - cache_write) + o * (out - reasoning) + fee
        if cache_read or cache_write or reasoning:
            total += r * cache_read + w * cache_write + x * reasoning
        if total >= _EXACT_BELOW:
            return None
        if total % scale:
            return normalize(multiply(unit, total))  # exact, in any context
        return Decimal(total // scale)  # a whole amount, in tidy's form (exponent 0, not 1E+2)

    if exponent < -MONEY_SCALE:
        return flat, None
    to_atto = 10 ** (MONEY_SCALE + exponent)

    def flat_atto(inp: int, out: int, cache_read: int, cache_write: int, reasoning: int) -> tuple[Decimal, int] | None:
        # ``flat``'s amount, and the same in units of 10**-18: the tracker's per-call path, whose budgets and
        # recent-calls sums count ints (a Decimal's addition costs four times an int's; converting one, more).
        total = i * (inp - cache_read - cache_write) + o * (out - reasoning) + fee
        if cache_read or cache_write or reasoning:
            total += r * cache_read + w * cache_write + x * reasoning
        if total >= _EXACT_BELOW:
            return None
        return normalize(multiply(unit, total)) if total % scale else Decimal(total // scale), total * to_atto

    return flat, flat_atto


@attrs.frozen
class ModelPrice:
    """What a model costs, in USD per million tokens.

    ``cache_read_per_mtok``/``cache_write_per_mtok`` price the cached parts of the input (``None``: billed as
    ordinary input); ``reasoning_per_mtok`` prices reasoning tokens (``None``: billed as output); ``request_price``
    is a flat fee per call; ``tiers`` are long-context prices, applied to the whole call once its input exceeds
    their start. ``unit_prices`` prices further units by genai-prices price key (``cache_write_1h_mtok``,
    ``input_audio_mtok``, ``output_image_mtok``, ``web_searches_kcount``...): a unit of ``Usage.units`` with a
    price here is billed at it, one without at its whole's price. ``cost(usage)`` returns the exact Decimal amount.

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
    unit_prices: UnitPrices = attrs.field(default=NO_UNIT_PRICES, converter=_unit_prices)
    # Whether every cost at these prices already fits MONEY_SCALE places (no per-mtok price has more than
    # MONEY_SCALE - 6), so the tracker need not round amounts (a measurable part of each tracked call).
    _fits_money_scale: bool = attrs.field(init=False, repr=False, eq=False)
    # The cost of a call's five token counts from the prices pre-scaled per token to integers (``_per_token_pricer``),
    # so pricing a call is a few integer multiplies and one Decimal construction instead of Decimal arithmetic.
    _per_token: Pricer = attrs.field(init=False, repr=False, eq=False)
    # ``_per_token`` giving each amount also in 10**-18 units, where it can (``_per_token_pricer``), else ``None``.
    _per_token_atto: AttoPricer | None = attrs.field(init=False, repr=False, eq=False)
    # ``_unit_plan`` and ``rates`` by long-context tier (-1: the base prices), made on first use.
    _unit_plans: dict[int, _UnitPlan] = attrs.field(init=False, repr=False, eq=False)
    _rates: dict[int, tuple[object, ...]] = attrs.field(init=False, repr=False, eq=False)
    # ``_unit_plan`` by long-context tier folded into one integer price per count (``_fold``), made on first use,
    # and ``money_cost`` of a usage from them (``_usage_pricer``): the tracker's path for a call with units.
    # (A list by tier index, the base prices last: ``_folded[-1]``, as ``_tier`` numbers them; ``None``: not yet.)
    _folded: list[_Few | UsagePricer | None] = attrs.field(init=False, repr=False, eq=False)
    _money: UsagePricer = attrs.field(init=False, repr=False, eq=False)

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
        per_token, atto = _per_token_pricer(self, per_mtok)
        object.__setattr__(self, "_per_token", per_token)
        object.__setattr__(self, "_per_token_atto", atto if fits else None)
        object.__setattr__(self, "_unit_plans", {})
        object.__setattr__(self, "_rates", {})
        object.__setattr__(self, "_folded", [None] * (len(self.tiers) + 1))
        object.__setattr__(self, "_money", _usage_pricer(self))

    def cost(self, usage: Usage) -> Decimal:
        """The exact cost of ``usage`` at these prices, in USD.

        Example::

            >>> ModelPrice("acme", None, input_per_mtok="2", output_per_mtok="8").cost(Usage(1000, 100))
            Decimal('0.0028')
        """
        if type(usage) is not Usage and not isinstance(usage, Usage):  # (a dict failed on a missing attribute)
            raise TypeError(f"usage must be a llmcost.Usage, got {usage!r}; e.g. price.cost(Usage(1000, 100))")
        if usage.units is not NO_UNITS:  # parts beyond the five fields: the general rule (same result without)
            requests = requests_of(usage) if self.tiers and type(usage.units) is not Units else None
            if requests is not None:  # separate requests: each priced in its own long-context tier
                return _sum(self.cost(request) for request in requests)
            return self._cost_by_unit(usage)
        amount = self._per_token(
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
        )
        return amount if amount is not None else self._cost_in_decimal(usage)

    @_in_standard_context
    def _cost_in_decimal(self, usage: Usage) -> Decimal:
        """``cost`` by Decimal arithmetic (in the default context's 28 digits, ``_STANDARD``): the rule
        ``_per_token_pricer`` computes in integers, kept for amounts too large for it to reproduce digit for digit
        (over 27 significant digits)."""
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

    def price_keys(self, input_tokens: int = 0) -> dict[str, Decimal]:
        """Every price as genai-prices keys it (``input_mtok``, ``cache_write_1h_mtok``...), with the long-context
        tier that a call of ``input_tokens`` input falls in applied."""
        fields: dict[str, Decimal | None] = {f: getattr(self, f) for f in BASE_PRICE_KEYS}
        units: dict[str, Decimal] = dict(self.unit_prices)
        for tier in reversed(self.tiers):
            if input_tokens > tier.start:
                for f in BASE_PRICE_KEYS:
                    value = getattr(tier, f)
                    if value is not None:
                        fields[f] = value
                units.update(tier.unit_prices)
                break
        keyed = {BASE_PRICE_KEYS[f]: v for f, v in fields.items() if v is not None}
        keyed.update(units)
        return keyed

    @_in_standard_context
    def _cost_by_unit(self, usage: Usage) -> Decimal:
        """genai-prices' rule: each priced unit is billed for its count less that of its priced parts (in the order
        and with the parts ``_unit_plan`` found once for the call's long-context tier). Where every unit's divisor
        is a power of ten the sum is taken in integers, at one exponent, and made a Decimal once; a sum too long for
        the Decimal rule to keep digit for digit (27 digits or more) is taken by the rule itself."""
        steps, exponent, request = self._unit_plan(usage.input_tokens)
        units = usage.units
        leaves: list[int] = []
        if exponent is not None:
            whole = 0
            for key, _, _, _, field, parts, coefficient in steps:
                leaf = getattr(usage, field) if field is not None else units.get(key, 0)
                for part in parts:
                    leaf -= leaves[part]
                if leaf < 0:
                    _raise_parts(key, usage, field)
                leaves.append(leaf)
                whole += coefficient * leaf
            if request:
                whole += request * units.get("requests", 1)
            if whole < _EXACT_BELOW:
                return tidy(Decimal(whole).scaleb(exponent))
            leaves = []
        total = ZERO
        for key, price, per, power, field, parts, _ in steps:
            leaf = getattr(usage, field) if field is not None else units.get(key, 0)
            for part in parts:
                leaf -= leaves[part]
            if leaf < 0:
                _raise_parts(key, usage, field)
            leaves.append(leaf)
            if leaf:
                total += price * leaf / per if power is None else (price * leaf).scaleb(power)
        if self.request_price is not None:
            total += self.request_price * units.get("requests", 1)
        return tidy(total)

    def rates(self, input_tokens: int) -> tuple[object, ...]:
        """Every rate a call of ``input_tokens`` input is billed at (the long-context tier it falls in applied, as
        ``price_keys`` gives them, and the request price): two prices with equal rates for a call cost it the same.
        Made once per tier.

        >>> ModelPrice("m", None, input_per_mtok=1, output_per_mtok=2).rates(10)
        (('input_mtok', Decimal('1')), ('output_mtok', Decimal('2')), None)
        """
        tier = self._tier(input_tokens)
        found = self._rates.get(tier)
        if found is None:
            found = self._rates[tier] = (*sorted(self.price_keys(input_tokens).items()), self.request_price)
        return found

    def _tier(self, input_tokens: int) -> int:
        """The index of the long-context tier a call of ``input_tokens`` input falls in (as ``price_keys`` finds
        it), -1 for the base prices."""
        for index in range(len(self.tiers) - 1, -1, -1):
            if input_tokens > self.tiers[index].start:
                return index
        return -1

    def _unit_plan(self, input_tokens: int) -> _UnitPlan:
        """The priced units of the long-context tier a call of ``input_tokens`` input falls in (as ``price_keys``
        finds it), each with its price, divisor, where its count is read and which units before it are its parts:
        most specific units first (most dimensions), then by name. Made once per tier: the registry is fixed."""
        tier = self._tier(input_tokens)
        plan = self._unit_plans.get(tier)
        if plan is None:
            plan = self._unit_plans[tier] = _plan_units(self.price_keys(input_tokens), self.request_price)
        return plan


_POWERS = {1_000_000: -6, 1_000: -3, 1_000_000_000: -9, 1: 0}
#: One priced unit of a ``_unit_plan``: (usage key, price, divisor, the divisor as a power of ten or ``None``, the
#: ``Usage`` field holding its count or ``None`` for ``Usage.units``, the plan positions of its priced parts, and
#: its price per unit as an integer at the plan's exponent, or 0 when the plan has none).
_UnitStep = tuple[str, Decimal, int, "int | None", "str | None", tuple[int, ...], int]
#: A ``_unit_plan``: its steps, the exponent of the integer prices (``None``: a divisor that is no power of ten,
#: summed by the Decimal rule), and the request price as an integer at that exponent (0 without one).
_UnitPlan = tuple[tuple[_UnitStep, ...], "int | None", int]
_FIELD_OF_UNIT = {unit: field for field, unit in FIELD_UNITS.items()}


def _plan_units(keyed: Mapping[str, Decimal], request_price: Decimal | None) -> _UnitPlan:
    """``_unit_plan`` of the prices ``keyed`` as genai-prices keys them (``ModelPrice.price_keys``) and the request
    price: most specific units first (most dimensions), then by name."""
    registry = unit_registry()
    by_price_key = _by_price_key(registry)
    prices: dict[str, Decimal] = {}
    for key, value in keyed.items():
        unit = by_price_key.get(key)
        if unit is not None:
            prices[unit.usage_key] = value
    order = sorted(prices, key=lambda k: (-len(registry[k].dimensions), k))
    powers = [_POWERS.get(registry[key].per) for key in order]
    exponent: int | None = None
    if None not in powers:  # each price per unit is a price scaled by a power of ten: exact at one exponent
        exponents = [_exponent(prices[key]) + power for key, power in zip(order, powers, strict=True)]  # type: ignore[operator]
        if request_price is not None:
            exponents.append(_exponent(request_price))
        exponent = min([0, *exponents])
    steps: list[_UnitStep] = []
    for i, key in enumerate(order):
        dims = registry[key].dimensions.items()
        parts = tuple(j for j in range(i) if dims <= registry[order[j]].dimensions.items())
        per, power = registry[key].per, powers[i]
        coefficient = 0 if exponent is None else _scaled(prices[key], exponent - power)  # type: ignore[operator]
        steps.append((key, prices[key], per, power, _FIELD_OF_UNIT.get(key), parts, coefficient))
    request = 0 if exponent is None or request_price is None else _scaled(request_price, exponent)
    return tuple(steps), exponent, request


#: ``money_cost(price, usage)`` as a function of the usage: see ``usage_pricer``.
UsagePricer = Callable[[Usage], "Decimal | None"]
_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


#: The usual ``_fold``: the integer prices of the five ``Usage`` fields and of at most two units (each unit's name
#: and price; ``""`` and 0 for none), ``10**-exponent`` and one integer unit in USD; no request price, no checks.
_Few = tuple[int, int, int, int, int, str, int, str, int, int, Decimal]


def _fold(plan: _UnitPlan) -> _Few | UsagePricer | None:
    """``money_cost`` of a usage with units in ``plan``'s tier, from ``plan``'s sum (``ModelPrice._cost_by_unit``)
    folded into one integer price per count: the sum is linear in the counts (each unit is billed for its count
    less its priced parts' billed counts), so each count's price is the sum it gives with that count 1 and every
    other 0. The usual plan is given as its prices (``_Few``, summed by ``_usage_pricer``), another as a function
    of the usage; ``None`` for a plan not summed in integers (a divisor that is no power of ten) or at an exponent
    past ``MONEY_SCALE`` (whose amounts ``money_cost`` may round).

    A part larger than its billed whole makes that whole's billed count negative, which ``_cost_by_unit`` refuses;
    ``Usage`` keeps most such counts non-negative itself (``_kept_by_usage``), the others are checked
    (``_parts_fit``) and a usage that fails is left to ``money_cost``, which says which part is over."""
    steps, exponent, request = plan
    if exponent is None or exponent < -MONEY_SCALE:
        return None
    n = len(steps)
    # billed[k][j]: the count step k is billed for when step j's count is 1 and every other count 0.
    billed = [[0] * n for _ in range(n)]
    for j in range(n):
        column: list[int] = []
        for k, step in enumerate(steps):
            leaf = (k == j) - sum(column[part] for part in step[5])
            column.append(leaf)
            billed[k][j] = leaf
    prices = [sum(steps[k][6] * billed[k][j] for k in range(n)) for j in range(n)]
    sources = [step[4] if step[4] is not None else step[0] for step in steps]  # a Usage field, else a unit
    fields = dict.fromkeys(_FIELDS, 0)
    units: list[tuple[str, int]] = []
    for j, step in enumerate(steps):
        if step[4] is not None:
            fields[step[4]] = prices[j]
        elif prices[j]:
            units.append((step[0], prices[j]))
    checks = tuple(
        tuple((sources[j], factor) for j, factor in enumerate(billed[k]) if factor)
        for k in range(n)
        if not _kept_by_usage(steps, k, billed[k])
    )
    i, o, r, w, x = fields.values()
    scale, unit = 10**-exponent, Decimal(1).scaleb(exponent)
    counts_of, exact_below, decimal = unit_counts, _EXACT_BELOW, Decimal
    multiply, normalize = _multiply, _normalize

    if len(units) <= 2 and not request and not checks:
        # The usual plan (a cache write by TTL, web searches): its prices, which ``_usage_pricer`` sums itself.
        (k1, f1), (k2, f2) = (*units, ("", 0), ("", 0))[:2]
        return (i, o, r, w, x, k1, f1, k2, f2, scale, unit)
    priced_units = tuple(units)

    def general(usage: Usage) -> Decimal | None:
        get = counts_of(usage.units).get
        total = (
            i * usage.input_tokens + o * usage.output_tokens + r * usage.cache_read_tokens
            + w * usage.cache_write_tokens + x * usage.reasoning_tokens
        )  # fmt: skip
        for key, factor in priced_units:
            count = get(key)
            if count:
                total += factor * count
        if request:
            total += request * get("requests", 1)
        if checks and not _parts_fit(checks, usage):
            return None  # a part over its whole
        if total >= exact_below:
            return None
        if total % scale:
            return normalize(multiply(unit, total))  # exact, in any context
        return decimal(total // scale)  # a whole amount, in tidy's form

    return general


def _kept_by_usage(steps: tuple[_UnitStep, ...], k: int, billed: list[int]) -> bool:
    """Whether every ``Usage`` keeps step ``k``'s billed count (``billed``: its factor of each step's count)
    non-negative: no count taken away; or the input less its cache read and write, the output less its reasoning
    (``Usage`` keeps its parts within its wholes); or a field less one unit that is a part of it (``Usage`` keeps
    each unit within each whole it reports, and a field is always reported)."""
    minus = [j for j, factor in enumerate(billed) if factor < 0]
    if not minus:
        return True
    plus = [j for j, factor in enumerate(billed) if factor > 0]
    field = steps[k][4]
    if field is None or plus != [k] or billed[k] != 1 or any(billed[j] != -1 for j in minus):
        return False
    parts = [steps[j][4] for j in minus]
    if field == "input_tokens" and all(p in ("cache_read_tokens", "cache_write_tokens") for p in parts):
        return True
    if field == "output_tokens" and parts == ["reasoning_tokens"]:
        return True
    if len(minus) == 1 and parts[0] is None:
        return FIELD_UNITS[field] in unit_registry()[steps[minus[0]][0]].ancestors
    return False


def _parts_fit(checks: tuple[tuple[tuple[str, int], ...], ...], usage: Usage) -> bool:
    """Whether each sum of ``checks`` (``_fold``) is non-negative for ``usage``."""
    units = usage.units
    for check in checks:
        total = 0
        for source, factor in check:
            total += factor * (getattr(usage, source) if source in _FIELDS else units.get(source, 0))
        if total < 0:
            return False
    return True


def _none(usage: Usage) -> None:
    return None


def _usage_pricer(price: ModelPrice) -> UsagePricer:
    """``usage_pricer(price)``: a usage without units priced by ``price``'s per-token integers (``_per_token``) when
    its amounts fit ``MONEY_SCALE``; one with units by its tier's ``_fold``, in integers, as ``_cost_by_unit``
    sums them and to the same digits (``_per_token_pricer``'s form is ``tidy``'s, which ``money_cost`` keeps at an
    exponent within ``MONEY_SCALE``)."""
    per_token = price._per_token if price._fits_money_scale else None
    starts = tuple((index, tier.start) for index, tier in reversed(tuple(enumerate(price.tiers))))
    # A call of at most this many input tokens is in no tier (most calls): one comparison instead of the loop.
    below = min(start for _, start in starts) if starts else MAX_COUNT
    folded = price._folded
    # (A closure's own names are read faster than globals.)
    no_units, plan_of, counts_of, exact_below, decimal = NO_UNITS, price._unit_plan, unit_counts, _EXACT_BELOW, Decimal
    units_type = Units
    multiply, normalize = _multiply, _normalize

    def money(usage: Usage) -> Decimal | None:
        units = usage.units
        if units is no_units:
            if per_token is None:
                return None
            return per_token(
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
                usage.reasoning_tokens,
            )
        inp = usage.input_tokens
        tier = -1
        if inp > below:
            # Separate requests (``requests_sum``) in a long-context tier together: each priced in its own. (Below
            # every tier, the sum costs what its requests do: the rule is linear in the counts.)
            if type(units) is not units_type:
                requests = requests_of(usage)
                if requests is not None:
                    amounts = [money(request) for request in requests]
                    return None if None in amounts else _sum(amounts)  # type: ignore[arg-type]
            for index, start in starts:  # as ``ModelPrice._tier``
                if inp > start:
                    tier = index
                    break
        plan = folded[tier]  # (-1: the base prices, the list's last)
        if plan is None:
            plan = folded[tier] = _fold(plan_of(inp)) or _none
        if type(plan) is not tuple:
            return plan(usage)  # type: ignore[operator]
        i, o, r, w, x, k1, f1, k2, f2, scale, unit = plan  # the usual plan, summed here: no call more
        get = counts_of(units).get
        total = (
            i * inp + o * usage.output_tokens + r * usage.cache_read_tokens + w * usage.cache_write_tokens
            + x * usage.reasoning_tokens + f1 * get(k1, 0) + f2 * get(k2, 0)
        )  # fmt: skip
        if total >= exact_below:
            return None
        if total % scale:
            return normalize(multiply(unit, total))  # exact, in any context
        return decimal(total // scale)  # a whole amount, in tidy's form

    return money


def usage_pricer(price: ModelPrice) -> UsagePricer:
    """``money_cost(price, usage)`` as a function of ``usage`` that computes it in integers where it can (with or
    without units) and returns ``None`` where ``money_cost`` must (an amount of more than 27 digits, one it may
    round, a part of a usage over its whole).

    >>> p = ModelPrice("m", None, input_per_mtok=3, output_per_mtok=15, unit_prices={"web_searches_kcount": 10})
    >>> usage_pricer(p)(Usage(1000, 100, units={"web_searches": 2}))
    Decimal('0.0245')
    """
    return price._money


def same_rates_up_to(price: ModelPrice, other: ModelPrice) -> int:
    """The input count up to which every call has the same ``rates`` at ``price`` and at ``other`` (so costs the
    same): -1 when a call of no input has not, ``MAX_COUNT`` when no call differs. Rates change only where a
    long-context tier of either starts, so one call per stretch between starts is compared."""
    starts = sorted({-1, *(t.start for t in (*price.tiers, *other.tiers) if t.start > -1)})
    for lower in starts:  # the stretch of input counts from lower + 1 up to the next start
        if price.rates(lower + 1) != other.rates(lower + 1):
            return lower
    return MAX_COUNT


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return exponent if isinstance(exponent, int) else 0


def _raise_parts(key: str, usage: Usage, field: str | None) -> NoReturn:
    count = getattr(usage, field) if field is not None else usage.units.get(key, 0)
    raise ValueError(f"usage: the parts of {key} ({count}) add up to more than it")


_by_key_cache: dict[str, Any] = _state.units_by_price_key


def _by_price_key(registry: Mapping[str, Any]) -> dict[str, Any]:
    if not _by_key_cache:
        _by_key_cache.update({u.price_key: u for u in registry.values()})
    return _by_key_cache


def _sum(amounts: Iterable[Decimal]) -> Decimal:
    """The exact sum of amounts (each exact), in ``tidy``'s form."""
    with wide_context():
        return tidy(sum(amounts, ZERO))


def counts_pricer(price: ModelPrice) -> Pricer:
    """``price.cost`` as a function of the five token counts (valid ints, parts within wholes, no further units)
    that skips building a ``Usage``: ``pricer(input, output, cache_read, cache_write, reasoning)``; it returns
    ``None`` when ``cost`` must use its Decimal rule (an amount of more than 27 digits)."""
    return price._per_token


def atto_pricer(price: ModelPrice) -> AttoPricer | None:
    """``counts_pricer(price)`` giving each amount also as an int of ``10**-MONEY_SCALE`` units, ``(amount, atto)``,
    where it can (no long-context tiers; amounts within ``MONEY_SCALE`` places), else ``None``.

    >>> atto_pricer(ModelPrice("m", None, input_per_mtok="2.5", output_per_mtok=10))(1000, 100, 0, 0, 0)
    (Decimal('0.0035'), 3500000000000000)
    """
    return price._per_token_atto


def fits_money_scale(price: ModelPrice) -> bool:
    """Whether every cost of a call at ``price`` without further units already has at most ``MONEY_SCALE``
    places (no rounding needed before storing it)."""
    return price._fits_money_scale


def money_cost(price: ModelPrice, usage: Usage) -> Decimal:
    """``price.cost(usage)`` rounded as every store keeps amounts (``MONEY_SCALE`` places; usually already so)."""
    amount = price.cost(usage)
    return amount if price._fits_money_scale and usage.units is NO_UNITS else to_money(amount)
