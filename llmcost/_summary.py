"""``CostSummary``: totals of a set of entries, exact and grouped."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

import attrs

from ._entry import CostEntry
from ._money import ZERO, tidy
from ._usage import Usage

__all__ = ["CostSummary", "ordered", "summarize"]


@attrs.frozen
class CostSummary:
    """Exact totals over the entries of a period or filter, as ``CostTracker.summary`` returns them.

    ``by_category``, ``by_resource`` and ``by_model`` map a key (``None`` for entries without one) to its
    Decimal total; ``by_tag`` maps a tag key to a map of tag value to total (entries without the key are not
    counted under it). Groups run largest first (equal totals by key, ``None`` last); tag keys in sorted order.
    ``start``/``end`` are the bounds asked for (``None``: open).

    Example::

        s = tracker.summary(period="daily")
        print(s.total, s.calls, s.by_model, s.by_tag.get("team"))
    """

    total: Decimal
    calls: int
    usage: Usage
    by_category: dict[str, Decimal] = attrs.field(eq=True, hash=False)
    by_resource: dict[str | None, Decimal] = attrs.field(hash=False)
    by_model: dict[str | None, Decimal] = attrs.field(hash=False)
    by_tag: dict[str, dict[str, Decimal]] = attrs.field(hash=False)
    start: datetime | None = None
    end: datetime | None = None


def _add(groups: dict, key: object, amount: Decimal) -> None:  # type: ignore[type-arg]
    groups[key] = groups.get(key, ZERO) + amount


def summarize(entries: Iterable[CostEntry], start: datetime | None = None, end: datetime | None = None) -> CostSummary:
    """Sum ``entries`` exactly into a ``CostSummary``; groups are ordered largest first."""
    with localcontext() as ctx:
        ctx.prec = 80  # exact sums, whatever the magnitudes (Python's default is 28 digits)
        return _summarize(entries, start, end)


def _summarize(entries: Iterable[CostEntry], start: datetime | None, end: datetime | None) -> CostSummary:
    total = ZERO
    calls = 0
    tokens = [0, 0, 0, 0, 0]
    by_category: dict[str, Decimal] = {}
    by_resource: dict[str | None, Decimal] = {}
    by_model: dict[str | None, Decimal] = {}
    by_tag: dict[str, dict[str, Decimal]] = {}
    for e in entries:
        amount = e.amount
        total += amount
        calls += 1
        u = e.usage
        tokens[0] += u.input_tokens
        tokens[1] += u.output_tokens
        tokens[2] += u.cache_read_tokens
        tokens[3] += u.cache_write_tokens
        tokens[4] += u.reasoning_tokens
        _add(by_category, e.category.value, amount)
        _add(by_resource, e.resource, amount)
        _add(by_model, e.canonical_model or e.model, amount)
        for key, value in e.tags.items():
            _add(by_tag.setdefault(key, {}), value, amount)

    return CostSummary(
        total=tidy(total),  # the form every store's sums take (4, not 4.0)
        calls=calls,
        usage=Usage(tokens[0], tokens[1], tokens[2], tokens[3], tokens[4]),
        by_category=ordered(_tidied(by_category)),
        by_resource=ordered(_tidied(by_resource)),
        by_model=ordered(_tidied(by_model)),
        by_tag={k: ordered(_tidied(v)) for k, v in sorted(by_tag.items())},
        start=start,
        end=end,
    )


def _tidied(groups: dict[Any, Decimal]) -> dict[Any, Decimal]:
    return {key: tidy(amount) for key, amount in groups.items()}


def ordered(groups: dict[Any, Decimal]) -> dict[Any, Decimal]:
    """``groups`` largest total first, equal totals by key (``None`` last), so every store orders alike.

    Example::

        ordered({"b": Decimal(1), None: Decimal(2), "a": Decimal(1)})  # {None: 2, "a": 1, "b": 1}
    """
    return dict(sorted(groups.items(), key=lambda kv: (kv[1].copy_negate(), kv[0] is None, kv[0] or "")))
