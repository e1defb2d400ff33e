"""Token counts of one call, in the genai-prices convention."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import attrs

from . import _state
from ._frozen_map import FrozenMap, held
from ._price_table import table_units

__all__ = [
    "FIELD_UNITS",
    "MAX_COUNT",
    "NO_UNITS",
    "Units",
    "Usage",
    "fit_parts",
    "fitted",
    "refuse_usage_and_keywords",
    "requests_of",
    "requests_sum",
    "trusted_units",
    "trusted_usage",
    "unit_counts",
    "unit_registry",
]

#: The largest count a store can keep (every store holds counts as signed 64-bit integers).
MAX_COUNT = 2**63 - 1


def refuse_usage_and_keywords(usage: object, keywords: Mapping[str, object]) -> None:
    """Raise ``TypeError`` if any of the token ``keywords`` is given beside ``usage=`` (``cost_of``, ``record``,
    ``build``): they used to be dropped without a word, a call of a million input tokens priced at ``usage``'s ten.

    >>> refuse_usage_and_keywords(Usage(10), {"input_tokens": 0})  # nothing given beside it
    >>> try:
    ...     refuse_usage_and_keywords(Usage(10), {"input_tokens": 1_000_000})
    ... except TypeError as exc:
    ...     print(str(exc).split(":")[0], "...", str(exc).rsplit(" and ", 1)[1])
    give usage= or the token keywords, not both ... input_tokens=1000000
    """
    given = ", ".join(f"{name}={count!r}" for name, count in keywords.items() if count)
    if given:
        raise TypeError(f"give usage= or the token keywords, not both: got usage={usage!r} and {given}")


def _count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{attribute.name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")
    if value > MAX_COUNT:
        raise ValueError(f"{attribute.name} must be at most 2**63 - 1 (stores keep 64-bit counts), got {value!r}")


class Units(FrozenMap[int]):
    """A read-only, hashable mapping of genai-prices usage name to count (``Usage.units``); zero counts are not
    kept, so ``Units({"web_searches": 0}) == Units()``.

    Example::

        >>> u = Units({"cache_write_1h_tokens": 3000})
        >>> u["cache_write_1h_tokens"], dict(u)
        (3000, {'cache_write_1h_tokens': 3000})
    """

    __slots__ = ()

    @staticmethod
    def keep(data: Mapping[str, int]) -> dict[str, int]:
        return {k: v for k, v in data.items() if v}


#: No further units (what every ``Usage`` without ``units=`` holds).
NO_UNITS = Units()

#: ``Units`` holding a dict of counts that are already as ``Units.keep`` keeps them (none zero) and that is not
#: changed afterwards, without copying it: extraction's hot path, whose counts it has just read and checked.
trusted_units = Units.holding
#: The dict of counts a ``Units`` holds (to read, never to change): pricing's hot path reads counts from it.
unit_counts: Callable[[Mapping[str, int]], dict[str, int]] = held  # (a Usage's units: always a Units)


#: Rounds of ``fit_parts`` (each settles one shortfall; a usage has a handful of parts).
_FIT_ROUNDS = 16
_by_dimensions: dict[frozenset[tuple[str, str]], str] = _state.units_by_dimensions


def overlap_of(first: str, second: str) -> str | None:
    """The registry's unit for what units ``first`` and ``second`` count both (their dimensions together), or
    ``None``: none, or they cannot overlap (one is part of the other, or they differ in a dimension, as audio and
    text, or cache reads and writes, do).

    >>> overlap_of("cache_read_tokens", "input_audio_tokens")
    'cache_audio_read_tokens'
    """
    registry = unit_registry()
    one, other = registry[first], registry[second]
    if first in other.ancestors or second in one.ancestors:
        return None
    joined = dict(one.dimensions)
    for key, value in other.dimensions.items():
        if joined.setdefault(key, value) != value:
            return None
    if not _by_dimensions:
        _by_dimensions.update({frozenset(u.dimensions.items()): k for k, u in registry.items()})
    return _by_dimensions.get(frozenset(joined.items()))


def _cached(unit: _Unit) -> bool:
    """Whether ``unit`` counts cached tokens (read or written): the only parts ``fit_parts`` finds overlaps of."""
    return unit.dimensions.get("token_type") in ("cache_read", "cache_write")


def fit_parts(units: dict[str, int], fields: Mapping[str, int]) -> None:
    """Make a response's ``units`` (counts by usage name, none zero, each within each of its wholes) agree with its
    ``fields`` (the five counts by usage name, parts within their wholes), in place, so that no unit's own share (its
    count less its parts', genai-prices' rule) is negative and the usage can be priced. Cached tokens that count more
    than their whole together with a modality's overlap it: OpenAI's and Gemini's cached tokens include cached audio
    that they may not report apart. The overlap the counts imply (the least they allow) is counted in the registry's
    unit for it (``cache_audio_read_tokens``), on the pair with the smaller part first (a conversation's text
    instructions come first and are cached first). Any other shortfall (audio and image past the prompt, output
    images past the output with reasoning) is cut from the largest unit in it, never from the five counts.

    >>> units = {"input_audio_tokens": 9000}
    >>> fit_parts(units, {"input_tokens": 10000, "cache_read_tokens": 8000, "output_tokens": 10})
    >>> units
    {'input_audio_tokens': 9000, 'cache_audio_read_tokens': 7000}
    """
    registry = unit_registry()
    for _ in range(_FIT_ROUNDS):
        counts = {name: count for name, count in fields.items() if count > 0}
        counts.update(units)
        names = sorted(counts, key=lambda name: -len(registry[name].dimensions))  # parts before their wholes
        own: dict[str, int] = {}
        short = None
        for name in names:
            own[name] = counts[name] - sum(count for part, count in own.items() if name in registry[part].ancestors)
            if own[name] < 0 and short is None:
                short = name  # (the most specific shortfall first: its wholes' shares follow from it)
        if short is None:
            return
        missing = -own[short]
        parts = [name for name in names if short in registry[name].ancestors and own[name] > 0]
        pair: tuple[int, str] | None = None
        for i, first in enumerate(parts):
            for second in parts[i + 1 :]:
                both = overlap_of(first, second)
                room = min(own[first], own[second])
                if both is not None and _cached(registry[both]) and (pair is None or room < pair[0]):
                    pair = (room, both)
        if pair is not None:
            units[pair[1]] = units.get(pair[1], 0) + min(missing, pair[0])
            continue
        cut = max((name for name in parts if name in units), key=own.__getitem__, default=None)
        if cut is None:
            return  # (the five counts alone: ``_usage`` keeps their parts within their wholes)
        units[cut] -= min(missing, own[cut])
        if not units[cut]:
            del units[cut]


#: The genai-prices usage names of the five ``Usage`` fields.
FIELD_UNITS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "reasoning_tokens": "output_reasoning_tokens",
}
_FIELD_OF_UNIT = {v: k for k, v in FIELD_UNITS.items()}


class _Unit:
    __slots__ = ("ancestors", "dimensions", "per", "price_key", "usage_key")

    def __init__(self, usage_key: str, price_key: str, per: int, dimensions: Mapping[str, str]) -> None:
        self.usage_key, self.price_key, self.per, self.dimensions = usage_key, price_key, per, dict(dimensions)
        self.ancestors: tuple[str, ...] = ()


_registry: dict[str, _Unit] = _state.unit_registry


def unit_registry() -> dict[str, _Unit]:
    """genai-prices' unit registry (usage name -> price key, divisor, dimensions, wholes), read on first use.

    A unit is part of another (its whole) when the other's dimensions are a subset of its own, as genai-prices
    defines it: ``cache_write_1h_tokens`` is part of ``cache_write_tokens`` and of ``input_tokens``.
    """
    if not _registry:
        kept = table_units()
        if kept is not None:  # genai-prices' registry as the pre-built price table keeps it: no import
            units = {k: _Unit(k, price_key, per, dims) for k, (price_key, per, dims) in kept.items()}
        else:
            from genai_prices.data_units import unit_data

            units = {
                k: _Unit(k, v.get("price_key", k), v["per"], v.get("dimensions", {})) for k, v in unit_data.items()
            }
        for unit in units.values():
            unit.ancestors = tuple(
                other.usage_key
                for other in units.values()
                if other is not unit and other.dimensions.items() <= unit.dimensions.items()
            )
        _registry.update(units)
    return _registry


def _check_units(usage: Usage) -> None:
    """Every unit known, a non-negative int, and no larger than any of its wholes."""
    registry = unit_registry()
    for key, value in usage.units.items():
        if key not in registry:
            raise ValueError(
                f"units: unknown usage name {key!r} (genai-prices' usage names, e.g. cache_write_1h_tokens)"
            )
        if key in _FIELD_OF_UNIT:
            raise ValueError(f"units: {key!r} is a Usage field; pass it as {_FIELD_OF_UNIT[key]}=")
        if type(value) is not int:
            raise TypeError(f"units[{key!r}] must be an int, got {value!r}")
        if value < 0:
            raise ValueError(f"units[{key!r}] must not be negative, got {value!r}")
        if value > MAX_COUNT:
            raise ValueError(f"units[{key!r}] must be at most 2**63 - 1, got {value!r}")
    for key, value in usage.units.items():
        for whole in registry[key].ancestors:
            field = _FIELD_OF_UNIT.get(whole)
            total = getattr(usage, field) if field is not None else usage.units.get(whole)
            if total is None:
                continue  # a whole not reported (e.g. input_audio_tokens under cache_audio_read_tokens)
            if value > total:
                raise ValueError(f"units[{key!r}] ({value}) must not exceed its whole {field or whole} ({total})")


def _to_units(value: object) -> Units:
    # Every empty ``units`` is ``NO_UNITS``, so hot paths test ``units is NO_UNITS`` instead of calling len().
    if value is None or value is NO_UNITS:
        return NO_UNITS
    if isinstance(value, Units):
        return value if value else NO_UNITS
    if not isinstance(value, Mapping):
        raise TypeError(f"units must be a mapping of usage name to count, got {value!r}")
    units = Units({k: _as_count(v) for k, v in value.items()})  # type: ignore[misc]
    return units if units else NO_UNITS


def _as_count(value: object) -> object:
    # Some SDKs report counts as floats (LangChain, JSON); accept only whole numbers.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@attrs.frozen
class Usage:
    """Tokens used by one call (or several, added with ``+``, which counts their requests: see ``__add__``).

    ``input_tokens`` counts every input token, cached ones included; ``cache_read_tokens`` and
    ``cache_write_tokens`` are parts of it. ``output_tokens`` counts every output token; ``reasoning_tokens`` is
    part of it. Negative counts, counts of 2**63 or more, or parts larger than their whole, raise ``ValueError``.

    ``units`` holds further counts by genai-prices usage name (``cache_write_1h_tokens``, ``input_audio_tokens``,
    ``output_image_tokens``, ``web_searches``...), each a part of its whole as genai-prices defines it (a 1-hour
    cache write is part of ``cache_write_tokens``, which is part of ``input_tokens``).

    Example::

        >>> u = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000)
        >>> (u + Usage(input_tokens=10)).total_tokens
        1510
        >>> Usage(input_tokens=5000, cache_write_tokens=3000, units={"cache_write_1h_tokens": 3000}).units
        Units({'cache_write_1h_tokens': 3000})
    """

    input_tokens: int = attrs.field(default=0, converter=_as_count, validator=_count)
    output_tokens: int = attrs.field(default=0, converter=_as_count, validator=_count)
    cache_read_tokens: int = attrs.field(default=0, converter=_as_count, validator=_count)
    cache_write_tokens: int = attrs.field(default=0, converter=_as_count, validator=_count)
    reasoning_tokens: int = attrs.field(default=0, converter=_as_count, validator=_count)
    # No converter: the common case (no units) then costs nothing; __attrs_post_init__ converts any other value.
    units: Mapping[str, int] = attrs.field(default=NO_UNITS)  # always a Units once built

    def __attrs_post_init__(self) -> None:
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cache_read_tokens + cache_write_tokens must not exceed input_tokens, got "
                f"{self.cache_read_tokens} + {self.cache_write_tokens} > input_tokens={self.input_tokens}"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                f"reasoning_tokens must not exceed output_tokens, got reasoning_tokens={self.reasoning_tokens} "
                f"> output_tokens={self.output_tokens}"
            )
        units = self.units
        if units is not NO_UNITS:
            units = _to_units(units)
            _set_units(self, units)
            if units is not NO_UNITS:
                _check_units(self)

    @classmethod
    def _trusted(
        cls, inp: int, out: int, cache_read: int, cache_write: int, reasoning: int, units: Units = NO_UNITS
    ) -> Usage:
        """Build from counts already known to be valid non-negative ints with parts within wholes (hot path)."""
        usage = _new(cls)
        _set_input(usage, inp)
        _set_output(usage, out)
        _set_cache_read(usage, cache_read)
        _set_cache_write(usage, cache_write)
        _set_reasoning(usage, reasoning)
        _set_units(usage, units)
        return usage

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (cache and reasoning tokens are already inside those)."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: object) -> Usage:
        """The usage of both, as of several calls: every count and unit added, and the requests counted.

        A usage is priced as the requests its ``requests`` unit says, or as one request without it (a per-request
        fee such as Perplexity's is charged that many times). So each side counts as its ``requests`` or as one,
        and the sum says how many (``units["requests"]``): ``cost_of(m, a + b) == cost_of(m, a) + cost_of(m, b)``
        below long-context tiers. ``Usage()`` (nothing used) is no request: adding it gives the other side, so
        ``sum(usages, Usage())`` counts one request per usage. The counts of one request reported in parts (a
        stream's events) are not added with ``+``: ``StreamAccumulator`` takes them as one request.

        Example::

            >>> (Usage(1000, 100) + Usage(1000, 100)).units
            Units({'requests': 2})
        """
        if not isinstance(other, Usage):
            return NotImplemented
        if other.units is NO_UNITS and not (other.input_tokens or other.output_tokens):
            return self  # the empty usage (its parts are within zero wholes): no request to count
        if self.units is NO_UNITS and not (self.input_tokens or self.output_tokens):
            return other
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            _add_units(self.units, other.units),
        )


def _add_units(a: Mapping[str, int], b: Mapping[str, int]) -> Units:
    """Each unit's counts added; ``requests`` counts one for a side without it (pricing's default)."""
    total = dict(a)
    for key, value in b.items():
        total[key] = total.get(key, 0) + value
    total["requests"] = a.get("requests", 1) + b.get("requests", 1)
    return _to_units(total)


# The slots' own setters, called directly by ``_trusted`` (faster than object.__setattr__ on the hot path).
_new = object.__new__
_setters = {a.name: vars(Usage)[a.name].__set__ for a in attrs.fields(Usage)}
_set_input = _setters["input_tokens"]
_set_output = _setters["output_tokens"]
_set_cache_read = _setters["cache_read_tokens"]
_set_cache_write = _setters["cache_write_tokens"]
_set_reasoning = _setters["reasoning_tokens"]
_set_units = _setters["units"]

#: ``Usage._trusted`` for extraction's hot path (a named seam: other modules do not reach into the class).
trusted_usage = Usage._trusted


def fitted(usage: Usage) -> Usage:
    """``usage`` with its units made to agree with its five counts as ``fit_parts`` makes them (the same usage if
    they agree already): a usage a caller built whose parts count more than their whole (cached tokens and audio
    input both reported in full) is priced, where genai-prices would refuse it.

    >>> fitted(Usage(input_tokens=1000, cache_read_tokens=800, units={"input_audio_tokens": 900})).units
    Units({'input_audio_tokens': 900, 'cache_audio_read_tokens': 700})
    """
    if not usage.units:
        return usage
    units = dict(usage.units)
    fit_parts(units, {FIELD_UNITS[name]: getattr(usage, name) for name in FIELD_UNITS})
    return usage if units == dict(usage.units) else attrs.evolve(usage, units=Units(units))


class _RequestUnits(Units):
    """The units of a usage summed from separate requests (``requests_sum``): a ``Units`` in every way (equal to,
    shown and pickled as one), which also keeps the requests' own usages, for pricing to price each on its own
    (``requests_of``), and the five counts they added up to."""

    __slots__ = ("counts", "requests")
    counts: tuple[int, int, int, int, int]
    requests: tuple[Usage, ...]

    def __repr__(self) -> str:
        return f"Units({self._data!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (Units, (self._data,))  # (the requests are not kept: a stored usage is priced as their sum)


def _counts(usage: Usage) -> tuple[int, int, int, int, int]:
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    )


def requests_sum(usages: Iterable[Usage]) -> Usage:
    """The usage of separate requests, ``usages`` added with ``+`` (their requests counted), which pricing prices
    request by request and adds up (``requests_of``): a request's long-context tier is that request's, as the
    provider bills it, never that of the sum. A usage with nothing used (``Usage()``) is no request, as for ``+``.

    >>> both = requests_sum([Usage(150_000, 1000), Usage(150_000, 1000)])
    >>> both == Usage(300_000, 2000, units={"requests": 2}), requests_of(both)
    (True, (Usage(input_tokens=150000, ...), Usage(input_tokens=150000, ...)))
    """
    parts: list[Usage] = []
    for usage in usages:
        parts.extend(requests_of(usage) or (usage,))
    parts = [u for u in parts if u.units is not NO_UNITS or u.input_tokens or u.output_tokens]
    if len(parts) < 2:
        return parts[0] if parts else Usage()
    total = parts[0]
    for usage in parts[1:]:
        total = total + usage
    units = _RequestUnits.holding(dict(held(total.units)))
    units.requests = tuple(parts)
    units.counts = inp, out, cache_read, cache_write, reasoning = _counts(total)
    return Usage._trusted(inp, out, cache_read, cache_write, reasoning, units)


def requests_of(usage: Usage) -> tuple[Usage, ...] | None:
    """The usages of the separate requests ``usage`` is the sum of (``requests_sum``), or ``None``: not such a sum,
    or one whose counts were changed since (``attrs.evolve``), which is priced as the sum it says."""
    units = usage.units
    if type(units) is not _RequestUnits or _counts(usage) != units.counts:
        return None
    return units.requests
