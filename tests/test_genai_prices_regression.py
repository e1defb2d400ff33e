"""Regression against genai-prices itself on the shapes its public dataset lacks: response bodies of every shape
llmcost reads, extracted and priced by both. They agree to the last digit, or the difference is one of llmcost's
cited catalog corrections.

The dataset's 515 real bodies are run in ``test_genai_prices_dataset.py``; it holds no 1-hour cache write, cached
or output audio, Converse or Cohere body with its model, OpenAI-shaped cache write or long-context call, so those
are built here from each SDK's wire format. The first two are records of the dataset whose prices it lists
(quoted beside them), re-checked against the installed 0.2.3.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from llmcost._corrections import corrections_for
from llmcost._extract import extract_usage
from llmcost._prices import priced

AT = datetime(2025, 10, 1, tzinfo=timezone.utc)

# (genai-prices provider id, api flavor, body, the dataset's input + output price where the body is a dataset record)
BODIES = [
    # usages.json: claude-sonnet-4-5-20250929, 14 in / 65 out: anthropic/default 0.000042 + 0.000975
    (
        "anthropic",
        "default",
        {
            "model": "claude-sonnet-4-5-20250929",
            "usage": {
                "input_tokens": 14,
                "output_tokens": 65,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "service_tier": "standard",
            },
        },
        Decimal("0.000042") + Decimal("0.000975"),
    ),
    # usages.json: gpt-5-2025-08-07 Responses, 9506 in / 8576 cached / 439 out: openai/responses 0.0022345 + 0.00439
    (
        "openai",
        "responses",
        {
            "model": "gpt-5-2025-08-07",
            "object": "response",
            "usage": {
                "input_tokens": 9506,
                "input_tokens_details": {"cached_tokens": 8576},
                "output_tokens": 439,
                "output_tokens_details": {"reasoning_tokens": 384},
                "total_tokens": 9945,
            },
        },
        Decimal("0.0022345") + Decimal("0.00439"),
    ),
    # Anthropic with every billing unit: TTL split, web searches, thinking.
    (
        "anthropic",
        "default",
        {
            "model": "claude-sonnet-4-20250514",
            "usage": {
                "input_tokens": 1000,
                "cache_creation_input_tokens": 5000,
                "cache_read_input_tokens": 4000,
                "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 3000},
                "output_tokens": 500,
                "output_tokens_details": {"thinking_tokens": 120},
                "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 0},
                "service_tier": "standard",
            },
        },
        None,
    ),
    # OpenAI chat (notes: $0.00672) and chat with cache writes and audio.
    (
        "openai",
        "chat",
        {
            "model": "gpt-4o-2024-08-06",
            "object": "chat.completion",
            "service_tier": "default",
            "usage": {
                "prompt_tokens": 2000,
                "completion_tokens": 300,
                "total_tokens": 2300,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        },
        None,
    ),
    (
        "openai",
        "chat",
        {
            "model": "gpt-5.6-sol",
            "object": "chat.completion",
            "usage": {
                "prompt_tokens": 10_000,
                "completion_tokens": 1000,
                "total_tokens": 11_000,
                "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 3000},
                "completion_tokens_details": {"reasoning_tokens": 200},
            },
        },
        None,
    ),
    (
        "openai",
        "chat",
        {
            "model": "gpt-audio",
            "object": "chat.completion",
            "usage": {
                "prompt_tokens": 1000,
                "completion_tokens": 500,
                "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 600},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 400},
            },
        },
        None,
    ),
    # Gemini REST (camelCase): audio input, cached audio, thoughts; image output.
    (
        "google",
        "default",
        {
            "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {
                "promptTokenCount": 1_000_000,
                "cachedContentTokenCount": 200_000,
                "candidatesTokenCount": 200,
                "thoughtsTokenCount": 300,
                "promptTokensDetails": [
                    {"modality": "TEXT", "tokenCount": 600_000},
                    {"modality": "AUDIO", "tokenCount": 400_000},
                ],
                "cacheTokensDetails": [
                    {"modality": "TEXT", "tokenCount": 100_000},
                    {"modality": "AUDIO", "tokenCount": 100_000},
                ],
            },
        },
        None,
    ),
    (
        "google",
        "default",
        {
            "modelVersion": "gemini-2.5-flash-image",
            "usageMetadata": {
                "promptTokenCount": 10,
                "candidatesTokenCount": 1290,
                "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
            },
        },
        None,
    ),
    (
        "google",
        "default",
        {
            "modelVersion": "gemini-2.5-pro",
            "usageMetadata": {"promptTokenCount": 250_000, "candidatesTokenCount": 1000, "thoughtsTokenCount": 500},
        },
        None,
    ),
    # Bedrock Converse (the model added, as a caller passes the request's modelId).
    (
        "aws",
        "default",
        {
            "model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "usage": {
                "inputTokens": 1000,
                "outputTokens": 100,
                "totalTokens": 4100,
                "cacheReadInputTokens": 2000,
                "cacheWriteInputTokens": 1000,
                "cacheDetails": [{"ttl": "1h", "inputTokens": 1000}],
            },
        },
        None,
    ),
    # Cohere v2 chat (the model added): billed units.
    (
        "cohere",
        "default",
        {
            "model": "command-a-03-2025",
            "usage": {
                "billed_units": {"input_tokens": 1000, "output_tokens": 200},
                "tokens": {"input_tokens": 1200, "output_tokens": 200},
            },
        },
        None,
    ),
    # Long context on Sonnet 4: the catalog lacks Anthropic's >200K tier (a cited correction).
    ("anthropic", "default", {"model": "claude-sonnet-4-20250514", "usage": {"input_tokens": 250_000, "output_tokens": 1000}}, None),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "flavor", "body", "dataset"), BODIES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_llmcost_and_genai_prices_price_every_body_alike(provider, flavor, body, dataset):
    import genai_prices

    theirs = genai_prices.extract_usage(body, provider_id=provider, api_flavor=flavor)
    expected = theirs.calc_price(genai_request_timestamp=AT).total_price
    if dataset is not None:
        assert expected == dataset  # the installed catalog still gives the dataset's price

    found = extract_usage(body)
    assert found is not None
    amount, label, *_ = priced(found.model, found.provider, found.usage, AT, found.service_tier)
    if label.startswith("correction:"):
        assert corrections_for(theirs.provider.id, theirs.model.id), label
        assert amount != expected
    else:
        assert amount == expected, (found.usage, label)
        assert label == "catalog@0.2.3"
