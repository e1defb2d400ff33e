"""Repricing recorded usage: ``reprice`` (what the history would cost under another price table, at another date,
or on another model), and the grouped pricing that ``reconcile`` shares.

How it works, so that a million entries cost a handful of pricings rather than a million: one SQL query over the
source groups entries by the caller's keys, ``(model, provider)`` and the *price epoch* (none when the price did not
change over the entries' span, the UTC day when it changed on a date, the half hour when it varies by time of day),
with exact token and amount sums. Each group is priced once with ``ModelPrice.cost`` on its summed usage: cost is
linear in tokens below a long-context tier, and the per-request fee is counted once per call. Entries above a
model's first tier threshold get a group of their own (their id is a group key) and are priced one by one, as the
provider bills them. A service tier (Batch, Flex, Priority) is a group key too, and units (1-hour cache writes,
audio, web searches) are summed per group by name, as tokens are.

Example::

    >>> reprice(tracker, "new-prices.toml", since="2024-05-14")[["model", "calls", "recorded", "repriced", "delta"]]
                   model  calls recorded repriced  delta
    0               None      4      9.6      9.6      0
    1             gpt-4o     28     3.92     1.96  -1.96
    2  claude-3-5-sonnet      4     0.48     0.48      0
    3        gpt-4o-mini     12   0.0432   0.0432      0
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from os import PathLike
from typing import TYPE_CHECKING, Any

import attrs

from .._catalog import tier_rule
from .._errors import UnknownModelError
from .._model_price import ModelPrice, tidy
from .._money import ZERO, to_utc, wide_context
from .._prices import price_change_days, price_for, read_prices
from .._rows import TOKEN_COLUMNS
from .._time import When
from .._usage import Usage
from ._source import Source, as_source
from ._spend import group_keys

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PRICED_COLUMNS",
    "PriceTable",
    "Priced",
    "add_units",
    "model_key",
    "priced_groups",
    "reprice",
    "units_list_sql",
]

#: The money and count columns of ``reprice``, after the group keys.
PRICED_COLUMNS = ("calls", "recorded", "repriced", "delta", "delta_pct", "kept")


def units_list_sql(column: str) -> str:
    """A grouped query's select of the units of its group's entries (``column``: their ``units``), as JSON text of
    the entries' maps; ``add_units`` sums them by name (below a long-context tier, cost is linear in them).

    >>> units_list_sql("e.units")
    'CAST(to_json(list(e.units) FILTER (WHERE e.units IS NOT NULL)) AS VARCHAR)'
    """
    return f"CAST(to_json(list({column}) FILTER (WHERE {column} IS NOT NULL)) AS VARCHAR)"


def add_units(into: dict[str, int], units_json: object) -> None:
    """Add the units of a ``units_list_sql`` value (``None``/NaN: none) to ``into``, by name.

    >>> found = {"web_searches": 1}
    >>> add_units(found, '[{"web_searches": 2}, {"cache_write_1h_tokens": 500}]')
    >>> found
    {'web_searches': 3, 'cache_write_1h_tokens': 500}
    """
    if isinstance(units_json, str):
        for each in json.loads(units_json):
            for name, count in each.items():
                into[name] = into.get(name, 0) + count


_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
_HALF_HOUR = timedelta(minutes=30)


#: A Claude 3.x display name in today's order, family first ("claude haiku 3.5", lowercased).
_OLDER_CLAUDE = re.compile(r"claude (haiku|sonnet|opus) (3(?:\.\d)?)")


def _plain_key(model: str) -> str:
    """A model id or a provider's display name, lowercased and hyphenated: ``Claude Sonnet 4.5`` ->
    ``claude-sonnet-4-5``, ``GPT-4o mini`` -> ``gpt-4o-mini``, ``Claude Haiku 3.5`` -> ``claude-3-5-haiku``."""
    text = " ".join(model.split()).lower()
    if " " in text:
        older = _OLDER_CLAUDE.fullmatch(text)
        if older:
            # The console names Claude 3.x models as it names later ones ("Claude Haiku 3.5"); their ids put the
            # version first (``claude-3-5-haiku``), as the names of their day did ("Claude 3.5 Haiku").
            family, version = older.groups()
            return f"claude-{version.replace('.', '-')}-{family}"
        if text.startswith("claude"):
            text = text.replace(".", "-")
        text = text.replace(" ", "-")
    return text


def model_key(model: str, cache: dict[str, str] | None = None) -> str:
    """The id two names of one model share: the catalog's id where the catalog knows the model (so
    ``gpt-4o-2024-08-06`` and ``gpt-4o`` are both ``gpt-4o``), else the lowercased id without a date suffix.
    Display names as the Anthropic console exports them (``Claude Sonnet 4.5``) are read as ids first.

    >>> model_key("gpt-4o-2024-08-06"), model_key("Claude 3.5 Sonnet"), model_key("claude-3-5-haiku-20241022")
    ('gpt-4o', 'claude-3-5-sonnet', 'claude-3-5-haiku')
    """
    if cache is not None and model in cache:
        return cache[model]
    text = _plain_key(model)
    try:
        found = _DATED.sub("", price_for(text)[0].model.lower())
    except (UnknownModelError, ValueError):
        found = _DATED.sub("", text)
    if cache is not None:
        cache[model] = found
    return found


def _catalog_id(model: str) -> str | None:
    """``model``'s catalog id (a registered price's ``model``), lowercased; ``None`` for a model no price is known
    for. The id entries of ``model`` are grouped by (``CostEntry.canonical_model``).

    >>> _catalog_id("o3-2025-04-16"), _catalog_id("acme-large")
    ('o3', None)
    """
    try:
        return price_for(model)[0].model.lower()
    except (UnknownModelError, ValueError):
        return None


def _snapshot_of(name: str) -> str | None:
    """The catalog model that ``name`` (a table's or a swap's key) is a dated snapshot of, by its date (or ``latest``)
    suffix: ``o3`` for ``o3-2025-04-16``; ``None`` for any other key. A variant the catalog folds into a model by
    prefix (``gpt-5-chat-latest`` is priced as ``gpt-5``, ``claude-opus-4-6-fast`` as ``claude-opus-4-6``) has a
    price of its own, and a model no price knows is not looked up (an unknown id costs a search for suggestions).

    >>> _snapshot_of("o3-2025-04-16"), _snapshot_of("gpt-5-chat-latest"), _snapshot_of("acme-large-2025-01-01")
    ('o3', None, None)
    """
    undated = _DATED.sub("", name)
    if undated == name:
        return None
    found = _catalog_id(name)
    return found if found == undated else None


@attrs.frozen
class PriceTable:
    """What ``reprice(prices=...)`` prices with: a table of ``ModelPrice`` (from a list or a ``load_prices``-format
    file, never registered process-wide) and/or a model swap, laid over the catalog. The catalog (with prices
    registered in the process) prices every model the table and the swap do not name.

    ``swap`` maps a model (as entries hold it, its catalog id, or its id without the date) to another model's id,
    priced from the catalog, or to a ``ModelPrice``. A key of either naming a dated snapshot of a catalog model
    (``o3-2025-04-16`` of ``o3``: ``_snapshot_of``) also matches every entry of that model, whatever id it was
    recorded with, as ``reprice(by="model")`` puts them in one row; a key naming the entry's own ids comes first.
    """

    table: Mapping[tuple[str | None, str], ModelPrice] = attrs.field(factory=dict)
    swap: Mapping[str, str | ModelPrice] = attrs.field(factory=dict)
    #: ``table`` and ``swap`` by the catalog model their keys are dated snapshots of (the first key of a model wins):
    #: the entries' catalog ids are looked up here, after their own ids failed.
    _table_ids: Mapping[tuple[str | None, str], ModelPrice] = attrs.field(init=False, factory=dict)
    _swap_ids: Mapping[str, str | ModelPrice] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        table_ids: dict[tuple[str | None, str], ModelPrice] = {}
        for (provider, name), price in self.table.items():
            found = _snapshot_of(name)
            if found is not None:
                table_ids.setdefault((provider, found), price)
        swap_ids: dict[str, str | ModelPrice] = {}
        for name, target in self.swap.items():
            found = _snapshot_of(name)
            if found is not None:
                swap_ids.setdefault(found, target)
        # Frozen: set once here, as attrs advises for fields derived from others.
        object.__setattr__(self, "_table_ids", table_ids)
        object.__setattr__(self, "_swap_ids", swap_ids)

    @classmethod
    def of(cls, prices: object) -> PriceTable:
        """The table ``prices`` names: ``None`` (the catalog), a path, a list of ``ModelPrice`` or a mapping."""
        if prices is None:
            return cls()
        if isinstance(prices, PriceTable):
            return prices
        if isinstance(prices, (str, PathLike)):
            return cls.of(read_prices(prices))
        if isinstance(prices, Mapping):
            swap: dict[str, str | ModelPrice] = {}
            for key, value in prices.items():
                if not isinstance(key, str) or not key:
                    raise TypeError(f"prices: a swap maps model ids to a model id or a ModelPrice; got key {key!r}")
                if isinstance(value, str):
                    price_for(value)  # an unknown target fails now, naming the closest ids
                elif not isinstance(value, ModelPrice):
                    raise TypeError(f"prices: a swap maps {key!r} to a model id or a llmcost.ModelPrice, got {value!r}")
                swap[_plain_key(key)] = value
            return cls(swap=swap)
        if isinstance(prices, Sequence) and not isinstance(prices, (bytes, bytearray)):
            table: dict[tuple[str | None, str], ModelPrice] = {}
            for price in prices:
                if not isinstance(price, ModelPrice):
                    raise TypeError(f"prices: every item of a price list must be a llmcost.ModelPrice, got {price!r}")
                table[(price.provider.lower() if price.provider else None, price.model.lower())] = price
                table.setdefault((None, price.model.lower()), price)
            return cls(table=table)
        raise TypeError(
            "prices must be None (the catalog), a path to a price file, a list of ModelPrice or a dict mapping a "
            f"model to another model or a ModelPrice; got {prices!r}"
        )

    def resolve(self, model: str, provider: str | None) -> PriceAt | None:
        """The price of ``model`` as a function of the time of the call, or ``None`` when no price is known."""
        plain = _plain_key(model)
        catalog = _catalog_id(model)
        names = list(dict.fromkeys(n for n in (plain, catalog, _DATED.sub("", plain)) if n is not None))
        key = provider.lower() if provider else None
        # The ids the entry goes by, then its catalog id against the keys' catalog ids: a price for o3-2025-04-16
        # reaches the entries recorded as o3 too (one model to the catalog, one row by model), where one for o3
        # itself would have come first.
        by_catalog = [catalog] if catalog is not None else []
        for swap, table, wanted in ((self.swap, self.table, names), (self._swap_ids, self._table_ids, by_catalog)):
            for name in wanted:
                target = swap.get(name)
                if isinstance(target, ModelPrice):
                    return _Fixed(target)
                if isinstance(target, str):
                    return _Catalog(target, None)
            for name in wanted:
                found = table.get((key, name)) or table.get((None, name))
                if found is not None:
                    return _Fixed(found)
        try:
            price_for(model, provider)
        except (UnknownModelError, ValueError):
            return None
        return _Catalog(model, provider)


@attrs.frozen
class _Fixed:
    """One price at every time (a price table's or a swap's ``ModelPrice``, or every entry priced ``at``)."""

    price: ModelPrice

    def __call__(self, when: datetime) -> ModelPrice:
        return self.price

    def at_tier(self, when: datetime, tier: str) -> ModelPrice:
        """The price for a Batch/Flex/Priority call: a price of one's own has no tier prices, so the providers'
        published rule applied to it."""
        return tier_rule(self.price, "", tier)[0]

    def change_days(self) -> tuple[date, ...]:
        return ()


@attrs.frozen
class _Catalog:
    """The catalog's (or a registered) price of a model, as it is in force at the time asked for."""

    model: str
    provider: str | None

    def __call__(self, when: datetime) -> ModelPrice:
        return price_for(self.model, self.provider, when)[0]

    def at_tier(self, when: datetime, tier: str) -> ModelPrice:
        """The price for a Batch/Flex/Priority call: the catalog's price of this model for that tier where it has
        one (the rule where it has not), whether the model is the entry's own or a swap's target."""
        with contextlib.suppress(UnknownModelError, ValueError):
            return price_for(self.model, self.provider, when, tier)[0]
        return self(when)

    def change_days(self) -> tuple[date, ...]:
        return price_change_days(self.model, self.provider)


#: How ``reprice`` prices a model: the price in force at a time, and the UTC days on which it may change.
PriceAt = _Fixed | _Catalog


def _grain(price_at: PriceAt, first: datetime, last: datetime) -> tuple[str | None, int | None]:
    """How finely entries of one model must be grouped by time to share a price: ``None`` (one price over
    ``first``..``last``), ``"day"`` (prices change at UTC midnight, as catalog start dates do), ``"slot"`` (prices
    vary by time of day only, as off-peak prices do: the half hour of the day) or ``"halfhour"`` (both); and the
    lowest long-context tier threshold of those prices.

    Every half hour of the first and last days is probed, and of each day in between on which a price starts or a
    correction begins or ends: a price that changed and changed back is then seen, though the ends agree."""
    start, end = first.date(), last.date()
    days = {start, end, *(day for day in price_at.change_days() if start < day < end)}
    probes = set()
    for day in days:
        midnight = datetime.combine(day, time(0), tzinfo=timezone.utc)
        probes.add(tuple(price_at(midnight + k * _HALF_HOUR) for k in range(48)))
    threshold = _threshold(*(price for probe in probes for price in probe))
    by_time_of_day = any(len(set(p)) > 1 for p in probes)
    if by_time_of_day:
        return ("slot" if len(probes) == 1 else "halfhour"), threshold
    return (None if len(probes) == 1 else "day"), threshold


def _threshold(*prices: ModelPrice) -> int | None:
    starts = [tier.start for price in prices for tier in price.tiers]
    return min(starts) if starts else None


def _bulk_cost(price: ModelPrice, usage: Usage, calls: int) -> Decimal:
    """``price`` applied to ``calls`` calls below every long-context tier that used ``usage`` together: cost is
    linear in tokens there, and the per-request fee (counted once by ``cost``) is due once per call."""
    if price.tiers:
        price = attrs.evolve(price, tiers=())
    cost = price.cost(usage)
    if price.request_price is not None and calls > 1:
        cost += price.request_price * (calls - 1)
    return cost


@attrs.define
class Priced:
    """One group's figures: calls, the recorded sum, the repriced sum, calls kept as recorded (no model, no known
    price, or an amount given without tokens), calls recorded unpriced, and the repriced sum with cache reads and
    writes billed as plain input (how ``reconcile`` tells a cache rate that was not applied)."""

    calls: int = 0
    recorded: Decimal = ZERO
    repriced: Decimal = ZERO
    kept: int = 0
    unpriced: int = 0
    no_cache: Decimal = ZERO
    models: set[str] = attrs.field(factory=set)


def _when(value: object, field: str) -> datetime:
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return to_utc(value, field)  # type: ignore[arg-type]


def _aware(value: Any) -> datetime:
    moment = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _pairs(src: Source, table: PriceTable, at: datetime | None) -> dict[tuple[str, str | None], Any]:
    """Per ``(model, provider)`` present with a known price: ``(price at time, grain, tier threshold, first)``."""
    found = src.sql(
        "SELECT model, provider, min(timestamp) AS first, max(timestamp) AS last FROM _e "
        "WHERE model IS NOT NULL GROUP BY model, provider"
    )
    out: dict[tuple[str, str | None], Any] = {}
    for model, provider, first, last in found.itertuples(index=False, name=None):
        provider = None if _missing(provider) else provider
        price_at = table.resolve(model, provider)
        if price_at is None:
            continue
        if at is not None:
            # Kept as resolved (not fixed at ``at``'s price): a swap's target still has its tier prices.
            out[(model, provider)] = (price_at, None, _threshold(price_at(at)), at)
            continue
        first, last = _aware(first), _aware(last)
        grain, threshold = _grain(price_at, first, last)
        out[(model, provider)] = (price_at, grain, threshold, first)
    return out


def priced_groups(
    src: Source,
    keys: Sequence[str],
    params: Sequence[Any],
    prices: PriceTable,
    at: datetime | None,
    *,
    no_cache: bool = False,
    where: str = "TRUE",
    where_params: Sequence[Any] = (),
) -> dict[tuple[Any, ...], Priced]:
    """Recorded and repriced sums per value of the SQL expressions ``keys`` (over ``_e``; ``params`` fill their
    ``?``), all in one grouped query; see the module docstring. ``at`` prices every entry at that moment; ``None``
    prices each at its own time. With ``no_cache``, also the sums with cache tokens billed as plain input. ``where``
    (over ``e``, with ``where_params``) narrows the entries.

    Example::

        >>> with as_source(tracker) as src:
        ...     groups = priced_groups(src, ["e.resource"], [], PriceTable.of({"gpt-4o": "gpt-4o-mini"}), None)
        >>> groups[("search-rerank",)].recorded, groups[("search-rerank",)].repriced
        (Decimal('2.1'), Decimal('0.126'))
    """
    pairs = _pairs(src, prices, at)
    # The pairs travel as parameters; the first, all-NULL row types the columns and matches no entry.
    typed = "(CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS BIGINT))"
    values = ", ".join([typed] + ["(?, ?, ?, CAST(? AS BIGINT))"] * len(pairs))
    pair_params: list[Any] = []
    for (model, provider), (_, grain, threshold, _) in pairs.items():
        pair_params.extend((model, provider, grain, threshold))
    selects = [f"{expr} AS _k{i}" for i, expr in enumerate(keys)]
    tokens = ", ".join(f"CAST(sum(e.{c}) AS HUGEINT) AS {c}" for c in TOKEN_COLUMNS)
    rows = src.sql(
        f""", _p(model, provider, grain, threshold) AS (SELECT * FROM (VALUES {values}))
        SELECT {"".join(s + ", " for s in selects)}e.model, e.provider, p.model IS NOT NULL AS known,
               CASE p.grain WHEN 'day' THEN date_trunc('day', timezone('UTC', e.timestamp))
                            WHEN 'halfhour' THEN time_bucket(INTERVAL 30 MINUTE, timezone('UTC', e.timestamp))
               END AS epoch,
               CASE p.grain WHEN 'slot' THEN CAST(floor(epoch(e.timestamp) % 86400 / 1800) AS BIGINT) END AS slot,
               CASE WHEN e.input_tokens > p.threshold THEN e.id END AS single,
               {units_list_sql("e.units")} AS units_json,
               e.service_tier AS tier,
               coalesce(e.pricing = 'given' AND e.input_tokens + e.output_tokens = 0, FALSE) AS given_only,
               count(*) AS calls, sum(e.amount) AS recorded,
               count(*) FILTER (WHERE e.pricing = 'unpriced') AS unpriced,
               max(e.timestamp) AS last, {tokens}
        FROM _e AS e LEFT JOIN _p AS p ON e.model = p.model AND e.provider IS NOT DISTINCT FROM p.provider
        WHERE {where}
        GROUP BY ALL""",
        [*pair_params, *params, *where_params],
    )
    out: dict[tuple[Any, ...], Priced] = {}
    # Rows that share a key and a price are summed before pricing: a model priced by time of day has a row per
    # half hour of the day (or of the span), but only a few distinct prices. Their units (1-hour cache writes,
    # audio, web searches...) are summed too, each by name: below a long-context tier, cost is linear in them.
    sums: dict[tuple[tuple[Any, ...], ModelPrice, Any], tuple[list[int], dict[str, int]]] = {}
    prices_at: dict[tuple[str, str | None, datetime, str | None], ModelPrice] = {}
    n = len(keys)
    # Sums and tidy's form in a context that never rounds them: the caller's (28 digits by default, fewer where a
    # notebook set them) would round a large exact amount.
    with wide_context():
        for row in rows.itertuples(index=False, name=None):
            key = tuple(None if _missing(v) else v for v in row[:n])
            model, provider, known, epoch, slot, single, units, tier, given_only, calls, recorded, unpriced, last = row[
                n : n + 13
            ]
            provider = None if _missing(provider) else provider
            group = out.get(key)
            if group is None:
                group = out[key] = Priced()
            recorded = tidy(Decimal(recorded)) if recorded is not None else ZERO
            calls = int(calls)
            group.calls += calls
            group.recorded += recorded
            group.unpriced += int(unpriced)
            if not _missing(model):
                group.models.add(model)
            if not known or given_only:
                group.kept += calls
                group.repriced += recorded
                group.no_cache += recorded
                continue
            price_at, grain, _, first = pairs[(model, provider)]
            if at is not None:
                when = at
            elif grain == "slot":
                when = datetime.combine(first.date(), time(0), tzinfo=timezone.utc) + int(slot) * _HALF_HOUR
            elif grain is not None:
                when = _aware(epoch)
            else:
                when = _aware(last)
            tier = None if _missing(tier) else tier
            price = prices_at.get((model, provider, when, tier))
            if price is None:
                # Batch/flex/priority calls: the catalog's tier price for a catalog model (the entry's own, or a
                # swap's target: gpt-4o-mini's Priority price for a Priority call swapped to it), else the
                # published rule applied to the price of one's own they are repriced at.
                price = price_at(when) if tier is None else price_at.at_tier(when, tier)
                prices_at[(model, provider, when, tier)] = price
            # A call above a long-context tier is priced on its own, as billed: a row of its own (``single``).
            summed = (key, price, None if _missing(single) else single)
            found = sums.get(summed)
            if found is None:
                found = sums[summed] = ([0] * 6, {})
            into, unit_sums = found
            into[0] += calls
            for i, count in enumerate(row[n + 13 :], start=1):
                into[i] += int(count)
            add_units(unit_sums, units)
        for (key, price, single), ((calls, *counts), unit_sums) in sums.items():
            inp, out_tokens, cache_read, cache_write, reasoning = counts
            if unit_sums:
                usage = Usage(inp, out_tokens, cache_read, cache_write, reasoning, units=unit_sums)
            else:
                usage = Usage(inp, out_tokens, cache_read, cache_write, reasoning)
            group = out[key]
            group.repriced += price.cost(usage) if single is not None else _bulk_cost(price, usage, calls)
            if no_cache:
                plain = Usage(usage.input_tokens, usage.output_tokens, 0, 0, usage.reasoning_tokens)
                group.no_cache += price.cost(plain) if single is not None else _bulk_cost(price, plain, calls)
        for group in out.values():
            group.repriced = tidy(group.repriced)
            group.recorded = tidy(group.recorded)
            group.no_cache = tidy(group.no_cache)
    return out


def _missing(value: Any) -> bool:
    """None, NaN or NaT, as a frame's missing values come back (only these differ from themselves)."""
    return value is None or bool(value != value)


def _pct(delta: Decimal, base: Decimal) -> float:
    return float(delta / base) if base else float("nan")


def reprice(
    source: Any,
    prices: Any = None,
    *,
    at: datetime | date | None = None,
    by: str | Sequence[str] | None = ("model",),
    since: When | None = None,
    until: When | None = None,
) -> pd.DataFrame:
    """What the recorded usage would cost under other prices: group keys, ``calls``, ``recorded``, ``repriced``,
    ``delta`` (repriced minus recorded), ``delta_pct`` (delta over recorded; NaN when nothing was recorded) and
    ``kept`` (calls whose amount is kept as recorded: no model, a model no price is known for, or an amount given
    without tokens). Sorted by recorded spend, largest first.

    Money columns (``recorded``, ``repriced``, ``delta``) hold exact ``Decimal`` values, so their sums are exact
    too; ``delta_pct`` is float64.

    ``prices``:

    * ``None``: the catalog (and prices registered in this process), as llmcost prices a call today.
    * a path to a price file in the ``load_prices`` format, or a list of ``ModelPrice``: those prices, over the
      catalog, for the models they name (matched by the id entries hold, its catalog id, or the id without its
      date; a dated id the catalog knows by another, ``o3-2025-04-16`` for ``o3``, matches every entry of that
      catalog model, ``o3`` too). A file is read without registering anything process-wide.
    * a dict swapping models: ``{"gpt-4o": "gpt-4o-mini"}`` prices gpt-4o's recorded usage at gpt-4o-mini's
      catalog price; ``{"gpt-4o": ModelPrice(...)}`` at that price (its keys matched as a table's models are).
      Other models: the catalog.

    A Batch, Flex or Priority call is repriced at the catalog's price for its tier where a catalog model prices it
    (its own, or a swap's target), and at the providers' published rule applied to a ``ModelPrice`` of a table or
    a swap (Batch and Flex at half; Priority at the standard price).

    ``at``: price every entry at the prices in force at that moment (a date is its UTC midnight). ``None``: each
    entry at the prices in force when it was recorded, so that ``reprice(src)`` shows where recorded amounts and
    the current catalog disagree.

    ``by`` names ``category``, ``resource``, ``model``, ``provider`` or ``tag:<key>`` (``()``: one total row);
    ``model`` groups by the canonical id where the entry has one (``gpt-4o-2024-08-06`` and ``gpt-4o`` in one row),
    as every grouping by model does. ``None`` gives one row per entry, with ``id``, ``timestamp``, ``model`` (as
    recorded) and ``provider`` as keys.

    ``since``/``until`` narrow the history repriced, in the forms every analytics function takes (``"30d"``,
    ``"2024-05-01"``, datetimes).

    Example::

        >>> what_if = reprice(tracker, {"gpt-4o": "gpt-4o-mini"}, by="resource")
        >>> what_if[["resource", "recorded", "repriced", "delta_pct"]]
                resource recorded repriced  delta_pct
        0        gpu-box       24       24   0.000000
        1    support-bot    3.188   0.2928  -0.908156
        2  search-rerank      2.1    0.126  -0.940000
        3      summarize      1.2      1.2   0.000000
    """
    import pandas as pd

    table = PriceTable.of(prices)
    moment = None if at is None else _when(at, "at")
    if by is None:
        names = ["id", "timestamp", "model", "provider"]
        exprs = [f"e.{c}" for c in names]
        params: list[Any] = []
    else:
        names = group_keys(by)
        exprs, params = [], []
        for key in names:
            if key.startswith("tag:"):
                exprs.append("e.tags[?]")
                params.append(key[4:])
            elif key == "model":  # the canonical id, as every grouping by model: one row for a model's dated ids
                exprs.append("coalesce(e.canonical_model, e.model)")
            else:
                exprs.append(f"e.{key}")
    with as_source(source) as base:
        groups = priced_groups(base.where(since=since, until=until), exprs, params, table, moment)
    with wide_context():  # the delta of exact sums, exact whatever the caller's decimal context
        records = []
        for values, group in groups.items():
            delta = tidy(group.repriced - group.recorded)
            records.append(
                (*values, group.calls, group.recorded, group.repriced, delta, _pct(delta, group.recorded), group.kept)
            )
    frame = pd.DataFrame.from_records(records, columns=[*names, *PRICED_COLUMNS])
    for name in names:
        if name == "timestamp":
            frame[name] = pd.to_datetime(frame[name], utc=True)
        else:
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    for name in ("recorded", "repriced", "delta"):
        frame[name] = frame[name].astype(object)
    frame["calls"] = frame["calls"].astype("int64")
    frame["kept"] = frame["kept"].astype("int64")
    frame["delta_pct"] = frame["delta_pct"].astype("float64")
    order = ["timestamp", "id"] if by is None else ["_recorded", *names]
    frame["_recorded"] = [float(v) for v in frame["recorded"]]
    frame = frame.sort_values(
        order,
        ascending=[True, True] if by is None else [False, *([True] * len(names))],
        na_position="last",
        kind="stable",
    )
    return frame.drop(columns="_recorded").reset_index(drop=True)
