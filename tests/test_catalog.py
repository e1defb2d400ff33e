"""The genai-prices catalog as llmcost reads it: which provider's entry an id without a provider resolves to."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
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


def _tracked_chat(model: str, prompt: int, completion: int) -> llmcost.CostEntry:
    """The entry ``@track_cost`` records for an OpenAI SDK chat completion of ``model`` (provider guessed)."""
    from openai.types.chat import ChatCompletion

    response = ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x"}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }
    )
    tracker = llmcost.CostTracker()
    llmcost.track_cost(tracker=tracker)(lambda: response)()
    [entry] = tracker.entries()
    return entry


def test_a_maker_model_id_is_priced_at_the_prefixes_provider_before_any_resellers_listing() -> None:
    # docs/prices.md: "`openai/gpt-4o`-style ids are looked up with the prefix as the provider". Resellers list some
    # of these ids word for word (Novita "deepseek/deepseek-r1", Baseten "openai/gpt-oss-120b", OpenRouter
    # "perplexity/sonar"), and the first of them in genai-prices' order used to price the id.
    at = datetime(2025, 9, 1, 12, tzinfo=timezone.utc)
    mtok = 1_000_000
    for model, provider, tail in [
        ("deepseek/deepseek-r1", "deepseek", "deepseek-r1"),
        ("openai/gpt-oss-120b", "openai", "gpt-oss-120b"),
        ("perplexity/sonar", "perplexity", "perplexity/sonar"),  # Perplexity lists the whole id (its Agent API's)
        ("xai/grok-4", "x-ai", "grok-4"),  # genai-prices' alias of the provider
        ("minimax/minimax-m2.7", "minimax", "minimax-m2.7"),
    ]:
        price = get_price(model, at=at)
        assert price.provider == provider, model
        assert cost_of(model, mtok, mtok, at=at) == cost_of(tail, mtok, mtok, provider=provider, at=at), model
    assert cost_of("openai/gpt-oss-120b", mtok, mtok, at=at) == Decimal("0.219")  # Baseten's entry: 0.6
    # The cache price is the maker's too: OpenRouter's openai/gpt-4o entry has none (cached input at $2.50).
    cached = {"input_tokens": mtok, "cache_read_tokens": mtok, "at": at}
    assert cost_of("openai/gpt-4o", **cached) == cost_of("gpt-4o", provider="openai", **cached) == Decimal("1.25")
    half = {"input_tokens": mtok, "cache_read_tokens": mtok // 2, "at": at}
    assert cost_of("deepseek/deepseek-chat", **half) == cost_of("deepseek-chat", provider="deepseek", **half)
    # A tracked OpenAI SDK response of such an id (the provider only guessed) is priced the same way.
    assert _tracked_chat("perplexity/sonar", mtok, mtok).amount == cost_of("perplexity/sonar", mtok, mtok)
    # A reseller's own offer is still its own: OpenRouter's ":free" variants, and any host named.
    assert cost_of("moonshotai/kimi-k2.6:free", mtok, mtok) == 0
    free = _tracked_chat("moonshotai/kimi-k2.6:free", mtok, mtok)  # not Moonshot's kimi-k2.6, as it was
    assert (free.amount, free.provider) == (0, "openrouter")
    assert get_price("deepseek/deepseek-r1", "openrouter", at=at).provider == "openrouter"


def test_an_id_its_maker_lists_is_the_makers_entry_and_one_only_resellers_list_is_openrouters() -> None:
    # Perplexity, MiniMax, Moonshot and Z.ai make the models they list; resellers list some of the same ids. An
    # unprefixed "sonar-reasoning" was OpenRouter's (without Perplexity's per-request fee), "minimax-m3" Fireworks'.
    at = datetime(2025, 9, 1, 12, tzinfo=timezone.utc)
    for model, maker in [
        ("sonar-reasoning", "perplexity"),
        ("r1-1776", "perplexity"),
        ("minimax-m3", "minimax"),
        ("kimi-k3", "moonshotai"),
        ("glm-5.3", "zai"),
        ("phi-4-multimodal-instruct", "azure"),  # Microsoft's Phi, at Microsoft's Azure
    ]:
        assert get_price(model, at=at).provider == maker, model
        assert cost_of(model, 1000, 100, at=at) == cost_of(model, 1000, 100, provider=maker, at=at), model
    assert cost_of("sonar-reasoning", 1000, 100, at=at) == Decimal("0.0135")  # with its $5 per 1,000 requests
    # No maker lists these: OpenRouter's entry (docs/prices.md), not the first reseller in genai-prices' order
    # (Groq for qwen/qwen3-32b, Hugging Face's Fireworks for Llama 3.3).
    for model in ("qwen/qwen3-32b", "meta-llama/llama-3.3-70b-instruct", "Qwen/Qwen3-32B"):
        assert get_price(model, at=at).provider == "openrouter", model
    assert get_price("qwen/qwen3-32b", "groq", at=at).provider == "groq"
    # A tracked OpenAI SDK response of such an id (provider guessed "openai", which lacks it) is priced the same
    # way, not at a reseller's listing of "qwen3-32b" alone.
    entry = _tracked_chat("qwen/qwen3-32b", 1_000_000, 1_000_000)
    assert (entry.amount, entry.canonical_model) == (cost_of("qwen/qwen3-32b", 1_000_000, 1_000_000), "qwen/qwen3-32b")


def test_a_bedrock_id_without_a_provider_is_priced_as_bedrock_bills_it() -> None:
    # Bedrock's regional (us./eu./apac./jp.) and in-region Claude is 10% over Anthropic's list price
    # (https://aws.amazon.com/bedrock/pricing/); these ids were priced at Vertex's Claude ("google"), whose patterns
    # match them too, while @track_cost on a Converse body (provider aws, from its usage) priced them as Bedrock.
    model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    converse = {
        "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 1000, "outputTokens": 100, "totalTokens": 1100},
    }
    tracker = llmcost.CostTracker()
    llmcost.track_cost(tracker=tracker, model=model)(lambda: converse)()
    tracker.record(model=model, input_tokens=1000, output_tokens=100)
    tracked, recorded = tracker.entries()
    assert tracked.amount == recorded.amount == cost_of(model, 1000, 100) == Decimal("0.00495")  # 1000*3.3 + 100*16.5
    assert tracked.provider == recorded.provider == get_price(model).provider == "aws"
    for prefix in ("", "us.", "eu.", "apac.", "jp.", "global."):
        for family in (
            "claude-haiku-4-5-20251001-v1:0",
            "claude-opus-4-5-20251101-v1:0",
            "claude-3-7-sonnet-20250219-v1:0",
        ):
            bedrock = f"{prefix}anthropic.{family}"
            usage = Usage(300_000, 1_000, 20_000, 5_000)  # past Vertex's 200K long-context tier for 4.5
            assert cost_of(bedrock, usage) == cost_of(bedrock, usage, provider="aws"), bedrock
            assert get_price(bedrock).provider == "aws", bedrock
    assert cost_of("anthropic.claude-haiku-4-5-20251001-v1:0", 1000, 100) == Decimal("0.00165")  # 1000*1.1 + 100*5.5
    # A Bedrock id no Bedrock entry knows (a Canada profile) is its model's maker's entry, not Vertex's.
    assert get_price("ca.anthropic.claude-sonnet-4-5-20250929-v1:0").provider == "anthropic"
