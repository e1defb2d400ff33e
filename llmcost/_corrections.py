"""Known errors in the genai-prices catalog's data, corrected: a small table of cited fixes.

Prices resolve as: prices users register, then these corrections, then the catalog. An entry priced by a
correction says so in ``CostEntry.pricing`` (``correction:<id>``), but only where the correction changed the
amount (a long-context correction leaves calls under the threshold priced, and labelled, by the catalog).

Each correction names the catalog entry (provider id and model id, as genai-prices has them), the dates it
applies to (``since`` inclusive, ``until`` exclusive, UTC), what it changes, and the public source of the price.
Remove one when the catalog carries the fix.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import attrs

from ._model_price import ModelPrice, PriceTier

__all__ = ["CORRECTIONS", "Correction", "corrections_for"]


@attrs.frozen
class Correction:
    """One cited fix of a catalog entry: ``prices`` replaces ``ModelPrice`` fields, ``tiers`` adds long-context
    tiers (``PriceTier`` fields), between ``since`` and ``until``."""

    id: str
    provider: str
    model: str
    source: str
    since: date | None = None
    until: date | None = None
    prices: dict[str, str] = attrs.field(factory=dict, hash=False)
    tiers: tuple[dict[str, Any], ...] = attrs.field(default=(), hash=False)  # PriceTier fields (built on use)

    def active(self, when: datetime) -> bool:
        day = when.date()
        return (self.since is None or day >= self.since) and (self.until is None or day < self.until)

    def apply(self, price: ModelPrice) -> ModelPrice:
        changes: dict[str, Any] = dict(self.prices)
        if self.tiers:
            changes["tiers"] = (*price.tiers, *(PriceTier(**tier) for tier in self.tiers))
        return attrs.evolve(price, **changes)


CORRECTIONS: tuple[Correction, ...] = (
    # o3 launched on 2025-04-16 at $10 input, $2.50 cached input, $40 output; the 2025-06-10 cut made it
    # $2 / $0.50 / $8. The catalog's launch price has the later $0.50 cached input.
    Correction(
        id="o3-cached-input-before-2025-06-10",
        provider="openai",
        model="o3",
        until=date(2025, 6, 10),
        prices={"cache_read_per_mtok": "2.5"},
        source="https://openai.com/index/introducing-o3-and-o4-mini/ (launch pricing); "
        "https://github.com/langfuse/langfuse/pull/7223 (2025-06-10: cached input 2.5e-6 -> 0.5e-6 per token)",
    ),
    # Claude Sonnet 4 with the 1M context window: a request whose input (cache reads and writes included) exceeds
    # 200K tokens is billed at premium rates for all its tokens: input x2 ($6), output x1.5 ($22.50), the cache
    # multipliers applying to the premium input rate (reads $0.60, 5-minute writes $7.50, 1-hour writes $12). The
    # catalog has these tiers for Sonnet 4.5 but not for Sonnet 4.
    Correction(
        id="claude-sonnet-4-long-context",
        provider="anthropic",
        model="claude-sonnet-4-0",
        tiers=(
            {
                "start": 200_000,
                "input_per_mtok": "6",
                "output_per_mtok": "22.5",
                "cache_read_per_mtok": "0.6",
                "cache_write_per_mtok": "7.5",
                "unit_prices": {"cache_write_1h_mtok": "12"},
            },
        ),
        source="https://docs.claude.com/en/docs/about-claude/pricing#long-context-pricing",
    ),
)


def corrections_for(provider: str, model: str) -> tuple[Correction, ...]:
    """The corrections of the catalog entry ``model`` of ``provider`` (ids as genai-prices has them)."""
    return tuple(c for c in CORRECTIONS if c.provider == provider and c.model == model)
