"""The genai-prices catalog as llmcost reads it: which provider's entry an id without a provider resolves to."""

from __future__ import annotations

import warnings
from decimal import Decimal

import llmcost
from llmcost import Usage, cost_of, get_price


def test_a_family_id_only_a_reseller_lists_word_for_word_resolves_to_the_makers_entry():
    # Fireworks lists "gemma-3-27b-it" word for word; Google, gemma's maker, matches it as its "gemma-3" entry
    # (starts_with "gemma-3-"). API.md: the model maker's own price, never a reseller's entry for the same id.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # google-genai's import warnings are not the test's concern
        from google.genai import types as gtypes

    response = gtypes.GenerateContentResponse.model_validate(
        {
            "model_version": "gemma-3-27b-it",
            "usage_metadata": {"prompt_token_count": 300_000, "candidates_token_count": 1_000},
        }
    )
    tracker = llmcost.CostTracker()
    llmcost.track_cost(tracker=tracker)(lambda: response)()
    [entry] = tracker.entries()

    price = get_price("gemma-3-27b-it")
    assert (price.provider, price.model) == ("google", "gemma-3")
    assert llmcost.MODEL_PRICING["gemma-3-27b-it"] == price
    assert cost_of("gemma-3-27b-it", Usage(300_000, 1_000)) == entry.amount == Decimal(0)
    assert entry.canonical_model == "gemma-3"


def test_a_resellers_entry_is_still_priced_when_its_provider_is_given():
    # Fireworks bills gemma-3-27b-it under its own account path; OpenRouter lists a ":free" variant.
    price = get_price("accounts/fireworks/models/gemma-3-27b-it", provider="fireworks")
    assert (price.provider, price.model) == ("fireworks", "gemma-3-27b-it")
    assert cost_of("accounts/fireworks/models/gemma-3-27b-it", Usage(300_000, 1_000), provider="fireworks") > 0
    free = get_price("gemma-3-27b-it:free", provider="openrouter")
    assert (free.provider, free.model) == ("openrouter", "gemma-3-27b-it:free")


def test_us_only_inference_applies_to_claude_opus_4_6_and_later_models() -> None:
    # "Claude Opus 4.6 and newer models" (https://platform.claude.com/docs/en/about-claude/pricing, "Data residency
    # pricing"); the parameter is refused on older models (https://platform.claude.com/docs/en/build-with-claude/
    # data-residency). A dated id's date is no minor version.
    from llmcost._catalog import us_inference_applies

    covered = ["claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-7", "claude-opus-5", "anthropic/claude-opus-4-6"]
    older = [
        "claude-opus-4-5-20251101",
        "claude-sonnet-4-20250514",
        "claude-haiku-4-5",
        "claude-opus-4-1",
        "claude-3-7-sonnet-latest",
        "gpt-4o",
    ]
    assert [us_inference_applies(m) for m in covered] == [True] * len(covered)
    assert [us_inference_applies(m) for m in older] == [False] * len(older)
