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
    tiers (``PriceTier`` fields), ``units`` adds unit prices, between ``since`` and ``until``."""

    id: str
    provider: str
    model: str
    source: str
    since: date | None = None
    until: date | None = None
    prices: dict[str, str] = attrs.field(factory=dict, hash=False)
    tiers: tuple[dict[str, Any], ...] = attrs.field(default=(), hash=False)  # PriceTier fields (built on use)
    #: unit prices (genai-prices price keys, ``input_audio_mtok``...) added to the entry's, or replacing them
    units: dict[str, str] = attrs.field(factory=dict, hash=False)

    def active(self, when: datetime) -> bool:
        day = when.date()
        return (self.since is None or day >= self.since) and (self.until is None or day < self.until)

    def apply(self, price: ModelPrice) -> ModelPrice:
        changes: dict[str, Any] = dict(self.prices)
        if self.tiers:
            changes["tiers"] = (*price.tiers, *(PriceTier(**tier) for tier in self.tiers))
        if self.units:
            changes["unit_prices"] = {**price.unit_prices, **self.units}
        return attrs.evolve(price, **changes)


#: Where the audio prices of OpenAI's GPT-4o audio models (corrected below) are published.
_AUDIO_SOURCE = (
    "https://openai.com/index/o1-and-new-tools-for-developers/ (2024-12-17: GPT-4o audio $40 / $80 per 1M audio "
    "tokens, 60% less; GPT-4o mini audio $10 / $20); https://platform.openai.com/docs/pricing (audio tokens)"
)

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
    # OpenAI's audio models in Chat Completions bill audio tokens at audio rates; the catalog prices only text for
    # these two, so their audio was billed at the text rate ($2.50 where OpenAI bills $40). The undated id named the
    # 2024-10-01 snapshot until the 2024-12-17 one replaced it (audio $100 / $200 then; $40 / $80 since, the
    # 2025-06-03 snapshot too). A call naming the 2024-10-01 snapshot after that day is priced at the later rate
    # here, still under its bill (the catalog has one entry for every snapshot).
    Correction(
        id="gpt-4o-audio-preview-audio-before-2024-12-17",
        provider="openai",
        model="gpt-4o-audio-preview",
        until=date(2024, 12, 17),
        units={"input_audio_mtok": "100", "output_audio_mtok": "200"},
        source=_AUDIO_SOURCE,
    ),
    Correction(
        id="gpt-4o-audio-preview-audio",
        provider="openai",
        model="gpt-4o-audio-preview",
        since=date(2024, 12, 17),
        units={"input_audio_mtok": "40", "output_audio_mtok": "80"},
        source=_AUDIO_SOURCE,
    ),
    # The Realtime API's GPT-4o launched on 2024-10-01 with audio at $100 / $200 per 1M tokens, cached audio input at
    # $20 (from 2024-10-30); the 2024-12-17 snapshot, which the undated id then named, cut them to $40 / $80 and
    # $2.50, the only audio prices the catalog has. The same caveat as above for the 2024-10-01 snapshot named later.
    Correction(
        id="gpt-4o-realtime-preview-audio-before-2024-12-17",
        provider="openai",
        model="gpt-4o-realtime-preview",
        until=date(2024, 12, 17),
        units={"input_audio_mtok": "100", "output_audio_mtok": "200", "cache_audio_read_mtok": "20"},
        source="https://openai.com/index/introducing-the-realtime-api/ (2024-10-01: audio $100 / $200 per 1M "
        "tokens); " + _AUDIO_SOURCE + "; https://community.openai.com/t/help-me-understand-the-realtime-usage-block/"
        "1060242 (the 2024-10-01 snapshot's cached audio $20 per 1M, the 2024-12-17 one's $2.50)",
    ),
    Correction(
        id="gpt-4o-mini-audio-preview-audio",
        provider="openai",
        model="gpt-4o-mini-audio-preview",
        units={"input_audio_mtok": "10", "output_audio_mtok": "20"},
        source=_AUDIO_SOURCE,
    ),
)


def corrections_for(provider: str, model: str) -> tuple[Correction, ...]:
    """The corrections of the catalog entry ``model`` of ``provider`` (ids as genai-prices has them)."""
    return tuple(c for c in CORRECTIONS if c.provider == provider and c.model == model)
