"""Advice on models: ``compare_models`` (what each model costs per call and per token) and ``recommendations``
(a cheaper model of the same line for what each resource recorded).

Catalog prices come through ``llmcost._prices`` (``get_price``, ``catalog_models``); this module never reads
genai-prices itself.

Example::

    >>> recommendations(tracker)[["resource", "model", "suggested_model", "saving"]]
            resource              model          suggested_model  saving
    0    support-bot             gpt-4o              gpt-4o-mini  2.8952
    1  search-rerank             gpt-4o              gpt-4o-mini  1.9740
    2      summarize  claude-3-5-sonnet  claude-3-5-haiku-latest  0.8800
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .. import _state
from .._catalog import catalog_models
from .._errors import UnknownModelError
from .._money import ZERO, to_utc, wide_context
from .._prices import ModelPrice, get_price, price_for
from .._rows import TOKEN_COLUMNS
from .._time import When
from .._usage import Usage
from ..stores._sql import FRACTION_SUM, WHOLE_SUM, split_order, split_text, sum_value, with_split_sums
from ._reprice import add_units, units_list_sql
from ._source import MODEL_SQL, as_source

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MIN_SAVING", "compare_models", "recommendations"]

#: ``recommendations`` suggests a model only when it would cost at least this fraction less on the same usage.
MIN_SAVING = Decimal("0.2")


#: SQL: an entry whose amount is a price (catalog, user or given), not the 0 of an unknown model.
_PRICED = "pricing IS DISTINCT FROM 'unpriced'"


def compare_models(source: Any, *, since: When | None = None, until: When | None = None) -> pd.DataFrame:
    """Per model: ``model``, ``calls``, ``cost``, ``cost_per_call`` and ``cost_per_1k_tokens`` (input plus output
    tokens; NaN when a model recorded no tokens); most expensive first. Entries without a model are left out; a
    model is its catalog id where there is one (``gpt-4o`` for entries of ``gpt-4o-2024-08-06``), as ``by_model``.

    ``calls`` counts every call; the three cost figures are of the priced calls alone. An unpriced entry (an unknown
    model, recorded with amount 0 and ``pricing="unpriced"``) has no cost to speak of: counted as $0 it would make
    its model look the cheapest, and its tokens would dilute a model's cost per token. A model with no priced call
    has NaN cost figures (and comes last); where ``cost`` is not ``cost_per_call * calls``, some calls are unpriced.

    Example::

        >>> compare_models(tracker)
                       model  calls   cost  cost_per_call  cost_per_1k_tokens
        0             gpt-4o     40  5.180         0.1295            0.002567
        1  claude-3-5-sonnet     10  1.200         0.1200            0.003750
        2        gpt-4o-mini     30  0.108         0.0036            0.000171
    """
    import pandas as pd

    priced = f"FILTER (WHERE {_PRICED})"
    whole, fraction = f"{WHOLE_SUM} {priced}", f"{FRACTION_SUM} {priced}"
    with as_source(source) as base:
        src = base.where(since=since, until=until)
        found = with_split_sums(
            lambda split: src.sql(
                f"SELECT {MODEL_SQL} AS model, count(*) AS calls, count(*) {priced} AS priced, "
                f"{split_text(whole, fraction) if split else f'sum(amount) {priced}'} AS cost, "
                f"CAST(sum(input_tokens + output_tokens) {priced} AS BIGINT) AS tokens "
                # (models with no priced call last: a split sum of no rows is a struct of NULLs, not a NULL)
                f"FROM _e WHERE model IS NOT NULL GROUP BY 1 ORDER BY count(*) {priced} = 0, "
                f"{split_order(whole, fraction) if split else f'sum(amount) {priced}'} DESC, 1"
            )
        )
    nan = float("nan")
    rows = []
    with wide_context():  # (divided exactly whatever the caller's decimal context, then made floats)
        for model, calls, priced_calls, cost, tokens in found.itertuples(index=False):
            if not priced_calls:  # (nothing priced: no cost, not a cost of 0)
                rows.append((model, int(calls), nan, nan, nan))
                continue
            cost = sum_value(cost)
            tokens = 0 if pd.isna(tokens) else int(tokens)
            rows.append(
                (
                    model,
                    int(calls),
                    float(cost),
                    float(cost / int(priced_calls)),
                    float(cost * 1000 / tokens) if tokens else nan,
                )
            )
    frame = pd.DataFrame.from_records(rows, columns=["model", "calls", "cost", "cost_per_call", "cost_per_1k_tokens"])
    frame["model"] = frame["model"].astype(object)
    frame["calls"] = frame["calls"].astype("int64")
    for column in ("cost", "cost_per_call", "cost_per_1k_tokens"):
        frame[column] = frame[column].astype("float64")
    return frame


# Model-family heuristic. A catalog id is split into a *line* (what is left after dropping dates, "latest" and
# size words: gpt-4o, claude-3-5, gemini-1.5, gpt-5) and a *rank* from its size words. Models of one line differ in
# size, not in kind: "tts", "audio", "realtime", "embedding" and the like stay in the line, so a chat model is never
# matched with a speech or embedding model.
_RANKS = {
    "ultra": 4,
    "opus": 3,
    "pro": 3,
    "large": 3,
    "max": 3,
    "sonnet": 2,
    "medium": 2,
    "plus": 2,
    "haiku": 1,
    "mini": 1,
    "small": 1,
    "flash": 1,
    "nano": 0,
    "lite": 0,
    "tiny": 0,
}
_STANDARD = 2  # an id without a size word: the line's standard model (gpt-4o, o3, gpt-5)
_SUFFIX = re.compile(r"(-(\d{4}-\d{2}-\d{2}|\d{8}|\d{3,4}|latest|v\d+(\.\d+)?))+$")
_RANK_NAMES = {4: "largest", 3: "large", 2: "standard", 1: "small", 0: "smallest"}


def _line(model_id: str) -> tuple[str, int]:
    """``(line, rank)`` of a catalog model id: ``gpt-4o-mini`` -> ``("gpt-4o", 1)``."""
    base = _SUFFIX.sub("", model_id.lower())
    parts = base.split("-")
    ranks = [_RANKS[p] for p in parts if p in _RANKS]
    line = "-".join(p for p in parts if p not in _RANKS)
    return line, (min(ranks) if ranks else _STANDARD)


def _provider_models(provider: str) -> tuple[tuple[str, str, int], ...]:
    """``(id, line, rank)`` of every current (not deprecated) catalog model of ``provider`` (cached in ``_state``:
    the installed catalog does not change while the process runs)."""
    found: tuple[tuple[str, str, int], ...] | None = _state.provider_models.get(provider)
    if found is None:
        found = tuple(
            (model, *_line(model))
            for prov, model, deprecated in catalog_models()
            if prov == provider and not deprecated
        )
        _state.provider_models[provider] = found
    return found


def _bulk_cost(price: ModelPrice, usage: Usage, calls: int) -> Decimal:
    """``price`` applied to ``calls`` calls that used ``usage`` together: base prices on the summed tokens and the
    per-request fee per call. Long-context tiers are left out: they apply per call, not to a sum of calls."""
    import attrs

    per_token = attrs.evolve(price, tiers=(), request_price=None).cost(usage)
    fee = price.request_price * calls if price.request_price is not None else ZERO
    return per_token + fee


#: One service tier's share of a resource's calls of a model: ``(tier, usage, calls)``, the tier ``None`` for
#: standard calls, the usage summed with its units (1-hour cache writes, audio, web searches).
_Part = tuple[str | None, Usage, int]


def _parts_cost(model: str, provider: str | None, parts: list[_Part], moment: datetime) -> Decimal:
    """What ``parts`` cost at ``model``'s prices at ``moment``: each tier at its price (Batch, Flex...), units at
    theirs, as ``_bulk_cost`` prices a sum of calls."""
    total = ZERO
    for tier, usage, calls in parts:
        total += _bulk_cost(price_for(model, provider, moment, tier)[0], usage, calls)
    return total


def _suggest(
    model: str, provider: str | None, parts: list[_Part], largest_call: int, moment: datetime
) -> tuple[str, Decimal, str] | None:
    """The cheaper model of the same line for this usage, its cost and the reason; ``None`` when none is known."""
    try:
        current = get_price(model, provider, at=moment)
        if current.provider is None:
            return None
        current_cost = _parts_cost(model, provider, parts, moment)
    except (UnknownModelError, ValueError):
        return None
    line, rank = _line(current.model)
    if current_cost <= 0:
        return None
    needed = current.context_window or largest_call
    best: tuple[int, Decimal, str, ModelPrice] | None = None
    for candidate, cand_line, cand_rank in _provider_models(current.provider):
        if cand_line != line or cand_rank >= rank or candidate == current.model:
            continue
        try:
            price = get_price(candidate, current.provider, at=moment)
            if price.context_window is None or price.context_window < needed:
                continue
            cost = _parts_cost(candidate, current.provider, parts, moment)
        except (UnknownModelError, ValueError):
            continue
        if cost > current_cost * (1 - MIN_SAVING):
            continue
        # The nearest step down (highest rank) is the safest swap; among equals, the cheapest.
        key = (cand_rank, -cost)
        if best is None or key > (best[0], -best[1]):
            best = (cand_rank, cost, candidate, price)
    if best is None:
        return None
    _, cost, candidate, price = best
    share = (1 - cost / current_cost) * 100
    calls = sum(n for _, _, n in parts)
    inp = sum(u.input_tokens for _, u, _ in parts)
    out = sum(u.output_tokens for _, u, _ in parts)
    tiers = sorted({t for t, _, _ in parts if t is not None})
    reason = (
        f"{candidate} is a {_RANK_NAMES[best[0]]} model of the same {line} line as {current.model} at "
        f"{current.provider}, with a context window of {price.context_window:,} tokens "
        f"(needed: {needed:,}); priced on this resource's recorded usage "
        f"({calls:,} calls, {inp:,} input and {out:,} output tokens"
        + (f", {' and '.join(tiers)} tier" if tiers else "")
        + f") it costs {share:.0f}% less"
    )
    return candidate, cost, reason


def recommendations(
    source: Any, *, now: datetime | None = None, since: When | None = None, until: When | None = None
) -> pd.DataFrame:
    """Cheaper models for what each resource recorded: ``resource``, ``model``, ``suggested_model``, ``cost``
    (recorded), ``projected_cost`` (the recorded usage at the suggested model's prices), ``saving`` and ``reason``;
    largest saving first.

    The rule, per ``(resource, model)``: the model's price is looked up in the catalog; a suggestion is a current
    (not deprecated) model of the *same provider and the same line* (gpt-4o -> gpt-4o-mini, claude-3-5-sonnet ->
    claude-3-5-haiku, gemini-1.5-pro -> gemini-1.5-flash, o3 -> o3-mini, gpt-5 -> gpt-5-mini), of a smaller size,
    whose context window is at least the current model's (or the largest recorded call, when that is unknown), and
    that costs at least 20% less on the recorded usage (``MIN_SAVING``; both priced the same way: the
    per-million-token and per-unit prices on the summed usage of each service tier at that tier's price, and any
    per-request fee per call) and less than what was recorded. Of several, the nearest step down is suggested
    (gpt-4.1 -> gpt-4.1-mini rather than -nano). Models without a known price or line get no row: no recommendation
    is made where none is known. Prices are those in force at ``now`` (default: the tracker's clock, else the
    current time).

    Example::

        >>> recommendations(tracker)[["resource", "suggested_model", "cost", "projected_cost", "saving"]]
                resource          suggested_model  cost  projected_cost  saving
        0    support-bot              gpt-4o-mini  3.08          0.1848  2.8952
        1  search-rerank              gpt-4o-mini  2.10          0.1260  1.9740
        2      summarize  claude-3-5-haiku-latest  1.20          0.3200  0.8800
    """
    import pandas as pd

    columns = ["resource", "model", "suggested_model", "cost", "projected_cost", "saving", "reason"]
    with as_source(source) as base:
        src = base.where(since=since, until=until)
        moment = to_utc(now, "now") if now is not None else to_utc(src.clock(), "clock()")
        tokens = ", ".join(f"CAST(sum({c}) AS BIGINT) AS {c}" for c in TOKEN_COLUMNS)
        found = with_split_sums(
            lambda split: src.sql(
                f"SELECT resource, {MODEL_SQL} AS model, provider, service_tier AS tier, count(*) AS calls, "
                f"{split_text(WHOLE_SUM, FRACTION_SUM) if split else 'sum(amount)'} AS cost, {tokens}, "
                "CAST(max(input_tokens + output_tokens) AS BIGINT) AS largest, "
                f"{units_list_sql('units')} AS units_json "
                "FROM _e WHERE model IS NOT NULL GROUP BY 1, 2, 3, 4"
            )
        )
    # Per (resource, model, provider): the recorded cost, the largest call, and the usage of each service tier.
    groups: dict[tuple[str | None, str, str | None], tuple[list[Decimal], list[int], list[_Part]]] = {}
    with wide_context():  # (exact whatever the caller's decimal context: floats are made at the end)
        for rec in found.itertuples(index=False):
            model = _text(rec.model)
            if model is None:
                continue
            units: dict[str, int] = {}
            add_units(units, rec.units_json)
            inp, out, cache_read, cache_write, reasoning = (int(getattr(rec, c)) for c in TOKEN_COLUMNS)
            usage = Usage(inp, out, cache_read, cache_write, reasoning, units=units)
            cost, largest, parts = groups.setdefault(
                (_text(rec.resource), model, _text(rec.provider)), ([ZERO], [0], [])
            )
            cost[0] += sum_value(rec.cost)
            largest[0] = max(largest[0], int(rec.largest))
            parts.append((_text(rec.tier), usage, int(rec.calls)))
        rows = []
        for (resource, model, provider), (cost, largest, parts) in groups.items():
            if cost[0] <= 0:
                continue
            suggestion = _suggest(model, provider, parts, largest[0], moment)
            if suggestion is None:
                continue
            suggested, projected, reason = suggestion
            if projected >= cost[0]:
                continue  # (recorded at prices of the user's own, lower than the catalog's: nothing saved)
            rows.append(
                (resource, model, suggested, float(cost[0]), float(projected), float(cost[0] - projected), reason)
            )
    frame = pd.DataFrame.from_records(rows, columns=columns)
    # Largest saving first; among equal savings, the larger recorded cost, then by resource and model.
    frame = frame.sort_values(
        ["saving", "cost", "resource", "model"], ascending=[False, False, True, True], kind="stable", na_position="last"
    ).reset_index(drop=True)
    for column in ("resource", "model", "suggested_model", "reason"):
        frame[column] = frame[column].astype(object)
    for column in ("cost", "projected_cost", "saving"):
        frame[column] = frame[column].astype("float64")
    return frame


def _text(value: object) -> str | None:
    """A string from a result frame, or None for SQL NULL (which pandas may hand back as NaN)."""
    return value if isinstance(value, str) else None
