"""Prices as llmcost looks them up: prices users register (``register_price``, ``load_prices``) over the catalog,
``get_price``, ``cost_of`` and ``MODEL_PRICING``.

A model id is resolved once per ``(model, provider)`` and the converted price cached (in ``_state``) with its
prices pre-scaled per token to integers, so pricing a call is a dict lookup, a few integer multiplications and one
Decimal. The values are in ``_model_price``, the catalog in ``_catalog``.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from os import PathLike
from pathlib import Path
from typing import Any, NoReturn

import attrs

from . import _state
from ._catalog import DAY_MICROS, Resolved, catalog_ids, catalog_table, catalog_version, find_in_catalog
from ._entry import to_service_tier
from ._errors import PricingError, UnknownModelError
from ._model_price import ModelPrice, PriceTier, money_cost, tidy
from ._money import round_money, to_amount, to_money, to_utc, wide_context
from ._time import EPOCH
from ._usage import MAX_COUNT, NO_UNITS, Usage, refuse_usage_and_keywords

__all__ = [
    "MODEL_PRICING",
    "ModelPrice",
    "PriceTier",
    "canonical_id",
    "catalog_version",
    "cost_of",
    "get_price",
    "load_prices",
    "money_cost_of",
    "price_change_days",
    "price_for",
    "priced",
    "read_prices",
    "register_price",
    "registered_prices",
]

_lock = _state.prices_lock
_user_prices: dict[tuple[str | None, str], ModelPrice] = _state.user_prices
_resolved: dict[tuple[str, str | None], Resolved] = _state.resolved_prices
_unknown: dict[tuple[str, str | None], list[str]] = _state.unknown_models
_UNKNOWN_KEPT = 4096  # misses remembered; past that the table starts afresh (ids come from responses)


def _registered(model: str, provider: str | None) -> ModelPrice | None:
    """The price registered for ``model`` (lowercased) from ``provider``, else for ``model`` whoever's."""
    user = _user_prices.get((provider.lower() if provider else None, model))
    if user is None and provider is not None:
        user = _user_prices.get((None, model))
    return user


def _resolve(model: str, provider: str | None) -> Resolved:
    lowered = model.lower()
    user = _registered(lowered, provider)
    if user is not None:
        return Resolved(label="user", price=user)
    found = find_in_catalog(model, provider)
    if found is None:
        candidates = list(dict.fromkeys([*catalog_ids(), *(m for _, m in _user_prices)]))
        close = difflib.get_close_matches(lowered, candidates, n=5, cutoff=0.6)
        raise UnknownModelError(model, close, provider)
    catalog_model = found.catalog_model()
    if _user_prices and catalog_model is not None:
        # A dated or aliased id ("gpt-4o-2024-08-06") is its catalog model ("gpt-4o"): a price registered for that
        # model wins over the catalog's, as it does for the model's own id (and as a budget's estimate priced it).
        user = _registered(catalog_model.lower(), provider)
        if user is not None:
            return Resolved(label="user", price=user)
    return found


def _resolved_for(model: str, provider: str | None) -> Resolved:
    """``(model, provider)`` resolved, once: found prices and misses are both remembered (in ``_state``)."""
    key = (model, provider)
    resolved = _resolved.get(key)
    if resolved is None:
        close = _unknown.get(key)
        if close is not None:
            raise UnknownModelError(model, close, provider)
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty str, got {model!r}")
        with _lock:
            resolved = _resolved.get(key)
            if resolved is None:
                try:
                    resolved = _resolved[key] = _resolve(model, provider)
                except UnknownModelError as exc:
                    if len(_unknown) >= _UNKNOWN_KEPT:
                        _unknown.clear()
                    _unknown[key] = exc.suggestions
                    raise
    return resolved


def price_change_days(model: str, provider: str | None = None) -> tuple[date, ...]:
    """The UTC days on which the price of ``model`` may change, sorted (``Resolved.change_days``): none for a
    registered price or a catalog price that never changes. Raises ``UnknownModelError`` like ``price_for``."""
    return _resolved_for(model, provider).change_days()


def price_for(
    model: str, provider: str | None = None, at: datetime | None = None, service_tier: str | None = None
) -> tuple[ModelPrice, str]:
    """The price of ``model`` in force at ``at`` for ``service_tier`` and where it came from (``user``,
    ``catalog@<version>``, with ``+batch-rule`` and the like when a published rule priced the tier, or
    ``correction:<id>``).

    The hot path of pricing: after the first call for a ``(model, provider)`` pair it is a dict lookup.
    """
    if at is not None and not isinstance(at, datetime):
        _bad_at(at)
    resolved = _resolved.get((model, provider))
    if resolved is None:
        resolved = _resolved_for(model, provider)
    if resolved.price is not None and service_tier is None:
        return resolved.price, resolved.label
    when = datetime.now(timezone.utc) if at is None else to_utc(at, "at")
    quote = resolved.quote(when, service_tier)
    return quote.price, quote.label


def _bad_at(at: object) -> NoReturn:
    # Checked for every model, not only where the price changes over time: at="garbage" used to price gpt-4o.
    raise TypeError(f"at must be a datetime (an aware one; a naive one is taken as UTC), got {at!r}")


def priced(
    model: str,
    provider: str | None,
    usage: Usage,
    at: datetime | int,
    service_tier: str | None = None,
    atto: object = False,
) -> tuple[Decimal, str, str | None, str, int | None]:
    """What ``usage`` of ``model`` cost at ``at`` in ``service_tier``, rounded as every store keeps amounts
    (``MONEY_SCALE`` places, usually already so), where the price came from, the price's provider, its model id
    (the catalog's id, ``gpt-4o-mini`` for ``gpt-4o-mini-2024-07-18``; a registered price's ``model``), and the
    amount in units of ``10**-MONEY_SCALE`` as an int if ``atto`` (any truthy value) asks for it and the integer
    pricing found it
    (``None`` elsewhere: ``atto_of(amount)`` finds it; asked only where budgets or recent-call sums count it, since
    the integer costs a tenth of the pricing): the tracker's hot path. A correction that does not change the amount
    leaves the catalog's label.

    ``at`` may be given as an int of microseconds since the epoch: most prices do not change over time, and the
    datetime is then made only for one that does.

    Raises ``UnknownModelError`` like ``price_for``.
    """
    resolved = _resolved.get((model, provider))
    if resolved is None:
        resolved = _resolved_for(model, provider)
    price = resolved.price
    if price is not None and service_tier is None:
        if usage.units is NO_UNITS:
            if atto:
                pricer = resolved.atto_pricer
                if pricer is not None:  # the common budgeted call: straight to the integers
                    found = pricer(
                        usage.input_tokens,
                        usage.output_tokens,
                        usage.cache_read_tokens,
                        usage.cache_write_tokens,
                        usage.reasoning_tokens,
                    )
                    if found is not None:
                        cost, in_atto = found
                        return cost, resolved.label, price.provider, price.model, in_atto
            money = resolved.money_pricer
            if money is not None:  # the common call
                amount = money(
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_read_tokens,
                    usage.cache_write_tokens,
                    usage.reasoning_tokens,
                )
                if amount is not None:
                    return amount, resolved.label, price.provider, price.model, None
        else:
            amount = resolved.units_pricer(usage)  # type: ignore[misc]  # set with price
            if amount is not None:
                return amount, resolved.label, price.provider, price.model, None
        return money_cost(price, usage), resolved.label, price.provider, price.model, None
    quote = resolved.standing if service_tier is None else None  # a quote for all time (undated corrections)
    if quote is None:
        if service_tier is None and type(at) is int:
            kept = resolved.day_quote  # ``quote_at``'s kept quote read here: one call less on most calls
            quote = kept[1] if type(kept) is tuple and kept[0] == at // DAY_MICROS else resolved.quote_at(at)
        else:
            quote = resolved.quote(EPOCH + timedelta(microseconds=at) if isinstance(at, int) else at, service_tier)
    # The quote's fields in one step (the tracker's path for corrected and dated prices).
    price, label, money_pricer, units_pricer, baseline, baseline_label, same_up_to, plain_label = quote
    units = usage.units
    inp = usage.input_tokens
    if units is NO_UNITS:
        amount = (
            None
            if money_pricer is None
            else money_pricer(
                inp, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens, usage.reasoning_tokens
            )
        )
    else:
        amount = units_pricer(usage)
    if amount is None:
        amount = money_cost(price, usage)
    if inp <= same_up_to:  # no correction, or one that leaves this call's rates as they were
        return amount, plain_label, price.provider, price.model, None
    # A correction that leaves this call's rates as they were cannot change its amount (most corrections add a
    # long-context tier, which most calls are below: ``same_up_to`` above); else the amounts are compared.
    if baseline is not None and (price.rates(inp) == baseline.rates(inp) or money_cost(baseline, usage) == amount):
        return amount, baseline_label, price.provider, price.model, None
    return amount, label, price.provider, price.model, None


def money_cost_of(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """``cost_of(model, input_tokens, output_tokens)`` at money's ``MONEY_SCALE`` places (as stores keep amounts,
    and as a budget reserves them exactly): a budget's estimate of a call from its prompt, before every such call.

    >>> money_cost_of("gpt-4o", 1000, 100)
    Decimal('0.0035')
    """
    resolved = _resolved.get((model, None))
    if resolved is not None:
        pricer = resolved.money_pricer
        if (
            pricer is not None
            and type(input_tokens) is type(output_tokens) is int  # (bools and the like take cost_of's checks)
            and 0 <= input_tokens <= MAX_COUNT
            and 0 <= output_tokens <= MAX_COUNT
        ):
            amount = pricer(input_tokens, output_tokens, 0, 0, 0)
            if amount is not None:
                return amount
    return round_money(cost_of(model, input_tokens, output_tokens))


def canonical_id(model: str) -> str | None:
    """The id of the model whose price ``model`` resolves to (the catalog's id, or a registered price's ``model``),
    ``None`` for an unknown model: what ``CostEntry.canonical_model`` of a call to ``model`` will be.

    >>> canonical_id("gpt-4o-mini-2024-07-18")
    'gpt-4o-mini'
    """
    try:
        return price_for(model)[0].model
    except UnknownModelError:
        return None


def get_price(model: str, provider: str | None = None, *, at: datetime | None = None) -> ModelPrice:
    """The price of ``model`` (optionally from ``provider``) in force at ``at`` (default: now), a datetime: an aware
    one, or a naive one taken as UTC.

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
    usage: Usage | int | None = None,
    *counts: int,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    units: Mapping[str, int] | None = None,
    service_tier: str | None = None,
    provider: str | None = None,
    at: datetime | None = None,
) -> Decimal:
    """The exact USD cost of a call to ``model`` with ``usage`` (or the token keywords and ``units``), priced at
    ``at`` in ``service_tier`` (``None``: standard; ``"batch"``, ``"flex"``, ``"priority"``, ``"fast"``; ``"us"`` or
    a tier with ``"+us"``: Anthropic's US-only inference, 1.1x every token price for Claude Opus 4.6 and later).

    The token counts may also be given positionally, input then output: ``cost_of("gpt-4o", 1000, 100)``. ``at``
    (default: now) is a datetime, an aware one or a naive one taken as UTC.

    Example::

        >>> cost_of("gpt-4o", input_tokens=1_000_000, output_tokens=100_000)
        Decimal('3.5')
        >>> cost_of("gpt-4o", 1_000_000, 100_000)
        Decimal('3.5')
        >>> cost_of("claude-sonnet-4-20250514", input_tokens=10_000, cache_write_tokens=3_000,
        ...         units={"cache_write_1h_tokens": 3_000, "web_searches": 2})
        Decimal('0.059')
    """
    if usage is not None and isinstance(usage, int) and not isinstance(usage, bool):
        if len(counts) > 1 or input_tokens or output_tokens:
            raise TypeError(
                "cost_of takes at most two token counts by position (input_tokens, output_tokens); "
                "name the others: cache_read_tokens=..., cache_write_tokens=..."
            )
        input_tokens, output_tokens, usage = usage, counts[0] if counts else 0, None
    elif counts:
        raise TypeError(
            f"cost_of(model, usage, ...) got extra positional values {counts!r}; give token counts as "
            "cost_of(model, input_tokens, output_tokens) or by name"
        )
    if at is not None and not isinstance(at, datetime):
        _bad_at(at)
    if usage is None and units is None and service_tier is None:
        # The common call, priced without building a Usage: a resolved fixed price and valid int counts (anything
        # else takes the general path below, which says what is wrong).
        resolved = _resolved.get((model, provider))
        if (
            resolved is not None
            and resolved.pricer is not None
            and type(input_tokens) is type(output_tokens) is type(cache_read_tokens) is type(cache_write_tokens) is int
            and input_tokens | output_tokens | cache_read_tokens | cache_write_tokens >= 0  # none negative
            and input_tokens | output_tokens <= MAX_COUNT  # neither over MAX_COUNT (nor then the parts)
            and cache_read_tokens + cache_write_tokens <= input_tokens
        ):
            amount = resolved.pricer(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, 0)
            if amount is not None:
                return amount
    if usage is None:
        if units is None:  # the common case: no units to convert and check
            usage = Usage(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
        else:
            usage = Usage(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, units=units)
    elif not isinstance(usage, Usage):
        raise TypeError(
            f"usage must be a llmcost.Usage or the input token count, got {usage!r}; "
            "e.g. cost_of(model, Usage(1000, 100)) or cost_of(model, 1000, 100)"
        )
    elif units is not None:
        raise TypeError("pass units inside usage=Usage(..., units=...), or the token keywords with units=")
    elif input_tokens or output_tokens or cache_read_tokens or cache_write_tokens:  # were dropped without a word
        refuse_usage_and_keywords(
            usage,
            {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_read_tokens": cache_read_tokens,
                "cache_write_tokens": cache_write_tokens,
            },
        )
    if service_tier is None:
        return price_for(model, provider, at)[0].cost(usage)
    return price_for(model, provider, at, to_service_tier(service_tier))[0].cost(usage)


def register_price(price: ModelPrice) -> None:
    """Use ``price`` for ``price.model`` (and ``price.provider``, when set) from now on, over the catalog: also for
    the ids the catalog resolves to that model (``gpt-4o-2024-08-06`` to ``gpt-4o``), unless they have their own.

    Example::

        register_price(ModelPrice("ft:gpt-4o-mini:acme", "openai", input_per_mtok="0.3", output_per_mtok="1.2"))
    """
    if not isinstance(price, ModelPrice):
        raise TypeError(f"price must be a llmcost.ModelPrice, got {price!r}")
    with _lock:
        key = (price.provider.lower() if price.provider else None, price.model.lower())
        replaced = _user_prices.get(key)
        _user_prices[key] = price
        # The model's price where no provider is named: the first provider's, unless this replaces that very price
        # (the same model and provider registered again: the new price from now on, as for its provider).
        bare = (None, key[1])
        if replaced is not None and _user_prices.get(bare) is replaced:
            _user_prices[bare] = price
        else:
            _user_prices.setdefault(bare, price)
        _resolved.clear()
        _unknown.clear()
        _state.prices_changed()


def registered_prices() -> list[ModelPrice]:
    """Every price registered with ``register_price`` or ``load_prices``, each once."""
    with _lock:
        return list({id(p): p for p in _user_prices.values()}.values())


_FIELDS = {a.name for a in attrs.fields(ModelPrice)}


def load_prices(path: str | PathLike[str]) -> list[ModelPrice]:
    """Register every price in a TOML file (``[[price]]`` tables), JSON file (a list of objects) or YAML file
    (``.yaml``/``.yml``, per-token costs by provider and model, see ``read_prices``) and return them.

    The file is read by ``read_prices``; then each price is registered as with ``register_price``.

    Fields are those of ``ModelPrice``; money as strings keeps it exact. A bad file raises ``PricingError``
    naming the file, the entry and the field, as does a file without its price tables (a misspelt ``[[prices]]``).

    Example (``prices.toml``)::

        [[price]]
        model = "acme-large"
        provider = "acme"
        input_per_mtok = "2.00"
        output_per_mtok = "8.00"
    """
    prices = read_prices(path)
    for price in prices:
        register_price(price)
    return prices


def read_prices(path: str | PathLike[str]) -> list[ModelPrice]:
    """The prices in a file of the ``load_prices`` format, without registering them (no process-wide effect), as
    ``analytics.reprice`` reads a what-if price table.

    A bad file raises ``PricingError`` naming the file, the entry and the field.

    A YAML file (``.yaml``/``.yml``, read with PyYAML: ``pip install 'llmcost[yaml]'``) holds either the same list
    of prices (top level or under ``price:``) or per-token costs by provider and model, as other tools write them::

        providers:
          openai:
            gpt-4-turbo:
              prompt_token_cost: 0.00001
              completion_token_cost: 0.00003
              cache_read_input_token_cost: 0.000005     # optional, named as in LiteLLM's map
              cache_creation_input_token_cost: 0.0000125  # optional

    Each per-token cost ``x`` becomes the per-million price ``Decimal(str(x)) * 10**6``, exactly.

    Example::

        >>> [p.model for p in read_prices("prices.toml")]
        ['acme-large']
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PricingError(f"cannot read price file {str(file)!r}: {exc}") from exc
    except UnicodeDecodeError:  # a binary file (a store given as --prices): the codec's message names no file
        raise PricingError(
            f"price file {str(file)!r} is not UTF-8 text; give a TOML, JSON or YAML price file"
        ) from None
    try:
        if file.suffix.lower() == ".json":
            rows = json.loads(text)
        elif file.suffix.lower() in (".yaml", ".yml"):
            rows = _yaml_rows(text, str(file))
        else:
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - exercised on Python 3.10 only
                import tomli as tomllib
            rows = _price_tables(tomllib.loads(text), str(file), "[[price]] tables")
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
    return prices


def _price_tables(document: dict[str, Any], where: str, expected: str) -> Any:
    """The ``price`` list of a TOML or YAML price file's top level. Anything else there is refused: a misspelt
    ``[[prices]]`` read as no prices at all, leaving every call priced from the catalog without a word."""
    unknown = sorted(set(document) - {"price"})
    if unknown:
        raise PricingError(f"price file {where!r} has unknown top-level keys {unknown}; it must hold {expected}")
    if "price" not in document:
        raise PricingError(f"price file {where!r} holds no prices; it must hold {expected}")
    return document["price"]


#: Per-token cost keys of YAML price files (LiteLLM's names for the cache ones) and the per-million field of each.
_PER_TOKEN = {
    "prompt_token_cost": "input_per_mtok",
    "completion_token_cost": "output_per_mtok",
    "cache_read_input_token_cost": "cache_read_per_mtok",
    "cache_creation_input_token_cost": "cache_write_per_mtok",
}


def _yaml_rows(text: str, where: str) -> Any:
    """The price rows of a YAML price file: its list of prices as they are, or its ``providers:`` map of per-token
    costs as rows of per-million prices."""
    try:
        import yaml
    except ImportError:
        raise PricingError(
            f"price file {where!r} is YAML, which needs PyYAML: pip install pyyaml (or pip install 'llmcost[yaml]')"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PricingError(f"price file {where!r} is not valid YAML: {exc}") from exc
    if isinstance(data, dict) and "providers" not in data:
        return _price_tables(data, where, "a price: list or a providers: map")
    if not isinstance(data, dict):
        return data if data is not None else _price_tables({}, where, "a price: list or a providers: map")
    providers = data["providers"]
    if not isinstance(providers, dict):
        raise PricingError(f"price file {where!r}: providers must map a provider to its models, got {providers!r}")
    rows: list[dict[str, Any]] = []
    for provider, models in providers.items():
        if not isinstance(models, dict):
            raise PricingError(f"price file {where!r}: providers.{provider} must map a model to its costs")
        for model, costs in models.items():
            if not isinstance(costs, dict):
                raise PricingError(f"price file {where!r}: providers.{provider}.{model} must map cost names to costs")
            unknown = sorted(k for k in costs if "cost" in str(k) and k not in _PER_TOKEN)
            if unknown:
                raise PricingError(
                    f"price file {where!r}: providers.{provider}.{model} has unknown costs {unknown} "
                    f"(known: {', '.join(_PER_TOKEN)})"
                )
            row: dict[str, Any] = {"model": str(model), "provider": str(provider)}
            for key, field in _PER_TOKEN.items():
                value = costs.get(key)
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                    raise PricingError(
                        f"price file {where!r}: providers.{provider}.{model}.{key} must be a number, got {value!r}"
                    )
                name = f"providers.{provider}.{model}.{key}"
                try:
                    with wide_context():  # exact: the default 28 digits would round a long per-token cost
                        per_mtok = to_money(value, name).scaleb(6)
                    # Bounded before ``tidy``, whose exact arithmetic has no room for 10**406.
                    per_mtok = to_amount(str(per_mtok), f"{name} per million tokens")
                except ValueError as exc:
                    raise PricingError(f"price file {where!r}: {exc}") from None
                row[field] = tidy(per_mtok)  # trailing zeros dropped
            rows.append(row)
    return rows


class _PricingView(Mapping[str, ModelPrice]):
    """``MODEL_PRICING``: a read-only mapping of model id to current ``ModelPrice`` over the whole catalog plus
    registered prices. Built on first access, kept in ``_state.pricing_table``.

    Example::

        >>> llmcost.MODEL_PRICING["gpt-4o"].input_per_mtok
        Decimal('2.5')
        >>> "gpt-4o-mini" in llmcost.MODEL_PRICING
        True
    """

    def _build(self) -> dict[str, ModelPrice]:
        data = _state.pricing_table
        if data is None:
            data = catalog_table(datetime.now(timezone.utc))
            if _user_prices:
                for key, price in data.items():  # ids of a registered model, as get_price resolves them
                    data[key] = _user_prices.get((None, price.model.lower()), price)
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
