"""Anthropic's fast mode priced as the ``"fast"`` service tier: genai-prices' ``{"speed": "fast"}`` price variants
(``_catalog``'s tier contexts), and the standard price, said so, where a model has none."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import types as gt

from llmcost import ModelPrice, Usage, cost_of
from llmcost._catalog import catalog_version, tier_rule
from llmcost._prices import priced

AT = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
USAGE = Usage(10_000, 1000, 2000)  # 2000 of the input read from the cache


def _catalog(model, provider, context=None):
    usage = gt.Usage(input_tokens=10_000, output_tokens=1000, cache_read_tokens=2000)
    return genai_prices.calc_price(
        usage, model, provider_id=provider, genai_request_timestamp=AT, price_context=context
    ).total_price


@pytest.mark.parametrize(
    "model", ["claude-opus-4-8", "claude-opus-5", "claude-opus-5-5", "claude-mythos-5-2", "claude-fable-5-2"]
)
def test_fast_tier_prices_anthropic_fast_mode_at_the_catalogs_speed_variant(model):
    fast = _catalog(model, "anthropic", {"speed": "fast"})
    assert fast == 2 * _catalog(model, "anthropic")  # (these models' fast mode: twice the standard rates)
    assert priced(model, None, USAGE, AT, "fast")[:2] == (fast, f"catalog@{catalog_version()}")
    assert cost_of(model, USAGE, service_tier="fast", at=AT) == fast


def test_fast_tier_prices_openais_fast_tier_as_the_catalog_does():
    # OpenAI's "fast" service tier is its priority (responses saying "fast" are recorded as priority).
    fast = _catalog("gpt-5", "openai", {"service_tier": "fast"})
    assert cost_of("gpt-5", USAGE, service_tier="fast", at=AT) == fast
    assert fast == cost_of("gpt-5", USAGE, service_tier="priority", at=AT)


@pytest.mark.parametrize(
    ("input_tokens", "expected"),
    [
        (100_000, Decimal("4.5")),  # $30 / $150 per 1M: 0.1 * 30 + 0.01 * 150
        (300_000, Decimal("20.25")),  # over 200K input tokens, $60 / $225: 0.3 * 60 + 0.01 * 225
    ],
)
def test_fast_mode_on_opus_4_6_is_six_times_the_standard_rates_as_anthropic_published(input_tokens, expected):
    # The catalog has no fast price for Opus 4.6; Anthropic's fast-mode page priced it at 6x the standard rates, long
    # context included. Priced at the standard rates, fast calls were a sixth of the bill.
    at = datetime(2026, 2, 20, tzinfo=timezone.utc)
    usage = Usage(input_tokens, 10_000)
    assert priced("claude-opus-4-6", None, usage, at, "fast")[:2] == (
        expected,
        f"catalog@{catalog_version()}+fast-rule",
    )
    assert cost_of("claude-opus-4-6", usage, service_tier="fast", at=at) == expected
    assert cost_of("claude-opus-4-6", usage, at=at) * 6 == expected
    # Data residency stacks on it (1.1x), as on any fast price.
    assert cost_of("claude-opus-4-6", usage, service_tier="fast+us", at=at) == expected * Decimal("1.1")


def test_fast_tier_without_a_fast_price_is_the_standard_price_said_so():
    # No fast price and no published rule: the standard price, as for priority without a priority price.
    standard = cost_of("claude-haiku-4-5", USAGE, at=AT)
    assert priced("claude-haiku-4-5", None, USAGE, AT, "fast")[:2] == (
        standard,
        f"catalog@{catalog_version()}+fast-at-standard",
    )
    assert cost_of("claude-haiku-4-5", USAGE, service_tier="fast", at=AT) == standard
    price = ModelPrice("acme", "acme", input_per_mtok="2", output_per_mtok="8")
    assert tier_rule(price, "user", "fast") == (price, "user+fast-at-standard")
